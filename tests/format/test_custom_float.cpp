#include "sdnq_catch.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "sdnq/format/custom_float.hpp"
#include "sdnq/format/storage_type.hpp"

using namespace sdnq;
using namespace sdnq::format;

namespace {

std::vector<const StorageType*> custom_float_types() {
  std::vector<const StorageType*> types;
  for (const auto& type : all_storage_types())
    if (type.kind == NumberKind::custom_float) types.push_back(&type);
  return types;
}

// §1.3 value formula in double, straight from the doc: e' > 0: (-1)^s 2^(e'-b) (1 + mant/2^M);
// e' = 0: (-1)^s 2^(1-b) mant/2^M; both zeros +0.0.
double formula_value(const StorageType& type, std::uint32_t code) {
  const int e = type.exponent, m = type.mantissa;
  const int bias = (1 << (e - 1)) - 1;
  const std::uint32_t mant = code % (1u << m);
  const std::uint32_t biased = (code >> m) % (1u << e);
  const bool negative = !type.is_unsigned && ((code >> (e + m)) & 1) != 0;
  const double magnitude = biased > 0 ? std::ldexp(1.0 + std::ldexp(double(mant), -m), int(biased) - bias)
                                      : std::ldexp(double(mant), 1 - bias - m);
  if (magnitude == 0.0) return 0.0;
  return negative ? -magnitude : magnitude;
}

// The reference's Python formulation of the encoder (§1.4, last paragraph), re-implemented independently:
// steps 1-2 on the int32 bits, then an arithmetic shift by md and the SM-mask bit surgery.
std::uint32_t python_style_encode(const StorageType& type, float x) {
  const int e = type.exponent, m = type.mantissa, n = type.bits;
  const int md = 23 - m;
  std::int32_t v = std::bit_cast<std::int32_t>(x);
  if (((v >> (md - 4)) & 0xF) > 8) v += std::int32_t{1} << md;
  const double min_normal = std::ldexp(1.0, 1 - ((1 << (e - 1)) - 1));
  const double magnitude = std::fabs(double(std::bit_cast<float>(v)));
  if (magnitude < min_normal) {
    const double k = std::nearbyint(std::ldexp(magnitude, m) / min_normal);
    v = (v & std::numeric_limits<std::int32_t>::min()) | (static_cast<std::int32_t>(k) << md);
  }
  v >>= md;  // arithmetic: the sign fills the high bits
  const std::int32_t sm = type.is_unsigned ? (1 << (n - 1)) : (3 << (n - 2));
  v = ((v >> (8 - e)) & sm) | (v & ~sm);
  return static_cast<std::uint32_t>(v) & ((1u << n) - 1);
}

float clamp_to(const StorageType& type, float x) {
  return std::clamp(x, static_cast<float>(type.min), static_cast<float>(type.max));
}

std::uint32_t code_of_value(const StorageType& type, double value) {
  for (std::uint32_t code = 0; code < (1u << type.bits); ++code)
    if (formula_value(type, code) == value) return code;
  FAIL("no code of " << type.name << " has value " << value);
  return 0;
}

}  // namespace

TEST_CASE("custom floats: every code of every format decodes to the §1.3 value", "[format][custom_float]") {
  const auto types = custom_float_types();
  REQUIRE(types.size() == 135);
  for (const StorageType* type : types) {
    INFO(std::string(type->name));
    const CustomFloat format = custom_float_of(*type);
    CHECK(format.bits() == type->bits);
    const std::vector<float> table = custom_float_decode_table(format);
    REQUIRE(table.size() == (std::size_t{1} << type->bits));
    bool all_match = true;
    double largest = 0;
    for (std::uint32_t code = 0; code < table.size(); ++code) {
      const double expected = formula_value(*type, code);
      const float decoded = decode_custom_float(format, code);
      all_match &= double(decoded) == expected && !std::signbit(decoded) == (expected >= 0) && table[code] == decoded;
      largest = std::max(largest, expected);
    }
    CHECK(all_match);
    CHECK(largest == type->max);  // the table's max is the largest finite value
    if (!type->is_unsigned) CHECK_FALSE(std::signbit(decode_custom_float(format, 1u << (type->bits - 1))));
  }
  CHECK_THROWS_AS(custom_float_of(storage_type("float8_e4m3fn")), ConfigError);
  CHECK_THROWS_AS(custom_float_of(storage_type("uint4")), ConfigError);
}

