#pragma once
// Per-row quantization for SDNQ's quantized matmul (§5.1 of the format), exactly as the reference
// computes it: activations per token (step 4, `quantize_int_mm / quantize_uint_mm / quantize_fp_mm`
// on `x.flatten(0, -2).to(scale dtype)`) and the per-call weight re-quantization per output channel
// (step 1, `re_quantize_int_mm / re_quantize_uint_mm / re_quantize_fp_mm` on the dequantized
// [out, in] weight). Every op runs in the compute dtype the reference uses (the layer's scale dtype:
// fp32, or bf16 / fp16 with one rounding per op), with round-half-even and the reference's clamps:
//   int8   s = amax|row| / 127                   q = clamp(round(v / s), -128, 127)
//   uint8  s = (max - min) / 255, z = min + 128·s   q = clamp(round((v - z) / s), -128, 127)   (int8 codes)
//   fp8    s = amax|row| / 448                   q = e4m3(clamp(nan_to_num(v / s), -448, 448))
//   fp16   s = amax|row| / 65504                 q = fp16(clamp(nan_to_num(v / s), -65504, 65504))
//
// Where this differs from the reference (documented, deliberate): a row whose quotient is 0/0 (an
// all-zero row, or a constant row on the uint8 path, where s = 0) gets q = 0 on the integer paths; the
// reference casts NaN to an integer there, which is undefined. q = 0 with s = 0 makes the row's exact
// product 0, so the layer output for such a token is exactly the bias. A row holding inf or NaN has an
// inf / NaN scale: its integer codes are 0 where the quotient is NaN and its outputs are non-finite,
// but no other row is affected (every scale is per row).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/quant/detail/layers_numeric.hpp"

