// The quantizer's less common rounding rules: torch's conversions to float8_e4m3fnuz / e5m2fnuz /
// e8m0fnu (checked against decoders and hand-derived cases written here), and stochastic rounding
// (unbiased for floats, the reference's Gaussian dither for integers, reproducible for a seed).
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;

// Value of a float8 fnuz code, from the format's definition: bias 2^(E-1), 0x80 is NaN, no infinities.
double fnuz_value(std::uint8_t code, int exponent_bits, int mantissa_bits) {
  if (code == 0x80) return std::nan("");
  const int bias = 1 << (exponent_bits - 1);
  const int field = (code >> mantissa_bits) & ((1 << exponent_bits) - 1);
  const int mantissa = code & ((1 << mantissa_bits) - 1);
  const double magnitude = field == 0 ? mantissa * std::pow(2.0, 1 - bias - mantissa_bits)
                                      : (1.0 + mantissa * std::pow(2.0, -mantissa_bits)) * std::pow(2.0, field - bias);
  return (code & 0x80) ? -magnitude : magnitude;
}

quant::LayerOptions options_for(std::string_view type, std::int64_t group_size = -1) {
  quant::LayerOptions options;
  options.weights_type = &format::storage_type(type);
  options.group_size = group_size;
  return options;
}

// Mean of the dequantized elements of `dense` (f32) over the columns [1, cols) of every row in [row_begin, row_end).
double mean_of(const Tensor& dense, std::int64_t row_begin, std::int64_t row_end) {
  const std::int64_t cols = dense.shape()[1];
  const auto* values = static_cast<const float*>(dense.data());
  double sum = 0;
  std::int64_t count = 0;
  for (std::int64_t r = row_begin; r < row_end; ++r)
    for (std::int64_t c = 1; c < cols; ++c, ++count) sum += values[r * cols + c];
  return sum / static_cast<double>(count);
}

// [rows, cols] f32 weight: column 0 holds `anchor` (fixes each row's scale), the rest `value`.
Tensor anchored_weight(std::int64_t rows, std::int64_t cols, float anchor, float value) {
  Tensor weight = Tensor::empty({rows, cols}, DType::f32);
  auto* data = static_cast<float*>(weight.data());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) data[r * cols + c] = c == 0 ? anchor : value;
  return weight;
}

}  // namespace

TEST_CASE("float8 fnuz codes are torch's round-to-nearest-even conversion", "[quant][quantize][fnuz]") {
  for (auto [exponent_bits, mantissa_bits] : {std::pair{4, 3}, std::pair{5, 2}}) {
    INFO("e" << exponent_bits << "m" << mantissa_bits << "fnuz");
    const double max = fnuz_value(0x7F, exponent_bits, mantissa_bits);
    CHECK(max == (exponent_bits == 4 ? 240.0 : 57344.0));
    for (int code = 0; code < 256; ++code) {
      if (code == 0x80) continue;
      const double value = fnuz_value(static_cast<std::uint8_t>(code), exponent_bits, mantissa_bits);
      // every value encodes to its own code (no negative zero: 0x80 is NaN, so -0 and 0 give 0x00)
      CHECK(quant::detail::encode_fnuz_byte(static_cast<float>(value), exponent_bits, mantissa_bits) == code);
      // midpoints to the next code up round to the one with the even mantissa
      const int next = code + 1;
      if ((code & 0x7F) == 0x7F) continue;
      const double midpoint = (value + fnuz_value(static_cast<std::uint8_t>(next), exponent_bits, mantissa_bits)) / 2;
      if (static_cast<double>(static_cast<float>(midpoint)) != midpoint) continue;
      const int even = (code & 1) == 0 ? code : next;
      CHECK(quant::detail::encode_fnuz_byte(static_cast<float>(midpoint), exponent_bits, mantissa_bits) == even);
    }
    CHECK(quant::detail::encode_fnuz_byte(-0.0f, exponent_bits, mantissa_bits) == 0x00);
    const float smallest = static_cast<float>(fnuz_value(0x01, exponent_bits, mantissa_bits));
    CHECK(quant::detail::encode_fnuz_byte(-smallest / 4, exponent_bits, mantissa_bits) == 0x00);  // no -0
    CHECK(quant::detail::encode_fnuz_byte(-smallest * 0.75f, exponent_bits, mantissa_bits) == 0x81);
    CHECK(quant::detail::encode_fnuz_byte(static_cast<float>(max * 2), exponent_bits, mantissa_bits) == 0x80);
    CHECK(quant::detail::encode_fnuz_byte(std::nanf(""), exponent_bits, mantissa_bits) == 0x80);
  }
}

