// Dequantization of the fixture slice in tests/data/codecs against the reference dequantizer's
// dense weights (written by the Python reference; see /work/shared/fixtures/sdnq-reference/README.md).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/quant/checkpoint.hpp"
#include "sdnq_catch.hpp"

using sdnq::DType;
using sdnq::Shape;
using sdnq::quant::LayerKind;
using sdnq::quant::ScalePrecision;
using sdnq::quant::SdnqCheckpoint;

namespace {

struct ProbeLayer {
  const char* name;
  LayerKind kind;
  Shape shape;
};

// SdnqProbe (fixture README): linear [out, in], conv Conv2d [conv_out, conv_in, 3, 3], embed [vocab, dim].
std::vector<ProbeLayer> probe_layers(const std::filesystem::path& folder) {
  std::ifstream file(folder / "config.json");
  const auto config = nlohmann::json::parse(file);
  std::vector<ProbeLayer> layers;
  layers.push_back({"linear", LayerKind::linear,
                    Shape{config["out_features"].get<std::int64_t>(), config["in_features"].get<std::int64_t>()}});
  if (config["conv_out"].get<std::int64_t>() > 0)
    layers.push_back({"conv", LayerKind::conv2d,
                      Shape{config["conv_out"].get<std::int64_t>(), config["conv_in"].get<std::int64_t>(), 3, 3}});
  if (config["embed_vocab"].get<std::int64_t>() > 0)
    layers.push_back({"embed", LayerKind::embedding,
                      Shape{config["embed_vocab"].get<std::int64_t>(), config["embed_dim"].get<std::int64_t>()}});
  return layers;
}

// Distance in units in the last place between two 16-bit floats of the same format (sign-magnitude bits).
std::int64_t ulp_distance_16(std::uint16_t a, std::uint16_t b) {
  const auto ordered = [](std::uint16_t bits) -> std::int64_t {
    return (bits & 0x8000u) ? -static_cast<std::int64_t>(bits & 0x7FFFu) : static_cast<std::int64_t>(bits);
  };
  return std::llabs(ordered(a) - ordered(b));
}

// Largest ulp distance between our dequantized weight and the reference's (both 16-bit model dtype).
std::int64_t max_ulp_distance(const sdnq::Tensor& ours, sdnq::TensorView reference) {
  REQUIRE(ours.dtype() == reference.dtype());
  REQUIRE(ours.shape() == reference.shape());
  REQUIRE(sdnq::dtype_size(ours.dtype()) == 2);
  const auto* a = static_cast<const std::uint16_t*>(ours.data());
  const auto* b = static_cast<const std::uint16_t*>(reference.data());
  std::int64_t worst = 0;
  for (std::int64_t i = 0; i < ours.numel(); ++i) worst = std::max(worst, ulp_distance_16(a[i], b[i]));
  return worst;
}

float widen_16(DType dtype, std::uint16_t bits) {
  return dtype == DType::bf16 ? sdnq::bf16::from_bits(bits).to_float() : sdnq::fp16::from_bits(bits).to_float();
}
// One unit in the last place of the 16-bit model dtype at |value|.
float ulp_16(DType dtype, float value) {
  const std::uint16_t bits = dtype == DType::bf16 ? sdnq::bf16(std::fabs(value)).bits : sdnq::fp16(std::fabs(value)).bits;
  return widen_16(dtype, static_cast<std::uint16_t>(bits + 1)) - widen_16(dtype, bits);
}

// Elements further than one model-dtype ulp from the reference. The ulp is taken at the element's
// magnitude, or at its row's largest magnitude for elements that cancel towards zero (with float32
// scales, code·scale + zero_point near 0 keeps an absolute error of the scale's rounding, not of the result).
std::int64_t count_beyond_one_ulp(const sdnq::Tensor& ours, sdnq::TensorView reference) {
  REQUIRE(ours.dtype() == reference.dtype());
  REQUIRE(ours.shape() == reference.shape());
  const DType dtype = ours.dtype();
  const auto* a = static_cast<const std::uint16_t*>(ours.data());
  const auto* b = static_cast<const std::uint16_t*>(reference.data());
  const std::int64_t rows = ours.shape()[0], row_length = ours.numel() / rows;
  std::int64_t beyond = 0;
  for (std::int64_t row = 0; row < rows; ++row) {
    float row_max = 0.0f;
    for (std::int64_t i = row * row_length; i < (row + 1) * row_length; ++i)
      row_max = std::max(row_max, std::fabs(widen_16(dtype, b[i])));
    for (std::int64_t i = row * row_length; i < (row + 1) * row_length; ++i) {
      const float x = widen_16(dtype, a[i]), y = widen_16(dtype, b[i]);
      const float tolerance = std::max(ulp_16(dtype, std::max(std::fabs(x), std::fabs(y))), ulp_16(dtype, row_max));
      beyond += std::fabs(x - y) > tolerance;
    }
  }
  return beyond;
}

}  // namespace

TEST_CASE("dequantize reproduces the reference dense weights of the fixture slice", "[quant][dequantize]") {
  const auto codecs = sdnq::test::data_dir() / "codecs";
  std::vector<std::filesystem::path> cases;
  for (const auto& entry : std::filesystem::directory_iterator(codecs))
    if (entry.is_directory()) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  REQUIRE(cases.size() >= 14);
  for (const auto& folder : cases) {
    const std::string case_name = folder.filename().string();
    const SdnqCheckpoint checkpoint = SdnqCheckpoint::open(folder);
    const auto reference = sdnq::io::SafetensorsFile::open(folder / "reference.safetensors");
    const bool svd = checkpoint.config().use_svd;
    for (const auto& layer : probe_layers(folder)) {
      INFO(case_name << " " << layer.name);
      REQUIRE(checkpoint.is_quantized(layer.name, layer.kind));
      const auto weight = checkpoint.quantized_weight(layer.name, layer.kind, layer.shape);
      const auto expected = reference.tensor(std::string("dequantized.") + layer.name + ".weight");
      const auto exact = dequantize(weight, expected.dtype(), ScalePrecision::reference_compatible);
      CHECK(max_ulp_distance(exact, expected) <= (svd ? 1 : 0));
      const auto stored = dequantize(weight, expected.dtype(), ScalePrecision::as_stored);
      CHECK(count_beyond_one_ulp(stored, expected) == 0);
    }
  }
}

TEST_CASE("dequantize to fp32 agrees with the bf16 result after rounding", "[quant][dequantize]") {
  const SdnqCheckpoint checkpoint = SdnqCheckpoint::open(sdnq::test::data_dir() / "codecs" / "uint4");
  const auto weight = checkpoint.quantized_weight("linear", LayerKind::linear, Shape{64, 128});
  const auto wide = dequantize(weight, DType::f32, ScalePrecision::as_stored);
  const auto reference_file =
      sdnq::io::SafetensorsFile::open(sdnq::test::data_dir() / "codecs" / "uint4" / "reference.safetensors");
  const auto reference = reference_file.tensor("dequantized.linear.weight");
  // fp32 output of the same arithmetic, rounded once to bf16 here, equals the bf16 output
  const auto narrow = dequantize(weight, DType::bf16, ScalePrecision::as_stored);
  const auto* ours = wide.data_as<float>();
  for (std::int64_t i = 0; i < wide.numel(); ++i) REQUIRE(sdnq::bf16(ours[i]).bits == narrow.data_as<sdnq::bf16>()[i].bits);
  CHECK(count_beyond_one_ulp(narrow, reference) == 0);
}
