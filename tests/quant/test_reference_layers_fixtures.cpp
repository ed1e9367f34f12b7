// The reference layers against the Python reference's own outputs (tests/data/layers/<case>, copied
// from fixtures/sdnq-reference/codecs): output.<layer> through each case's code path (rel L2 < 1e-2)
// and output_fp32.linear, fp32 math over the bf16 dequantized weight (rel L2 < 1e-5).
#include <cmath>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/format/packing.hpp"  // layout.hpp needs it (not yet included there)
#include "sdnq/io/safetensors.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/layout.hpp"
#include "sdnq/quant/reference_layers.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;
using namespace sdnq::quant;

double relative_l2(TensorView actual, TensorView expected) {
  REQUIRE(actual.shape() == expected.shape());
  const auto a = sdnq::quant::detail::to_float_vector(actual, "actual");
  const auto e = sdnq::quant::detail::to_float_vector(expected, "expected");
  double error = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    error += (static_cast<double>(a[i]) - e[i]) * (static_cast<double>(a[i]) - e[i]);
    norm += static_cast<double>(e[i]) * e[i];
  }
  return std::sqrt(error / norm);
}

struct FixtureCase {
  std::filesystem::path folder;
  SdnqConfig config;
  io::SafetensorsFile model, reference;

  explicit FixtureCase(const std::string& name)
      : folder(test::data_dir() / "layers" / name),
        config(SdnqConfig::from_json(nlohmann::json::parse(std::ifstream(folder / "config.json"))["quantization_config"],
                                     name + "/config.json")),
        model(io::SafetensorsFile::open(folder / "diffusion_pytorch_model.safetensors")),
        reference(io::SafetensorsFile::open(folder / "reference.safetensors")) {}

  bool has(const std::string& tensor) const {
    for (const auto& name : model.names())
      if (name == tensor) return true;
    return false;
  }

  QuantizedWeight layer(const std::string& name, LayerKind kind) const {
    const Shape original = reference.tensor("original." + name + ".weight").shape();
    QuantizedWeight weight;
    weight.layout = derive_layout(original, kind, resolve_layer_options(config, name + ".weight", kind));
    weight.name = name;
    weight.weight = model.tensor(name + ".weight");
    weight.scale = model.tensor(name + ".scale");
    if (has(name + ".zero_point")) weight.zero_point = model.tensor(name + ".zero_point");
    if (has(name + ".svd_up")) {
      weight.svd_up = model.tensor(name + ".svd_up");
      weight.svd_down = model.tensor(name + ".svd_down");
    }
    return weight;
  }
};

const char* const linear_cases[] = {"int8-qmm",      "uint8-qmm",     "int8-svd-qmm",   "uint4-svd-qmm",
                                    "float8_e4m3fn-qmm", "int8-conv-qmm", "uint8-conv-qmm", "uint2-conv-qmm",
                                    "uint8",         "int4-embed",    "int4-qmm",       "float4_e2m1fn-qmm"};

}  // namespace

TEST_CASE("linear_forward reproduces the reference's outputs", "[quant][layers][fixtures]") {
  for (const char* name : linear_cases) {
    INFO("case " << name);
    const FixtureCase fixture(name);
    const QuantizedWeight weight = fixture.layer("linear", LayerKind::linear);
    const TensorView input = fixture.reference.tensor("input.linear");
    const TensorView bias = fixture.model.tensor("linear.bias");

    const Tensor output = linear_forward(input, weight, bias, MatmulMode::quantized_matmul, DType::bf16);
    CHECK(relative_l2(output, fixture.reference.tensor("output.linear")) < 1e-2);

    const Tensor output_fp32 =
        linear_forward(input, weight, bias, MatmulMode::dequantize_then_matmul, DType::f32, DType::bf16);
    CHECK(relative_l2(output_fp32, fixture.reference.tensor("output_fp32.linear")) < 1e-5);

    // The fixture input has 5 tokens (below 32): the quantized path must equal the dense path here.
    const Tensor dense = linear_forward(input, weight, bias, MatmulMode::dequantize_then_matmul, DType::bf16);
    CHECK(relative_l2(output, dense) == 0.0);
  }
}

TEST_CASE("conv2d_forward reproduces the reference's quantized-matmul conv outputs", "[quant][layers][fixtures]") {
  for (const char* name : {"int8-conv-qmm", "uint8-conv-qmm", "uint2-conv-qmm"}) {
    INFO("case " << name);
    const FixtureCase fixture(name);
    const QuantizedWeight weight = fixture.layer("conv", LayerKind::conv2d);
    REQUIRE(weight.layout.use_quantized_matmul);
    const TensorView input = fixture.reference.tensor("input.conv");  // [2, 32, 9, 7], 126 tokens: quantized path
    Conv2dParams params;
    params.padding = {1, 1};
    const Tensor output = conv2d_forward(input, weight, fixture.model.tensor("conv.bias"), params,
                                         MatmulMode::quantized_matmul, DType::bf16);
    const double quantized_error = relative_l2(output, fixture.reference.tensor("output.conv"));
    CHECK(quantized_error < 1e-2);
    const Tensor dense = conv2d_forward(input, weight, fixture.model.tensor("conv.bias"), params,
                                        MatmulMode::dequantize_then_matmul, DType::bf16);
    // Activation (and, for uint2, int8 re-quantization) noise separates the two paths: the reference's
    // quantized output must be closer to ours than to the dense result.
    CHECK(quantized_error < relative_l2(dense, fixture.reference.tensor("output.conv")));
  }
}

TEST_CASE("embedding_forward reproduces the reference's embedding outputs", "[quant][layers][fixtures]") {
  const FixtureCase fixture("int4-embed");
  const QuantizedWeight weight = fixture.layer("embed", LayerKind::embedding);
  const Tensor output = embedding_forward(fixture.reference.tensor("input.embed"), weight, DType::bf16);
  CHECK(relative_l2(output, fixture.reference.tensor("output.embed")) < 1e-2);
  // Rows are gathered from the dense table: bit-exact against the reference's dequantized weight rows.
  const TensorView ids = fixture.reference.tensor("input.embed");
  const TensorView table = fixture.reference.tensor("dequantized.embed.weight");
  const auto* id_values = ids.data_as<const std::int64_t>();
  const auto* rows = static_cast<const std::uint16_t*>(table.data());
  const auto* out = static_cast<const std::uint16_t*>(output.data());
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < ids.numel(); ++i)
    for (std::int64_t d = 0; d < 64; ++d) mismatches += out[i * 64 + d] != rows[id_values[i] * 64 + d];
  CHECK(mismatches == 0);
}
