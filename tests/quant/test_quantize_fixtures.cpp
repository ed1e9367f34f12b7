// quantize_weight against the reference fixtures: quantizing `original.<layer>.weight` with the case's
// config reproduces the stored weight / scale / zero_point (ties may fall differently in a vanishing
// fraction of elements); SVD cases are compared by quality (the reference's factors are random).
#include <cmath>
#include <filesystem>
#include <map>

#include "test_quantize_support.hpp"
#include "sdnq_catch.hpp"

namespace {

struct Totals {
  std::int64_t elements = 0, mismatches = 0, cases = 0;
};

double relative_error(sdnq::TensorView approximation, sdnq::TensorView original) {
  double error = 0, norm = 0;
  for (std::int64_t i = 0; i < original.numel(); ++i) {
    const double a = sdnq::quant::detail::load_float_from(approximation.dtype(), approximation.data(), i);
    const double o = sdnq::quant::detail::load_float_from(original.dtype(), original.data(), i);
    error += (a - o) * (a - o);
    norm += o * o;
  }
  return std::sqrt(error / norm);
}

// Checks one case; returns the (elements, mismatches) of the stored weight codes.
void check_case(const std::filesystem::path& folder, Totals& totals) {
  using namespace sdnq;
  const auto fixture = test::FixtureCase::open(folder);
  for (const auto& layer : test::quantized_layers(fixture)) {
    const std::string name = layer.prefix + ".weight";
    INFO("case " << folder.filename().string() << ", layer " << name);
    const TensorView original = fixture.reference.tensor("original." + name);
    const auto options = quant::resolve_layer_options(fixture.config, name, layer.kind);
    quant::QuantizeControls controls;
    controls.layer_name = layer.prefix;
    const auto ours = quant::quantize_weight(original, layer.kind, options, original.dtype(), controls);
    const TensorView stored_weight = fixture.model.tensor(name);
    const bool has_svd = fixture.model.contains(layer.prefix + ".svd_up");
    REQUIRE(ours.svd_up.has_value() == has_svd);
    REQUIRE(ours.zero_point.has_value() == fixture.model.contains(layer.prefix + ".zero_point"));
    if (has_svd) {
      // quality: relative error of our dense weight within 1.2x the reference's
      const auto dense = quant::dequantize(ours.view(), original.dtype(), quant::ScalePrecision::reference_compatible);
      const double ours_error = relative_error(dense, original);
      const double reference_error = relative_error(fixture.reference.tensor("dequantized." + name), original);
      INFO("relative error ours " << ours_error << ", reference " << reference_error);
      CHECK(ours_error <= 1.2 * reference_error);
      CHECK(ours.svd_up->shape() == fixture.model.tensor(layer.prefix + ".svd_up").shape());
      CHECK(ours.svd_down->dtype() == fixture.model.tensor(layer.prefix + ".svd_down").dtype());
      CHECK(ours.weight.shape() == stored_weight.shape());
      CHECK(ours.scale.shape() == fixture.model.tensor(layer.prefix + ".scale").shape());
      continue;
    }
    const std::int64_t weight_mismatches = test::count_element_mismatches(ours.weight, stored_weight, name);
    const std::int64_t scale_mismatches =
        test::count_element_mismatches(ours.scale, fixture.model.tensor(layer.prefix + ".scale"), "scale");
    std::int64_t zero_point_mismatches = 0;
    if (ours.zero_point)
      zero_point_mismatches = test::count_element_mismatches(
          *ours.zero_point, fixture.model.tensor(layer.prefix + ".zero_point"), "zero_point");
    INFO("weight mismatches " << weight_mismatches << " of " << stored_weight.numel() << ", scale " << scale_mismatches
                              << ", zero_point " << zero_point_mismatches);
    CHECK(scale_mismatches == 0);
    CHECK(zero_point_mismatches == 0);
    CHECK(weight_mismatches * 1000 < stored_weight.numel());
    totals.elements += stored_weight.numel();
    totals.mismatches += weight_mismatches;
  }
  ++totals.cases;
}

}  // namespace

TEST_CASE("quantize_weight reproduces the project's fixture cases", "[quant][quantize][fixtures]") {
  Totals totals;
  for (const auto& entry : std::filesystem::directory_iterator(sdnq::test::local_codec_fixtures()))
    if (entry.is_directory()) check_case(entry.path(), totals);
  INFO("tie mismatches: " << totals.mismatches << " of " << totals.elements << " stored elements");
  CHECK(totals.cases >= 10);
  CHECK(totals.mismatches * 1000 < totals.elements);
  CHECK(std::filesystem::exists(sdnq::test::local_codec_fixtures() / "float8_e4m3fnuz"));
  CHECK(std::filesystem::exists(sdnq::test::local_codec_fixtures() / "float8_e8m0fnu"));
  WARN("local fixtures: " << totals.cases << " cases, " << totals.mismatches << " mismatching stored elements of "
                          << totals.elements);
}

TEST_CASE("quantize_weight reproduces every shared reference case", "[quant][quantize][fixtures][.shared]") {
  const auto root = sdnq::test::shared_codec_fixtures();
  if (!std::filesystem::exists(root)) {
    WARN("shared fixtures not present at " << root << "; skipped");
    return;
  }
  Totals totals;
  for (const auto& entry : std::filesystem::directory_iterator(root))
    if (entry.is_directory()) check_case(entry.path(), totals);
  WARN("shared fixtures: " << totals.cases << " cases, " << totals.mismatches << " mismatching stored elements of "
                           << totals.elements);
  CHECK(totals.mismatches * 1000 < totals.elements);
}
