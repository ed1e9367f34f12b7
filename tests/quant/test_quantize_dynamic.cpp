// Dynamic dtype selection (§3.11): threshold rule, ladder order, and the config entries recorded.
#include <algorithm>
#include <cmath>
#include <vector>

#include "sdnq/quant/dynamic.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq_catch.hpp"

namespace {

std::vector<float> uniform_weight(int count) {
  std::vector<float> values(static_cast<std::size_t>(count));
  unsigned state = 2024u;
  for (auto& v : values) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int>(state >> 8) % 20001 - 10000) / 10000.0f;
  }
  return values;
}

sdnq::quant::LayerOptions resolved_options_for(const char* dtype) {
  sdnq::quant::SdnqConfig config;
  config.weights_dtype = dtype;
  return sdnq::quant::resolve_layer_options(config, "blocks.0.linear.weight", sdnq::quant::LayerKind::linear);
}

std::ptrdiff_t ladder_position(std::string_view name) {
  const auto ladder = sdnq::format::weights_dtype_order();
  return std::find(ladder.begin(), ladder.end(), name) - ladder.begin();
}

}  // namespace

TEST_CASE("dynamic threshold defaults to 10^(-bits/2)", "[quant][dynamic]") {
  using sdnq::quant::dynamic_loss_threshold;
  CHECK(dynamic_loss_threshold(std::nullopt, sdnq::format::storage_type("uint4")) == Approx(1e-2));
  CHECK(dynamic_loss_threshold(std::nullopt, sdnq::format::storage_type("int8")) == Approx(1e-4));
  CHECK(dynamic_loss_threshold(-1.0, sdnq::format::storage_type("int8")) == Approx(1e-4));
  CHECK(dynamic_loss_threshold(0.5, sdnq::format::storage_type("int8")) == 0.5);
}

TEST_CASE("choose_dynamic_dtype keeps int8 for a smooth weight and climbs from int2", "[quant][dynamic]") {
  auto values = uniform_weight(64 * 256);
  const sdnq::TensorView weight(values.data(), sdnq::DType::f32, {64, 256});
  sdnq::quant::QuantizeControls controls;
  controls.layer_name = "blocks.0.linear";

  // int8 row-wise on uniform [-1, 1]: loss ≈ (amax/127)²/12 / (1/3) ≈ 1.6e-5 <= 1e-4, computed independently
  const auto int8 = sdnq::quant::choose_dynamic_dtype(
      weight, sdnq::quant::LayerKind::linear, resolved_options_for("int8"), sdnq::DType::f32, std::nullopt, controls);
  REQUIRE(int8.weights_dtype.has_value());
  CHECK(*int8.weights_dtype == "int8");
  CHECK(int8.loss == Approx(1.0 / (127.0 * 127.0) / 12.0 * 3.0).epsilon(0.15));

  // int2 cannot reach 1e-3 (its loss is ~0.1); the accepted candidate comes later on the ladder
  const auto climbed = sdnq::quant::choose_dynamic_dtype(
      weight, sdnq::quant::LayerKind::linear, resolved_options_for("int2"), sdnq::DType::f32, 1e-3, controls);
  REQUIRE(climbed.weights_dtype.has_value());
  CHECK(ladder_position(*climbed.weights_dtype) > ladder_position("int2"));
  CHECK(climbed.loss <= 1e-3);
  CHECK(climbed.tensors.has_value());

  sdnq::quant::SdnqConfig config;
  sdnq::quant::record_dynamic_choice(config, "blocks.0.linear.weight", climbed);
  sdnq::quant::record_dynamic_choice(config, "blocks.1.linear.weight", climbed);
  REQUIRE(config.modules_dtype_dict.size() == 1);
  CHECK(config.modules_dtype_dict[0].first == *climbed.weights_dtype);
  CHECK(config.modules_dtype_dict[0].second ==
        std::vector<std::string>{"blocks.0.linear.weight", "blocks.1.linear.weight"});
}

TEST_CASE("choose_dynamic_dtype leaves a layer unquantized when nothing passes", "[quant][dynamic]") {
  auto values = uniform_weight(32 * 64);
  const sdnq::TensorView weight(values.data(), sdnq::DType::f32, {32, 64});
  sdnq::quant::QuantizeControls controls;
  const auto none = sdnq::quant::choose_dynamic_dtype(
      weight, sdnq::quant::LayerKind::linear, resolved_options_for("float16"), sdnq::DType::f32, 1e-300, controls);
  CHECK_FALSE(none.weights_dtype.has_value());
  sdnq::quant::SdnqConfig config;
  sdnq::quant::record_dynamic_choice(config, "proj.weight", none);
  CHECK(config.modules_to_not_convert == std::vector<std::string>{"proj.weight"});
  CHECK(config.modules_dtype_dict.empty());
}