TEST_CASE("float8_e8m0fnu codes are torch's conversion: sign dropped, halfway rounds up", "[quant][quantize][e8m0]") {
  using quant::detail::encode_e8m0_byte;
  CHECK(encode_e8m0_byte(1.0f) == 127);
  CHECK(encode_e8m0_byte(1.4999999f) == 127);
  CHECK(encode_e8m0_byte(1.5f) == 128);   // exactly halfway between 1 and 2: the implied bit counts as odd
  CHECK(encode_e8m0_byte(-3.0f) == 129);  // |-3| = 1.5 * 2: up to 4, the sign is lost
  CHECK(encode_e8m0_byte(0.75f) == 127);
  CHECK(encode_e8m0_byte(0x1p-127f) == 0);    // subnormal 0x00400000: halfway, implied bit 0 -> stays
  CHECK(encode_e8m0_byte(0x1.8p-127f) == 1);  // above halfway
  CHECK(encode_e8m0_byte(0.0f) == 0);
  CHECK(encode_e8m0_byte(std::numeric_limits<float>::infinity()) == 0xFF);
  CHECK(encode_e8m0_byte(std::nanf("")) == 0xFF);
}

TEST_CASE("fnuz and e8m0 layers quantize to the stored dtypes and dequantize back", "[quant][quantize][fnuz]") {
  const Tensor weight = anchored_weight(32, 64, 2.0f, -0.3f);
  const auto fnuz =
      quant::quantize_weight(weight.view(), quant::LayerKind::linear, options_for("float8_e4m3fnuz"), DType::f32);
  CHECK(fnuz.weight.dtype() == DType::u8);
  CHECK(quant::stored_safetensors_dtype(*fnuz.layout.weights_type) == "F8_E4M3FNUZ");
  // scale = 2 / 240; -0.3 / scale is -36 up to fp32 rounding, a value of the e4m3fnuz grid (step 4 in [32, 64))
  const float scale = 2.0f / 240.0f;
  const Tensor dense = quant::dequantize(fnuz.view(), DType::f32, quant::ScalePrecision::as_stored);
  CHECK(static_cast<const float*>(dense.data())[1] == -36.0f * scale);
  CHECK(static_cast<const std::uint8_t*>(fnuz.weight.data())[1] == (0x80 | (13 << 3) | 1));  // -(1 + 1/8) * 2^(13-8)

  const auto e8m0 =
      quant::quantize_weight(weight.view(), quant::LayerKind::linear, options_for("float8_e8m0fnu"), DType::f32);
  CHECK(e8m0.weight.dtype() == DType::f8_e8m0);
  CHECK(quant::stored_safetensors_dtype(*e8m0.layout.weights_type).empty());
  const float e8m0_scale = 2.0f / static_cast<float>(1.70141e38);
  CHECK(static_cast<const std::uint8_t*>(e8m0.weight.data())[1] == quant::detail::encode_e8m0_byte(-0.3f / e8m0_scale));
}

TEST_CASE("stochastic rounding of floats is unbiased", "[quant][quantize][stochastic]") {
  // float8_e4m3fn rows [448, x, x, ...]: scale 1, x between two e4m3 neighbours lo < x < hi.
  for (auto [type, anchor, value, low, high] :
       {std::tuple{"float8_e4m3fn", 448.0f, 1.3f, 1.25, 1.375}, std::tuple{"float8_e4m3fn", 448.0f, -9.7f, -10.0, -9.0},
        std::tuple{"float6_e3m2fn", 28.0f, 2.7f, 2.5, 3.0}}) {
    INFO(type << " at " << value);
    const std::int64_t rows = 64, cols = 1024;
    const Tensor weight = anchored_weight(rows, cols, anchor, value);
    auto options = options_for(type);
    options.use_stochastic_rounding = true;
    quant::QuantizeControls controls;
    controls.seed = 7;
    const auto stochastic =
        quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::f32, controls);
    const Tensor dense = quant::dequantize(stochastic.view(), DType::f32, quant::ScalePrecision::as_stored);
    const auto* values = static_cast<const float*>(dense.data());
    for (std::int64_t i = 0; i < dense.numel(); ++i)
      if (i % cols != 0) REQUIRE((values[i] == static_cast<float>(low) || values[i] == static_cast<float>(high)));
    // Each draw is low or high: variance at most (high - low)^2 / 4, so the mean of N draws has a
    // standard deviation at most |high - low| / (2 sqrt(N)); allow five of them.
    const double samples = static_cast<double>(rows * (cols - 1));
    const double bound = 5 * std::fabs(high - low) / (2 * std::sqrt(samples));
    const double mean = mean_of(dense, 0, rows);
    CHECK(std::fabs(mean - value) <= bound);
    // Round-to-nearest gives one neighbour everywhere: a bias far beyond that bound.
    options.use_stochastic_rounding = false;
    const auto nearest = quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::f32, controls);
    const double nearest_mean =
        mean_of(quant::dequantize(nearest.view(), DType::f32, quant::ScalePrecision::as_stored), 0, rows);
    CHECK(std::fabs(nearest_mean - value) > 10 * bound);
  }
}

