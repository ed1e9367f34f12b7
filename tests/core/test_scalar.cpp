// sdnq/core/scalar.hpp against an independent reference written here: values are decoded with
// exponent/mantissa arithmetic in double (std::ldexp), and float inputs are encoded by searching the
// sorted table of every representable value for the nearest one, ties to the even code, with the
// overflow and NaN rules of PyTorch's c10 scalar types (torch 2.11 agrees on every non-NaN input,
// checked on the GPU machine by scripts/gpu-check.sh).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq_catch.hpp"

namespace {

std::uint32_t bits_of(float value) { return std::bit_cast<std::uint32_t>(value); }
float float_of(std::uint32_t bits) { return std::bit_cast<float>(bits); }

// Everything the reference needs to know about one format, stated from its specification.
struct ReferenceFormat {
  const char* name;
  int total_bits;
  int exponent_bits;
  int mantissa_bits;
  bool finite_only;             // e4m3fn: no infinity, only the all-ones code is NaN
  bool nan_keeps_sign;          // c10 drops the sign of a bf16 NaN, keeps it for the others
  std::uint32_t nan_code;       // what float NaN converts to (before the sign)
  bool nan_widens_by_shifting;  // bf16 -> float is a plain shift, NaN payloads untouched

  std::uint32_t sign_bit() const { return 1u << (total_bits - 1); }
  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  std::uint32_t exponent_all_ones() const { return (1u << exponent_bits) - 1; }
  std::uint32_t mantissa_all_ones() const { return (1u << mantissa_bits) - 1; }

  bool is_nan(std::uint32_t code) const {
    const std::uint32_t exponent = (code >> mantissa_bits) & exponent_all_ones();
    const std::uint32_t mantissa = code & mantissa_all_ones();
    if (finite_only) return exponent == exponent_all_ones() && mantissa == mantissa_all_ones();
    return exponent == exponent_all_ones() && mantissa != 0;
  }
  bool is_inf(std::uint32_t code) const {
    const std::uint32_t exponent = (code >> mantissa_bits) & exponent_all_ones();
    return !finite_only && exponent == exponent_all_ones() && (code & mantissa_all_ones()) == 0;
  }
  // The largest finite code without sign; all codes from 0 to it are finite and ascending.
  std::uint32_t max_finite_code() const {
    return finite_only ? (exponent_all_ones() << mantissa_bits) | (mantissa_all_ones() - 1)
                       : (exponent_all_ones() << mantissa_bits) - 1;
  }

  // The value of a code that is neither NaN nor infinite, computed in double.
  double finite_value(std::uint32_t code) const {
    const bool negative = (code & sign_bit()) != 0;
    const int exponent = static_cast<int>((code >> mantissa_bits) & exponent_all_ones());
    const auto mantissa = static_cast<double>(code & mantissa_all_ones());
    const double magnitude =
        exponent == 0 ? std::ldexp(mantissa, 1 - bias() - mantissa_bits)
                      : std::ldexp(std::ldexp(1.0, mantissa_bits) + mantissa, exponent - bias() - mantissa_bits);
    return negative ? -magnitude : magnitude;
  }

