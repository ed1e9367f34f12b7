#pragma once
// CLIPTextModel and CLIPTextModelWithProjection (transformers), float32 CPU path.
//
//   x = token_embedding[ids] + position_embedding[0..L)                      // [B, L, D]
//   per layer: x += out_proj(attn(LN1(x)), causal, scale head_dim^-0.5)
//              x += fc2(act(fc1(LN2(x))))         act: quick_gelu (CLIP-L), gelu (CLIP-G)
//   last_hidden_state = final_layer_norm(x); penultimate_hidden_state = the input of the last layer
//   pooled = last_hidden_state at the EOS position: argmax(ids) when eos_token_id == 2 (legacy configs),
//            else the first position equal to eos_token_id (position 0 when there is none, as torch's argmax
//            of an all-zero row gives); WithProjection: text_embeds = text_projection(pooled) (no bias).
// Keys may carry the `text_model.` prefix (WithProjection, most Hub checkpoints) or not (transformers 5
// writes CLIPTextModel without it); both load.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#define SDNQ_NN_RUN_CASE_CLIP 1
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/modules/attention.hpp"
#include "sdnq/nn/modules/embedding.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/modules/norms.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn {

struct ClipTextConfig {
  bool with_projection = false;
  std::int64_t vocab_size = 49408, hidden_size = 512, intermediate_size = 2048, projection_dim = 512;
  std::int64_t num_hidden_layers = 12, num_attention_heads = 8, max_position_embeddings = 77;
  std::int64_t eos_token_id = 2;
  float layer_norm_eps = 1e-5f;
  Activation hidden_act = Activation::quick_gelu;

  static ClipTextConfig from_json(const nlohmann::json& json, const std::string& source) {
    const std::string class_name = model_class_name(json, source);
    SDNQ_REQUIRE(class_name == "CLIPTextModel" || class_name == "CLIPTextModelWithProjection", UnsupportedError,
                 "{}: model class {} is not a CLIP text model (CLIPTextModel, CLIPTextModelWithProjection)", source,
                 class_name);
    ClipTextConfig config;
    config.with_projection = class_name == "CLIPTextModelWithProjection";
    config.vocab_size = config_int(json, "vocab_size", config.vocab_size, source);
    config.hidden_size = config_int(json, "hidden_size", config.hidden_size, source);
    config.intermediate_size = config_int(json, "intermediate_size", config.intermediate_size, source);
    config.projection_dim = config_int(json, "projection_dim", config.projection_dim, source);
    config.num_hidden_layers = config_int(json, "num_hidden_layers", config.num_hidden_layers, source);
    config.num_attention_heads = config_int(json, "num_attention_heads", config.num_attention_heads, source);
    config.max_position_embeddings =
        config_int(json, "max_position_embeddings", config.max_position_embeddings, source);
    config.eos_token_id = config_int(json, "eos_token_id", config.eos_token_id, source);
    config.layer_norm_eps = static_cast<float>(config_float(json, "layer_norm_eps", 1e-5, source));
    const std::string activation = config_string(json, "hidden_act", "quick_gelu", source);
    const auto hidden_act = activation_from_name(activation);
    SDNQ_REQUIRE(hidden_act.has_value(), UnsupportedError,
                 "{}: hidden_act \"{}\" is not supported (quick_gelu, gelu, "
                 "gelu_new, silu, relu)",
                 source, activation);
    config.hidden_act = *hidden_act;
    SDNQ_REQUIRE(config.num_hidden_layers >= 1 && config.num_attention_heads >= 1 &&
                     config.hidden_size % config.num_attention_heads == 0,
                 ConfigError, "{}: hidden_size {} must split into num_attention_heads {} and there must be layers",
                 source, config.hidden_size, config.num_attention_heads);
    return config;
  }
};

class ClipTextModel {
 public:
  struct Outputs {
    Tensor last_hidden_state;         // [B, L, D]
    Tensor penultimate_hidden_state;  // [B, L, D], before the final layer norm
    Tensor pooled;                    // [B, D]
    Tensor text_embeds;               // [B, projection_dim], WithProjection only
  };

