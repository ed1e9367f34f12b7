#pragma once
// The skip keys the reference appends to modules_to_not_convert before quantizing when
// add_skip_keys is set (§2.3, `src/sdnq/utils.py: add_module_skip_keys`): per model class, or the
// common list for classes it does not know.
#include <span>
#include <string_view>

namespace sdnq::quant::detail {

struct ModelSkipKeys {
  std::string_view class_name;
  std::span<const std::string_view> keys;
};

// clang-format off
inline constexpr std::string_view common_skip_keys[] = {
    ".time_embed", ".context_embedder", ".condition_embedder", ".x_embedder", ".t_embedder", ".y_embedder",
    ".proj_in", ".emb_in", ".txt_in", ".img_in", ".vid_in", ".proj_out", ".norm_out", ".emb_out", ".txt_out",
    ".img_out", ".vid_out", ".final_layer", "multi_modal_projector", "time_text_embed", "patch_embedding",
    "patch_embed", "patch_emb", "lm_head", "wte"};
inline constexpr std::string_view flux_keys[] = {"single_transformer_blocks.0.norm.linear.weight", "time_text_embed",
    "time_embed", "context_embedder", "x_embedder", ".proj_out", "norm_out"};
inline constexpr std::string_view flux2_keys[] = {"double_stream_modulation_img", "double_stream_modulation_txt",
    "single_stream_modulation", "time_guidance_embed", "context_embedder", "x_embedder", ".proj_out", "norm_out"};
inline constexpr std::string_view chroma_keys[] = {"distilled_guidance_layer", "time_text_embed", "context_embedder",
    "x_embedder", ".proj_out", "norm_out"};
inline constexpr std::string_view qwen_image_keys[] = {"transformer_blocks.0.img_mod.1.weight", "time_text_embed",
    "txt_in", "img_in", "proj_out", "norm_out"};
inline constexpr std::string_view wan_keys[] = {"scale_shift_table", "patch_embedding", "condition_embedder",
    "proj_out", "norm_out"};
inline constexpr std::string_view longcat_video_keys[] = {"blocks.0.adaLN_modulation.1.weight", "x_embedder",
    "t_embedder", "y_embedder", "final_layer"};
inline constexpr std::string_view ltx2_keys[] = {"audio_time_embed", "time_embed", "audio_caption_projection",
    "caption_projection", "proj_in", "audio_proj_in", "proj_out", "audio_proj_out", "av_cross_attn_audio_scale_shift",
    "av_cross_attn_audio_v2a_gate", "av_cross_attn_video_a2v_gate", "av_cross_attn_video_scale_shift"};
inline constexpr std::string_view lumina2_keys[] = {"layers.0.norm1.linear.weight", "time_caption_embed",
    "x_embedder", "norm_out"};
inline constexpr std::string_view zimage_keys[] = {"layers.0.adaLN_modulation.0.weight", "t_embedder",
    "cap_embedder", "siglip_embedder", "all_x_embedder", "all_final_layer"};
inline constexpr std::string_view ideogram4_keys[] = {"layers.0.adaln_modulation.weight", "input_proj",
    "llm_cond_proj", "llm_cond_norm", "final_layer", "t_embedding", "adaln_proj", "embed_image_indicator"};
inline constexpr std::string_view cosmos_keys[] = {"transformer_blocks.0.norm*", "patch_embed", "time_embed",
    "norm_out", "proj_out", "crossattn_proj"};
inline constexpr std::string_view glm_image_keys[] = {"transformer_blocks.0.norm1.linear.weight", "image_projector",
    "glyph_projector", "prior_projector", "time_condition_embed", "norm_out", "proj_out"};
inline constexpr std::string_view glm_generation_keys[] = {"lm_head", "patch_embed", "embeddings", "embed_tokens",
    "vqmodel"};
inline constexpr std::string_view hunyuan_image3_keys[] = {"lm_head", "patch_embed", "time_embed", "time_embed_2",
    "final_layer", "wte", "ln_f", "timestep_emb", "vae", "vision_aligner", "head", "post_layernorm", "embeddings"};
inline constexpr std::string_view emu3_keys[] = {"lm_head", "vq_model", "tokenizer"};
inline constexpr std::string_view gemma3n_keys[] = {"lm_head", "correction_coefs", "prediction_coefs",
    "embedding_projection"};
inline constexpr std::string_view gemma4_keys[] = {"lm_head", "embed_audio", "embed_vision", "patch_embedder",
    "embed_tokens", "subsample_conv_projection", "output_proj"};
inline constexpr std::string_view moondream_keys[] = {"lm_head", "region", "wte", "post_ln", "proj_mlp", "patch_emb",
    "pos_emb"};
inline constexpr std::string_view nadit_keys[] = {".emb_in", ".txt_in", ".vid_in", ".emb_scale", ".vid_out",
    ".vid_out_norm", ".vid_out_ada"};

inline constexpr ModelSkipKeys module_skip_keys[] = {
    {"FluxTransformer2DModel", flux_keys}, {"LongCatImageTransformer2DModel", flux_keys},
    {"Flux2Transformer2DModel", flux2_keys}, {"ChromaTransformer2DModel", chroma_keys},
    {"QwenImageTransformer2DModel", qwen_image_keys}, {"WanTransformer3DModel", wan_keys},
    {"ChronoEditTransformer3DModel", wan_keys}, {"LongCatVideoTransformer3DModel", longcat_video_keys},
    {"LTX2VideoTransformer3DModel", ltx2_keys}, {"Lumina2Transformer2DModel", lumina2_keys},
    {"ZImageTransformer2DModel", zimage_keys}, {"Ideogram4Transformer2DModel", ideogram4_keys},
    {"CosmosTransformer3DModel", cosmos_keys}, {"GlmImageTransformer2DModel", glm_image_keys},
    {"GlmImageForConditionalGeneration", glm_generation_keys}, {"HunyuanImage3ForCausalMM", hunyuan_image3_keys},
    {"Emu3ForCausalLM", emu3_keys}, {"Gemma3nForCausalLM", gemma3n_keys},
    {"Gemma3nForConditionalGeneration", gemma3n_keys}, {"Gemma4ForConditionalGeneration", gemma4_keys},
    {"MoondreamModel", moondream_keys}, {"HfMoondream", moondream_keys}, {"NaDiT", nadit_keys},
    {"NaDiTUpscaler", nadit_keys}};
// clang-format on

// The keys for `class_name`, or nullptr-sized span when the class is not listed (then the common
// keys and the model's _skip_layerwise_casting_patterns apply).
inline std::span<const std::string_view> model_skip_keys(std::string_view class_name) {
  for (const auto& entry : module_skip_keys)
    if (entry.class_name == class_name) return entry.keys;
  return {};
}

}  // namespace sdnq::quant::detail
