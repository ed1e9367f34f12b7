#pragma once
// SD3Transformer2DModel (diffusers transformer_sd3.py: SD3 and SD3.5) on the CPU reference path,
// f32 compute over any checkpoint the nn::Linear layers accept (dense or SDNQ-quantized).
//
//   hidden_states [B, C, H, W] --pos_embed (p×p patches + center-cropped sincos table)--> [B, h·w, D]
//   encoder_hidden_states [B, L_txt, joint_attention_dim] --context_embedder--> [B, L_txt, D]
//   temb = timestep_embedder(sinusoid(timestep, 0..1000 scale)) + text_embedder(pooled_projections)
//   num_layers joint blocks ([image; text] attention, the last one context_pre_only),
//   norm_out + proj_out, unpatchify -> [B, out_channels, H, W]
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#define SDNQ_NN_RUN_CASE_SD3 1
#include "sdnq/nn/model_conformance.hpp"

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/models/detail/dit_config.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/models/detail/dit_ops.hpp"
#include "sdnq/nn/models/detail/dit_sd3_blocks.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn {

// The constructor arguments of SD3Transformer2DModel; absent keys take diffusers' defaults.
struct SD3TransformerConfig {
  std::int64_t sample_size = 128;
  std::int64_t patch_size = 2;
  std::int64_t in_channels = 16;
  std::int64_t num_layers = 18;
  std::int64_t attention_head_dim = 64;
  std::int64_t num_attention_heads = 18;
  std::int64_t joint_attention_dim = 4096;
  std::int64_t caption_projection_dim = 1152;
  std::int64_t pooled_projection_dim = 2048;
  std::int64_t out_channels = 16;
  std::int64_t pos_embed_max_size = 96;
  std::vector<std::int64_t> dual_attention_layers;
  bool qk_norm = false;  // "rms_norm" in the file; null = none

  std::int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  bool dual_attention(std::int64_t layer) const {
    return std::find(dual_attention_layers.begin(), dual_attention_layers.end(), layer) != dual_attention_layers.end();
  }

  static SD3TransformerConfig from_json(const nlohmann::json& json) {
    constexpr std::string_view model = "SD3Transformer2DModel";
    detail::require_class_name(json, model);
    SD3TransformerConfig c;
    c.sample_size = detail::config_int(json, model, "sample_size", c.sample_size);
    c.patch_size = detail::config_int(json, model, "patch_size", c.patch_size);
    c.in_channels = detail::config_int(json, model, "in_channels", c.in_channels);
    c.num_layers = detail::config_int(json, model, "num_layers", c.num_layers);
    c.attention_head_dim = detail::config_int(json, model, "attention_head_dim", c.attention_head_dim);
    c.num_attention_heads = detail::config_int(json, model, "num_attention_heads", c.num_attention_heads);
    c.joint_attention_dim = detail::config_int(json, model, "joint_attention_dim", c.joint_attention_dim);
    c.caption_projection_dim = detail::config_int(json, model, "caption_projection_dim", c.caption_projection_dim);
    c.pooled_projection_dim = detail::config_int(json, model, "pooled_projection_dim", c.pooled_projection_dim);
    c.out_channels = detail::config_int(json, model, "out_channels", c.in_channels);
    c.dual_attention_layers = detail::config_int_list(json, model, "dual_attention_layers", {});
    for (auto layer : c.dual_attention_layers)
      SDNQ_REQUIRE(layer >= 0 && layer < c.num_layers, UnsupportedError,
                   "{}: config key \"dual_attention_layers\" names layer {}, but num_layers = {}", model, layer,
                   c.num_layers);
    // A null pos_embed_max_size makes diffusers compute the table on the fly for each input size
    // (interpolated, not stored in the checkpoint); every released SD3 checkpoint stores it instead.
    const auto max_size = json.find("pos_embed_max_size");
    SDNQ_REQUIRE(max_size == json.end() || !max_size->is_null(), UnsupportedError,
                 "{}: config key \"pos_embed_max_size\" = null is not supported (the positional table must be "
                 "stored in the checkpoint)",
                 model);
    c.pos_embed_max_size = detail::config_int(json, model, "pos_embed_max_size", c.pos_embed_max_size);
    const auto qk_norm = json.find("qk_norm");
    if (qk_norm != json.end() && !qk_norm->is_null()) {
      SDNQ_REQUIRE(qk_norm->is_string() && qk_norm->get<std::string>() == "rms_norm", UnsupportedError,
                   "{}: config key \"qk_norm\" = {} is not supported (null or \"rms_norm\")", model, qk_norm->dump());
      c.qk_norm = true;
    }
    // The joint blocks run both streams at the model width, so the caption projection must produce it.
    SDNQ_REQUIRE(c.caption_projection_dim == c.inner_dim(), UnsupportedError,
                 "{}: config key \"caption_projection_dim\" = {} is not supported: it must equal num_attention_heads "
                 "x attention_head_dim = {}",
                 model, c.caption_projection_dim, c.inner_dim());
    return c;
  }
};