  static ClipTextModel load(const std::filesystem::path& component_folder) {
    WeightLoader weights = WeightLoader::open(component_folder);
    return load(weights);
  }
  // From an open component (weights.report() then tells what the model took).
  static ClipTextModel load(WeightLoader& weights) {
    ClipTextModel model;
    model.config_ = ClipTextConfig::from_json(weights.config(), (weights.folder() / "config.json").string());
    const ClipTextConfig& c = model.config_;
    const std::string root = weights.contains("text_model.embeddings.token_embedding.weight") ? "text_model." : "";
    model.token_embedding_ = Embedding::load(weights, root + "embeddings.token_embedding", c.vocab_size, c.hidden_size);
    model.position_embedding_ =
        weights.dense(root + "embeddings.position_embedding.weight", Shape{c.max_position_embeddings, c.hidden_size});
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = root + "encoder.layers." + std::to_string(i) + ".";
      const std::int64_t d = c.hidden_size;
      model.layers_.push_back(Layer{
          LayerNorm::load(weights, p + "layer_norm1", d, c.layer_norm_eps, true),
          Linear::load(weights, p + "self_attn.q_proj", d, d), Linear::load(weights, p + "self_attn.k_proj", d, d),
          Linear::load(weights, p + "self_attn.v_proj", d, d), Linear::load(weights, p + "self_attn.out_proj", d, d),
          LayerNorm::load(weights, p + "layer_norm2", d, c.layer_norm_eps, true),
          Linear::load(weights, p + "mlp.fc1", d, c.intermediate_size),
          Linear::load(weights, p + "mlp.fc2", c.intermediate_size, d)});
    }
    model.final_layer_norm_ =
        LayerNorm::load(weights, root + "final_layer_norm", c.hidden_size, c.layer_norm_eps, true);
    if (c.with_projection)
      model.text_projection_ = Linear::load(weights, "text_projection", c.hidden_size, c.projection_dim, false);
    weights.require_all_used(c.with_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel",
                             [](std::string_view name) { return name.ends_with("embeddings.position_ids"); });
    return model;
  }

  const ClipTextConfig& config() const { return config_; }

  // input_ids: I64 or I32 [B, L] with L <= max_position_embeddings.
  Outputs forward(const TensorView& input_ids) const {
    const ClipTextConfig& c = config_;
    SDNQ_REQUIRE(input_ids.rank() == 2, ShapeError, "CLIP text model: input_ids must be [batch, tokens], got {}",
                 input_ids.shape().to_string());
    const std::int64_t batch = input_ids.size(0), tokens = input_ids.size(1), d = c.hidden_size;
    SDNQ_REQUIRE(tokens >= 1 && tokens <= c.max_position_embeddings, ShapeError,
                 "CLIP text model: {} tokens, but the position table holds max_position_embeddings = {}", tokens,
                 c.max_position_embeddings);
    const std::vector<std::int64_t> ids = token_ids(input_ids, "CLIP text model");
    Tensor x = token_embedding_.forward(input_ids);  // [B, L, D]
    {
      const TensorView positions =
          TensorView(position_embedding_.data(), DType::f32, Shape{tokens, d});  // the first L rows
      x = add(x, positions);
    }
    Tensor penultimate;
    const std::int64_t heads = c.num_attention_heads, head_dim = d / heads;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      if (i + 1 == layers_.size()) penultimate = x.clone();
      const Layer& layer = layers_[i];
      Tensor h = layer.layer_norm1.forward(x);
      Tensor q = split_heads(layer.q_proj.forward(h), heads);  // [B, H, L, hd]
      Tensor k = split_heads(layer.k_proj.forward(h), heads);
      Tensor v = split_heads(layer.v_proj.forward(h), heads);
      AttentionOptions options;
      options.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      options.causal = true;
      Tensor attended = merge_heads(attention(q, k, v, options));  // [B, L, D]
      x = add(x, layer.out_proj.forward(attended));
      h = layer.layer_norm2.forward(x);
      Tensor inner = layer.fc1.forward(h);
      activate_(inner, c.hidden_act);
      x = add(x, layer.fc2.forward(inner));
    }
    Outputs out;
    out.penultimate_hidden_state = std::move(penultimate);
    out.last_hidden_state = final_layer_norm_.forward(x);
    out.pooled = Tensor::empty({batch, d}, DType::f32);
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t position = eos_position(ids.data() + b * tokens, tokens);
      std::copy_n(out.last_hidden_state.data_as<float>() + (b * tokens + position) * d, d,
                  out.pooled.data_as<float>() + b * d);
    }
    if (c.with_projection) out.text_embeds = text_projection_.forward(out.pooled);
    return out;
  }

 private:
  struct Layer {
    LayerNorm layer_norm1;
    Linear q_proj, k_proj, v_proj, out_proj;
    LayerNorm layer_norm2;
    Linear fc1, fc2;
  };

  std::int64_t eos_position(const std::int64_t* ids, std::int64_t tokens) const {
    std::int64_t best = 0;
    if (config_.eos_token_id == 2) {  // legacy configs: the end-of-text token has the largest id
      for (std::int64_t i = 1; i < tokens; ++i)
        if (ids[i] > ids[best]) best = i;
      return best;
    }
    for (std::int64_t i = 0; i < tokens; ++i)
      if (ids[i] == config_.eos_token_id) return i;
    return 0;
  }

  ClipTextConfig config_;
  Embedding token_embedding_;
  Tensor position_embedding_;  // [max_position_embeddings, D] f32
  std::vector<Layer> layers_;
  LayerNorm final_layer_norm_;
  Linear text_projection_;  // WithProjection only
};

inline ModelCaseResult run_case_clip(const ModelCase& model_case) {
  const ClipTextModel model = ClipTextModel::load(model_case.folder);
  ClipTextModel::Outputs out = model.forward(model_case.input("input_ids"));
  std::vector<std::pair<std::string, Tensor>> outputs;
  outputs.emplace_back("last_hidden_state", std::move(out.last_hidden_state));
  outputs.emplace_back("penultimate_hidden_state", std::move(out.penultimate_hidden_state));
  if (model.config().with_projection)
    outputs.emplace_back("text_embeds", std::move(out.text_embeds));
  else
    outputs.emplace_back("pooled", std::move(out.pooled));
  return compare_outputs(model_case, outputs);
}

}  // namespace sdnq::nn
