// quantize_weight on input the reference mishandles: non-finite weights are refused with a typed
// error naming the layer; all-zero groups (0/0 in the reference: NaN codes, undefined for integers)
// come back as exact zeros for every kind of type; options that cannot be stored are refused.
#include <cmath>
#include <limits>
#include <string>

#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;

quant::LayerOptions options_for_type(std::string_view type) {
  quant::LayerOptions options;
  options.weights_type = &format::storage_type(type);
  return options;
}

Tensor ramp(std::int64_t rows, std::int64_t cols) {
  Tensor weight = Tensor::empty({rows, cols}, DType::f32);
  for (std::int64_t i = 0; i < weight.numel(); ++i)
    weight.data_as<float>()[i] = 0.001f * static_cast<float>(i % 97) - 0.04f;
  return weight;
}

}  // namespace

TEST_CASE("quantize_weight refuses non-finite weights, naming the layer and the element", "[quant][quantize][bad]") {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    Tensor weight = ramp(64, 128);
    weight.data_as<float>()[200] = bad;
    quant::QuantizeControls controls;
    controls.layer_name = "blocks.3.ff.net.0.proj";
    try {
      quant::quantize_weight(weight.view(), quant::LayerKind::linear, options_for_type("uint4"), DType::bf16, controls);
      FAIL("no error for a non-finite weight");
    } catch (const FormatError& error) {
      const std::string message = error.what();
      CHECK(message.find("blocks.3.ff.net.0.proj") != std::string::npos);
      CHECK(message.find("flat index 200") != std::string::npos);
    }
  }
}

TEST_CASE("all-zero groups quantize to exact zeros", "[quant][quantize][bad]") {
  for (const char* type : {"int8", "uint4", "int5", "float8_e4m3fn", "float4_e2m2fnu", "float8_e8m0fnu"}) {
    INFO(type);
    Tensor weight = ramp(64, 128);
    for (std::int64_t c = 0; c < 128; ++c) weight.data_as<float>()[5 * 128 + c] = 0.0f;  // row 5: all zero
    auto options = options_for_type(type);
    options.group_size = -1;
    const auto quantized = quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::f32);
    const Tensor dense = quant::dequantize(quantized.view(), DType::f32, quant::ScalePrecision::as_stored);
    for (std::int64_t c = 0; c < 128; ++c) {
      // (e8m0 has no zero: its code 0 is 2^-127, times the group's zero scale)
      CHECK(dense.data_as<float>()[5 * 128 + c] == 0.0f);
    }
  }
}

TEST_CASE("quantize_weight refuses layouts the reference cannot store, naming the layer", "[quant][quantize][bad]") {
  const Tensor weight = ramp(64, 128);
  quant::QuantizeControls controls;
  controls.layer_name = "odd.layer";
  const Tensor odd = ramp(3, 35);  // 105 codes: no multiple of the 8-code int3 block
  try {
    quant::quantize_weight(odd.view(), quant::LayerKind::linear, options_for_type("int3"), DType::bf16, controls);
    FAIL("no error for a code count the packer cannot take");
  } catch (const UnsupportedError& error) {
    CHECK(std::string(error.what()).find("odd.layer") != std::string::npos);
  }
  auto grouped = options_for_type("int8");
  grouped.group_size = -3;
  CHECK_THROWS_AS(quant::quantize_weight(weight.view(), quant::LayerKind::linear, grouped, DType::bf16, controls),
                  ConfigError);
  CHECK_THROWS_AS(
      quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options_for_type("int8"), DType::bf16, controls),
      ShapeError);
}
