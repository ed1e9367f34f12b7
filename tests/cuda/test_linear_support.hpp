#pragma once
// Launcher of the quantized Linear tests (defined in test_linear.cu, called from test_linear.cpp).
#include <cstdint>
#include <optional>
#include <string>

#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/w8a8_repack.hpp"
#include "sdnq/cuda/repack.hpp"

namespace sdnq::test {

// Which route quantized_linear takes; "automatic" lets it choose.
enum class TestRoute { automatic, small_m, tensor_core, dequantize_cublas };
// The code layout the QuantizedLinear keeps (cuda::CodeLayout).
enum class TestLayout { automatic, gemv, tensor_core, checkpoint };

struct LinearRun {
  Tensor y;                      // host copy of y [M, N]
  std::string route;             // the route that ran (linear_route_name)
  std::string layout;            // the layout the layer kept (code_layout_name)
  std::size_t device_bytes = 0;  // QuantizedLinear::device_bytes()
};

// Builds a QuantizedLinear from the host weight for `dtype` activations, copies x [M, K] and bias to
// the GPU, poisons y and the workspace with NaN, runs quantized_linear, returns y on the host.
// `dense_workspace_limit` bounds the dense route's chunk (small values force several chunks).
LinearRun run_quantized_linear(const cuda::LinearCodes& weight, DType dtype, TensorView x,
                               std::optional<TensorView> bias, TestRoute route,
                               std::size_t dense_workspace_limit = std::size_t{64} << 20,
                               TestLayout layout = TestLayout::automatic);

// GEMV-layout weights handed to cuda::QuantizedLinear::adopt_gemv: codes and group parameters present, SVD factors
// present when svd_rank > 0 and `factors`, a table of float values when `float_codes`.
struct AdoptedGemv {
  int bits = 4;
  std::int64_t out_features = 64, in_features = 128, group_size = 32, svd_rank = 0;
  bool factors = true, is_signed = false, float_codes = false;
  cuda::FloatDecode float_decode = cuda::FloatDecode::table;
  DType dtype = DType::bf16;
};
// The message of the UnsupportedError adopt_gemv throws for layer "test.adopted" on weights it must refuse, before
// it touches the device (the pointers it is given are never read); throws std::runtime_error if it accepts them.
std::string adopt_gemv_refusal(const AdoptedGemv& weights);

// device_bytes() of a QuantizedLinear built in `layout` (throws what the constructor throws).
std::size_t quantized_linear_device_bytes(const cuda::LinearCodes& weight, DType dtype, TestLayout layout);

// repack_for_w8a8 + upload, then cuda::w8a8_dequantized_linear with NaN-poisoned y and workspace; y on the host.
Tensor run_w8a8_dequantized_linear(const cuda::LinearCodes& weight, DType dtype, TensorView x,
                                   std::optional<TensorView> bias);

// Uploads weights the caller repacked (any kind, any scale rounding), then cuda::w8a8_dequantized_linear
// with x [M, K] and bias copied to the GPU, y NaN-poisoned, an empty workspace, no e4m3 table and no
// cuBLAS handle (the streaming kernel needs none of them); y on the host. `runs` > 1 calls it again
// on a re-poisoned y and requires bit-identical results (throws std::runtime_error otherwise).
Tensor run_w8a8_dequantized_linear_repacked(const cuda::W8A8WeightsHost& weights, TensorView x,
                                            std::optional<TensorView> bias, int runs = 1);

// Calls cuda::w8a8_dequantized_linear on int8 weights [64, 48] (bf16) with one requirement broken;
// throws what it throws. `what`: "k_not_multiple_of_16" (the view claims K = 40, x [4, 40]),
// "wrong_width" (x [4, 64]), "x_not_matrix" (x [192]), "short_y" (y [4, 60]), "unaligned_x" (x viewed
// 2 bytes into its allocation).
void run_w8a8_dequantized_linear_misuse(const std::string& what);

// Whether w8a8_dequantized_linear runs `tokens` rows of an [N, K] weight on the tensor-core
// weight-streaming kernel (16 tokens a launch) on the current device (else the CUDA-core kernel).
bool w8a8_dequantized_streams(std::int64_t tokens, std::int64_t out_features, std::int64_t in_features);

// cuda::dense_linear on device copies of x [M, K], weight [N, K] and bias, y poisoned; y on the host.
Tensor run_dense_linear(TensorView x, TensorView weight, std::optional<TensorView> bias);

// Calls quantized_linear with views that break one requirement; returns nothing, throws what it throws.
// `what`: "host_x" (x claims cuda but points to host memory), "short_workspace", "wrong_width",
// "forced_small_m" (the small_m route forced), "no_cublas".
void run_quantized_linear_misuse(const cuda::LinearCodes& weight, const std::string& what);

}  // namespace sdnq::test
