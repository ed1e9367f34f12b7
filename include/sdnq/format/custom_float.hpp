#pragma once
// SDNQ custom floats (`src/sdnq/packed_float.py`; docs/sdnq-format.md §1.3, §1.4): decoding a code to its
// fp32 value, and the reference encoder reproduced bit for bit, including its rounding quirks (a 4-bit
// look-ahead that rounds ties toward zero, and quirk Q3 of the E = 1 formats).
//
// Code layout from the LSB: M mantissa bits, E exponent bits (bias 2^(E-1) - 1), then the sign bit (signed
// `fn` formats only). No Inf/NaN; exponent 0 is subnormal; both zero codes decode to +0.0.
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/format/storage_type.hpp"

namespace sdnq::format {

struct CustomFloat {
  int exponent, mantissa;
  bool is_signed;

  constexpr int bits() const { return (is_signed ? 1 : 0) + exponent + mantissa; }
  constexpr int bias() const { return (1 << (exponent - 1)) - 1; }
};

namespace detail {
// 2^power as an fp32 built from its bits; power must lie in the normal range [-126, 127].
inline float float_power_of_two(int power) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(power + 127) << 23);
}
}  // namespace detail

// The smallest normal value 2^(1 - bias); below it the encoder switches to subnormal codes.
inline float custom_float_min_normal(CustomFloat format) { return detail::float_power_of_two(1 - format.bias()); }

inline CustomFloat custom_float_of(const StorageType& type) {
  SDNQ_REQUIRE(type.kind == NumberKind::custom_float, ConfigError,
               "{} is not an SDNQ custom float (expected a float{{n}}_e{{E}}m{{M}}fn or ...fnu type)", type.name);
  return {type.exponent, type.mantissa, !type.is_unsigned};
}

inline float decode_custom_float(CustomFloat format, std::uint32_t code) {
  const int m = format.mantissa;
  const std::uint32_t mantissa = code & ((1u << m) - 1);
  const std::uint32_t biased_exponent = (code >> m) & ((1u << format.exponent) - 1);
  const std::uint32_t sign = format.is_signed ? (code >> (format.bits() - 1)) & 1 : 0;
  if (biased_exponent == 0) {
    if (mantissa == 0) return 0.0f;  // the negative zero code decodes to +0.0 as well
    // Subnormal: mant · 2^(1 - bias - M), exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * detail::float_power_of_two(1 - format.bias() - m);
    return sign != 0 ? -magnitude : magnitude;
  }
  const std::uint32_t fp32_exponent = biased_exponent - static_cast<std::uint32_t>(format.bias()) + 127;
  return std::bit_cast<float>(sign << 31 | fp32_exponent << 23 | mantissa << (23 - m));
}

// The reference encoder (`pack_float`) for an fp32 value already clamped to the format's [min, max].
inline std::uint32_t encode_custom_float(CustomFloat format, float value_already_clamped) {
  const int m = format.mantissa;
  const int dropped = 23 - m;  // fp32 mantissa bits the format does not keep
  std::uint32_t u = std::bit_cast<std::uint32_t>(value_already_clamped);

  // 1. Round up only when the four most significant dropped bits exceed 0b1000: ties and everything
  //    below them round toward zero. The increment may carry into the exponent.
  if (((u >> (dropped - 4)) & 0xF) > 8) u += 1u << dropped;

  // 2. Below the smallest normal value: round |x| to a multiple of the subnormal step, half to even.
  //    The scale factor is a power of two, so the fp32 product is exact.
  const float min_normal = custom_float_min_normal(format);
  const float magnitude = std::fabs(std::bit_cast<float>(u));
  if (magnitude < min_normal) {
    const float steps = std::nearbyint(magnitude * detail::float_power_of_two(m) / min_normal);
    u = (u & 0x80000000u) | (static_cast<std::uint32_t>(steps) << dropped);
  }

  // 3. Re-bias by keeping the top fp32 exponent bit and its low E-1 bits. A subnormal that rounded up to
  //    min_normal carries into fp32 exponent bit 0, which E = 1 formats do not keep (quirk Q3: it encodes 0).
  const std::uint32_t fp32_exponent = (u >> 23) & 0xFF;
  const std::uint32_t mantissa = (u >> dropped) & ((1u << m) - 1);
  const std::uint32_t low_exponent_mask = (1u << (format.exponent - 1)) - 1;
  const std::uint32_t exponent =
      ((fp32_exponent >> 7) & 1) << (format.exponent - 1) | (fp32_exponent & low_exponent_mask);
  const std::uint32_t code = exponent << m | mantissa;
  if (!format.is_signed) return code;  // the sign bit is dropped
  return (u >> 31) << (format.bits() - 1) | code;
}

// Value of every code, indexed by code: 2^bits entries (at most 65536).
inline std::vector<float> custom_float_decode_table(CustomFloat format) {
  std::vector<float> table(std::size_t{1} << format.bits());
  for (std::uint32_t code = 0; code < table.size(); ++code) table[code] = decode_custom_float(format, code);
  return table;
}

}  // namespace sdnq::format
