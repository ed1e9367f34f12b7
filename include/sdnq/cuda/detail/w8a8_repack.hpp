#pragma once
// Load-time repack of an SDNQ 8-bit quantized-matmul weight for gemm_w8a8 (gemm_w8a8.cuh). Host only.
//
// Input: a LinearCodes as the checkpoint stores it (sdnq-format.md §3.8/§6.1): int8 or float8_e4m3fn
// codes, usually transposed to [in, out] for the reference's direct quantized matmul, with one scale
// per output channel ([1, out] or [out, 1]) or one per tensor.
// Output (what the kernel reads):
//   codes  I8 / F8_E4M3 [N, K]  row-major, K contiguous (the B operand of mma.row.col)
//   scale  F32 [N]              rounded to the activation dtype first, as the reference loader does
//                               (ScaleRounding::to_output_dtype) — the reference's s_w
//   svd_up T [N, rp], svd_down T [rp, K]   (int8 only) the SVD branch, ranks zero-padded to rp = a
//                               multiple of 64
// Not handled here (UnsupportedError): uint8 and packed int2..int7 weights (they need the zero-point
// bias terms of §5.1 step 5 or an in-kernel upconversion), grouped weights, other float codes. Weights
// the reference re-quantizes per call (grouped or packed, W4A8 and friends) take
// repack_operand_for_w8a8: the caller re-quantizes once at load (quant::detail::weight_operand gives
// the reference's exact operand) and passes the int8 codes and scales.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/repack.hpp"
#include "sdnq/quant/code_tables.hpp"

namespace sdnq::cuda {

// The 8-bit product the GEMM runs (the layer's quantized_matmul_dtype).
enum class W8A8Kind : std::uint8_t { int8, float8_e4m3fn };

struct W8A8WeightsHost {
  W8A8Kind kind = W8A8Kind::int8;
  std::int64_t out_features = 0, in_features = 0;  // N, K
  DType dtype = DType::bf16;                       // activation and output dtype
  // The dtype the reference computes the activation scales and quotients in: F32 for layers saved
  // with dequantize_fp32 = true (the default), else the activation dtype.
  DType scale_dtype = DType::f32;
  Tensor codes;  // I8 or F8_E4M3 [N, K]
  Tensor scale;  // F32 [N]
  // The SVD branch (§5.1 step 3) or empty tensors: T factors, ranks zero-padded to a multiple of 64.
  Tensor svd_up;    // [N, rp]
  Tensor svd_down;  // [rp, K]
  std::int64_t svd_rank = 0;
  bool svd_in_activation_dtype = false;  // the reference's SVD dtype is T (else F32): bias' rounded to T
  // The int8 operand as code tables (requantize_for_w8a8 with W8A8OperandStorage::code_tables_where_smaller);
  // `codes` is then empty and the GPU expands the tables per call (w8a8_code_tables.cuh).
  std::optional<quant::Int8CodeTables> tables;
};

namespace detail {

// target [N, K] = source [K, N]ᵀ for byte matrices, in 64×64 blocks (reads and writes touch whole
// cache lines) with the output's row blocks spread over the host threads: the element-wise loop wrote a
// new cache line per byte and made an int8 FLUX.1 spend most of its load here.
inline void transpose_bytes(const std::uint8_t* source, std::uint8_t* target, std::int64_t k, std::int64_t n) {
  constexpr std::int64_t block = 64;
  parallel_for(0, (n + block - 1) / block, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t row_block = first; row_block < last; ++row_block) {
      const std::int64_t o0 = row_block * block, o1 = std::min(n, o0 + block);
      for (std::int64_t c0 = 0; c0 < k; c0 += block) {
        const std::int64_t c1 = std::min(k, c0 + block);
        for (std::int64_t o = o0; o < o1; ++o)
          for (std::int64_t c = c0; c < c1; ++c) target[o * k + c] = source[c * n + o];
      }
    }
  });
}