namespace sdnq::quant {

enum class MatmulDType { int8, uint8, float8_e4m3fn, float16 };

// §1.6 accepted names: int8, uint8, fp8 / float8_e4m3fn, fp16 / float16.
inline MatmulDType matmul_dtype_from_name(std::string_view name) {
  if (name == "int8") return MatmulDType::int8;
  if (name == "uint8") return MatmulDType::uint8;
  if (name == "fp8" || name == "float8_e4m3fn") return MatmulDType::float8_e4m3fn;
  if (name == "fp16" || name == "float16") return MatmulDType::float16;
  throw ConfigError(fmt::format("quantized_matmul_dtype '{}' is not one of int8, uint8, fp8, float8_e4m3fn, fp16, float16",
                                name));
}

inline DType matmul_value_dtype(MatmulDType dtype) {
  switch (dtype) {
    case MatmulDType::int8:
    case MatmulDType::uint8: return DType::i8;
    case MatmulDType::float8_e4m3fn: return DType::f8_e4m3fn;
    case MatmulDType::float16: return DType::f16;
  }
  return DType::i8;
}

// A [rows, cols] matrix quantized row by row: rows[r] ≈ values[r, :]·scale[r] (+ zero_point[r]).
struct RowQuantized {
  MatmulDType matmul_dtype = MatmulDType::int8;
  DType scale_dtype = DType::f32;   // the dtype scale / zero_point hold values of (after any promotion)
  std::int64_t rows = 0, cols = 0;
  Tensor values;                    // [rows, cols] I8 (int8 / uint8 paths), F8_E4M3 or F16
  std::vector<float> scale;         // [rows]
  std::vector<float> zero_point;    // [rows], uint8 path only
};

namespace detail {

// clamp(nearbyint(quotient), −128, 127); NaN quotients (0/0, inf/inf, NaN rows) have no integer code: 0
// (see the header comment). Without a library call, so that a loop of it vectorizes: clamping first
// gives the same result (the bounds are integers), then adding 1.5·2^23 rounds half to even in the
// default rounding mode and leaves 2^22 + the integer in the mantissa, read from the bits (so that no
// -ffast-math reassociation in a consumer's build can cancel the addition).
inline std::int8_t round_clamp_int8(float quotient) {
  constexpr float shift = 12582912.0f;  // 1.5·2^23: ulp 1 over [2^23, 2^24)
  const float clamped = quotient < -128.0f ? -128.0f : quotient > 127.0f ? 127.0f : quotient;
  const int value = static_cast<int>(std::bit_cast<std::uint32_t>(clamped + shift) & 0x7FFFFFu) - 0x400000;
  return static_cast<std::int8_t>(quotient == quotient ? value : 0);
}

// torch.nan_to_num in `dtype`: NaN -> 0, ±inf -> ± the dtype's largest finite value.
inline float nan_to_num(float value, DType dtype) {
  if (std::isnan(value)) return 0.0f;
  if (std::isinf(value)) {
    const float largest = dtype == DType::bf16  ? static_cast<float>(bf16::from_bits(0x7F7F))
                          : dtype == DType::f16 ? 65504.0f
                                                : std::numeric_limits<float>::max();
    return value > 0 ? largest : -largest;
  }
  return value;
}

// One row, `row` already rounded to `dtype` (the reference's `.to(scale.dtype)`).
inline void quantize_row(const float* row, std::int64_t cols, MatmulDType matmul, DType dtype, void* codes,
                         float& scale, float& zero_point) {
  const auto round = [dtype](float value) { return round_to(dtype, value); };
  if (matmul == MatmulDType::uint8) {
    // get_scale_asymmetric with the int8 range: s = (max - min) / 255, z = min - (-128)·s
    float low = std::numeric_limits<float>::infinity(), high = -low;
    bool has_nan = false;
    for (std::int64_t k = 0; k < cols; ++k) {
      has_nan |= std::isnan(row[k]);
      low = std::min(low, row[k]);
      high = std::max(high, row[k]);
    }
    if (has_nan) low = high = std::numeric_limits<float>::quiet_NaN();  // aminmax propagates NaN
    scale = round(round(high - low) / 255.0f);
    zero_point = round(low + 128.0f * scale);  // 128·s is exact: one rounding, as sub_(s, alpha=-128)
    auto* out = static_cast<std::int8_t*>(codes);
    for (std::int64_t k = 0; k < cols; ++k) out[k] = round_clamp_int8(round(round(row[k] - zero_point) / scale));
    return;
  }
  float amax = 0.0f;
  bool has_nan = false;
  for (std::int64_t k = 0; k < cols; ++k) {
    has_nan |= std::isnan(row[k]);
    amax = std::max(amax, std::fabs(row[k]));
  }
  if (has_nan) amax = std::numeric_limits<float>::quiet_NaN();  // torch.amax propagates NaN
  zero_point = 0.0f;
  switch (matmul) {
    case MatmulDType::int8: {
      scale = round(amax / 127.0f);
      auto* out = static_cast<std::int8_t*>(codes);
      if (dtype == DType::f32) {  // no rounding to a 16-bit dtype between: the loop vectorizes
        for (std::int64_t k = 0; k < cols; ++k) out[k] = round_clamp_int8(row[k] / scale);
        return;
      }
      for (std::int64_t k = 0; k < cols; ++k) out[k] = round_clamp_int8(round(row[k] / scale));
      return;
    }
    case MatmulDType::float8_e4m3fn: {
      scale = round(amax / 448.0f);
      auto* out = static_cast<fp8_e4m3fn*>(codes);
      for (std::int64_t k = 0; k < cols; ++k)
        out[k] = fp8_e4m3fn(std::clamp(nan_to_num(round(row[k] / scale), dtype), -448.0f, 448.0f));
      return;
    }
    case MatmulDType::float16: {
      scale = round(amax / 65504.0f);
      auto* out = static_cast<fp16*>(codes);
      for (std::int64_t k = 0; k < cols; ++k)
        out[k] = fp16(std::clamp(nan_to_num(round(row[k] / scale), dtype), -65504.0f, 65504.0f));
      return;
    }
    case MatmulDType::uint8: break;
  }
}

// A RowQuantized [rows, cols] for `matmul` with its scales computed in `dtype`, its rows not yet filled.
inline RowQuantized unfilled_rows(std::int64_t rows, std::int64_t cols, MatmulDType matmul, DType dtype) {
  SDNQ_REQUIRE(is_layer_float_dtype(dtype), UnsupportedError,
               "quantized matmul computes its scales in f32, bf16 or f16, not {}", dtype_name(dtype));
  RowQuantized result;
  result.matmul_dtype = matmul;
  result.scale_dtype = dtype;
  result.rows = rows;
  result.cols = cols;
  result.values = Tensor::empty({rows, cols}, matmul_value_dtype(matmul));
  result.scale.assign(static_cast<std::size_t>(rows), 0.0f);
  if (matmul == MatmulDType::uint8) result.zero_point.assign(static_cast<std::size_t>(rows), 0.0f);
  return result;
}

// Fills row r of `result` from `row` (result.cols values already on the grid of its scale dtype).
// Distinct rows may be filled from several threads at once.
inline void quantize_row_into(RowQuantized& result, std::int64_t r, const float* row) {
  const std::size_t code_size = dtype_size(matmul_value_dtype(result.matmul_dtype));
  auto* codes = static_cast<std::byte*>(result.values.data()) + r * result.cols * static_cast<std::int64_t>(code_size);
  float zero_point = 0.0f;
  quantize_row(row, result.cols, result.matmul_dtype, result.scale_dtype, codes,
               result.scale[static_cast<std::size_t>(r)], zero_point);
  if (result.matmul_dtype == MatmulDType::uint8) result.zero_point[static_cast<std::size_t>(r)] = zero_point;
}

// Quantizes the rows of `values` ([rows, cols] fp32, each value already on the grid of `dtype`).
inline RowQuantized quantize_rows(const float* values, std::int64_t rows, std::int64_t cols, MatmulDType matmul,
                                  DType dtype) {
  RowQuantized result = unfilled_rows(rows, cols, matmul, dtype);
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(cols, 1));
  parallel_for(0, rows, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) quantize_row_into(result, r, values + r * cols);
  });
  return result;
}