  // The float bits a code must widen to.
  std::uint32_t expected_float_bits(std::uint32_t code) const {
    const std::uint32_t sign = (code & sign_bit()) != 0 ? 0x80000000u : 0u;
    if (is_inf(code)) return sign | 0x7F800000u;
    if (is_nan(code)) {
      const std::uint32_t payload = (code & mantissa_all_ones()) << (23 - mantissa_bits);
      if (nan_widens_by_shifting) return code << 16;
      return sign | 0x7F800000u | 0x00400000u | payload;
    }
    const double value = finite_value(code);
    const auto narrowed = static_cast<float>(value);
    REQUIRE(static_cast<double>(narrowed) == value);  // every value of these formats is a float
    return bits_of(narrowed);
  }
};

template <class T>
ReferenceFormat reference_format();
template <>
ReferenceFormat reference_format<sdnq::bf16>() {
  return {"bf16", 16, 8, 7, false, false, 0x7FC0, true};
}
template <>
ReferenceFormat reference_format<sdnq::fp16>() {
  return {"fp16", 16, 5, 10, false, true, 0x7E00, false};
}
template <>
ReferenceFormat reference_format<sdnq::fp8_e4m3fn>() {
  return {"fp8_e4m3fn", 8, 4, 3, true, true, 0x7F, false};
}
template <>
ReferenceFormat reference_format<sdnq::fp8_e5m2>() {
  return {"fp8_e5m2", 8, 5, 2, false, true, 0x7F, false};
}

// Encodes floats by nearest-value search over the table of every non-negative finite value.
class ReferenceEncoder {
 public:
  explicit ReferenceEncoder(const ReferenceFormat& format) : format_(format) {
    for (std::uint32_t code = 0; code <= format.max_finite_code(); ++code) values_.push_back(format.finite_value(code));
    REQUIRE(std::is_sorted(values_.begin(), values_.end()));
    // Rounding continues past the largest value as if the exponent range went on: the next value,
    // one step up, has the code after the largest one. That code is infinity in the IEEE formats
    // (even, so the tie at the midpoint goes there) and NaN in e4m3fn (odd, so the tie stays at 448).
    // Anything from that next value up overflows.
    const double step = values_.back() - values_[values_.size() - 2];
    values_.push_back(values_.back() + step);
  }

  // Every non-negative finite value, then the one past the end (infinity's or NaN's code).
  const std::vector<double>& values() const { return values_; }

  std::uint32_t encode(float input) const {
    const bool negative = std::signbit(input);
    const std::uint32_t sign = negative ? format_.sign_bit() : 0u;
    if (std::isnan(input)) return (format_.nan_keeps_sign ? sign : 0u) | format_.nan_code;
    const double magnitude = std::fabs(static_cast<double>(input));
    const auto past_end = static_cast<std::uint32_t>(values_.size() - 1);
    if (magnitude >= values_.back()) return sign | past_end;
    const auto above = std::lower_bound(values_.begin(), values_.end(), magnitude);
    const auto upper = static_cast<std::uint32_t>(above - values_.begin());
    if (values_[upper] == magnitude) return sign | upper;
    const std::uint32_t lower = upper - 1;
    const double midpoint = (values_[lower] + values_[upper]) / 2;  // exact: neighbours with short significands
    if (magnitude < midpoint) return sign | lower;
    if (magnitude > midpoint) return sign | upper;
    return sign | ((lower % 2 == 0) ? lower : upper);
  }

