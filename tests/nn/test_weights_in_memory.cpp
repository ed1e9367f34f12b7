// WeightLoader over an InMemoryComponent: dense and quantized tensors shared between names, the used /
// unused bookkeeping, and the errors naming the component and the tensor.
#include <cmath>
#include <memory>

#include "nn_test_support.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/quantize.hpp"

using namespace sdnq;
using sdnq::test::random_tensor;

namespace {

// y [M, N] = x [M, K] · w [N, K]ᵀ + bias [N], in double.
std::vector<double> affine(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const std::int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  std::vector<double> y(static_cast<std::size_t>(m * n));
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t c = 0; c < n; ++c) {
      double sum = bias.data_as<float>()[c];
      for (std::int64_t i = 0; i < k; ++i) sum += double(x.data_as<float>()[r * k + i]) * w.data_as<float>()[c * k + i];
      y[static_cast<std::size_t>(r * n + c)] = sum;
    }
  return y;
}

std::shared_ptr<const Tensor> shared(Tensor t) { return std::make_shared<const Tensor>(std::move(t)); }

quant::QuantizedTensors quantized_int8(const Tensor& weight) {
  quant::LayerOptions options;
  options.weights_type = &format::storage_type("int8");
  return quant::quantize_weight(weight, quant::LayerKind::linear, options, DType::f32, 7);
}

}  // namespace

TEST_CASE("in-memory component: two layers share one dense weight and compute x·Wᵀ + b", "[nn][weights]") {
  const Tensor weight = random_tensor({5, 8}, 1), bias = random_tensor({5}, 2), x = random_tensor({3, 8}, 3);
  nn::InMemoryComponent component;
  component.label = "probe (random weights)";
  component.config = {{"dim", 8}};
  const auto shared_weight = shared(random_tensor({5, 8}, 1));
  for (const char* layer : {"a", "b"}) {
    component.dense[std::string(layer) + ".weight"] = shared_weight;
    component.dense[std::string(layer) + ".bias"] = shared(random_tensor({5}, 2));
  }
  component.dense["spare"] = shared(random_tensor({2}, 4));
  nn::WeightLoader weights = nn::WeightLoader::from_memory(std::move(component));
  CHECK(weights.is_in_memory());
  CHECK_FALSE(weights.is_sdnq());
  CHECK(weights.config().at("dim") == 8);
  CHECK(weights.raw("a.weight").data() == weights.raw("b.weight").data());  // one tensor, two names

  const std::vector<double> expected = affine(x, weight, bias);
  for (const char* layer : {"a", "b"}) {
    const Tensor y = nn::Linear::load(weights, layer, 8, 5).forward(x);
    CHECK(sdnq::test::max_scaled_error(y, expected) < 1e-6);
  }
  CHECK(weights.unused_tensors() == std::vector<std::string>{"spare"});
  CHECK_THROWS_MATCHES(weights.require_all_used("Probe"), FormatError,
                       Catch::Matchers::Message("probe (random weights): 1 tensor(s) that Probe does not use: spare"));
}

TEST_CASE("in-memory component: a quantized layer is served as the quantizer wrote it", "[nn][weights]") {
  const Tensor weight = random_tensor({6, 16}, 11), x = random_tensor({2, 16}, 12);
  const auto layer = std::make_shared<const quant::QuantizedTensors>(quantized_int8(weight));
  nn::InMemoryComponent component;
  component.label = "probe";
  component.quantized["blocks.0.proj"] = layer;
  component.quantized["blocks.1.proj"] = layer;
  component.dense["blocks.0.proj.bias"] = shared(Tensor::zeros({6}, DType::f32));
  nn::WeightLoader weights = nn::WeightLoader::from_memory(std::move(component));
  CHECK(weights.is_sdnq());
  CHECK(weights.contains("blocks.1.proj.scale"));
  CHECK_FALSE(weights.contains("blocks.1.proj.zero_point"));  // int8 is symmetric

  const auto loaded = weights.quantized("blocks.1.proj", quant::LayerKind::linear, Shape{6, 16});
  REQUIRE(loaded.has_value());
  CHECK(loaded->name == "blocks.1.proj");
  CHECK(loaded->weight.data() == layer->weight.data());
  CHECK(loaded->scale.data() == layer->scale.data());
  CHECK(weights.unused_tensors() == std::vector<std::string>{"blocks.0.proj.bias", "blocks.0.proj.scale",
                                                             "blocks.0.proj.weight"});
  CHECK_FALSE(weights.quantized("blocks.0.absent", quant::LayerKind::linear, Shape{6, 16}).has_value());

  // The module dequantizes what it is given: x · dequantize(codes)ᵀ, dequantized here independently.
  const Tensor dequantized =
      quant::dequantize(layer->view(), DType::f32, quant::ScalePrecision::reference_compatible);
  const Tensor y = nn::Linear::load(weights, "blocks.0.proj", 16, 6).forward(x);
  CHECK(sdnq::test::max_scaled_error(y, affine(x, dequantized, Tensor::zeros({6}, DType::f32))) < 1e-6);
  CHECK(weights.unused_tensors().empty());
  // And the codes stay close to the weight they came from (int8, one scale per row).
  double worst = 0.0;
  for (std::int64_t i = 0; i < weight.numel(); ++i)
    worst = std::max(worst, double(std::abs(dequantized.data_as<float>()[i] - weight.data_as<float>()[i])));
  CHECK(worst < 1.0 / 127.0);
}

TEST_CASE("in-memory component: missing, misshapen and colliding tensors are typed errors", "[nn][weights]") {
  const auto layer = std::make_shared<const quant::QuantizedTensors>(quantized_int8(random_tensor({4, 16}, 21)));
  nn::InMemoryComponent component;
  component.label = "FLUX probe";
  component.quantized["proj"] = layer;
  component.dense["norm.weight"] = shared(random_tensor({3}, 22));
  nn::WeightLoader weights = nn::WeightLoader::from_memory(component);

  CHECK_THROWS_MATCHES(weights.dense("norm.bias"), FormatError,
                       Catch::Matchers::Message("FLUX probe: tensor 'norm.bias' is missing from FLUX probe"));
  CHECK_THROWS_AS(weights.dense("norm.weight", Shape{4}), ShapeError);
  CHECK_THROWS_MATCHES(weights.quantized("proj", quant::LayerKind::linear, Shape{16, 4}), ShapeError,
                       Catch::Matchers::Message("FLUX probe: quantized layer 'proj' is a Linear of shape [4, 16], but "
                                                "the model expects a Linear of shape [16, 4]"));

  component.dense["proj.scale"] = shared(random_tensor({4, 1}, 23));
  CHECK_THROWS_MATCHES(nn::WeightLoader::from_memory(component), FormatError,
                       Catch::Matchers::Message("FLUX probe: tensor 'proj.scale' is given both dense and as part of "
                                                "quantized layer 'proj'"));
  component.dense.erase("proj.scale");
  component.dense["empty"] = nullptr;
  CHECK_THROWS_AS(nn::WeightLoader::from_memory(component), FormatError);
}
