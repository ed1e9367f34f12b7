#pragma once
// Host launchers of the fused-producer tests at the nn level (model_launchers/fused.cuh, compiled into
// test_gpu_model_launchers.cu), called from test_gpu_models_fused.cpp.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sdnq::test {

// nn::gpu::Linear layers reading x [tokens, 64] (random weights quantized by the library): "q" and "k"
// int8 quantized matmul with F32 scales, "bf16_scales" int8 with scales in bf16 (dequantize_fp32 off),
// "e4m3" float8_e4m3fn quantized matmul, "weight_only" uint4. A LayerNorm (weight, bias) writes the codes
// for {q, k} through take_fused_input + cuda::ops::layer_norm_to_w8a8; each of q, k then runs on them.
struct FusedInputRun {
  bool fused = false;                  // take_fused_input gave codes for {q, k}
  std::size_t fused_bytes = 0;         // nn::gpu::fused_input_bytes({q, k})
  bool mixed_readers_refused = false;  // fused_quantization is null for {q, weight_only}, {q, bf16_scales}, {q, e4m3}
  std::vector<bool> identical;         // q, k: forward(codes) == forward(layer_norm rows), bit for bit
  std::vector<std::string> misuse;     // forward(codes) on weight_only, bf16_scales, e4m3: the error ("" if none)
};
FusedInputRun compare_fused_input(std::int64_t tokens);

// A model case run twice on the same inputs, with fused producers (the default) and without
// (set_fused_quantization(false)), the workspace poisoned with NaN before each run.
struct FusedModelRun {
  std::size_t fused_sites = 0;  // producer readers (joined q/k/v, ff.net.0.proj, ff.net.2, ...) fused at these rows
  bool identical = false;       // the two outputs agree bit for bit
  bool finite = false;          // ... and hold no NaN / inf
  std::size_t workspace_bytes = 0, peak_fused = 0, peak_plain = 0;
};
// FLUX on `image_tokens` random image tokens and `text_tokens` text tokens (the fixture's 16 and 6 are
// too few rows for the 8-bit GEMM).
FusedModelRun compare_flux_fused(const std::filesystem::path& case_folder, std::int64_t image_tokens,
                                 std::int64_t text_tokens);
FusedModelRun compare_sd3_fused(const std::filesystem::path& case_folder);   // the fixture's inputs
FusedModelRun compare_unet_fused(const std::filesystem::path& case_folder);  // the fixture's inputs

}  // namespace sdnq::test