class SD3Transformer2DModel {
 public:
  static constexpr std::string_view class_name = "SD3Transformer2DModel";

  struct Modules {
    detail::PatchEmbedding pos_embed;
    detail::TimeTextEmbedding time_text_embed;
    Linear context_embedder;  // joint_attention_dim -> caption_projection_dim
    std::vector<detail::SD3JointBlock> transformer_blocks;
    detail::AdaptiveNorm norm_out;  // AdaLayerNormContinuous: scale, shift
    Linear proj_out;                // D -> patch_size² · out_channels
  };

  SD3Transformer2DModel(SD3TransformerConfig config, Modules modules)
      : config_(std::move(config)), modules_(std::move(modules)) {}

  // Reads config.json and every weight of a component folder (dense or SDNQ).
  static SD3Transformer2DModel load(const std::filesystem::path& folder) {
    return detail::with_load_context(class_name, folder, [&] {
      WeightLoader weights = WeightLoader::open(folder);
      SD3TransformerConfig config = SD3TransformerConfig::from_json(weights.config());
      const std::int64_t dim = config.inner_dim();
      const detail::AttentionShape shape{dim, config.num_attention_heads, config.attention_head_dim};
      Modules modules{
          detail::PatchEmbedding::load(weights, config.in_channels, dim, config.patch_size, config.pos_embed_max_size),
          detail::TimeTextEmbedding::load(weights, dim, config.pooled_projection_dim, false),
          Linear::load(weights, "context_embedder", config.joint_attention_dim, config.caption_projection_dim),
          {},
          detail::AdaptiveNorm::load(weights, "norm_out", dim, 2),
          Linear::load(weights, "proj_out", dim, config.patch_size * config.patch_size * config.out_channels)};
      for (int i = 0; i < config.num_layers; ++i)
        modules.transformer_blocks.push_back(detail::SD3JointBlock::load(
            weights, i, shape, config.qk_norm, i == config.num_layers - 1, config.dual_attention(i)));
      weights.require_all_used(class_name);
      return SD3Transformer2DModel(std::move(config), std::move(modules));
    });
  }

  const SD3TransformerConfig& config() const { return config_; }

  // hidden_states [B, in_channels, H, W] (H, W multiples of patch_size), encoder_hidden_states
  // [B, L_txt, joint_attention_dim], pooled_projections [B, pooled_projection_dim], timestep [B] on the
  // scheduler's 0..1000 scale -> [B, out_channels, H, W].
  Tensor forward(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                 const TensorView& pooled_projections, const TensorView& timestep) const {
    check_arguments(hidden_states, encoder_hidden_states, pooled_projections);
    const std::int64_t batch = hidden_states.size(0);
    const std::int64_t patch = config_.patch_size;
    const std::int64_t height = hidden_states.size(2) / patch, width = hidden_states.size(3) / patch;

    const Tensor timesteps = detail::per_sample_values(timestep, batch, class_name, "timestep");
    const Tensor temb = modules_.time_text_embed.forward(timesteps, nullptr, pooled_projections);  // [B, D]
    const Tensor temb_silu = detail::silu_of(temb);

    Tensor image = modules_.pos_embed.forward(hidden_states);                   // [B, h·w, D]
    Tensor context = modules_.context_embedder.forward(encoder_hidden_states);  // [B, L_txt, D]
    for (const auto& block : modules_.transformer_blocks) block.forward(image, context, temb_silu);

    const detail::Modulation out_modulation = modules_.norm_out.modulation(temb_silu);
    const Tensor normed = detail::modulated_norm(image, out_modulation[detail::continuous_shift],
                                                 out_modulation[detail::continuous_scale]);
    const Tensor patches = modules_.proj_out.forward(normed);  // [B, h·w, p·p·C] as (h, w, p, q, C)
    return unpatchify(patches, batch, height, width);
  }