// Copies LinearCodes-layout factors (svd_up [N, r], svd_down [r, K], any float dtype) into `out` as T,
// zero-padded to a multiple of 64 ranks.
template <class T>
void attach_w8a8_svd(W8A8WeightsHost& out, std::string_view name, TensorView svd_up, TensorView svd_down,
                     bool in_activation_dtype) {
  const std::int64_t n = out.out_features, k = out.in_features;
  SDNQ_REQUIRE(out.kind == W8A8Kind::int8, UnsupportedError,
               "{}: gemm_w8a8 runs an SVD branch with int8 weights only, not float8_e4m3fn", name);
  SDNQ_REQUIRE(svd_up.rank() == 2 && svd_down.rank() == 2 && svd_up.size(0) == n && svd_down.size(1) == k &&
                   svd_up.size(1) == svd_down.size(0) && svd_up.size(1) >= 1 && svd_up.is_contiguous() &&
                   svd_down.is_contiguous(),
               ShapeError, "{}: SVD factors must be contiguous svd_up [{}, r] and svd_down [r, {}], got {} and {}", name,
               n, k, svd_up.shape().to_string(), svd_down.shape().to_string());
  SDNQ_REQUIRE(svd_up.size(1) <= 1024, UnsupportedError, "{}: SVD rank {} is above what gemm_w8a8 runs (1024)", name,
               svd_up.size(1));
  PaddedSvdFactors<T> svd = padded_svd_factors<T>(svd_up, svd_down);
  out.svd_rank = svd.rank;
  out.svd_in_activation_dtype = in_activation_dtype;
  out.svd_up = std::move(svd.up);
  out.svd_down = std::move(svd.down);
}

}  // namespace detail

// Repacks a host checkpoint weight. `dequantize_fp32`: the layer's quantization_config flag (decides
// the scale dtype, §6.4). Throws UnsupportedError naming the weight and what is supported.
template <class T>
W8A8WeightsHost repack_for_w8a8(const LinearCodes& w, bool dequantize_fp32 = true,
                                ScaleRounding rounding = ScaleRounding::to_output_dtype) {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, fp16>, "activations are bf16 or fp16");
  detail::require_linear_codes_consistent(w);
  SDNQ_REQUIRE(w.codes.device().is_cpu() && w.scale.device().is_cpu(), ShapeError,
               "{}: repack_for_w8a8 reads host tensors", w.name);
  const bool int8 = w.bits == 8 && w.value == CodeValue::signed_integer && w.codes.dtype() == DType::i8;
  const bool e4m3 = w.bits == 8 && w.value == CodeValue::lookup && w.codes.dtype() == DType::f8_e4m3fn;
  SDNQ_REQUIRE(int8 || e4m3, UnsupportedError,
               "{}: gemm_w8a8 takes int8 (I8) or float8_e4m3fn (F8_E4M3) codes, got {}-bit {} codes; uint8 and "
               "packed weights need the zero-point terms or re-quantization, which it does not implement",
               w.name, w.bits, dtype_name(w.codes.dtype()));
  SDNQ_REQUIRE(!w.zero_point, UnsupportedError, "{}: gemm_w8a8 has no zero-point terms yet", w.name);
  SDNQ_REQUIRE(w.svd_up.has_value() == w.svd_down.has_value(), ShapeError,
               "{}: an SVD branch needs both svd_up and svd_down", w.name);
  SDNQ_REQUIRE(w.group_size == -1 || w.group_size == -2 || w.group_size == w.in_features, UnsupportedError,
               "{}: gemm_w8a8 needs one scale per output channel or per tensor, got groups of {} over {} inputs "
               "(the reference re-quantizes grouped weights on every call)",
               w.name, w.group_size, w.in_features);
  const std::int64_t n = w.out_features, k = w.in_features;
  SDNQ_REQUIRE(k % 16 == 0, UnsupportedError,
               "{}: gemm_w8a8 needs in_features to be a multiple of 16 (16-byte code rows), got {}", w.name, k);

  W8A8WeightsHost out;
  out.kind = int8 ? W8A8Kind::int8 : W8A8Kind::float8_e4m3fn;
  out.out_features = n;
  out.in_features = k;
  out.dtype = dtype_of_v<T>;
  // §5.1 step 4: fp16 scales are promoted to fp32, so only bf16 models quantize x in their own dtype.
  out.scale_dtype = dequantize_fp32 || std::is_same_v<T, fp16> ? DType::f32 : dtype_of_v<T>;
  out.codes = Tensor::empty(Shape{n, k}, w.codes.dtype());
  const auto* source = static_cast<const std::uint8_t*>(w.codes.data());
  auto* target = static_cast<std::uint8_t*>(out.codes.data());
  if (w.transposed) {  // stored [K, N]
    detail::transpose_bytes(source, target, k, n);
  } else {
    parallel_copy(target, source, static_cast<std::size_t>(n * k));
  }
  out.scale = Tensor::empty(Shape{n}, DType::f32);
  float* scale = out.scale.data_as<float>();
  for (std::int64_t o = 0; o < n; ++o) {
    const std::int64_t index = w.scale.numel() == 1 ? 0 : o;
    const float stored = detail::narrow_param<float>(w.scale, index);
    scale[o] = rounding == ScaleRounding::to_output_dtype ? T(stored).to_float() : stored;
  }
  if (w.svd_up) detail::attach_w8a8_svd<T>(out, w.name, *w.svd_up, *w.svd_down, !dequantize_fp32);
  return out;
}

