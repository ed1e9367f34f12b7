#pragma once
// Narrow floating-point element types usable on host and device: bf16, fp16 (IEEE binary16),
// fp8_e4m3fn and fp8_e5m2 (OCP FP8). Each is its raw bits plus conversions to and from float.
// No arithmetic: compute in float, store in these.
//
// float -> T rounds to nearest, ties to even, and gives the same bits as PyTorch's conversions
// (c10::BFloat16, c10::Half, c10::Float8_e4m3fn, c10::Float8_e5m2; checked against torch 2.11 on CPU
// and CUDA by scripts/gpu-check.sh) for every non-NaN input. NaN bits follow c10's scalar types:
//   bf16        overflow -> inf;  NaN -> 0x7FC0 (sign dropped, as c10 does)
//   fp16        overflow -> inf;  NaN -> sign | 0x7E00
//   fp8_e4m3fn  no infinity: rounding treats the NaN code 0x7F as the value after 448 (480), so
//               448 < |x| < 464 -> 448, |x| == 464 (a tie) -> 448 (even), |x| > 464, inf, NaN -> sign | 0x7F
//   fp8_e5m2    overflow -> inf (sign | 0x7C);  NaN -> sign | 0x7F
// T -> float is exact. NaNs widen to a quiet float NaN with the same sign and the payload in the top
// mantissa bits; bf16 widens by a plain 16-bit shift (it is the top half of a float), NaNs included.
// Conversions are integer bit manipulation only (no cuda_bf16.h, no FP flags involved) and constexpr.
#include <cstdint>

#include "sdnq/core/detail/scalar_bits.hpp"
#include "sdnq/core/dtype.hpp"

namespace sdnq {

namespace detail {
using Bf16Format = NarrowFloat<8, 7>;
using Fp16Format = NarrowFloat<5, 10>;
using Fp8E4m3Format = NarrowFloat<4, 3>;
using Fp8E5m2Format = NarrowFloat<5, 2>;

inline constexpr std::uint32_t float_bits_of_464 = 0x43E80000u;    // e4m3fn: 448 + half its last ulp
inline constexpr std::uint32_t float_bits_of_65536 = 0x47800000u;  // fp16 / e5m2: 2^(emax + 1)
}  // namespace detail

struct bf16 {
  static constexpr int exponent_bits = 8;
  static constexpr int mantissa_bits = 7;
  std::uint16_t bits;

  bf16() = default;
  SDNQ_HOST_DEVICE constexpr explicit bf16(float value) : bits(encode(value)) {}
  SDNQ_HOST_DEVICE static constexpr bf16 from_bits(std::uint16_t raw) {
    bf16 result{};
    result.bits = raw;
    return result;
  }

  SDNQ_HOST_DEVICE constexpr float to_float() const {
    return detail::float_from_bits(static_cast<std::uint32_t>(bits) << 16);
  }
  SDNQ_HOST_DEVICE constexpr explicit operator float() const { return to_float(); }
  SDNQ_HOST_DEVICE constexpr bool is_nan() const { return (bits & 0x7FFFu) > 0x7F80u; }
  SDNQ_HOST_DEVICE constexpr bool is_inf() const { return (bits & 0x7FFFu) == 0x7F80u; }

 private:
  SDNQ_HOST_DEVICE static constexpr std::uint16_t encode(float value) {
    const std::uint32_t input = detail::float_to_bits(value);
    const std::uint32_t sign = input & detail::float_sign_mask;
    const std::uint32_t magnitude = input ^ sign;
    if (magnitude > detail::float_infinity_bits) return 0x7FC0u;
    // Same exponent range as float: rounding up past the largest finite value carries into inf.
    return static_cast<std::uint16_t>((sign >> 16) | detail::Bf16Format::round_magnitude(magnitude));
  }
};

struct fp16 {
  static constexpr int exponent_bits = 5;
  static constexpr int mantissa_bits = 10;
  std::uint16_t bits;

  fp16() = default;
  SDNQ_HOST_DEVICE constexpr explicit fp16(float value) : bits(encode(value)) {}
  SDNQ_HOST_DEVICE static constexpr fp16 from_bits(std::uint16_t raw) {
    fp16 result{};
    result.bits = raw;
    return result;
  }

  SDNQ_HOST_DEVICE constexpr float to_float() const {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const std::uint32_t code = bits & 0x7FFFu;
    if (code == 0x7C00u) return detail::float_from_bits(sign | detail::float_infinity_bits);
    if (code > 0x7C00u) return detail::float_from_bits(detail::Fp16Format::widen_nan(sign, code));
    return detail::float_from_bits(sign | detail::Fp16Format::widen_finite_magnitude(code));
  }
  SDNQ_HOST_DEVICE constexpr explicit operator float() const { return to_float(); }
  SDNQ_HOST_DEVICE constexpr bool is_nan() const { return (bits & 0x7FFFu) > 0x7C00u; }
  SDNQ_HOST_DEVICE constexpr bool is_inf() const { return (bits & 0x7FFFu) == 0x7C00u; }