TEST_CASE("stochastic rounding of integers is the reference's Gaussian dither", "[quant][quantize][stochastic]") {
  // int8 rows [127, x, x, ...]: scale 1, q = round(x + 0.1 Z). It rounds up past k + 0.5 with probability
  // P(Z > (k + 0.5 - x) / 0.1) = erfc(((k + 0.5 - x) / 0.1) / sqrt 2) / 2 (two neighbours further are < 1e-15).
  const std::int64_t rows = 64, cols = 1024;
  const float value_low_rows = 5.3f, value_high_rows = 5.45f;
  Tensor weight = anchored_weight(rows, cols, 127.0f, value_low_rows);
  auto* data = static_cast<float*>(weight.data());
  for (std::int64_t r = rows / 2; r < rows; ++r)
    for (std::int64_t c = 1; c < cols; ++c) data[r * cols + c] = value_high_rows;
  auto options = options_for("int8");
  options.use_stochastic_rounding = true;
  quant::QuantizeControls controls;
  controls.seed = 11;
  const auto quantized = quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::f32, controls);
  const Tensor dense = quant::dequantize(quantized.view(), DType::f32, quant::ScalePrecision::as_stored);
  const double samples = static_cast<double>((rows / 2) * (cols - 1));
  for (auto [value, begin] : {std::pair{value_low_rows, std::int64_t{0}}, std::pair{value_high_rows, rows / 2}}) {
    INFO("x = " << value);
    const double up = 0.5 * std::erfc((5.5 - static_cast<double>(value)) / 0.1 / std::sqrt(2.0));
    const double expected_mean = 5.0 + up;
    const double bound = 5 * std::sqrt(up * (1 - up) / samples);
    const double mean = mean_of(dense, begin, begin + rows / 2);
    CHECK(std::fabs(mean - expected_mean) <= bound);
    CHECK(std::fabs(mean - value) > 10 * bound);  // the dither is not unbiased, as in the reference
  }
}

TEST_CASE("stochastic rounding is reproducible for a seed and leaves the default path alone",
          "[quant][quantize][stochastic]") {
  Tensor weight = Tensor::empty({32, 256}, DType::f32);  // values between the grid points
  for (std::int64_t i = 0; i < weight.numel(); ++i)
    weight.data_as<float>()[i] = std::sin(0.731f * static_cast<float>(i)) * 0.2f;
  auto options = options_for("uint4", 0);
  const auto quantize = [&](bool stochastic, std::uint64_t seed, std::string_view layer) {
    options.use_stochastic_rounding = stochastic;
    quant::QuantizeControls controls;
    controls.seed = seed;
    controls.layer_name = layer;
    return quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16, controls);
  };
  const auto same_bytes = [](const Tensor& a, const Tensor& b) {
    return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
  };
  CHECK(same_bytes(quantize(true, 5, "a").weight, quantize(true, 5, "a").weight));
  CHECK_FALSE(same_bytes(quantize(true, 5, "a").weight, quantize(true, 6, "a").weight));
  CHECK_FALSE(same_bytes(quantize(true, 5, "a").weight, quantize(true, 5, "b").weight));
  // Without it the seed and name play no part, and the scales never depend on the rounding.
  CHECK(same_bytes(quantize(false, 5, "a").weight, quantize(false, 6, "b").weight));
  CHECK(same_bytes(quantize(false, 5, "a").scale, quantize(true, 5, "a").scale));
  CHECK_FALSE(same_bytes(quantize(false, 5, "a").weight, quantize(true, 5, "a").weight));
}
