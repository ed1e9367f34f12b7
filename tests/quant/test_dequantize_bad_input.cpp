// Tensors that do not match the layout re-derived from the config: typed errors naming the layer.
#include <string>

#include "sdnq/quant/checkpoint.hpp"
#include "sdnq_catch.hpp"

using sdnq::DType;
using sdnq::FormatError;
using sdnq::Shape;
using sdnq::Tensor;
using sdnq::quant::LayerKind;
using sdnq::quant::QuantizedWeight;
using sdnq::quant::ScalePrecision;
using sdnq::quant::SdnqCheckpoint;

namespace {

std::string format_error_of(const QuantizedWeight& layer) {
  try {
    sdnq::quant::dequantize(layer, DType::bf16, ScalePrecision::reference_compatible);
  } catch (const FormatError& error) {
    return error.what();
  }
  FAIL("dequantize accepted tensors that do not match the layout");
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// uint4 linear [64, 128], auto group 64: weight U8 [4096], scale/zero_point F32 [64, 2, 1].
QuantizedWeight uint4_layer() {
  static const SdnqCheckpoint checkpoint = SdnqCheckpoint::open(sdnq::test::data_dir() / "codecs" / "uint4");
  return checkpoint.quantized_weight("linear", LayerKind::linear, Shape{64, 128});
}

}  // namespace

TEST_CASE("dequantize rejects a scale of the wrong size", "[quant][dequantize]") {
  QuantizedWeight layer = uint4_layer();
  Tensor scale = Tensor::zeros(Shape{64, 1}, DType::f32);
  layer.scale = scale;
  const std::string message = format_error_of(layer);
  CHECK(contains(message, "linear.scale"));
  CHECK(contains(message, "[64, 2, 1]"));
}

TEST_CASE("dequantize rejects a packed weight whose length does not match", "[quant][dequantize]") {
  QuantizedWeight layer = uint4_layer();
  layer.weight = layer.weight.reshaped(Shape{2048, 2});
  CHECK(contains(format_error_of(layer), "expected [4096]"));
  Tensor short_weight = Tensor::zeros(Shape{4000}, DType::u8);
  layer.weight = short_weight;
  const std::string message = format_error_of(layer);
  CHECK(contains(message, "linear.weight"));
  CHECK(contains(message, "4000"));
}

TEST_CASE("dequantize rejects wrong dtypes and missing or extra tensors", "[quant][dequantize]") {
  QuantizedWeight layer = uint4_layer();
  Tensor wrong_dtype = Tensor::zeros(Shape{4096}, DType::i8);
  layer.weight = wrong_dtype;
  const std::string weight_message = format_error_of(layer);
  CHECK(contains(weight_message, "I8"));
  CHECK(contains(weight_message, "expected U8"));

  layer = uint4_layer();
  Tensor int_scale = Tensor::zeros(Shape{64, 2, 1}, DType::i32);
  layer.scale = int_scale;
  CHECK(contains(format_error_of(layer), "float tensor"));

  layer = uint4_layer();
  layer.zero_point.reset();
  CHECK(contains(format_error_of(layer), "zero_point is missing"));

  layer = uint4_layer();
  Tensor factor = Tensor::zeros(Shape{64, 16}, DType::bf16);
  layer.svd_up = factor;
  CHECK(contains(format_error_of(layer), "svd_up is present"));
}

TEST_CASE("a checkpoint whose tensors do not fit the config's layout names folder and layer", "[quant][checkpoint]") {
  const SdnqCheckpoint checkpoint = SdnqCheckpoint::open(sdnq::test::data_dir() / "codecs" / "uint4");
  // a wrong original shape: the config then asks for other tensor shapes than the file has
  try {
    checkpoint.quantized_weight("linear", LayerKind::linear, Shape{32, 256});
    FAIL("a wrong original shape was accepted");
  } catch (const FormatError& error) {
    const std::string message = error.what();
    CHECK(contains(message, "uint4"));
    CHECK(contains(message, "linear.scale"));
  }
  CHECK_THROWS_AS(checkpoint.quantized_weight("missing", LayerKind::linear, Shape{64, 128}), FormatError);
  // the probe's linear is not an embedding: quant_embedding is off in this config
  CHECK_FALSE(checkpoint.is_quantized("linear", LayerKind::embedding));
  CHECK_THROWS_AS(checkpoint.quantized_weight("linear", LayerKind::embedding, Shape{64, 128}), FormatError);
  CHECK_THROWS_AS(SdnqCheckpoint::open(sdnq::test::data_dir() / "no-such-folder"), sdnq::Error);
}

TEST_CASE("SdnqCheckpoint lists keys and loads conv, embedding and quantized-matmul layers", "[quant][checkpoint]") {
  const SdnqCheckpoint conv = SdnqCheckpoint::open(sdnq::test::data_dir() / "codecs" / "int8-conv-qmm");
  const auto& keys = conv.keys();
  CHECK(std::find(keys.begin(), keys.end(), "conv.weight") != keys.end());
  const auto conv_layer = conv.quantized_weight("conv", LayerKind::conv2d, Shape{64, 32, 3, 3});
  CHECK(conv_layer.layout.transposed);
  CHECK(conv_layer.weight.shape() == Shape{288, 64});
  const SdnqCheckpoint embed = SdnqCheckpoint::open(sdnq::test::data_dir() / "codecs" / "int8-embed");
  CHECK(embed.is_quantized("embed", LayerKind::embedding));
  CHECK(embed.quantized_weight("embed", LayerKind::embedding, Shape{512, 64}).layout.scale_shape ==
        embed.tensor("embed.scale").shape());
}