 private:
  // [B, h·w, p·q·C] -> [B, C, h·p, w·q] (einsum "nhwpqc->nchpwq").
  Tensor unpatchify(const Tensor& patches, std::int64_t batch, std::int64_t height, std::int64_t width) const {
    const std::int64_t patch = config_.patch_size, channels = config_.out_channels;
    Tensor out = Tensor::empty({batch, channels, height * patch, width * patch}, DType::f32);
    const float* source = patches.data_as<const float>();
    float* destination = out.data_as<float>();
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t y = 0; y < height; ++y)
        for (std::int64_t x = 0; x < width; ++x)
          for (std::int64_t p = 0; p < patch; ++p)
            for (std::int64_t q = 0; q < patch; ++q)
              for (std::int64_t c = 0; c < channels; ++c)
                destination[((b * channels + c) * height * patch + y * patch + p) * width * patch + x * patch + q] =
                    source[(((b * height + y) * width + x) * patch + p) * patch * channels + q * channels + c];
    return out;
  }

  void check_arguments(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                       const TensorView& pooled_projections) const {
    const std::int64_t patch = config_.patch_size;
    detail::require_argument(hidden_states, 4, class_name, "hidden_states",
                             fmt::format("[batch, {}, height, width]", config_.in_channels));
    const std::int64_t batch = hidden_states.size(0);
    SDNQ_REQUIRE(hidden_states.size(1) == config_.in_channels, ShapeError,
                 "{}.forward: hidden_states must be [batch, {} (in_channels), height, width], got {}", class_name,
                 config_.in_channels, hidden_states.shape().to_string());
    SDNQ_REQUIRE(hidden_states.size(2) % patch == 0 && hidden_states.size(3) % patch == 0 &&
                     hidden_states.size(2) > 0 && hidden_states.size(3) > 0,
                 ShapeError,
                 "{}.forward: hidden_states height and width must be positive multiples of patch_size {}, got {}",
                 class_name, patch, hidden_states.shape().to_string());
    SDNQ_REQUIRE(hidden_states.size(2) / patch <= config_.pos_embed_max_size &&
                     hidden_states.size(3) / patch <= config_.pos_embed_max_size,
                 ShapeError,
                 "{}.forward: hidden_states {} is {} x {} patches, more than pos_embed_max_size {} in a direction",
                 class_name, hidden_states.shape().to_string(), hidden_states.size(2) / patch,
                 hidden_states.size(3) / patch, config_.pos_embed_max_size);
    detail::require_argument(encoder_hidden_states, 3, class_name, "encoder_hidden_states",
                             fmt::format("[batch, text tokens, {}]", config_.joint_attention_dim));
    SDNQ_REQUIRE(encoder_hidden_states.size(0) == batch && encoder_hidden_states.size(2) == config_.joint_attention_dim,
                 ShapeError,
                 "{}.forward: encoder_hidden_states must be [{}, text tokens, {}] (batch of hidden_states, "
                 "joint_attention_dim), got {}",
                 class_name, batch, config_.joint_attention_dim, encoder_hidden_states.shape().to_string());
    detail::require_argument(pooled_projections, 2, class_name, "pooled_projections",
                             fmt::format("[{}, {}]", batch, config_.pooled_projection_dim));
    SDNQ_REQUIRE(pooled_projections.size(0) == batch && pooled_projections.size(1) == config_.pooled_projection_dim,
                 ShapeError, "{}.forward: pooled_projections must be [{}, {}] (batch, pooled_projection_dim), got {}",
                 class_name, batch, config_.pooled_projection_dim, pooled_projections.shape().to_string());
  }

  SD3TransformerConfig config_;
  Modules modules_;
};

// The conformance runner (nn/model_conformance.hpp): forward on the case's input.* tensors.
inline ModelCaseResult run_case_sd3(const ModelCase& model_case) {
  const SD3Transformer2DModel model = SD3Transformer2DModel::load(model_case.folder);
  std::vector<std::pair<std::string, Tensor>> outputs;
  outputs.emplace_back("output",
                       model.forward(model_case.input("hidden_states"), model_case.input("encoder_hidden_states"),
                                     model_case.input("pooled_projections"), model_case.input("timestep")));
  return compare_outputs(model_case, outputs);
}

}  // namespace sdnq::nn