inline RowQuantized quantize_rows(const std::vector<float>& values, std::int64_t rows, std::int64_t cols,
                                  MatmulDType matmul, DType dtype) {
  return quantize_rows(values.data(), rows, cols, matmul, dtype);
}

inline std::vector<float> rows_in_dtype(TensorView matrix, DType dtype, const char* what) {
  SDNQ_REQUIRE(matrix.rank() == 2, ShapeError, "{} must be a 2-D [rows, cols] tensor, got shape {}", what,
               matrix.shape().to_string());
  std::vector<float> values = to_float_vector(matrix, what);
  if (matrix.dtype() != dtype)
    for (float& value : values) value = round_to(dtype, value);
  return values;
}

// quantize_rows over `matrix` [rows, cols] taken in `dtype`: on the tensor's own memory when it is
// contiguous F32 already in F32 (a dequantized weight re-quantized at load: no copy of 4 bytes a
// weight), else on rows_in_dtype's copy.
inline RowQuantized quantize_matrix_rows(TensorView matrix, MatmulDType matmul, DType dtype, const char* what) {
  SDNQ_REQUIRE(matrix.rank() == 2, ShapeError, "{} must be a 2-D [rows, cols] tensor, got shape {}", what,
               matrix.shape().to_string());
  if (matrix.dtype() == DType::f32 && dtype == DType::f32 && matrix.is_contiguous() && matrix.device().is_cpu())
    return quantize_rows(static_cast<const float*>(matrix.data()), matrix.size(0), matrix.size(1), matmul, dtype);
  return quantize_rows(rows_in_dtype(matrix, dtype, what), matrix.size(0), matrix.size(1), matmul, dtype);
}

}  // namespace detail

// §5.1 step 4: per-token quantization of activations x2 [tokens, K] (any float dtype), after the
// reference's cast to the layer's scale dtype. fp16 scales are promoted to fp32 afterwards (values unchanged).
inline RowQuantized quantize_activations(TensorView x2, MatmulDType matmul, DType scale_dtype) {
  auto values = detail::rows_in_dtype(x2, scale_dtype, "activations x2 [tokens, K]");
  RowQuantized result = detail::quantize_rows(values, x2.size(0), x2.size(1), matmul, scale_dtype);
  if (result.scale_dtype == DType::f16) result.scale_dtype = DType::f32;  // "fp16 will overflow"
  return result;
}

// §5.1 step 1, re-quantization of a dequantized weight [out, in] whose dtype is the scale dtype.
inline RowQuantized re_quantize_int_mm(TensorView weight) {
  return detail::quantize_matrix_rows(weight, MatmulDType::int8, weight.dtype(), "dequantized weight [out, in]");
}

inline RowQuantized re_quantize_uint_mm(TensorView weight) {
  return detail::quantize_matrix_rows(weight, MatmulDType::uint8, weight.dtype(), "dequantized weight [out, in]");
}

// fp8 / fp16. `tensorwise_fp8` is the reference's use_tensorwise_fp8_matmul (true on CPU and below
// sm_90); without it fp8 weight scales are widened to fp32 (values unchanged).
inline RowQuantized re_quantize_fp_mm(TensorView weight, MatmulDType matmul, bool tensorwise_fp8 = true) {
  SDNQ_REQUIRE(matmul == MatmulDType::float8_e4m3fn || matmul == MatmulDType::float16, ConfigError,
               "re_quantize_fp_mm quantizes to float8_e4m3fn or float16 only");
  RowQuantized result = detail::quantize_matrix_rows(weight, matmul, weight.dtype(), "dequantized weight [out, in]");
  if (!tensorwise_fp8 && matmul == MatmulDType::float8_e4m3fn) result.scale_dtype = DType::f32;
  return result;
}

}  // namespace sdnq::quant
