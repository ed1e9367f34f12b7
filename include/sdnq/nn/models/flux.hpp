#pragma once
// FluxTransformer2DModel (diffusers transformer_flux.py) on the CPU reference path, f32 compute over
// any checkpoint the nn::Linear layers accept (dense or SDNQ-quantized).
//
//   hidden_states [B, L_img, in_channels] --x_embedder--> image stream
//   encoder_hidden_states [B, L_txt, joint_attention_dim] --context_embedder--> text stream
//   temb = time_text_embed(1000·timestep, [1000·guidance], pooled_projections)
//   RoPE from concat(txt_ids, img_ids) [L_txt + L_img, axes]
//   num_layers double-stream blocks, then num_single_layers single-stream blocks on [text; image],
//   then norm_out (AdaLayerNormContinuous) and proj_out on the image tokens -> [B, L_img, p²·out_channels]
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#define SDNQ_NN_RUN_CASE_FLUX 1
#include "sdnq/nn/model_conformance.hpp"

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/models/detail/dit_config.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/models/detail/dit_flux_blocks.hpp"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/models/detail/dit_ops.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn {

// The constructor arguments of FluxTransformer2DModel; absent keys take diffusers' defaults (FLUX.1).
struct FluxTransformerConfig {
  std::int64_t patch_size = 1;
  std::int64_t in_channels = 64;
  std::int64_t out_channels = 64;  // null in the file: equal to in_channels
  std::int64_t num_layers = 19;
  std::int64_t num_single_layers = 38;
  std::int64_t attention_head_dim = 128;
  std::int64_t num_attention_heads = 24;
  std::int64_t joint_attention_dim = 4096;
  std::int64_t pooled_projection_dim = 768;
  bool guidance_embeds = false;
  std::vector<std::int64_t> axes_dims_rope{16, 56, 56};

  std::int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }

  static FluxTransformerConfig from_json(const nlohmann::json& json) {
    constexpr std::string_view model = "FluxTransformer2DModel";
    detail::require_class_name(json, model);
    FluxTransformerConfig c;
    c.patch_size = detail::config_int(json, model, "patch_size", c.patch_size);
    c.in_channels = detail::config_int(json, model, "in_channels", c.in_channels);
    c.out_channels = detail::config_int(json, model, "out_channels", c.in_channels);
    c.num_layers = detail::config_int(json, model, "num_layers", c.num_layers, 0);
    c.num_single_layers = detail::config_int(json, model, "num_single_layers", c.num_single_layers, 0);
    c.attention_head_dim = detail::config_int(json, model, "attention_head_dim", c.attention_head_dim);
    c.num_attention_heads = detail::config_int(json, model, "num_attention_heads", c.num_attention_heads);
    c.joint_attention_dim = detail::config_int(json, model, "joint_attention_dim", c.joint_attention_dim);
    c.pooled_projection_dim = detail::config_int(json, model, "pooled_projection_dim", c.pooled_projection_dim);
    c.guidance_embeds = detail::config_bool(json, model, "guidance_embeds", c.guidance_embeds);
    c.axes_dims_rope = detail::config_int_list(json, model, "axes_dims_rope", c.axes_dims_rope);
    const std::int64_t rope_width = std::accumulate(c.axes_dims_rope.begin(), c.axes_dims_rope.end(), std::int64_t{0});
    bool all_even_positive = !c.axes_dims_rope.empty();
    for (auto axis_dim : c.axes_dims_rope) all_even_positive = all_even_positive && axis_dim > 0 && axis_dim % 2 == 0;
    SDNQ_REQUIRE(all_even_positive && rope_width == c.attention_head_dim, UnsupportedError,
                 "{}: config key \"axes_dims_rope\" = {} is not supported: the entries must be positive, even and sum "
                 "to attention_head_dim = {}",
                 model, json.value("axes_dims_rope", nlohmann::json::array()).dump(), c.attention_head_dim);
    return c;
  }
};

class FluxTransformer2DModel {
 public:
  static constexpr std::string_view class_name = "FluxTransformer2DModel";

