#pragma once
// Element access of the float tensors the writer reads and produces (fp32/fp64/bf16/fp16/fp8), with
// PyTorch's conversion semantics (round-to-nearest-even) from sdnq/core/scalar.hpp.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/scalar.hpp"

namespace sdnq::quant::detail {

// fp32 value -> element `index` of a float tensor of `dtype` at `destination` (RNE).
inline void store_float_as(DType dtype, void* destination, std::int64_t index, float value) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(destination)[index] = value; return;
    case DType::f64: static_cast<double*>(destination)[index] = value; return;
    case DType::bf16: static_cast<bf16*>(destination)[index] = bf16(value); return;
    case DType::f16: static_cast<fp16*>(destination)[index] = fp16(value); return;
    case DType::f8_e4m3fn: static_cast<fp8_e4m3fn*>(destination)[index] = fp8_e4m3fn(value); return;
    case DType::f8_e5m2: static_cast<fp8_e5m2*>(destination)[index] = fp8_e5m2(value); return;
    default: break;
  }
  throw UnsupportedError(fmt::format("cannot store float values as {}", dtype_name(dtype)));
}

// Element `index` of a float tensor of `dtype`, widened to double (exact for every dtype here).
inline double load_float_from(DType dtype, const void* source, std::int64_t index) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(source)[index];
    case DType::f64: return static_cast<const double*>(source)[index];
    case DType::bf16: return static_cast<const bf16*>(source)[index].to_float();
    case DType::f16: return static_cast<const fp16*>(source)[index].to_float();
    case DType::f8_e4m3fn: return static_cast<const fp8_e4m3fn*>(source)[index].to_float();
    case DType::f8_e5m2: return static_cast<const fp8_e5m2*>(source)[index].to_float();
    default: break;
  }
  throw UnsupportedError(fmt::format("cannot read {} elements as float", dtype_name(dtype)));
}

// `x.to(dtype).float()` for the model / scale dtypes fp32, bf16 and fp16.
inline float round_float_to(float value, DType dtype) {
  switch (dtype) {
    case DType::f32: return value;
    case DType::bf16: return bf16(value).to_float();
    case DType::f16: return fp16(value).to_float();
    default: break;
  }
  throw UnsupportedError(fmt::format("rounding to {} is not supported here (fp32, bf16, fp16)", dtype_name(dtype)));
}

// fp32 -> float8_e4m3fnuz / float8_e5m2fnuz code as torch converts (c10 Float8_e4m3fnuz/e5m2fnuz):
// round to nearest even, exponent bias 2^(E-1), no infinities; results that overflow the format and
// NaN inputs give 0x80 (the only NaN), and there is no negative zero (a negative value rounding to 0
// gives 0x00). The quantizer clamps to +-max first, so only finite codes arise from it.
inline std::uint8_t encode_fnuz_byte(float value, int exponent_bits, int mantissa_bits) {
  if (std::isnan(value)) return 0x80;
  const double magnitude = std::fabs(static_cast<double>(value));
  if (magnitude == 0.0) return 0x00;
  const int bias = 1 << (exponent_bits - 1);
  const int min_exponent = 1 - bias;  // of the smallest normal, 2^(1 - bias)
  const int exponent = std::max(std::ilogb(magnitude), min_exponent);
  // The significand in units of the last mantissa bit at this exponent: exact in double (fp32 input),
  // rounded half to even as the c10 conversion does.
  auto units = static_cast<std::int64_t>(std::nearbyint(std::ldexp(magnitude, mantissa_bits - exponent)));
  if (units == 0) return 0x00;
  int biased = exponent + bias;
  const std::int64_t implicit_one = std::int64_t{1} << mantissa_bits;
  if (units >= 2 * implicit_one) {  // rounded up into the next binade
    units /= 2;
    biased += 1;
  }
  if (units < implicit_one) biased = 0;  // subnormal
  if (biased > (1 << exponent_bits) - 1) return 0x80;
  const auto sign = static_cast<std::uint8_t>(std::signbit(value) ? 0x80 : 0x00);
  return static_cast<std::uint8_t>(sign | (biased << mantissa_bits) | (units & (implicit_one - 1)));
}

// fp32 -> float8_e8m0fnu code as torch converts (c10 fp8e8m0fnu_from_fp32_value): the fp32 biased
// exponent, plus one when the dropped mantissa is above half, or exactly half of a normal value (ties
// count the implied bit as odd). The sign is dropped; Inf and NaN give 0xFF (NaN).
inline std::uint8_t encode_e8m0_byte(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  std::uint32_t exponent = (bits >> 23) & 0xFF;
  if (exponent == 0xFF) return 0xFF;
  const bool guard = (bits & 0x400000) != 0, round = (bits & 0x200000) != 0, sticky = (bits & 0x1FFFFF) != 0;
  const bool implied_one = exponent > 0;
  if (guard && (round || sticky || implied_one)) ++exponent;
  return static_cast<std::uint8_t>(exponent);
}

}  // namespace sdnq::quant::detail
