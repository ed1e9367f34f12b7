#pragma once
// Host launchers of the GPU model tests (model_launchers/clip_conv.cuh), callable from the Catch test cases.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/layer_options.hpp"

namespace sdnq::test {

struct GpuOutputError {
  std::string name;
  double rel_l2 = 0.0;  // against the case's output_bf16.<name>
};

struct GpuModelRun {
  std::vector<GpuOutputError> outputs;    // one per output_bf16.* of the reference, in file order
  std::vector<std::string> linear_kinds;  // nn::gpu::linear_kind_name of every Linear, in load order
  std::size_t workspace_bytes = 0, workspace_peak = 0;
};

// Loads a clip_l-* / clip_g-* fixture case on cuda:0, runs its input.input_ids through the bf16 forward
// and compares every output with output_bf16.*.
GpuModelRun run_clip_case_on_gpu(const std::filesystem::path& case_folder);

// Runs the case's input_ids repeated `copies` times along the batch (so that the Linear layers see
// copies·tokens rows; ≥ 32 rows take the quantized-matmul GEMM) through the GPU model and through the
// CPU float32 nn::ClipTextModel, and returns the relative L2 of each GPU output against the CPU one.
GpuModelRun compare_clip_with_cpu(const std::filesystem::path& case_folder, int copies);

// Runs the case's model on `ids` (a host tensor, uploaded as it is; `keep_on_host` passes the host view
// itself): throws what the model throws.
void run_clip_on_gpu_with_ids(const std::filesystem::path& case_folder, const Tensor& ids, bool keep_on_host = false);

// One quantized conv through nn::gpu::Conv2d against the CPU: a random weight [O, C, k, k] quantized by the
// library with `options`, served with a random bias from one in-memory component to nn::Conv2d (CPU, float32
// conv of its dequantized weight) and nn::gpu::Conv2d (bf16, NaN-poisoned output), x [N, C, H, W] random.
struct QuantizedConvRun {
  double rel_l2 = 0.0;          // GPU output against the CPU one
  bool runs_on_codes = false;   // nn::gpu::Conv2d kept the codes (else dequantized at load)
  bool runs_quantized_matmul = false;  // it runs the implicit-GEMM quantized-matmul conv (cuda::conv2d_w8a8)
  std::size_t device_bytes = 0, dense_bf16_bytes = 0;
};
QuantizedConvRun compare_quantized_conv_with_cpu(const quant::LayerOptions& options, const Shape& x_shape,
                                                 std::int64_t out_channels, int kernel, int stride, int padding);

// Linears reading one x [tokens, 64]: three int8 quantized-matmul layers (out 96, 160, 32, the last with
// its activation scales in the model dtype: dequantize_fp32 off) and a uint4 weight-only one, from random
// weights quantized by the library. Each runs forward(x) and forward(share_input(x, all four)).
struct SharedInputRun {
  bool quantized_once = false;        // share_input made 8-bit codes
  std::size_t shared_bytes = 0;       // nn::gpu::shared_input_bytes for the four
  std::vector<bool> identical;        // per layer: the two outputs agree bit for bit
  std::vector<double> rel_l2_to_cpu;  // per layer: forward(shared) against the CPU float32 nn::Linear
};
SharedInputRun compare_shared_input(std::int64_t tokens);

// Quantized-matmul Linears [out, 128] from random weights quantized by the library, loaded by nn::gpu::Linear
// with the RequantizedMatmul `policy`: uint4 g64 + SVD r32, uint4 g64,
// int8 + SVD r16, int4 row-wise, float8_e5m2, uint4 row-wise (a zero point), and with an e4m3 product
// float4_e2m1fn row-wise and uint4 g64, each with a bias. Each runs
// forward(x) on `tokens` random rows (output NaN-poisoned) and forward(share_input(x, all)); then the first
// three (the first two under code tables) are joined by Linear::concatenate and run once more.
struct RequantizedLinearRun {
  std::vector<std::string> names, kinds;      // per layer: its name, nn::gpu::linear_kind_name
  std::vector<bool> re_quantized_by_reference;  // the layout re-quantizes per call (§5.1 step 1)
  std::vector<bool> svd;                      // the layer has an SVD branch
  std::vector<bool> identical;                // forward(x) and forward(shared input) agree bit for bit
  std::vector<double> rel_l2_to_cpu;          // forward(x) against the CPU float32 nn::Linear
  std::vector<std::size_t> device_bytes;      // nn::gpu::Linear::device_bytes
  std::vector<Tensor> outputs;                // forward(x) per layer, F32 on the host
  bool svd_runs_here = false;                 // cuda::gemm_w8a8_runs_svd on cuda:0
  std::size_t workspace_bytes = 0, peak = 0;  // what workspace_bytes/shared_input_bytes asked, what was used
  // Linear::concatenate of the first three layers, when it joined them: its kind and, per part, the relative
  // L2 of its column block of the joined forward(x) against the part's own forward(x).
  std::string joined_kind;
  std::size_t joined_device_bytes = 0;
  bool mixed_storage_joined = false;  // code tables: the three layers (tables and codes) were joined
  std::vector<double> joined_rel_l2;
};
// `gemv_layout`: weight-only layers keep the GEMV layout (cuda::CodeLayout::gemv) where it fits.
RequantizedLinearRun compare_requantized_linears(std::int64_t tokens, nn::RequantizedMatmul policy,
                                                 bool gemv_layout = false);

}  // namespace sdnq::test
