// AutoencoderKL against the reference fixtures: decode(latents) and encode(image) (mean, logvar) of
// the vae_* cases, float32 compute, rel L2 < 1e-4 against output_fp32.*. The copies in tests/data/models
// run everywhere; the full set runs where the fixtures are (../shared beside the checkout, or SDNQ_FIXTURES).
#include <chrono>
#include <string>

#include "sdnq/nn/models/vae.hpp"
#include "test_unet_vae_support.hpp"

namespace {

using sdnq::test::model_cases;

void check_vae_case(const std::filesystem::path& folder, double tolerance = 1e-4) {
  const auto start = std::chrono::steady_clock::now();
  const sdnq::nn::ModelCaseResult result = sdnq::nn::run_model_case(folder);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(folder.filename().string() << " ran in " << seconds << " s");
  REQUIRE(result.outputs.size() == 3);  // decoded, encoded_mean, encoded_logvar
  for (const auto& output : result.outputs) {
    INFO(output.name << ": rel L2 " << output.rel_l2);
    CHECK(output.rel_l2 < tolerance);
  }
}

}  // namespace

TEST_CASE("AutoencoderKL: the fixture copies in tests/data match the reference", "[nn][vae][fixtures]") {
  const auto cases = model_cases(sdnq::test::data_dir() / "models", "vae_");
  REQUIRE(cases.size() >= 2);  // vae_sd (quant convs, 4 channels) and vae_flux (16 channels, no quant convs)
  for (const auto& folder : cases) check_vae_case(folder);
}

TEST_CASE("AutoencoderKL: every vae_* case of the full reference fixtures, when present", "[nn][vae][fixtures]") {
  const auto cases = model_cases(sdnq::test::full_fixture_models(), "vae_");
  if (cases.empty()) {
    WARN("reference fixtures not found at " << sdnq::test::full_fixture_models().string()
                                            << "; ran the tests/data copies only");
    return;
  }
  CHECK(cases.size() == 10);
  // Includes the uint4-svd cases, whose decoder.conv_out [3, 32, 3, 3] carries an SVD branch of rank 3
  // (its output channels, below the configured svd_rank 8): the layout clamps the rank.
  for (const auto& folder : cases) check_vae_case(folder);
}

TEST_CASE("AutoencoderKL: encode and decode shapes, and the latent scaling helpers", "[nn][vae]") {
  using namespace sdnq;
  const auto vae = nn::AutoencoderKL::load(test::data_dir() / "models/vae_flux-fp8");
  CHECK(vae.config().latent_channels == 16);
  CHECK(vae.config().downsampling_factor() == 2);
  CHECK(vae.config().shift_factor == Approx(0.1159));
  Tensor image = Tensor::zeros({2, 3, 8, 12}, DType::f32);
  const nn::AutoencoderKLPosterior posterior = vae.encode(image);
  CHECK(posterior.mean.shape() == Shape{2, 16, 4, 6});
  CHECK(posterior.logvar.shape() == Shape{2, 16, 4, 6});
  CHECK(vae.decode(posterior.mean).shape() == Shape{2, 3, 8, 12});
  // latent = (mean - shift) * scale and back, computed here independently.
  Tensor mean = Tensor::empty({1, 16, 1, 1}, DType::f32);
  for (int c = 0; c < 16; ++c) mean.data_as<float>()[c] = 0.25f * static_cast<float>(c) - 1.0f;
  const Tensor latents = vae.to_latents(mean);
  const Tensor back = vae.from_latents(latents);
  for (int c = 0; c < 16; ++c) {
    const float expected = (mean.data_as<float>()[c] - 0.1159f) * 0.3611f;
    CHECK(latents.data_as<float>()[c] == Approx(expected).epsilon(1e-6));
    CHECK(back.data_as<float>()[c] == Approx(mean.data_as<float>()[c]).margin(1e-6));
  }
}