 private:
  ReferenceFormat format_;
  std::vector<double> values_;
};

template <class T>
std::uint32_t encoded_bits(float input) {
  return T(input).bits;
}
template <class T>
T from_code(std::uint32_t code) {
  return T::from_bits(static_cast<decltype(T::bits)>(code));
}

// Collects mismatches and reports the first few, so a failure does not flood the log.
struct MismatchLog {
  std::size_t count = 0;
  std::string first;
  void add(const std::string& line) {
    if (count++ < 8) first += line + "\n";
  }
};

template <class T>
MismatchLog compare_encodings(const std::vector<float>& inputs) {
  const ReferenceFormat format = reference_format<T>();
  const ReferenceEncoder reference(format);
  MismatchLog log;
  for (float input : inputs) {
    const std::uint32_t expected = reference.encode(input);
    const std::uint32_t actual = encoded_bits<T>(input);
    if (actual != expected)
      log.add(fmt::format("{}: float bits {:#010x} ({}) -> {:#x}, reference {:#x}", format.name, bits_of(input), input,
                          actual, expected));
  }
  return log;
}

template <class T>
void check_encodings(const std::vector<float>& inputs) {
  const MismatchLog log = compare_encodings<T>(inputs);
  INFO(reference_format<T>().name << ": " << log.count << " of " << inputs.size() << " inputs differ\n" << log.first);
  CHECK(log.count == 0);
}

template <class T>
void check_all_encodings(const std::vector<float>& inputs) {
  check_encodings<sdnq::bf16>(inputs);
  check_encodings<sdnq::fp16>(inputs);
  check_encodings<sdnq::fp8_e4m3fn>(inputs);
  check_encodings<sdnq::fp8_e5m2>(inputs);
}

// Every midpoint between neighbouring values of T (up to the one past the largest), one float ulp
// either side, both signs.
template <class T>
std::vector<float> midpoints_and_neighbours() {
  const ReferenceEncoder reference(reference_format<T>());
  const std::vector<double>& values = reference.values();
  std::vector<double> midpoints;
  for (std::size_t i = 0; i + 1 < values.size(); ++i) midpoints.push_back((values[i] + values[i + 1]) / 2);
  std::vector<float> inputs;
  for (double midpoint : midpoints) {
    const auto tie = static_cast<float>(midpoint);
    REQUIRE(static_cast<double>(tie) == midpoint);
    for (float magnitude :
         {tie, std::nextafter(tie, 0.0f), std::nextafter(tie, std::numeric_limits<float>::infinity())})
      for (float sign : {1.0f, -1.0f}) inputs.push_back(sign * magnitude);
  }
  return inputs;
}

template <class T>
void check_every_code_decodes_exactly() {
  const ReferenceFormat format = reference_format<T>();
  MismatchLog log;
  for (std::uint32_t code = 0; code < (1u << format.total_bits); ++code) {
    const T value = from_code<T>(code);
    const std::uint32_t expected = format.expected_float_bits(code);
    const std::uint32_t actual = bits_of(value.to_float());
    const std::uint32_t through_cast = bits_of(static_cast<float>(value));
    if (actual != expected || through_cast != expected || value.is_nan() != format.is_nan(code) ||
        value.is_inf() != format.is_inf(code))
      log.add(fmt::format("{}: code {:#x} -> float bits {:#010x}, reference {:#010x}", format.name, code, actual,
                          expected));
  }
  INFO(log.first);
  CHECK(log.count == 0);
}

template <class T>
void check_every_code_round_trips() {
  const ReferenceFormat format = reference_format<T>();
  MismatchLog log;
  for (std::uint32_t code = 0; code < (1u << format.total_bits); ++code) {
    const T round_tripped(from_code<T>(code).to_float());
    const bool ok = format.is_nan(code) ? format.is_nan(round_tripped.bits) : round_tripped.bits == code;
    if (!ok) log.add(fmt::format("{}: code {:#x} came back as {:#x}", format.name, code, round_tripped.bits));
  }
  INFO(log.first);
  CHECK(log.count == 0);
}

}  // namespace

TEST_CASE("scalar types decode every bit pattern exactly", "[core][scalar]") {
  check_every_code_decodes_exactly<sdnq::bf16>();
  check_every_code_decodes_exactly<sdnq::fp16>();
  check_every_code_decodes_exactly<sdnq::fp8_e4m3fn>();
  check_every_code_decodes_exactly<sdnq::fp8_e5m2>();
}

TEST_CASE("scalar types round-trip every bit pattern through float", "[core][scalar]") {
  check_every_code_round_trips<sdnq::bf16>();
  check_every_code_round_trips<sdnq::fp16>();
  check_every_code_round_trips<sdnq::fp8_e4m3fn>();
  check_every_code_round_trips<sdnq::fp8_e5m2>();
}

TEST_CASE("float to scalar rounds ties to even at every midpoint", "[core][scalar]") {
  // Each format's midpoints are also checked against the other formats: a tie of one is an
  // ordinary value (or a tie) of another.
  for (const auto& inputs : {midpoints_and_neighbours<sdnq::bf16>(), midpoints_and_neighbours<sdnq::fp16>(),
                             midpoints_and_neighbours<sdnq::fp8_e4m3fn>(), midpoints_and_neighbours<sdnq::fp8_e5m2>()})
    check_all_encodings<void>(inputs);
}

