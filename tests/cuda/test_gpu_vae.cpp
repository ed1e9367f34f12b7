// GPU AutoencoderKL against the reference fixtures' bf16 outputs (fixtures/sdnq-reference/models/vae_sd-*
// and vae_flux-*, README "models": bf16 compute within relative L2 3e-2), decode and encode, and its
// bad-input errors.
#include <filesystem>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_vae_support.hpp"

namespace {

namespace fs = std::filesystem;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

fs::path vae_fixture_models() { return sdnq::test::reference_fixtures_dir() / "models"; }

std::vector<fs::path> vae_cases() { return sdnq::test::model_fixture_cases("vae_"); }

}  // namespace

TEST_CASE("gpu AutoencoderKL matches the reference bf16 output", "[cuda][gpu_models]") {
  const std::vector<fs::path> cases = vae_cases();
  if (cases.empty()) {
    WARN("no vae_* fixture cases under " << vae_fixture_models().string() << " (../shared absent): skipped");
    return;
  }
  CHECK(cases.size() == 10);  // vae_sd-* and vae_flux-*: bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    const std::string name = folder.filename().string();
    INFO(name);
    const sdnq::test::GpuVaeRun run = sdnq::test::run_vae_case_on_gpu(folder);
    INFO("decode workspace " << run.decode_workspace_bytes << " bytes, peak " << run.decode_peak << "; encode "
                             << run.encode_workspace_bytes << ", peak " << run.encode_peak);
    WARN(name << " rel L2: decoded " << run.decoded << ", encoded_mean " << run.encoded_mean << ", encoded_logvar "
              << run.encoded_logvar);
    REQUIRE(run.decoded >= 0.0);
    REQUIRE(run.encoded_mean >= 0.0);
    CHECK(run.decoded <= bf16_tolerance);
    CHECK(run.encoded_mean <= bf16_tolerance);
    CHECK(run.encoded_logvar <= bf16_tolerance);
    CHECK(run.decode_peak <= run.decode_workspace_bytes);
    CHECK(run.encode_peak <= run.encode_workspace_bytes);
    CHECK(run.any_conv_quantized == (name.find("bf16") == std::string::npos));
  }
}

TEST_CASE("gpu AutoencoderKL: bad inputs are clear errors", "[cuda][gpu_models]") {
  const fs::path folder = vae_fixture_models() / "vae_sd-bf16";
  if (!fs::exists(folder)) {
    WARN("no vae_sd-bf16 fixture case under " << vae_fixture_models().string() << ": skipped");
    return;
  }
  using sdnq::test::contains;
  using sdnq::test::message_of;
  const auto misuse = [&](const char* which) { return [&folder, which] { sdnq::test::run_vae_misuse(folder, which); }; };
  const std::string channels = message_of<sdnq::ShapeError>(misuse("latent channels"));
  CHECK(contains(channels, "AutoencoderKL (GPU)"));
  CHECK(contains(channels, "latents must be [N, 4, H, W], got [1, 5, 8, 8]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("latents rank 3")), "latents must be [N, 4, H, W], got [4, 8, 8]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("f32 latents")), "latents must be a contiguous BF16 tensor on"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("host latents")), "got BF16 on cpu"));
  CHECK(contains(message_of<sdnq::ResourceError>(misuse("workspace too small")), "too small for"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("image not a multiple of the factor")),
                 "multiples of the downsampling factor 2"));
}
