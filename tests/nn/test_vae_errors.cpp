// AutoencoderKL refuses bad input with typed errors naming the model and the argument or tensor.
#include <string>

#include "sdnq/nn/models/vae.hpp"
#include "test_unet_vae_support.hpp"

using namespace sdnq;
using Catch::Matchers::Contains;

namespace {
std::filesystem::path vae_case() { return test::data_dir() / "models/vae_sd-int8"; }
}  // namespace

TEST_CASE("AutoencoderKL: latents and images of the wrong rank, channels or size", "[nn][vae][errors]") {
  const auto vae = nn::AutoencoderKL::load(vae_case());
  const Tensor rank3 = Tensor::zeros({4, 8, 8}, DType::f32);
  CHECK_THROWS_MATCHES(vae.decode(rank3), ShapeError, Catch::Matchers::Message(
      "AutoencoderKL at " + vae_case().string() + ": latents must be [N, 4, H, W], got [4, 8, 8]"));
  const Tensor three_channels = Tensor::zeros({1, 3, 8, 8}, DType::f32);
  CHECK_THROWS_WITH(vae.decode(three_channels), Contains("latents must be [N, 4, H, W], got [1, 3, 8, 8]"));
  const Tensor latents_f64 = Tensor::zeros({1, 4, 8, 8}, DType::f64);
  CHECK_THROWS_WITH(vae.decode(latents_f64), Contains("latents must be a host F32 tensor"));
  const Tensor odd_image = Tensor::zeros({1, 3, 9, 8}, DType::f32);
  CHECK_THROWS_WITH(vae.encode(odd_image),
                    Contains("image height and width must be multiples of the downsampling factor 2, got [1, 3, 9, 8]"));
  const Tensor gray_image = Tensor::zeros({1, 1, 8, 8}, DType::f32);
  CHECK_THROWS_AS(vae.encode(gray_image), ShapeError);
}

TEST_CASE("AutoencoderKL: a tensor missing from the checkpoint is named", "[nn][vae][errors]") {
  const test::ScratchCase scratch(vae_case());
  scratch.edit_weights([](const std::string& name, TensorView tensor, std::vector<Tensor>&) -> std::optional<TensorView> {
    if (name == "decoder.mid_block.attentions.0.to_k.bias") return std::nullopt;
    return tensor;
  });
  CHECK_THROWS_MATCHES(nn::AutoencoderKL::load(scratch.folder()), FormatError,
                       Catch::Matchers::Message(scratch.folder().string() +
                                                ": tensor 'decoder.mid_block.attentions.0.to_k.bias' is missing from "
                                                "diffusion_pytorch_model.safetensors"));
}

TEST_CASE("AutoencoderKL: tensors disagreeing with the config are named", "[nn][vae][errors]") {
  SECTION("latent_channels 8 does not fit the quantized encoder.conv_out") {
    const test::ScratchCase scratch(vae_case());
    scratch.edit_config([](nlohmann::json& config) { config["latent_channels"] = 8; });
    CHECK_THROWS_WITH(nn::AutoencoderKL::load(scratch.folder()),
                      Contains("encoder.conv_out.weight has shape [8, 64, 3, 3]") &&
                          Contains("expected [16, 64, 3, 3]"));
  }
  SECTION("a dense tensor of the wrong shape") {
    const test::ScratchCase scratch(vae_case());
    scratch.edit_weights([](const std::string& name, TensorView tensor, std::vector<Tensor>&) -> std::optional<TensorView> {
      if (name == "encoder.conv_in.weight") return tensor.reshaped({32, 3, 1, 9});
      return tensor;
    });
    CHECK_THROWS_MATCHES(nn::AutoencoderKL::load(scratch.folder()), ShapeError,
                         Catch::Matchers::Message(scratch.folder().string() +
                                                  ": tensor 'encoder.conv_in.weight' has shape [32, 3, 1, 9], but the "
                                                  "config implies [32, 3, 3, 3]"));
  }
  SECTION("a tensor the config has no place for") {
    const test::ScratchCase scratch(vae_case());
    scratch.edit_config([](nlohmann::json& config) { config["use_post_quant_conv"] = false; });
    CHECK_THROWS_WITH(nn::AutoencoderKL::load(scratch.folder()),
                      Contains("tensor(s) that AutoencoderKL does not use: post_quant_conv"));
  }
}

TEST_CASE("AutoencoderKL: unsupported or invalid config values are named", "[nn][vae][errors]") {
  const test::ScratchCase scratch(vae_case());
  SECTION("an attention down block") {
    scratch.edit_config([](nlohmann::json& config) { config["down_block_types"][1] = "AttnDownEncoderBlock2D"; });
    CHECK_THROWS_MATCHES(nn::AutoencoderKL::load(scratch.folder()), UnsupportedError,
                         Catch::Matchers::Message("AutoencoderKL at " + scratch.folder().string() +
                                                  ": config key \"down_block_types\" = AttnDownEncoderBlock2D is not "
                                                  "supported: only DownEncoderBlock2D"));
  }
  SECTION("another model class") {
    scratch.edit_config([](nlohmann::json& config) { config["_class_name"] = "AutoencoderTiny"; });
    CHECK_THROWS_AS(nn::AutoencoderKL::load(scratch.folder()), UnsupportedError);
  }
  SECTION("a block list of the wrong length") {
    scratch.edit_config([](nlohmann::json& config) { config["block_out_channels"] = {32, 64, 64}; });
    CHECK_THROWS_AS(nn::AutoencoderKL::load(scratch.folder()), ConfigError);
  }
  SECTION("a string where a number belongs") {
    scratch.edit_config([](nlohmann::json& config) { config["layers_per_block"] = "1"; });
    CHECK_THROWS_WITH(nn::AutoencoderKL::load(scratch.folder()),
                      Contains("config key \"layers_per_block\" must hold integers, got string \"1\""));
  }
}
