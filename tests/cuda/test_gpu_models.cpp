// GPU models against the reference fixtures' bf16 outputs (fixtures/sdnq-reference/models/, README:
// bf16 compute within relative L2 3e-2), and their bad-input errors.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_models_support.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

// The same lookup as the host model tests (tests/nn/test_flux.cpp): $SDNQ_FIXTURES or ../shared.
fs::path fixture_models() {
  const char* configured = std::getenv("SDNQ_FIXTURES");
  const fs::path root =
      configured != nullptr ? fs::path(configured) : sdnq::test::data_dir() / "../../../shared/fixtures/sdnq-reference";
  return root / "models";
}

std::vector<fs::path> cases_named(const std::string& prefix) {
  std::vector<fs::path> cases;
  const fs::path folder = fixture_models();
  if (!fs::exists(folder)) return cases;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

void check_clip_cases(const std::string& prefix, const std::string& pooled_output) {
  const std::vector<fs::path> cases = cases_named(prefix);
  if (cases.empty()) {
    WARN("no " << prefix << "* fixture cases under " << fixture_models().string() << " (../shared absent): skipped");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuModelRun run = sdnq::test::run_clip_case_on_gpu(folder);
    std::string kinds;
    for (const auto& kind : run.linear_kinds) kinds += kind + " ";
    INFO("Linear kinds: " << kinds);
    INFO("workspace " << run.workspace_bytes << " bytes, peak " << run.workspace_peak);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    REQUIRE(run.outputs.size() == 3);
    std::vector<std::string> names;
    for (const auto& output : run.outputs) {
      INFO(output.name << " rel L2 " << output.rel_l2);
      names.push_back(output.name);
      CHECK(output.rel_l2 <= bf16_tolerance);
      UNSCOPED_INFO(folder.filename().string() << " " << output.name << " rel L2 " << output.rel_l2);
    }
    CHECK(std::find(names.begin(), names.end(), pooled_output) != names.end());
    CHECK(std::find(names.begin(), names.end(), "last_hidden_state") != names.end());
    CHECK(std::find(names.begin(), names.end(), "penultimate_hidden_state") != names.end());
    const bool quantized = folder.filename().string().find("bf16") == std::string::npos;
    const bool any_quantized_kind = std::any_of(run.linear_kinds.begin(), run.linear_kinds.end(),
                                                [](const std::string& kind) { return kind != "dense"; });
    CHECK(any_quantized_kind == quantized);
  }
}

Tensor ids_of(Shape shape, std::int64_t value) {
  Tensor ids = Tensor::empty(shape, DType::i64);
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids.data_as<std::int64_t>()[i] = value + i % 7;
  return ids;
}

}  // namespace

TEST_CASE("gpu CLIPTextModel (clip_l) matches the reference bf16 outputs", "[cuda][gpu_models]") {
  check_clip_cases("clip_l-", "pooled");
}

TEST_CASE("gpu CLIPTextModelWithProjection (clip_g) matches the reference bf16 outputs", "[cuda][gpu_models]") {
  check_clip_cases("clip_g-", "text_embeds");
}

TEST_CASE("gpu CLIP text model: bad input ids are clear errors", "[cuda][gpu_models]") {
  const std::vector<fs::path> cases = cases_named("clip_l-bf16");
  if (cases.empty()) {
    WARN("no clip_l-bf16 fixture case under " << fixture_models().string() << ": skipped");
    return;
  }
  const fs::path folder = cases.front();
  SECTION("ids of rank 1") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{12}, 5)); });
    CHECK(sdnq::test::contains(message, "input_ids must be [batch, tokens]"));
    CHECK(sdnq::test::contains(message, "[12]"));
  }
  SECTION("more tokens than the position table") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{1, 78}, 5)); });
    CHECK(sdnq::test::contains(message, "78 tokens"));
    CHECK(sdnq::test::contains(message, "max_position_embeddings = 77"));
  }
  SECTION("an id outside the vocabulary") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{1, 8}, 995)); });
    CHECK(sdnq::test::contains(message, "outside the vocabulary [0, 1000)"));
  }
  SECTION("ids left on the host") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_clip_on_gpu_with_ids(folder, ids_of(Shape{1, 8}, 5), true); });
    CHECK(sdnq::test::contains(message, "on cuda:0"));
  }
}