  struct Modules {
    Linear x_embedder;        // in_channels -> D
    Linear context_embedder;  // joint_attention_dim -> D
    detail::TimeTextEmbedding time_text_embed;
    std::vector<detail::FluxDoubleBlock> transformer_blocks;
    std::vector<detail::FluxSingleBlock> single_transformer_blocks;
    detail::AdaptiveNorm norm_out;  // AdaLayerNormContinuous: scale, shift
    Linear proj_out;                // D -> patch_size² · out_channels
  };

  FluxTransformer2DModel(FluxTransformerConfig config, Modules modules)
      : config_(std::move(config)), modules_(std::move(modules)) {}

  // Reads config.json and every weight of a component folder (dense or SDNQ).
  static FluxTransformer2DModel load(const std::filesystem::path& folder) {
    return detail::with_load_context(class_name, folder, [&] {
      WeightLoader weights = WeightLoader::open(folder);
      FluxTransformerConfig config = FluxTransformerConfig::from_json(weights.config());
      const std::int64_t dim = config.inner_dim();
      const detail::AttentionShape shape{dim, config.num_attention_heads, config.attention_head_dim};
      Modules modules{
          Linear::load(weights, "x_embedder", config.in_channels, dim),
          Linear::load(weights, "context_embedder", config.joint_attention_dim, dim),
          detail::TimeTextEmbedding::load(weights, dim, config.pooled_projection_dim, config.guidance_embeds),
          {},
          {},
          detail::AdaptiveNorm::load(weights, "norm_out", dim, 2),
          Linear::load(weights, "proj_out", dim, config.patch_size * config.patch_size * config.out_channels)};
      for (int i = 0; i < config.num_layers; ++i)
        modules.transformer_blocks.push_back(detail::FluxDoubleBlock::load(weights, i, shape));
      for (int i = 0; i < config.num_single_layers; ++i)
        modules.single_transformer_blocks.push_back(detail::FluxSingleBlock::load(weights, i, shape));
      weights.require_all_used(class_name);
      return FluxTransformer2DModel(std::move(config), std::move(modules));
    });
  }

  const FluxTransformerConfig& config() const { return config_; }

  // hidden_states [B, L_img, in_channels], encoder_hidden_states [B, L_txt, joint_attention_dim],
  // pooled_projections [B, pooled_projection_dim], timestep [B] (as the pipeline passes it: t / 1000),
  // img_ids [L_img, axes] and txt_ids [L_txt, axes] (a leading batch axis is accepted; its first entry is
  // used, as diffusers does), guidance [B] (required iff guidance_embeds) -> [B, L_img, p²·out_channels].
  Tensor forward(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                 const TensorView& pooled_projections, const TensorView& timestep, const TensorView& img_ids,
                 const TensorView& txt_ids, const TensorView* guidance = nullptr) const {
    check_arguments(hidden_states, encoder_hidden_states, pooled_projections, guidance);
    const std::int64_t batch = hidden_states.size(0);
    const std::int64_t image_length = hidden_states.size(1), text_length = encoder_hidden_states.size(1);
    const TensorView image_ids = ids_argument(img_ids, "img_ids", image_length, "hidden_states");
    const TensorView text_ids = ids_argument(txt_ids, "txt_ids", text_length, "encoder_hidden_states");

    Tensor timestep_scaled = detail::per_sample_values(timestep, batch, class_name, "timestep");
    scale_by_1000_(timestep_scaled);
    Tensor guidance_scaled;
    if (guidance != nullptr) {
      guidance_scaled = detail::per_sample_values(*guidance, batch, class_name, "guidance");
      scale_by_1000_(guidance_scaled);
    }
    const Tensor temb =
        modules_.time_text_embed.forward(timestep_scaled, guidance != nullptr ? &guidance_scaled.view() : nullptr,
                                         pooled_projections);  // [B, D]
    const Tensor temb_silu = detail::silu_of(temb);

    const TensorView id_parts[] = {text_ids, image_ids};
    const detail::RotaryEmbedding rope = detail::rotary_embedding(concat(id_parts, 0), config_.axes_dims_rope);

    Tensor image = modules_.x_embedder.forward(hidden_states);                  // [B, L_img, D]
    Tensor context = modules_.context_embedder.forward(encoder_hidden_states);  // [B, L_txt, D]
    for (const auto& block : modules_.transformer_blocks) block.forward(image, context, temb_silu, rope);

    Tensor tokens = detail::concat_tokens(context, image);  // [B, L_txt + L_img, D]
    for (const auto& block : modules_.single_transformer_blocks) block.forward(tokens, temb_silu, rope);

    const Tensor image_tokens = detail::slice_tokens(tokens, text_length, image_length);
    const detail::Modulation out_modulation = modules_.norm_out.modulation(temb_silu);
    const Tensor normed = detail::modulated_norm(image_tokens, out_modulation[detail::continuous_shift],
                                                 out_modulation[detail::continuous_scale]);
    return modules_.proj_out.forward(normed);
  }