TEST_CASE("custom floats: the doc's verified encoder examples", "[format][custom_float]") {
  auto encoded_value = [](std::string_view name, float x) {
    const StorageType& type = storage_type(name);
    return formula_value(type, encode_custom_float(custom_float_of(type), x));
  };
  // 4-bit look-ahead: ties and t == 8 round toward zero (§9 item 4).
  CHECK(encoded_value("float4_e2m1fn", 5.0f) == 4.0);
  CHECK(encoded_value("float4_e2m1fn", 5.124f) == 4.0);
  CHECK(encoded_value("float4_e2m1fn", 5.125f) == 6.0);
  CHECK(encoded_value("float4_e2m1fn", -5.125f) == -6.0);
  // Quirk Q3: E = 1 formats lose the subnormal -> normal carry (§9 item 3).
  CHECK(encoded_value("float3_e1m1fn", 1.4f) == 0.0);
  CHECK(encoded_value("float3_e1m1fn", 1.5f) == 0.0);
  CHECK(encoded_value("float3_e1m1fn", 1.6f) == 0.0);
  CHECK(encoded_value("float3_e1m1fn", 1.78f) == 0.0);
  CHECK(encoded_value("float3_e1m1fn", 1.79f) == 2.0);
  CHECK(encoded_value("float3_e1m1fn", 1.28f) == 1.0);
  CHECK(encoded_value("float2_e1m0fn", 1.9f) == 2.0);
  CHECK(encoded_value("float2_e1m0fn", 1.5f) == 0.0);
  CHECK(encoded_value("float2_e1m0fn", 1.56f) == 0.0);
  CHECK(encoded_value("float2_e1m0fn", 1.5625f) == 2.0);
  // Subnormals round half to even on the subnormal grid: float4_e2m1fn steps by 0.5 below 1.
  CHECK(encoded_value("float4_e2m1fn", 0.25f) == 0.0);
  CHECK(encoded_value("float4_e2m1fn", 0.26f) == 0.5);
  CHECK(encoded_value("float4_e2m1fn", 0.75f) == 1.0);
  // Unsigned formats drop the sign; -0.0 encodes to the signed format's negative zero code.
  CHECK(encode_custom_float(custom_float_of(storage_type("float4_e2m2fnu")), -0.0f) == 0);
  CHECK(encode_custom_float(custom_float_of(storage_type("float4_e2m1fn")), -0.0f) == 0b1000);
  CHECK(code_of_value(storage_type("float4_e2m1fn"), 6.0) == 0b0111);
}

TEST_CASE("custom floats: every code value encodes back to its code", "[format][custom_float]") {
  for (const StorageType* type : custom_float_types()) {
    INFO(std::string(type->name));
    const CustomFloat format = custom_float_of(*type);
    const std::uint32_t negative_zero = type->is_unsigned ? 0 : 1u << (type->bits - 1);
    std::uint32_t mismatches = 0;
    for (std::uint32_t code = 0; code < (1u << type->bits); ++code) {
      // The negative zero code decodes to +0.0, which encodes to code 0.
      const std::uint32_t expected = code == negative_zero ? 0 : code;
      mismatches += encode_custom_float(format, decode_custom_float(format, code)) != expected;
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("custom floats: the encoder equals the reference's bit-surgery formulation", "[format][custom_float]") {
  std::mt19937 rng(20260822);
  for (const StorageType* type : custom_float_types()) {
    INFO(std::string(type->name));
    const CustomFloat format = custom_float_of(*type);
    std::uint64_t compared = 0, mismatches = 0, inexact_midpoints = 0;
    float first_mismatch = 0;
    auto compare = [&](float x) {
      x = clamp_to(*type, x);
      ++compared;
      if (encode_custom_float(format, x) != python_style_encode(*type, x) && mismatches++ == 0) first_mismatch = x;
    };

    // Every code value, and every midpoint between neighbouring values, exactly and one ulp either side.
    std::vector<float> values = custom_float_decode_table(format);
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    for (std::size_t i = 0; i < values.size(); ++i) {
      compare(values[i]);
      compare(-values[i]);
      if (i + 1 == values.size()) break;
      const double exact_midpoint = (double(values[i]) + double(values[i + 1])) / 2;
      const float midpoint = static_cast<float>(exact_midpoint);
      inexact_midpoints += double(midpoint) != exact_midpoint;  // M + 2 significant bits fit fp32
      for (float x : {midpoint, std::nextafter(midpoint, -INFINITY), std::nextafter(midpoint, INFINITY)}) {
        compare(x);
        compare(-x);
      }
    }

    // Random values, one 32-bit draw each: uniform over the range; fp32 patterns whose exponent is drawn
    // uniformly from 2^-40 up to the format's max (log-uniform magnitudes, reaching the subnormals); raw
    // fp32 bits of any magnitude (clamped).
    const int top_exponent = std::ilogb(type->max) + 127;
    const float range = static_cast<float>(type->max - type->min);
    for (int i = 0; i < 33'400; ++i) {
      compare(static_cast<float>(type->min) + range * static_cast<float>(rng() >> 8) * 0x1p-24f);
      const std::uint32_t draw = rng();
      const std::uint32_t exponent = 87 + (draw >> 23) % static_cast<std::uint32_t>(top_exponent - 86);
      compare(std::bit_cast<float>((draw & 0x807FFFFFu) | exponent << 23));
      const float raw = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
      if (!std::isnan(raw)) compare(raw);
    }
    CHECK(inexact_midpoints == 0);
    CHECK(compared > 100'000);
    INFO("first mismatch at " << first_mismatch);
    CHECK(mismatches == 0);
  }
}
