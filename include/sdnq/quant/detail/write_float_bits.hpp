#pragma once
// Bit-level conversions between fp32 and the narrow float dtypes the quantizer writes (bf16, fp16,
// fp8 e4m3fn / e5m2), with PyTorch's semantics: round-to-nearest-even, NaN kept as NaN. Local to the
// writer until sdnq/core/scalar.hpp provides the same conversions.
#include <bit>
#include <fmt/format.h>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"

namespace sdnq::quant::detail {

inline std::uint16_t float_to_bf16_bits(float value) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if (std::isnan(value)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  bits += 0x7FFF + ((bits >> 16) & 1);  // round-to-nearest-even on the dropped 16 bits
  return static_cast<std::uint16_t>(bits >> 16);
}
inline float bf16_bits_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

// Shape of a narrow IEEE-like float format (bias = 2^(E-1) - 1, subnormals, no implicit saturation).
struct NarrowFloat {
  int exponent_bits, mantissa_bits;
};

// Rounds a finite, non-negative fp32 magnitude to the nearest-even value of the format and returns its
// code without sign (biased exponent << M | mantissa). A carry out of the mantissa lands in the next
// binade; a result past the largest finite value is the caller's business (Inf / NaN / saturation).
inline std::uint32_t narrow_magnitude_code(float magnitude, NarrowFloat format) {
  if (magnitude == 0.0f) return 0;
  const int bias = (1 << (format.exponent_bits - 1)) - 1;
  const int min_normal_exponent = 1 - bias;
  int frexp_exponent = 0;
  std::frexp(magnitude, &frexp_exponent);  // magnitude = f * 2^e, f in [0.5, 1)
  const int exponent = frexp_exponent - 1;
  const std::uint32_t implicit_one = 1u << format.mantissa_bits;
  if (exponent < min_normal_exponent) {  // subnormal: fixed step 2^(min_normal_exponent - M)
    const double units = std::ldexp(static_cast<double>(magnitude), format.mantissa_bits - min_normal_exponent);
    return static_cast<std::uint32_t>(std::nearbyint(units));  // 2^M here is the smallest normal: right code
  }
  const double units = std::ldexp(static_cast<double>(magnitude), format.mantissa_bits - exponent);
  const auto rounded = static_cast<std::uint32_t>(std::nearbyint(units));  // in [2^M, 2^(M+1)], half-even
  return (static_cast<std::uint32_t>(exponent + bias) << format.mantissa_bits) + (rounded - implicit_one);
}

inline std::uint16_t float_to_fp16_bits(float value) {
  const std::uint32_t sign = std::signbit(value) ? 0x8000u : 0u;
  if (std::isnan(value)) return static_cast<std::uint16_t>(sign | 0x7E00u);
  const float magnitude = std::fabs(value);
  if (std::isinf(value) || magnitude >= 65520.0f) return static_cast<std::uint16_t>(sign | 0x7C00u);
  return static_cast<std::uint16_t>(sign | narrow_magnitude_code(magnitude, {5, 10}));
}
inline float fp16_bits_to_float(std::uint16_t bits) {
  const int exponent = (bits >> 10) & 0x1F, mantissa = bits & 0x3FF;
  float magnitude;
  if (exponent == 0x1F)
    magnitude = mantissa != 0 ? NAN : INFINITY;
  else if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  return (bits & 0x8000) ? -magnitude : magnitude;
}

// OCP e4m3fn: no Inf, 0x7F / 0xFF are NaN, max 448. PyTorch's conversion does not saturate: values
// beyond the rounding range of 448 become NaN (the quantizer clamps before converting).
inline std::uint8_t float_to_fp8_e4m3fn_bits(float value) {
  const std::uint32_t sign = std::signbit(value) ? 0x80u : 0u;
  const float magnitude = std::fabs(value);
  // 464 is a tie that rounds to 448 (even mantissa); anything above rounds to 480, the NaN code
  if (std::isnan(value) || magnitude > 464.0f) return static_cast<std::uint8_t>(sign | 0x7Fu);
  return static_cast<std::uint8_t>(sign | narrow_magnitude_code(magnitude, {4, 3}));
}
inline float fp8_e4m3fn_bits_to_float(std::uint8_t bits) {
  const int exponent = (bits >> 3) & 0xF, mantissa = bits & 0x7;
  float magnitude;
  if (exponent == 0xF && mantissa == 0x7)
    magnitude = NAN;
  else if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x8), exponent - 10);
  return (bits & 0x80) ? -magnitude : magnitude;
}

// IEEE-style e5m2 (has Inf and NaN), max 57344.
inline std::uint8_t float_to_fp8_e5m2_bits(float value) {
  const std::uint32_t sign = std::signbit(value) ? 0x80u : 0u;
  if (std::isnan(value)) return static_cast<std::uint8_t>(sign | 0x7Eu);
  const float magnitude = std::fabs(value);
  if (std::isinf(value) || magnitude >= 61440.0f) return static_cast<std::uint8_t>(sign | 0x7Cu);
  return static_cast<std::uint8_t>(sign | narrow_magnitude_code(magnitude, {5, 2}));
}
inline float fp8_e5m2_bits_to_float(std::uint8_t bits) {
  return fp16_bits_to_float(static_cast<std::uint16_t>(bits) << 8);
}

// fp32 value -> element of a float tensor of `dtype` at `destination` (RNE).
inline void store_float_as(DType dtype, void* destination, std::int64_t index, float value) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(destination)[index] = value; return;
    case DType::f64: static_cast<double*>(destination)[index] = value; return;
    case DType::bf16: static_cast<std::uint16_t*>(destination)[index] = float_to_bf16_bits(value); return;
    case DType::f16: static_cast<std::uint16_t*>(destination)[index] = float_to_fp16_bits(value); return;
    case DType::f8_e4m3fn: static_cast<std::uint8_t*>(destination)[index] = float_to_fp8_e4m3fn_bits(value); return;
    case DType::f8_e5m2: static_cast<std::uint8_t*>(destination)[index] = float_to_fp8_e5m2_bits(value); return;
    default: break;
  }
  throw UnsupportedError(fmt::format("cannot store float values as {}", dtype_name(dtype)));
}

// Element `index` of a float tensor of `dtype`, widened to double (exact for every dtype here).
inline double load_float_from(DType dtype, const void* source, std::int64_t index) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(source)[index];
    case DType::f64: return static_cast<const double*>(source)[index];
    case DType::bf16: return bf16_bits_to_float(static_cast<const std::uint16_t*>(source)[index]);
    case DType::f16: return fp16_bits_to_float(static_cast<const std::uint16_t*>(source)[index]);
    case DType::f8_e4m3fn: return fp8_e4m3fn_bits_to_float(static_cast<const std::uint8_t*>(source)[index]);
    case DType::f8_e5m2: return fp8_e5m2_bits_to_float(static_cast<const std::uint8_t*>(source)[index]);
    default: break;
  }
  throw UnsupportedError(fmt::format("cannot read {} elements as float", dtype_name(dtype)));
}

// Rounds a value to the grid of a float dtype (as torch's `x.to(dtype)` followed by `.float()`).
inline float round_to_dtype(float value, DType dtype) {
  switch (dtype) {
    case DType::f32: return value;
    case DType::bf16: return bf16_bits_to_float(float_to_bf16_bits(value));
    case DType::f16: return fp16_bits_to_float(float_to_fp16_bits(value));
    default: break;
  }
  throw UnsupportedError(fmt::format("rounding to {} is not supported here", dtype_name(dtype)));
}

}  // namespace sdnq::quant::detail