// Weights the reference re-quantizes on every call (§5.1 step 1: grouped or packed integer codes, e.g.
// uint4 g64 + SVD with quantized matmul on), given as the operand of that re-quantization, computed once
// by the caller: int8 or e4m3 codes [N, K] (K contiguous; the SVD branch with int8 only) and s_w [N] as F32 (the values
// the reference multiplies with), `scale_dtype` the dtype its activation scales are computed in (F32 or T), and the
// layer's SVD factors in LinearCodes' layout (svd_up [N, r], svd_down [r, K]) with their dtype rule. Host tensors,
// taken over (no copy of the N·K codes: requantize_for_w8a8 hands over what it computed).
template <class T>
W8A8WeightsHost repack_owned_operand_for_w8a8(std::string_view name, Tensor codes, Tensor scale, DType scale_dtype,
                                              std::optional<TensorView> svd_up = std::nullopt,
                                              std::optional<TensorView> svd_down = std::nullopt,
                                              bool svd_in_activation_dtype = false) {
  static_assert(std::is_same_v<T, bf16> || std::is_same_v<T, fp16>, "activations are bf16 or fp16");
  SDNQ_REQUIRE(codes.device().is_cpu() && scale.device().is_cpu(), ShapeError,
               "{}: repack_operand_for_w8a8 reads host tensors", name);
  SDNQ_REQUIRE(codes.rank() == 2 && (codes.dtype() == DType::i8 || codes.dtype() == DType::f8_e4m3fn) &&
                   codes.view().is_contiguous(),
               UnsupportedError,
               "{}: the re-quantized operand must be contiguous I8 or F8_E4M3 codes [N, K], got {} {}", name,
               dtype_name(codes.dtype()), codes.shape().to_string());
  const std::int64_t n = codes.size(0), k = codes.size(1);
  SDNQ_REQUIRE(scale.numel() == n && scale.dtype() == DType::f32 && scale.view().is_contiguous(), ShapeError,
               "{}: the re-quantized operand needs F32 scales [{}], got {} {}", name, n, dtype_name(scale.dtype()),
               scale.shape().to_string());
  SDNQ_REQUIRE(k % 16 == 0, UnsupportedError,
               "{}: gemm_w8a8 needs in_features to be a multiple of 16 (16-byte code rows), got {}", name, k);
  SDNQ_REQUIRE(scale_dtype == DType::f32 || scale_dtype == dtype_of_v<T>, UnsupportedError,
               "{}: activation scales are computed in F32 or the activation dtype, not {}", name,
               dtype_name(scale_dtype));
  SDNQ_REQUIRE(svd_up.has_value() == svd_down.has_value(), ShapeError,
               "{}: an SVD branch needs both svd_up and svd_down", name);
  W8A8WeightsHost out;
  out.kind = codes.dtype() == DType::i8 ? W8A8Kind::int8 : W8A8Kind::float8_e4m3fn;
  out.out_features = n;
  out.in_features = k;
  out.dtype = dtype_of_v<T>;
  out.scale_dtype = scale_dtype;
  out.codes = std::move(codes);
  out.scale = std::move(scale);
  out.scale.reshape({n});
  if (svd_up) detail::attach_w8a8_svd<T>(out, name, *svd_up, *svd_down, svd_in_activation_dtype);
  return out;
}

// As repack_owned_operand_for_w8a8, on views the caller keeps (the codes and scales are copied).
template <class T>
W8A8WeightsHost repack_operand_for_w8a8(std::string_view name, TensorView codes, TensorView scale, DType scale_dtype,
                                        std::optional<TensorView> svd_up = std::nullopt,
                                        std::optional<TensorView> svd_down = std::nullopt,
                                        bool svd_in_activation_dtype = false) {
  SDNQ_REQUIRE(codes.device().is_cpu() && scale.device().is_cpu(), ShapeError,
               "{}: repack_operand_for_w8a8 reads host tensors", name);
  Tensor owned_codes = Tensor::empty(codes.shape(), codes.dtype());
  if (codes.is_contiguous())
    parallel_copy(owned_codes.data(), codes.data(), static_cast<std::size_t>(codes.nbytes()));
  else
    sdnq::copy(owned_codes, codes);
  Tensor owned_scale = Tensor::empty(scale.shape(), scale.dtype());
  sdnq::copy(owned_scale, scale);
  return repack_owned_operand_for_w8a8<T>(name, std::move(owned_codes), std::move(owned_scale), scale_dtype, svd_up,
                                          svd_down, svd_in_activation_dtype);
}

}  // namespace sdnq::cuda