 private:
  SDNQ_HOST_DEVICE static constexpr std::uint16_t encode(float value) {
    const std::uint32_t input = detail::float_to_bits(value);
    const std::uint32_t sign = input & detail::float_sign_mask;
    const std::uint32_t magnitude = input ^ sign;
    const auto sign16 = static_cast<std::uint16_t>(sign >> 16);
    if (magnitude > detail::float_infinity_bits) return sign16 | 0x7E00u;
    if (magnitude >= detail::float_bits_of_65536) return sign16 | 0x7C00u;
    // Below 2^16, rounding up past 65504 carries into the infinity code 0x7C00.
    return static_cast<std::uint16_t>(sign16 | detail::Fp16Format::round_magnitude(magnitude));
  }
};

struct fp8_e4m3fn {
  static constexpr int exponent_bits = 4;
  static constexpr int mantissa_bits = 3;
  std::uint8_t bits;

  fp8_e4m3fn() = default;
  SDNQ_HOST_DEVICE constexpr explicit fp8_e4m3fn(float value) : bits(encode(value)) {}
  SDNQ_HOST_DEVICE static constexpr fp8_e4m3fn from_bits(std::uint8_t raw) {
    fp8_e4m3fn result{};
    result.bits = raw;
    return result;
  }

  SDNQ_HOST_DEVICE constexpr float to_float() const {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x80u) << 24;
    const std::uint32_t code = bits & 0x7Fu;
    // "fn": finite only. The all-ones code is the one NaN; exponent 15 is otherwise a normal binade.
    if (code == 0x7Fu) return detail::float_from_bits(detail::Fp8E4m3Format::widen_nan(sign, code));
    return detail::float_from_bits(sign | detail::Fp8E4m3Format::widen_finite_magnitude(code));
  }
  SDNQ_HOST_DEVICE constexpr explicit operator float() const { return to_float(); }
  SDNQ_HOST_DEVICE constexpr bool is_nan() const { return (bits & 0x7Fu) == 0x7Fu; }
  SDNQ_HOST_DEVICE constexpr bool is_inf() const { return false; }

 private:
  SDNQ_HOST_DEVICE static constexpr std::uint8_t encode(float value) {
    const std::uint32_t input = detail::float_to_bits(value);
    const std::uint32_t sign = input & detail::float_sign_mask;
    const std::uint32_t magnitude = input ^ sign;
    const auto sign8 = static_cast<std::uint8_t>(sign >> 24);
    // Past 464 (the midpoint between 448 and the NaN code's 480) the result is NaN, as for inf and
    // NaN; 464 itself ties and goes to the even 448, which round_magnitude does.
    if (magnitude > detail::float_bits_of_464) return sign8 | 0x7Fu;
    return static_cast<std::uint8_t>(sign8 | detail::Fp8E4m3Format::round_magnitude(magnitude));
  }
};

struct fp8_e5m2 {
  static constexpr int exponent_bits = 5;
  static constexpr int mantissa_bits = 2;
  std::uint8_t bits;

  fp8_e5m2() = default;
  SDNQ_HOST_DEVICE constexpr explicit fp8_e5m2(float value) : bits(encode(value)) {}
  SDNQ_HOST_DEVICE static constexpr fp8_e5m2 from_bits(std::uint8_t raw) {
    fp8_e5m2 result{};
    result.bits = raw;
    return result;
  }

  SDNQ_HOST_DEVICE constexpr float to_float() const {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x80u) << 24;
    const std::uint32_t code = bits & 0x7Fu;
    if (code == 0x7Cu) return detail::float_from_bits(sign | detail::float_infinity_bits);
    if (code > 0x7Cu) return detail::float_from_bits(detail::Fp8E5m2Format::widen_nan(sign, code));
    return detail::float_from_bits(sign | detail::Fp8E5m2Format::widen_finite_magnitude(code));
  }
  SDNQ_HOST_DEVICE constexpr explicit operator float() const { return to_float(); }
  SDNQ_HOST_DEVICE constexpr bool is_nan() const { return (bits & 0x7Fu) > 0x7Cu; }
  SDNQ_HOST_DEVICE constexpr bool is_inf() const { return (bits & 0x7Fu) == 0x7Cu; }

 private:
  SDNQ_HOST_DEVICE static constexpr std::uint8_t encode(float value) {
    const std::uint32_t input = detail::float_to_bits(value);
    const std::uint32_t sign = input & detail::float_sign_mask;
    const std::uint32_t magnitude = input ^ sign;
    const auto sign8 = static_cast<std::uint8_t>(sign >> 24);
    if (magnitude > detail::float_infinity_bits) return sign8 | 0x7Fu;
    if (magnitude >= detail::float_bits_of_65536) return sign8 | 0x7Cu;
    // Below 2^16, rounding up past 57344 carries into the infinity code 0x7C.
    return static_cast<std::uint8_t>(sign8 | detail::Fp8E5m2Format::round_magnitude(magnitude));
  }
};

static_assert(sizeof(bf16) == 2 && sizeof(fp16) == 2 && sizeof(fp8_e4m3fn) == 1 && sizeof(fp8_e5m2) == 1,
              "scalar types must have their storage size: tensors of them are arrays of raw bits");

template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<fp16> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<fp8_e4m3fn> {
  static constexpr DType value = DType::f8_e4m3fn;
};
template <>
struct dtype_of<fp8_e5m2> {
  static constexpr DType value = DType::f8_e5m2;
};

}  // namespace sdnq
