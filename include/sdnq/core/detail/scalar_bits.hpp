#pragma once
// Bit-level machinery behind sdnq/core/scalar.hpp: float <-> raw bits, and rounding a float's
// magnitude to a narrower binary format. Integer arithmetic only, so the results are the same on
// host and device whatever the floating-point flags (fast math, flush-to-zero) of the build.
#include <cstdint>

// Marks functions callable from host and device code; empty for a plain C++ compiler.
#ifndef SDNQ_HOST_DEVICE
#if defined(__CUDACC__)
#define SDNQ_HOST_DEVICE __host__ __device__
#else
#define SDNQ_HOST_DEVICE
#endif
#endif

namespace sdnq::detail {

// __builtin_bit_cast is what std::bit_cast is built on; unlike std::bit_cast it is also usable in
// device code (nvcc 11.7+) without --expt-relaxed-constexpr, and it stays constexpr everywhere.
SDNQ_HOST_DEVICE constexpr std::uint32_t float_to_bits(float value) { return __builtin_bit_cast(std::uint32_t, value); }
SDNQ_HOST_DEVICE constexpr float float_from_bits(std::uint32_t bits) { return __builtin_bit_cast(float, bits); }

inline constexpr std::uint32_t float_sign_mask = 0x80000000u;
inline constexpr std::uint32_t float_infinity_bits = 0x7F800000u;
inline constexpr std::uint32_t float_quiet_bit = 0x00400000u;
inline constexpr int float_mantissa_bits = 23;
inline constexpr int float_bias = 127;

// `value >> shift`, rounded to nearest, ties to even. No overflow for value < 2^31.
SDNQ_HOST_DEVICE constexpr std::uint32_t shift_right_round_even(std::uint32_t value, int shift) {
  if (shift <= 0) return value;
  if (shift > 31) return 0;  // value < 2^31 is below half of 2^shift here
  const std::uint32_t kept_lsb = (value >> shift) & 1u;
  const std::uint32_t half_minus_one = (1u << (shift - 1)) - 1u;
  return (value + half_minus_one + kept_lsb) >> shift;
}

// A binary floating-point format narrower than float: sign, ExponentBits, MantissaBits.
template <int ExponentBits, int MantissaBits>
struct NarrowFloat {
  static constexpr int bias = (1 << (ExponentBits - 1)) - 1;
  static constexpr int dropped_bits = float_mantissa_bits - MantissaBits;
  static constexpr std::uint32_t mantissa_mask = (1u << MantissaBits) - 1u;
  // Biased float exponent of the format's smallest normal number.
  static constexpr std::uint32_t min_normal_float_exponent = float_bias - bias + 1;

  // Rounds a float magnitude (sign bit clear, finite, not past the format's overflow threshold)
  // to the format's nearest code, ties to even. The result may carry into the exponent field.
  SDNQ_HOST_DEVICE static constexpr std::uint32_t round_magnitude(std::uint32_t magnitude) {
    const std::uint32_t float_exponent = magnitude >> float_mantissa_bits;
    if (float_exponent >= min_normal_float_exponent) {
      // Normal in the format: rebias the exponent in place and round the low mantissa bits away;
      // a carry out of the mantissa bumps the exponent, as rounding up to the next binade should.
      const std::uint32_t rebiased = magnitude - (static_cast<std::uint32_t>(float_bias - bias) << float_mantissa_bits);
      return shift_right_round_even(rebiased, dropped_bits);
    }
    // Subnormal or zero in the format: count in units of its smallest subnormal, 2^(1-bias-MantissaBits).
    const std::uint32_t fraction = magnitude & 0x007FFFFFu;
    const std::uint32_t significand = float_exponent == 0 ? fraction : (fraction | 0x00800000u);
    const int effective_exponent = float_exponent == 0 ? 1 : static_cast<int>(float_exponent);
    const int shift = dropped_bits + static_cast<int>(min_normal_float_exponent) - effective_exponent;
    return shift_right_round_even(significand, shift);
  }

  // Exact float bits of a finite, non-NaN code magnitude (sign stripped). Not for formats whose
  // subnormals fall below float's normal range (bf16 widens by a plain shift instead).
  SDNQ_HOST_DEVICE static constexpr std::uint32_t widen_finite_magnitude(std::uint32_t code) {
    const std::uint32_t exponent = code >> MantissaBits;
    std::uint32_t mantissa = code & mantissa_mask;
    if (exponent != 0) return ((exponent + float_bias - bias) << float_mantissa_bits) | (mantissa << dropped_bits);
    if (mantissa == 0) return 0;
    // Subnormal: shift the leading one up to the implicit bit, one binade down per step.
    std::uint32_t float_exponent = min_normal_float_exponent;
    while ((mantissa & (1u << MantissaBits)) == 0) {
      mantissa <<= 1;
      --float_exponent;
    }
    return (float_exponent << float_mantissa_bits) | ((mantissa & mantissa_mask) << dropped_bits);
  }

  // A NaN widened to float: same sign, payload in the top mantissa bits, quiet bit set.
  SDNQ_HOST_DEVICE static constexpr std::uint32_t widen_nan(std::uint32_t sign, std::uint32_t code) {
    return sign | float_infinity_bits | float_quiet_bit | ((code & mantissa_mask) << dropped_bits);
  }
};

}  // namespace sdnq::detail
