// GPU FluxTransformer2DModel against the reference fixtures' bf16 output (fixtures/sdnq-reference/models/
// flux-*, README "models": bf16 compute within relative L2 3e-2), and its bad-input errors.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_flux_support.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

fs::path flux_fixture_models() { return sdnq::test::reference_fixtures_dir() / "models"; }

std::vector<fs::path> flux_cases() { return sdnq::test::model_fixture_cases("flux-"); }

Tensor filled(const Shape& shape, float value) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = value;
  return t;
}

}  // namespace

TEST_CASE("gpu FluxTransformer2DModel matches the reference bf16 output", "[cuda][gpu_models]") {
  const std::vector<fs::path> cases = flux_cases();
  if (cases.empty()) {
    WARN("no flux-* fixture cases under " << flux_fixture_models().string() << " (../shared absent): skipped");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuFluxRun run = sdnq::test::run_flux_case_on_gpu(folder);
    std::string kinds;
    for (const auto& kind : run.linear_kinds) kinds += kind + " ";
    INFO("Linear kinds: " << kinds);
    INFO("workspace " << run.workspace_bytes << " bytes, peak " << run.workspace_peak);
    INFO("output rel L2 " << run.rel_l2);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    CHECK(run.rel_l2 <= bf16_tolerance);
    WARN(folder.filename().string() << " output rel L2 " << run.rel_l2);
    const bool quantized = folder.filename().string().find("bf16") == std::string::npos;
    const bool any_quantized_kind = std::any_of(run.linear_kinds.begin(), run.linear_kinds.end(),
                                                [](const std::string& kind) { return kind != "dense"; });
    CHECK(any_quantized_kind == quantized);
    INFO("reordered img_ids: output moved by rel L2 " << run.rel_l2_reordered_ids);
    CHECK(run.rel_l2_reordered_ids > 1e-3);
    CHECK(run.repeat_is_identical);
  }
}

TEST_CASE("gpu FluxTransformer2DModel: bad inputs are clear errors", "[cuda][gpu_models]") {
  const fs::path folder = flux_fixture_models() / "flux-bf16";
  if (!fs::exists(folder)) {
    WARN("no flux-bf16 fixture case under " << flux_fixture_models().string() << ": skipped");
    return;
  }
  sdnq::test::FluxInputs in = sdnq::test::flux_case_inputs(folder);
  const std::int64_t image_tokens = in.hidden_states.size(1), channels = in.hidden_states.size(2);
  SECTION("latents whose token count disagrees with img_ids") {
    in.hidden_states = filled(Shape{1, image_tokens - 4, channels}, 0.5f);
    const auto message =
        sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_flux_on_gpu_with(folder, in); });
    CHECK(sdnq::test::contains(message, "img_ids has " + std::to_string(image_tokens) + " rows"));
    CHECK(sdnq::test::contains(message, "hidden_states has " + std::to_string(image_tokens - 4) + " tokens"));
  }
  SECTION("latents of rank 2") {
    in.hidden_states = filled(Shape{image_tokens, channels}, 0.5f);
    const auto message =
        sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_flux_on_gpu_with(folder, in); });
    CHECK(sdnq::test::contains(message, "hidden_states must be [batch, image tokens, 16]"));
  }
  SECTION("img_ids of rank 1") {
    in.img_ids = filled(Shape{image_tokens * 3}, 1.0f);
    const auto message =
        sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_flux_on_gpu_with(folder, in); });
    CHECK(sdnq::test::contains(message, "img_ids must be [tokens, 3]"));
  }
  SECTION("pooled_projections of rank 3") {
    in.pooled_projections = filled(Shape{1, 1, 32}, 0.5f);
    const auto message =
        sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_flux_on_gpu_with(folder, in); });
    CHECK(sdnq::test::contains(message, "pooled_projections must be [1, 32]"));
  }
  SECTION("guidance missing for a guidance-distilled config") {
    in.guidance = Tensor();
    const auto message =
        sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_flux_on_gpu_with(folder, in); });
    CHECK(sdnq::test::contains(message, "guidance is required"));
  }
}
