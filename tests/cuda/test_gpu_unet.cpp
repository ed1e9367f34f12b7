// GPU UNet2DConditionModel against the reference fixtures' bf16 outputs (fixtures/sdnq-reference/models/
// unet_sdxl-*, README "models": bf16 compute within relative L2 3e-2), and its bad-input errors.
#include <filesystem>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_unet_support.hpp"

namespace {

namespace fs = std::filesystem;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

}  // namespace

TEST_CASE("gpu UNet2DConditionModel matches the reference bf16 output", "[cuda][gpu_models][unet]") {
  const std::vector<fs::path> cases = sdnq::test::model_fixture_cases("unet_");
  if (cases.empty()) {
    WARN("no unet_* fixture cases under " << sdnq::test::reference_fixtures_dir().string() << ": skipped");
    return;
  }
  CHECK(cases.size() == 5);  // unet_sdxl-*: bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    const std::string name = folder.filename().string();
    INFO(name);
    const sdnq::test::GpuUnetRun run = sdnq::test::run_unet_case_on_gpu(folder);
    WARN(name << " rel L2 " << run.rel_l2 << ", workspace " << run.workspace_bytes << " bytes, peak "
              << run.workspace_peak);
    CHECK(run.output_finite);
    CHECK(run.rel_l2 >= 0.0);
    CHECK(run.rel_l2 <= bf16_tolerance);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    // The SDNQ cases quantize the transformer Linears; which kernel family runs them depends on the format.
    std::string expected = "dense";
    if (name.find("int8-qmm") != std::string::npos) expected = "quantized_matmul";
    else if (name.find("bf16") == std::string::npos) expected = "quantized";
    int matching = 0;
    for (const std::string& kind : run.linear_kinds) matching += kind == expected;
    INFO("Linears " << run.linear_kinds.size() << ", of kind " << expected << ": " << matching);
    CHECK(matching > 0);
  }
}

TEST_CASE("gpu UNet2DConditionModel: bad inputs are clear errors", "[cuda][gpu_models][unet]") {
  const fs::path folder = sdnq::test::reference_fixtures_dir() / "models" / "unet_sdxl-bf16";
  if (!fs::exists(folder)) {
    WARN("no unet_sdxl-bf16 fixture case: skipped");
    return;
  }
  using sdnq::test::contains;
  using sdnq::test::message_of;
  const auto misuse = [&](const char* which) {
    return [&folder, which] { sdnq::test::run_unet_misuse(folder, which); };
  };
  const std::string channels = message_of<sdnq::ShapeError>(misuse("sample channels"));
  CHECK(contains(channels, "UNet2DConditionModel (GPU).forward: sample must be [batch, 4 (in_channels), height, width]"));
  CHECK(contains(channels, "got [2, 5, 16, 16]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("sample size")),
                 "sample height and width must be positive multiples of the downsampling factor 2, got [2, 4, 17, 16]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("f32 sample")), "sample must be a contiguous BF16 tensor on"));
  const std::string width = message_of<sdnq::ShapeError>(misuse("context width"));
  CHECK(contains(width, "encoder_hidden_states must be [2, tokens, 64] (batch of sample, cross_attention_dim)"));
  CHECK(contains(width, "got [2, 7, 72]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("no time_ids")),
                 "addition_embed_type \"text_time\" needs text_embeds and time_ids"));
  const std::string missing = message_of<sdnq::FormatError>(misuse("missing tensor"));
  CHECK(contains(missing, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"));
  CHECK(contains(missing, "missing"));
}
