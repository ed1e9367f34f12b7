#pragma once
// Launchers of the 8-bit GEMM tests (defined in test_gemm_w8a8.cu, called from test_gemm_w8a8.cpp).
#include <optional>
#include <string>
#include <vector>

#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/w8a8_repack.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq::test {

// y [M, N] for x [M, K] (host, the weights' activation dtype), bias [N] or empty: copies the inputs
// to the GPU, poisons y and the workspace with 0xFF bytes (NaN in bf16/fp16), runs gemm_w8a8,
// returns y on the host. `tile`: −1 lets gemm_w8a8 choose, 0..9 force a tile (cuda::W8A8TileChoice).
Tensor run_gemm_w8a8_kernel(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                            int tile = -1);

// The TMA kernel's settings a test can force (cuda::kernel_detail::ForcedSetting, without the CUDA header):
//   e4m3_promotion_tiles  the e4m3 kernel promotes its tensor-core sums into fp32 totals every `value` K
//                         tiles of 128 inputs (ForcedE4m3Promotion);
//   paired_blocks         1: blocks never paired, 2: in pairs sharing each weight tile wherever they can
//                         (ForcedW8A8Pairs).
enum class W8A8Forced { e4m3_promotion_tiles, paired_blocks };

// For its lifetime, `which` is forced to `value`; then back to the kernel's own choice.
class ForcedW8A8Scope {
 public:
  ForcedW8A8Scope(W8A8Forced which, int value);
  ~ForcedW8A8Scope();
  ForcedW8A8Scope(const ForcedW8A8Scope&) = delete;
  ForcedW8A8Scope& operator=(const ForcedW8A8Scope&) = delete;

 private:
  W8A8Forced which_;
};

// One block of an SVD branch's part table (cuda::kernel_detail::W8A8SvdPart, without the CUDA header).
struct SvdPartSpec {
  int column_end = 0, rank_begin = 0, rank = 0;
};

// As run_gemm_w8a8_kernel, with the uploaded weights' SVD part table replaced by `parts` (empty: no
// table, every output multiplies every rank).
Tensor run_gemm_w8a8_with_svd_parts(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                                    const std::vector<SvdPartSpec>& parts, int tile = -1);

// The down-projection of an SVD branch on one route (cuda::kernel_detail::forced_w8a8_low_rank: 0
// gemm_tc's split-K launch, 1 / 2 / 4 the rows kernel with that many 16-row tiles a block), the weights'
// part table replaced by `parts` (empty: none). x (host) quantized by quantize_w8a8_activations twice:
// into a buffer of w8a8_activations_bytes(weights, M) bytes (the rows route also multiplies x by
// svd_down there) and into a codes-only one; then gemm_w8a8 on each, and the fused gemm_w8a8(w, x).
// Buffers, workspaces and outputs are poisoned with 0xFF bytes (NaN) first.
struct W8A8LowRankRun {
  Tensor low_rank;                  // [M, rp] host in the activation dtype, undefined when the pass made none
  Tensor codes, scale;              // the quantization beside it
  Tensor plain_codes, plain_scale;  // the codes-only quantization
  Tensor with_low_rank;             // y from the activations carrying low_rank
  Tensor without_low_rank;          // y from the codes-only activations (the GEMM's own down-projection)
  Tensor fused;                     // y from gemm_w8a8(w, x)
};
W8A8LowRankRun run_gemm_w8a8_low_rank_route(const cuda::W8A8WeightsHost& weights, TensorView x,
                                            std::optional<TensorView> bias, const std::vector<SvdPartSpec>& parts,
                                            int route);

// The pre-quantized route: x (host) quantized once on the GPU by quantize_w8a8_activations for
// weights[0], then gemm_w8a8(weights[i], those activations) for every weight (all reading the one
// buffer), and, to compare, the fused gemm_w8a8(weights[i], x). biases[i]: [N_i] or empty. y of the
// pre-quantized calls is poisoned with 0xFE bytes, of the fused ones with 0xFF, so an element neither
// wrote still differs. `tile` as in run_gemm_w8a8_kernel, for every call.
struct W8A8PrequantizedRun {
  Tensor codes;                      // U8 [M, K] host: the codes quantize_w8a8_activations wrote
  Tensor scale;                      // F32 [M] host: its scales
  std::vector<Tensor> prequantized;  // y [M, N_i] host, from the shared codes
  std::vector<Tensor> fused;         // y [M, N_i] host, from gemm_w8a8(weights[i], x)
  bool fits = true;                  // w8a8_activations_fit(weights[i], activations) for every i
  bool codes_in_buffer = true;       // codes and scales inside the w8a8_activations_bytes buffer, 256-aligned
};
W8A8PrequantizedRun run_gemm_w8a8_prequantized(const std::vector<const cuda::W8A8WeightsHost*>& weights, TensorView x,
                                               const std::vector<std::optional<TensorView>>& biases, int tile = -1);

// quantize_w8a8_activations(like, x), then gemm_w8a8(weights, those activations) into a y of the
// right shape: throws what that call throws before launching. `fits` receives
// w8a8_activations_fit(weights, activations) before the call.
void run_gemm_w8a8_on_activations_of(const cuda::W8A8WeightsHost& like, const cuda::W8A8WeightsHost& weights,
                                     TensorView x, bool& fits);

// cuda::expand_w8a8_codes on weights holding `tables` (uploaded by upload_w8a8_weights): the int8 operand it
// writes into a 0xFF-poisoned scratch, on the host.
std::vector<std::int8_t> expand_w8a8_codes_on_device(const quant::Int8CodeTables& tables);

// Misuse of weights holding code tables, each caught before any launch: the messages of gemm_w8a8 and
// w8a8_dequantized_linear on the unexpanded weights, and of expand_w8a8_codes with too little and with
// misaligned scratch.
std::vector<std::string> code_table_misuse_messages(const quant::Int8CodeTables& tables);

// w8a8_activations_fit for int8 weights [64, 128] with an SVD branch (rank padded to 64) and activations
// quantized for them, with or without the rows of x (no GPU work: pointers only).
bool svd_weights_fit_activations(bool with_rows);

// w8a8_dequantized_linear on such weights without a cuBLAS handle (no GPU work: it must refuse before
// touching x): the message.
std::string dequantized_linear_message_with_svd();

// The implicit-GEMM quantized-matmul conv (cuda::conv2d_w8a8) on a quantized Conv2d weight [O, C, k, k]
// (rewritten by quant::conv2d_weight_as_linear, repacked by repack_for_w8a8<T>) over x [N, C, H, W]
// (host, T), bias [O] or empty, symmetric padding: inputs copied to the GPU, out and the workspace
// poisoned with 0xFF bytes (NaN), `tile` −1 lets the call choose, else cuda::ConvW8A8TileChoice (0 small,
// 1 large: the implicit GEMM; 2 rows). Returns out on the host.
Tensor run_conv_w8a8(const quant::QuantizedWeight& conv, TensorView x, std::optional<TensorView> bias, int stride,
                     int padding, int tile = -1);

// One misuse of conv2d_w8a8 named by `which` on a valid int8 layer; throws what the call throws.
void conv_w8a8_misuse(const std::string& which);

// Whether the current GPU runs the float8_e4m3fn GEMM (compute capability 8.9 or newer).
bool gpu_has_fp8_tensor_cores();

// Whether the wgmma tiles (4 to 9) run here: a Hopper GPU and sm_90a code in this build.
bool gpu_has_wgmma();

}  // namespace sdnq::test