 private:
  static void scale_by_1000_(Tensor& values) {
    for (std::int64_t i = 0; i < values.numel(); ++i) values.data_as<float>()[i] *= 1000.0f;
  }

  void check_arguments(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                       const TensorView& pooled_projections, const TensorView* guidance) const {
    detail::require_argument(hidden_states, 3, class_name, "hidden_states",
                             fmt::format("[batch, image tokens, {}]", config_.in_channels));
    const std::int64_t batch = hidden_states.size(0);
    SDNQ_REQUIRE(hidden_states.size(2) == config_.in_channels, ShapeError,
                 "{}.forward: hidden_states must be [batch, image tokens, {}] (in_channels), got {}", class_name,
                 config_.in_channels, hidden_states.shape().to_string());
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
    SDNQ_REQUIRE(config_.guidance_embeds == (guidance != nullptr), ShapeError,
                 "{}.forward: guidance {} (config guidance_embeds = {})", class_name,
                 config_.guidance_embeds ? "is required" : "must not be passed", config_.guidance_embeds);
  }

  // img_ids / txt_ids as [tokens, axes]; `tokens` must match the stream they position.
  TensorView ids_argument(const TensorView& ids, std::string_view name, std::int64_t tokens,
                          std::string_view stream) const {
    const auto axes = static_cast<std::int64_t>(config_.axes_dims_rope.size());
    SDNQ_REQUIRE(ids.rank() == 2 || ids.rank() == 3, ShapeError, "{}.forward: {} must be [tokens, {}], got {}",
                 class_name, name, axes, ids.shape().to_string());
    const TensorView rows = ids.rank() == 3 ? ids[0] : ids;
    detail::require_argument(rows, 2, class_name, name, fmt::format("[tokens, {}]", axes));
    SDNQ_REQUIRE(rows.size(1) == axes, ShapeError,
                 "{}.forward: {} must be [tokens, {}] (one column per axes_dims_rope entry), got {}", class_name, name,
                 axes, ids.shape().to_string());
    SDNQ_REQUIRE(rows.size(0) == tokens, ShapeError, "{}.forward: {} has {} rows but {} has {} tokens; they must agree",
                 class_name, name, rows.size(0), stream, tokens);
    return rows;
  }

  FluxTransformerConfig config_;
  Modules modules_;
};

// The conformance runner (nn/model_conformance.hpp): forward on the case's input.* tensors.
inline ModelCaseResult run_case_flux(const ModelCase& model_case) {
  const FluxTransformer2DModel model = FluxTransformer2DModel::load(model_case.folder);
  std::optional<TensorView> guidance;
  if (model_case.has_input("guidance")) guidance = model_case.input("guidance");
  std::vector<std::pair<std::string, Tensor>> outputs;
  outputs.emplace_back(
      "output",
      model.forward(model_case.input("hidden_states"), model_case.input("encoder_hidden_states"),
                    model_case.input("pooled_projections"), model_case.input("timestep"), model_case.input("img_ids"),
                    model_case.input("txt_ids"), guidance ? &*guidance : nullptr));
  return compare_outputs(model_case, outputs);
}

}  // namespace sdnq::nn
