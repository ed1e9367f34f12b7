// UNet2DConditionModel refuses bad input, broken checkpoints and unsupported configs with typed errors
// naming the model and the argument, tensor or config key.
#include <string>

#include "sdnq/nn/models/unet.hpp"
#include "test_unet_vae_support.hpp"

using namespace sdnq;
using Catch::Matchers::Contains;

namespace {

std::filesystem::path unet_case() { return test::data_dir() / "models/unet_sdxl-uint4-svd"; }

struct Inputs {  // the fixture's shapes: sample [2, 4, 16, 16], context [2, 7, 64], text [2, 32], ids [2, 6]
  Tensor sample = Tensor::zeros({2, 4, 16, 16}, DType::f32);
  Tensor timestep = Tensor::zeros({2}, DType::f32);
  Tensor context = Tensor::zeros({2, 7, 64}, DType::f32);
  Tensor text_embeds = Tensor::zeros({2, 32}, DType::f32);
  Tensor time_ids = Tensor::zeros({2, 6}, DType::f32);
};

Tensor forward(const nn::UNet2DConditionModel& unet, const Inputs& in) {
  const TensorView text = in.text_embeds, ids = in.time_ids;
  return unet.forward(in.sample, in.timestep, in.context, &text, &ids);
}

}  // namespace

TEST_CASE("UNet2DConditionModel: forward arguments of the wrong rank, channels or size", "[nn][unet][errors]") {
  const auto unet = nn::UNet2DConditionModel::load(unet_case());
  const std::string model = "UNet2DConditionModel at " + unet_case().string();
  {
    Inputs in;
    CHECK(forward(unet, in).shape() == Shape{2, 4, 16, 16});
    in.timestep = Tensor::zeros({1}, DType::f32);  // one timestep for the whole batch is fine
    CHECK(forward(unet, in).shape() == Shape{2, 4, 16, 16});
  }
  SECTION("sample of rank 3") {
    Inputs in;
    in.sample = Tensor::zeros({4, 16, 16}, DType::f32);
    CHECK_THROWS_MATCHES(forward(unet, in), ShapeError,
                         Catch::Matchers::Message(model + ": sample must be [B, 4, H, W], got [4, 16, 16]"));
  }
  SECTION("sample with 3 channels") {
    Inputs in;
    in.sample = Tensor::zeros({2, 3, 16, 16}, DType::f32);
    CHECK_THROWS_WITH(forward(unet, in), Contains("sample must be [B, 4, H, W], got [2, 3, 16, 16]"));
  }
  SECTION("sample size not divisible by the downsampling factor") {
    Inputs in;
    in.sample = Tensor::zeros({2, 4, 15, 16}, DType::f32);
    CHECK_THROWS_WITH(forward(unet, in), Contains("multiples of the downsampling factor 2, got [2, 4, 15, 16]"));
  }
  SECTION("timesteps for another batch") {
    Inputs in;
    in.timestep = Tensor::zeros({3}, DType::f32);
    CHECK_THROWS_WITH(forward(unet, in), Contains("timestep must be a scalar, [1] or [B = 2], got [3]"));
  }
  SECTION("encoder_hidden_states of the wrong width") {
    Inputs in;
    in.context = Tensor::zeros({2, 7, 32}, DType::f32);
    CHECK_THROWS_WITH(forward(unet, in),
                      Contains("encoder_hidden_states must be [B, L, cross_attention_dim = 64], got [2, 7, 32]"));
  }
  SECTION("time_ids that do not fill projection_class_embeddings_input_dim") {
    Inputs in;
    in.time_ids = Tensor::zeros({2, 5}, DType::f32);
    CHECK_THROWS_WITH(forward(unet, in), Contains("but projection_class_embeddings_input_dim is 80"));
  }
  SECTION("text_time conditioning left out") {
    Inputs in;
    CHECK_THROWS_WITH(unet.forward(in.sample, in.timestep, in.context),
                      Contains("addition_embed_type \"text_time\" needs text_embeds and time_ids"));
  }
  SECTION("an integer timestep") {
    Inputs in;
    in.timestep = Tensor::zeros({2}, DType::i64);
    CHECK_THROWS_WITH(forward(unet, in), Contains("timestep must be a host F32 tensor"));
  }
}

