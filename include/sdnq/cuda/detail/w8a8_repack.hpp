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
// Not handled here (UnsupportedError): uint8 and packed int2..int7 weights (they need the zero-point
// bias terms of §5.1 step 5 or an in-kernel upconversion), grouped weights (the reference re-quantizes
// those per call), other float codes, and SVD branches.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/repack.hpp"

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
};

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
  SDNQ_REQUIRE(!w.zero_point && !w.svd_up, UnsupportedError,
               "{}: gemm_w8a8 has no zero-point terms and no SVD branch yet", w.name);
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
  out.scale_dtype = dequantize_fp32 ? DType::f32 : dtype_of_v<T>;
  out.codes = Tensor::empty(Shape{n, k}, w.codes.dtype());
  const auto* source = static_cast<const std::uint8_t*>(w.codes.data());
  auto* target = static_cast<std::uint8_t*>(out.codes.data());
  if (w.transposed) {  // stored [K, N]
    for (std::int64_t c = 0; c < k; ++c)
      for (std::int64_t o = 0; o < n; ++o) target[o * k + c] = source[c * n + o];
  } else {
    std::memcpy(target, source, static_cast<std::size_t>(n * k));
  }
  out.scale = Tensor::empty(Shape{n}, DType::f32);
  float* scale = out.scale.data_as<float>();
  for (std::int64_t o = 0; o < n; ++o) {
    const std::int64_t index = w.scale.numel() == 1 ? 0 : o;
    const float stored = detail::narrow_param<float>(w.scale, index);
    scale[o] = rounding == ScaleRounding::to_output_dtype ? T(stored).to_float() : stored;
  }
  return out;
}

}  // namespace sdnq::cuda
