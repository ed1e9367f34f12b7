// Fused producers at the nn level (issue #5): nn::gpu::Linear reading the codes a LayerNorm wrote itself
// (bits of the plain path, clear errors for layers that cannot read them), and whole models with their
// fused producers on and off (set_fused_quantization): the same output bits.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_models_fused_support.hpp"

namespace {

namespace fs = std::filesystem;

std::optional<fs::path> qmm_case(const std::string& prefix) {
  for (const fs::path& folder : sdnq::test::model_fixture_cases(prefix))
    if (folder.filename().string() == prefix + "int8-qmm") return folder;
  return std::nullopt;
}

void check_model_run(const sdnq::test::FusedModelRun& run) {
  INFO("fused reader sites " << run.fused_sites << ", workspace " << run.workspace_bytes << " bytes, peak fused "
                             << run.peak_fused << ", peak plain " << run.peak_plain);
  CHECK(run.fused_sites > 0);
  CHECK(run.identical);
  CHECK(run.finite);
  CHECK(run.peak_fused <= run.workspace_bytes);
  CHECK(run.peak_plain <= run.workspace_bytes);
}

}  // namespace

TEST_CASE("gpu Linear: codes written by a fused LayerNorm give the bits of the plain path; misfits are clear errors",
          "[cuda][gpu_models][linear][fused]") {
  for (const std::int64_t tokens : {48, 300, 16}) {
    INFO("tokens " << tokens);
    const sdnq::test::FusedInputRun run = sdnq::test::compare_fused_input(tokens);
    CHECK(run.mixed_readers_refused);
    CHECK(run.fused == (tokens >= 32));  // fewer rows take the dequantized path: no codes
    CHECK((run.fused_bytes > 0) == (tokens >= 32));
    if (!run.fused) continue;
    REQUIRE(run.identical.size() == 2);
    CHECK(run.identical[0]);
    CHECK(run.identical[1]);
    REQUIRE(run.misuse.size() == 3);
    INFO("weight_only: " << run.misuse[0]);
    CHECK(sdnq::test::contains(run.misuse[0], "Linear 'weight_only'"));
    CHECK(sdnq::test::contains(run.misuse[0], "only as 8-bit codes"));
    INFO("bf16_scales: " << run.misuse[1]);
    CHECK(sdnq::test::contains(run.misuse[1], "Linear 'bf16_scales'"));
    CHECK(sdnq::test::contains(run.misuse[1], "scales in the activation dtype"));
    INFO("e4m3: " << run.misuse[2]);
    CHECK(sdnq::test::contains(run.misuse[2], "Linear 'e4m3'"));
    CHECK(sdnq::test::contains(run.misuse[2], "float8_e4m3fn"));
  }
}

TEST_CASE("gpu FluxTransformer2DModel: fused producers give the bits of bf16 rows quantized separately",
          "[cuda][gpu_models][fused]") {
  const auto folder = qmm_case("flux-");
  if (!folder) {
    WARN("no flux-int8-qmm fixture case (../shared absent): skipped");
    return;
  }
  // 64 image and 40 text tokens: every stream reaches the 8-bit GEMM (the fixture's 16 + 6 do not).
  check_model_run(sdnq::test::compare_flux_fused(*folder, 64, 40));
}

TEST_CASE("gpu SD3Transformer2DModel: fused producers give the bits of bf16 rows quantized separately",
          "[cuda][gpu_models][fused]") {
  const auto folder = qmm_case("sd3-");
  if (!folder) {
    WARN("no sd3-int8-qmm fixture case (../shared absent): skipped");
    return;
  }
  check_model_run(sdnq::test::compare_sd3_fused(*folder));
}

TEST_CASE("gpu UNet2DConditionModel: fused producers give the bits of bf16 rows quantized separately",
          "[cuda][gpu_models][unet][fused]") {
  const auto folder = qmm_case("unet_sdxl-");
  if (!folder) {
    WARN("no unet_sdxl-int8-qmm fixture case (../shared absent): skipped");
    return;
  }
  check_model_run(sdnq::test::compare_unet_fused(*folder));
}
