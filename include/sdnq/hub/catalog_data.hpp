#pragma once
// The catalog's data (included by catalog.hpp). Rows follow the ComfyUI-SDNQ registry
// (EnragedAntelope/comfyui-sdnq core/registry.py, 2026-01-15); `format` and `format_detail` come from the
// Hugging Face model cards and repo names (a `-svd-rNN` suffix is an SVD side channel of rank NN);
// families and their pipelines from the diffusers pipeline signatures. docs/catalog.json is generated
// from this table (sdnq-download --list --json).
#include <array>

namespace sdnq::hub::detail {

inline constexpr ModelFamily flux1{
    "FLUX.1",
    "FluxPipeline",
    "FlowMatchEulerDiscreteScheduler",
    28,
    3.5f,
    "guidance_scale",
    "guidance_scale is distilled guidance; a negative prompt only acts with true_cfg_scale > 1"};
inline constexpr ModelFamily flux1_schnell{"FLUX.1-schnell",
                                           "FluxPipeline",
                                           "FlowMatchEulerDiscreteScheduler",
                                           4,
                                           0.0f,
                                           "guidance_scale",
                                           "timestep-distilled: 4 steps, no guidance"};
inline constexpr ModelFamily flux1_kontext{"FLUX.1-Kontext",
                                           "FluxKontextPipeline",
                                           "FlowMatchEulerDiscreteScheduler",
                                           28,
                                           2.5f,
                                           "guidance_scale",
                                           "image editing: pass the input image as `image`"};
inline constexpr ModelFamily flux2_dev{"FLUX.2-dev",
                                       "Flux2Pipeline",
                                       "FlowMatchEulerDiscreteScheduler",
                                       50,
                                       4.0f,
                                       "guidance_scale",
                                       "Mistral Small 3 text encoder; no negative prompt; accepts reference images"};
inline constexpr ModelFamily flux2_klein{"FLUX.2-klein",
                                         "Flux2KleinPipeline",
                                         "FlowMatchEulerDiscreteScheduler",
                                         {},
                                         4.0f,
                                         "guidance_scale",
                                         "Qwen3 text encoder (4B for klein-4B, 8B for klein-9B); step-distilled "
                                         "(is_distilled), take the step count from the model card"};
inline constexpr ModelFamily qwen_image{"Qwen-Image",
                                        "QwenImagePipeline",
                                        "FlowMatchEulerDiscreteScheduler",
                                        50,
                                        4.0f,
                                        "true_cfg_scale",
                                        "the real CFG is true_cfg_scale with a negative prompt; guidance_scale is only "
                                        "for guidance-distilled variants"};
inline constexpr ModelFamily qwen_image_lightning{"Qwen-Image-Lightning",
                                                  "QwenImagePipeline",
                                                  "FlowMatchEulerDiscreteScheduler",
                                                  8,
                                                  1.0f,
                                                  "true_cfg_scale",
                                                  "Lightning distillation: few steps and CFG off; check the model card "
                                                  "for the 4- or 8-step variant"};
inline constexpr ModelFamily qwen_image_edit{"Qwen-Image-Edit",
                                             "QwenImageEditPipeline",
                                             "FlowMatchEulerDiscreteScheduler",
                                             50,
                                             4.0f,
                                             "true_cfg_scale",
                                             "one input image; real CFG is true_cfg_scale"};
inline constexpr ModelFamily qwen_image_edit_lightning{"Qwen-Image-Edit-Lightning",
                                                       "QwenImageEditPipeline",
                                                       "FlowMatchEulerDiscreteScheduler",
                                                       8,
                                                       1.0f,
                                                       "true_cfg_scale",
                                                       "Lightning distillation of Qwen-Image-Edit: few steps, CFG off"};
inline constexpr ModelFamily qwen_image_edit_plus{"Qwen-Image-Edit-Plus",
                                                  "QwenImageEditPlusPipeline",
                                                  "FlowMatchEulerDiscreteScheduler",
                                                  50,
                                                  4.0f,
                                                  "true_cfg_scale",
                                                  "2509/2511 editing with several input images"};
inline constexpr ModelFamily qwen_image_layered{"Qwen-Image-Layered",
                                                "QwenImageLayeredPipeline",
                                                "FlowMatchEulerDiscreteScheduler",
                                                50,
                                                4.0f,
                                                "true_cfg_scale",
                                                "layered (RGBA layer) decomposition and editing"};
inline constexpr ModelFamily z_image_turbo{
    "Z-Image-Turbo",
    "ZImagePipeline",
    "FlowMatchEulerDiscreteScheduler",
    9,
    0.0f,
    "guidance_scale",
    "distilled: the card uses 9 steps and guidance 0; the VAE uses shift_factor"};
inline constexpr ModelFamily chroma{"Chroma",
                                    "ChromaPipeline",
                                    "FlowMatchEulerDiscreteScheduler",
                                    35,
                                    5.0f,
                                    "guidance_scale",
                                    "T5 text encoder only; negative prompts supported"};
inline constexpr ModelFamily chrono_edit{"ChronoEdit",
                                         "ChronoEditPipeline",
                                         "FlowMatchEulerDiscreteScheduler",
                                         {},
                                         {},
                                         "guidance_scale",
                                         "Wan-based 14B image editor (UMT5 + CLIP vision encoder, Wan VAE); steps and "
                                         "guidance not confirmed, the pipeline defaults apply"};
inline constexpr ModelFamily hunyuan_image3{"HunyuanImage-3",
                                            "",
                                            "",
                                            {},
                                            {},
                                            "",
                                            "not a diffusers pipeline: a transformers multimodal MoE (80B total, 13B "
                                            "active) with remote code and no model_index.json"};
inline constexpr ModelFamily sdxl_vpred{"SDXL-vpred",
                                        "StableDiffusionXLPipeline",
                                        "EulerDiscreteScheduler",
                                        28,
                                        5.0f,
                                        "guidance_scale",
                                        "v-prediction: the scheduler needs prediction_type=v_prediction and "
                                        "rescale_betas_zero_snr"};
inline constexpr ModelFamily sdxl{"SDXL",
                                  "StableDiffusionXLPipeline",
                                  "EulerAncestralDiscreteScheduler",
                                  28,
                                  5.0f,
                                  "guidance_scale",
                                  "epsilon prediction; CLIP-L + OpenCLIP bigG text encoders"};
inline constexpr ModelFamily wan22_t2v{"Wan2.2-T2V",
                                       "WanPipeline",
                                       "UniPCMultistepScheduler",
                                       40,
                                       4.0f,
                                       "guidance_scale",
                                       "two experts: transformer (high noise) and transformer_2 (low noise), switched "
                                       "at boundary_ratio; guidance_scale_2 for the second"};
inline constexpr ModelFamily wan22_i2v{"Wan2.2-I2V",
                                       "WanImageToVideoPipeline",
                                       "UniPCMultistepScheduler",
                                       40,
                                       3.5f,
                                       "guidance_scale",
                                       "two experts as Wan2.2-T2V; the first frame is the input image"};
inline constexpr ModelFamily glm_image{"GLM-Image",
                                       "GlmImagePipeline",
                                       "FlowMatchEulerDiscreteScheduler",
                                       {},
                                       {},
                                       "guidance_scale",
                                       "an autoregressive vision-language encoder plus a diffusion decoder; steps and "
                                       "guidance not confirmed, the pipeline defaults apply"};
inline constexpr ModelFamily ltx2{"LTX-2",
                                  "LTX2Pipeline",
                                  "FlowMatchEulerDiscreteScheduler",
                                  {},
                                  {},
                                  "guidance_scale",
                                  "video with audio (Gemma 3 text encoder, video and audio VAEs, vocoder); "
                                  "LTX2ImageToVideoPipeline for image-to-video; experimental"};

inline constexpr std::string_view uint4_svd32 = "uint4 weights + SVD low-rank side channel, rank 32";
inline constexpr std::string_view uint4_svd128 = "uint4 weights + SVD low-rank side channel, rank 128";

inline constexpr std::array<CatalogEntry, 30> catalog_entries{{
    {"FLUX.1-dev-qint8", "Disty0/FLUX.1-dev-qint8", "FLUX", "int8", 1, "Best quality/VRAM balance", &flux1,
     StorageFormat::quanto_qint8, 0, "Optimum-Quanto qint8 on the transformer and T5 (quantization_map.json)",
     "not SDNQ: refused; the registry's default entry"},
    {"FLUX.1-dev-qint4", "Disty0/FLUX.1-dev-qint4", "FLUX", "uint4", 2, "Extreme VRAM savings", &flux1,
     StorageFormat::quanto_qint4, 0, "Optimum-Quanto qint4", "not SDNQ: refused"},
    {"FLUX.1-dev-SDNQ-uint4", "Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32", "FLUX", "uint4", 3, "T2I", &flux1,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, "base model FLUX.1-dev is gated: accept its licence"},
    {"FLUX.1-schnell-SDNQ-uint4", "Disty0/FLUX.1-schnell-SDNQ-uint4-svd-r32", "FLUX", "uint4", 4, "fast",
     &flux1_schnell, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"FLUX.1-Krea-dev-SDNQ-uint4", "Disty0/FLUX.1-Krea-dev-SDNQ-uint4-svd-r32", "FLUX", "uint4", 5, "", &flux1,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"FLUX.1-Kontext-dev-SDNQ-uint4", "Disty0/FLUX.1-Kontext-dev-SDNQ-uint4-svd-r32", "FLUX", "uint4", 6, "edit model",
     &flux1_kontext, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"FLUX.2-dev-SDNQ-uint4", "Disty0/FLUX.2-dev-SDNQ-uint4-svd-r32", "FLUX2", "uint4", 7, "needs diffusers>=0.35",
     &flux2_dev, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-SDNQ-uint4", "Disty0/Qwen-Image-SDNQ-uint4-svd-r32", "Qwen", "uint4", 8, "T2I", &qwen_image,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-Lightning-SDNQ-uint4", "Disty0/Qwen-Image-Lightning-SDNQ-uint4-svd-r32", "Qwen", "uint4", 9,
     "fast T2I", &qwen_image_lightning, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-Edit-2509-SDNQ-uint4", "Disty0/Qwen-Image-Edit-2509-SDNQ-uint4-svd-r32", "Qwen", "uint4", 10, "I2I",
     &qwen_image_edit_plus, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-Edit-2511-SDNQ-uint4", "Disty0/Qwen-Image-Edit-2511-SDNQ-uint4-svd-r32", "Qwen", "uint4", 11,
     "latest I2I", &qwen_image_edit_plus, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-Edit-Lightning-SDNQ-uint4", "Disty0/Qwen-Image-Edit-Lightning-SDNQ-uint4-svd-r32", "Qwen", "uint4", 12,
     "fast I2I", &qwen_image_edit_lightning, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-Edit-SDNQ-uint4", "Disty0/Qwen-Image-Edit-SDNQ-uint4-svd-r32", "Qwen", "uint4", 13, "I2I",
     &qwen_image_edit, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Z-Image-Turbo-SDNQ-int8", "Disty0/Z-Image-Turbo-SDNQ-int8", "Z-Image", "int8", 15, "fast INT8 MatMul",
     &z_image_turbo, StorageFormat::sdnq_int8, 0, "int8 weights, group size disabled for fast int8 matmul", ""},
    {"Z-Image-Turbo-SDNQ-uint4", "Disty0/Z-Image-Turbo-SDNQ-uint4-svd-r32", "Z-Image", "uint4", 16, "max savings",
     &z_image_turbo, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Chroma1-HD-SDNQ-uint4", "Disty0/Chroma1-HD-SDNQ-uint4-svd-r32", "Chroma", "uint4", 17, "T2I", &chroma,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"ChronoEdit-14B-SDNQ-uint4", "Disty0/ChronoEdit-14B-SDNQ-uint4-svd-r32", "Chrono", "uint4", 18, "image editing",
     &chrono_edit, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"HunyuanImage3-SDNQ-uint4", "Disty0/HunyuanImage3-SDNQ-uint4-svd-r32", "Hunyuan", "uint4", 19, "(45B params)",
     &hunyuan_image3, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32,
     "no model_index.json, so --components does not apply (ComfyUI-SDNQ issue #39); the registry's '45B' is wrong: "
     "80B total, 13B active"},
    {"NoobAI-XL-Vpred-v1.0-SDNQ-uint4", "Disty0/NoobAI-XL-Vpred-v1.0-SDNQ-uint4-svd-r128", "SDXL", "uint4", 20, "anime",
     &sdxl_vpred, StorageFormat::sdnq_uint4_svd, 128, uint4_svd128, ""},
    {"NoobAI-XL-v1.1-SDNQ-uint4", "Disty0/NoobAI-XL-v1.1-SDNQ-uint4-svd-r128", "SDXL", "uint4", 21, "anime", &sdxl,
     StorageFormat::sdnq_uint4_svd, 128, uint4_svd128, ""},
    {"Wan2.2-I2V-A14B-SDNQ-uint4", "Disty0/Wan2.2-I2V-A14B-SDNQ-uint4-svd-r32", "Wan", "uint4", 22, "I2V", &wan22_i2v,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, "video"},
    {"Wan2.2-T2V-A14B-SDNQ-uint4", "Disty0/Wan2.2-T2V-A14B-SDNQ-uint4-svd-r32", "Wan", "uint4", 23, "T2V", &wan22_t2v,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, "video"},
    {"FLUX.2-klein-4B-SDNQ-4bit", "Disty0/FLUX.2-klein-4B-SDNQ-4bit-dynamic", "FLUX2", "4bit", 24, "smaller FLUX.2",
     &flux2_klein, StorageFormat::sdnq_dynamic_4bit, 0, "dynamic per-layer mix of uint4 and int5, no SVD", ""},
    {"FLUX.2-klein-9B-SDNQ-4bit", "Disty0/FLUX.2-klein-9B-SDNQ-4bit-dynamic-svd-r32", "FLUX2", "4bit", 25,
     "larger klein", &flux2_klein, StorageFormat::sdnq_dynamic_4bit, 32,
     "dynamic per-layer mix of uint4 and int5, SVD rank 32", ""},
    {"GLM-Image-SDNQ-4bit", "Disty0/GLM-Image-SDNQ-4bit-dynamic", "GLM", "4bit", 26, "T2I", &glm_image,
     StorageFormat::sdnq_dynamic_4bit, 0, "dynamic per-layer mix of uint4, int5 and float5_e3m1fn, no SVD", ""},
    {"Qwen-Image-2512-SDNQ-4bit", "Disty0/Qwen-Image-2512-SDNQ-4bit-dynamic", "Qwen", "4bit", 27, "Dec 2025 update",
     &qwen_image, StorageFormat::sdnq_dynamic_4bit, 0,
     "dynamic per-layer mix of int4, uint4, int5, float4_e3m0fn and float5_e3m1fn, no SVD", ""},
    {"Qwen-Image-2512-SDNQ-uint4", "Disty0/Qwen-Image-2512-SDNQ-uint4-svd-r32", "Qwen", "uint4", 28, "", &qwen_image,
     StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"Qwen-Image-Layered-SDNQ-uint4", "Disty0/Qwen-Image-Layered-SDNQ-uint4-svd-r32", "Qwen", "uint4", 29,
     "layered editing", &qwen_image_layered, StorageFormat::sdnq_uint4_svd, 32, uint4_svd32, ""},
    {"LTX-2-SDNQ-4bit", "Disty0/LTX-2-SDNQ-4bit-dynamic", "LTX2", "4bit", 30, "video (experimental)", &ltx2,
     StorageFormat::sdnq_dynamic_4bit, 0, "dynamic 4-bit per-layer mix (exact mix not checked)", "video with audio"},
    {"LTX-2-SDNQ-8bit", "Disty0/LTX-2-SDNQ-8bit-dynamic", "LTX2", "int8", 31, "video, better quality", &ltx2,
     StorageFormat::sdnq_dynamic_8bit, 0, "dynamic 8-bit per-layer mix (exact mix not checked)", "video with audio"},
}};

}  // namespace sdnq::hub::detail
