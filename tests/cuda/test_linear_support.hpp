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

// cuda::dense_linear on device copies of x [M, K], weight [N, K] and bias, y poisoned; y on the host.
Tensor run_dense_linear(TensorView x, TensorView weight, std::optional<TensorView> bias);

// Calls quantized_linear with views that break one requirement; returns nothing, throws what it throws.
// `what`: "host_x" (x claims cuda but points to host memory), "short_workspace", "wrong_width",
// "forced_small_m_float", "no_cublas".
void run_quantized_linear_misuse(const cuda::LinearCodes& weight, const std::string& what);

// ---- Fused producers: an op writing a quantized-matmul input's 8-bit codes itself (issue #5) ----

enum class FusedProducer {
  layer_norm,           // cuda::ops::layer_norm_to_w8a8 without weight and bias
  layer_norm_affine,    // ... with weight and bias [D]
  layer_norm_modulate,  // layer_norm_modulate_to_w8a8, shift / scale: chunks 0 / 1 of emb [B, 2D]
  gelu_tanh,            // activation_to_w8a8(gelu_tanh)
  geglu,                // geglu_to_w8a8 on x [R, 2D]
};

struct FusedProducerRun {
  Tensor fused_codes, fused_scale;  // U8 [R, D] and F32 [R] the fused op wrote (outputs poisoned before)
  Tensor plain_codes, plain_scale;  // the plain op's rows, then cuda::quantize_w8a8_activations on them
  Tensor plain_rows;                // the plain op's rows [R, D] (x's dtype)
};

// x: host BF16 / F16 tensor ([B, L, D] for the norms, [R, D] or [R, 2D] for gelu / geglu); weight, bias:
// host [D] (layer_norm_affine); emb: host [B, 2D] (layer_norm_modulate). Runs the fused op and the plain
// composition for weights of `kind` whose scales are F32 (or in x's dtype) and returns both on the host.
FusedProducerRun run_fused_producer(FusedProducer producer, const TensorView& x, const TensorView* weight,
                                    const TensorView* bias, const TensorView* emb, cuda::W8A8Kind kind,
                                    bool scale_in_activation_dtype);

// Calls a fused producer with one requirement broken; throws what it throws. `what`: "norm_dim_40"
// (D = 40: not a multiple of 16), "norm_codes_shape" (codes [R, D + 16]), "norm_scale_dtype" (BF16 scales),
// "norm_unaligned_x" (x viewed 2 bytes into its allocation), "norm_host_codes", "gelu_rank3" (x [2, 3, 32]),
// "geglu_odd" (x [4, 31]), "geglu_codes_rows" (codes of 5 rows for x of 4).
void run_fused_producer_misuse(const std::string& what);

}  // namespace sdnq::test