TEST_CASE("UNet2DConditionModel: missing and misshapen tensors are named", "[nn][unet][errors]") {
  SECTION("a missing tensor") {
    const test::ScratchCase scratch(unet_case());
    scratch.edit_weights([](const std::string& name, TensorView tensor, std::vector<Tensor>&) -> std::optional<TensorView> {
      if (name == "up_blocks.0.resnets.1.conv_shortcut.bias") return std::nullopt;
      return tensor;
    });
    CHECK_THROWS_MATCHES(nn::UNet2DConditionModel::load(scratch.folder()), FormatError,
                         Catch::Matchers::Message(scratch.folder().string() +
                                                  ": tensor 'up_blocks.0.resnets.1.conv_shortcut.bias' is missing "
                                                  "from diffusion_pytorch_model.safetensors"));
  }
  SECTION("a dense tensor of the wrong shape") {
    const test::ScratchCase scratch(unet_case());
    scratch.edit_weights([](const std::string& name, TensorView tensor, std::vector<Tensor>&) -> std::optional<TensorView> {
      if (name == "conv_in.weight") return tensor.reshaped({32, 4, 9, 1});
      return tensor;
    });
    CHECK_THROWS_WITH(nn::UNet2DConditionModel::load(scratch.folder()),
                      Contains("tensor 'conv_in.weight' has shape [32, 4, 9, 1], but the config implies [32, 4, 3, 3]"));
  }
  SECTION("a config that disagrees with the tensors") {
    const test::ScratchCase scratch(unet_case());
    scratch.edit_config([](nlohmann::json& config) { config["cross_attention_dim"] = 48; });
    CHECK_THROWS_WITH(nn::UNet2DConditionModel::load(scratch.folder()), Contains("attn2.to_k"));
  }
  SECTION("transformer blocks the config does not have") {
    const test::ScratchCase scratch(unet_case());
    scratch.edit_config([](nlohmann::json& config) { config["transformer_layers_per_block"] = {1, 1}; });
    CHECK_THROWS_WITH(nn::UNet2DConditionModel::load(scratch.folder()),
                      Contains("tensor(s) that UNet2DConditionModel does not use: down_blocks.1.attentions.0."
                               "transformer_blocks.1."));
  }
}

TEST_CASE("UNet2DConditionModel: unsupported config values are named with their value", "[nn][unet][errors]") {
  const test::ScratchCase scratch(unet_case());
  const std::string model = "UNet2DConditionModel at " + scratch.folder().string();
  SECTION("class_embed_type") {
    scratch.edit_config([](nlohmann::json& config) { config["class_embed_type"] = "timestep"; });
    CHECK_THROWS_MATCHES(
        nn::UNet2DConditionModel::load(scratch.folder()), UnsupportedError,
        Catch::Matchers::Message(model + ": config key \"class_embed_type\" = \"timestep\" is not supported (only null)"));
  }
  SECTION("an up block type") {
    scratch.edit_config([](nlohmann::json& config) { config["up_block_types"][0] = "AttnUpBlock2D"; });
    CHECK_THROWS_MATCHES(nn::UNet2DConditionModel::load(scratch.folder()), UnsupportedError,
                         Catch::Matchers::Message(model + ": config key \"up_block_types\" = \"AttnUpBlock2D\" is not "
                                                          "supported: only UpBlock2D and CrossAttnUpBlock2D"));
  }
  SECTION("an addition embedding type") {
    scratch.edit_config([](nlohmann::json& config) { config["addition_embed_type"] = "text_image"; });
    CHECK_THROWS_WITH(nn::UNet2DConditionModel::load(scratch.folder()),
                      Contains("\"addition_embed_type\" = \"text_image\" is not supported"));
  }
  SECTION("num_attention_heads") {
    scratch.edit_config([](nlohmann::json& config) { config["num_attention_heads"] = 4; });
    CHECK_THROWS_AS(nn::UNet2DConditionModel::load(scratch.folder()), UnsupportedError);
  }
  SECTION("a mid block type") {
    scratch.edit_config([](nlohmann::json& config) { config["mid_block_type"] = "UNetMidBlock2DSimpleCrossAttn"; });
    CHECK_THROWS_WITH(nn::UNet2DConditionModel::load(scratch.folder()),
                      Contains("\"mid_block_type\" = \"UNetMidBlock2DSimpleCrossAttn\" is not supported"));
  }
  SECTION("another model class") {
    scratch.edit_config([](nlohmann::json& config) { config["_class_name"] = "UNet2DModel"; });
    CHECK_THROWS_WITH(nn::UNet2DConditionModel::load(scratch.folder()),
                      Contains("config.json has _class_name \"UNet2DModel\""));
  }
}