TEST_CASE("float to scalar handles zeros, subnormals, overflow, infinities and NaN payloads", "[core][scalar]") {
  std::vector<float> inputs;
  const auto add_both_signs = [&](std::uint32_t magnitude_bits) {
    inputs.push_back(float_of(magnitude_bits));
    inputs.push_back(float_of(magnitude_bits | 0x80000000u));
  };
  add_both_signs(0);
  // float subnormals: every power of two, its neighbours, the largest, some in between
  for (int bit = 0; bit < 23; ++bit)
    for (std::uint32_t offset : {0u, 1u, 0xFFFFFFFFu}) add_both_signs((1u << bit) + offset);
  add_both_signs(0x007FFFFFu);
  add_both_signs(0x00555555u);
  add_both_signs(0x00400001u);
  // the smallest float normals
  for (std::uint32_t bits = 0x00800000u; bits < 0x00800010u; ++bits) add_both_signs(bits);
  // overflow boundaries: largest floats, infinity, every float near each format's limits
  add_both_signs(0x7F7FFFFFu);
  add_both_signs(0x7F7F7FFFu);
  add_both_signs(0x7F7F8000u);
  add_both_signs(0x7F800000u);
  for (float limit : {448.0f, 464.0f, 480.0f, 57344.0f, 61440.0f, 65504.0f, 65520.0f, 65536.0f})
    for (std::int32_t step = -4; step <= 4; ++step) add_both_signs(bits_of(limit) + static_cast<std::uint32_t>(step));
  // NaNs: quiet and signalling, smallest and largest payloads
  for (std::uint32_t payload : {0x400000u, 0x000001u, 0x200000u, 0x7FFFFFu, 0x3FFFFFu, 0x00E000u, 0x001FFFu})
    add_both_signs(0x7F800000u | payload);
  check_all_encodings<void>(inputs);
}

TEST_CASE("float to scalar matches the reference on random float32 bit patterns", "[core][scalar]") {
  std::mt19937 generator(20240917);
  std::vector<float> inputs(1u << 21);
  for (float& input : inputs) input = float_of(static_cast<std::uint32_t>(generator()));
  // Random bits are mostly huge or tiny magnitudes; half of them are drawn within the formats' range.
  std::uniform_int_distribution<std::uint32_t> in_range(0x30000000u, 0x47FFFFFFu);
  for (std::size_t i = 0; i < inputs.size(); i += 2)
    inputs[i] = float_of(in_range(generator) | (static_cast<std::uint32_t>(generator()) & 0x80000000u));
  check_all_encodings<void>(inputs);
}

TEST_CASE("scalar conversions give the values the specifications name", "[core][scalar]") {
  // Hand-checked constants, usable in constant expressions.
  static_assert(sdnq::bf16(1.0f).bits == 0x3F80);
  static_assert(sdnq::bf16(-2.0f).bits == 0xC000);
  static_assert(sdnq::bf16(std::numeric_limits<float>::quiet_NaN()).bits == 0x7FC0);
  static_assert(sdnq::bf16(-std::numeric_limits<float>::quiet_NaN()).bits == 0x7FC0);
  static_assert(sdnq::bf16::from_bits(0x7F7F).to_float() == 3.38953139e38f);
  static_assert(sdnq::fp16(65504.0f).bits == 0x7BFF);
  static_assert(sdnq::fp16(65520.0f).bits == 0x7C00);  // the tie above the largest value goes to infinity
  static_assert(sdnq::fp16(-std::numeric_limits<float>::quiet_NaN()).bits == 0xFE00);
  static_assert(sdnq::fp16::from_bits(0x0001).to_float() == 0x1p-24f);
  static_assert(sdnq::fp8_e4m3fn(448.0f).bits == 0x7E);
  static_assert(sdnq::fp8_e4m3fn(463.99997f).bits == 0x7E);
  static_assert(sdnq::fp8_e4m3fn(464.0f).bits == 0x7E);  // the tie with the NaN code goes to the even 448
  static_assert(sdnq::fp8_e4m3fn(464.00003f).bits == 0x7F);
  static_assert(sdnq::fp8_e4m3fn(-480.0f).bits == 0xFF);
  static_assert(sdnq::fp8_e4m3fn(-std::numeric_limits<float>::infinity()).bits == 0xFF);
  static_assert(sdnq::fp8_e4m3fn(0x1p-9f).bits == 0x01);
  static_assert(sdnq::fp8_e4m3fn(0x1p-10f).bits == 0x00);  // tie between 0 and the smallest subnormal
  static_assert(sdnq::fp8_e4m3fn(-0x1p-10f).bits == 0x80);
  static_assert(sdnq::fp8_e4m3fn(0x1.8p-9f).bits == 0x02);  // tie between subnormals 1 and 2: even
  static_assert(sdnq::fp8_e4m3fn::from_bits(0x7F).is_nan());
  static_assert(sdnq::fp8_e4m3fn::from_bits(0x7E).to_float() == 448.0f);
  static_assert(sdnq::fp8_e4m3fn::from_bits(0x08).to_float() == 0x1p-6f);
  static_assert(sdnq::fp8_e5m2(57344.0f).bits == 0x7B);
  static_assert(sdnq::fp8_e5m2(61440.0f).bits == 0x7C);
  static_assert(sdnq::fp8_e5m2(61439.996f).bits == 0x7B);
  static_assert(sdnq::fp8_e5m2(std::numeric_limits<float>::quiet_NaN()).bits == 0x7F);
  static_assert(sdnq::fp8_e5m2::from_bits(0x01).to_float() == 0x1p-16f);
  static_assert(sdnq::fp8_e5m2::from_bits(0xFC).to_float() == -std::numeric_limits<float>::infinity());
  CHECK(bits_of(sdnq::fp8_e4m3fn::from_bits(0xFF).to_float()) == 0xFFF00000u);  // c10 widens e4m3fn NaN so
  CHECK(bits_of(sdnq::fp16::from_bits(0x7C01).to_float()) == 0x7FC02000u);      // signalling NaN comes back quiet
}

TEST_CASE("scalar types are tensor element types", "[core][scalar]") {
  static_assert(sdnq::dtype_of_v<sdnq::bf16> == sdnq::DType::bf16);
  static_assert(sdnq::dtype_of_v<sdnq::fp16> == sdnq::DType::f16);
  static_assert(sdnq::dtype_of_v<sdnq::fp8_e4m3fn> == sdnq::DType::f8_e4m3fn);
  static_assert(sdnq::dtype_of_v<sdnq::fp8_e5m2> == sdnq::DType::f8_e5m2);
  static_assert(std::is_trivially_copyable_v<sdnq::bf16> && std::is_trivially_default_constructible_v<sdnq::fp8_e5m2>);

  sdnq::Tensor tensor = sdnq::Tensor::empty({3}, sdnq::DType::bf16);
  sdnq::bf16* data = tensor.data_as<sdnq::bf16>();
  data[0] = sdnq::bf16(1.5f);
  data[1] = sdnq::bf16(-0.0f);
  data[2] = sdnq::bf16(3.0e38f);
  CHECK(data[0].to_float() == 1.5f);
  CHECK(bits_of(data[1].to_float()) == 0x80000000u);
  CHECK(data[2].bits == 0x7F62);  // 3.0e38 = 0x7F61B1E6 rounds up
  CHECK_THROWS_AS(tensor.data_as<sdnq::fp16>(), sdnq::ShapeError);
}
