#pragma once
// T5EncoderModel (transformers), float32 CPU path.
//
//   x = shared[ids]                                   (no scaling, no absolute positions)  // [B, L, d_model]
//   bias[h, i, j] = relative_attention_bias[bucket(j - i), h]     (block 0's table, reused by every block)
//   per block: x += o(attn(q, k, v of RMS(x)))       scores = q·kᵀ + bias, NO 1/sqrt(d) scaling
//              x += wo(act(wi_0(RMS(x))) * wi_1(RMS(x)))   (gated; non-gated: wo(act(wi(RMS(x)))))
//   last_hidden_state = final RMS(x).   RMS = T5LayerNorm: x / sqrt(mean(x²) + eps) · weight, no mean, no bias.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#define SDNQ_NN_RUN_CASE_T5 1
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/modules/attention.hpp"
#include "sdnq/nn/modules/embedding.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/modules/norms.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn {

struct T5EncoderConfig {
  std::int64_t vocab_size = 32128, d_model = 512, d_kv = 64, d_ff = 2048, num_layers = 6, num_heads = 8;
  std::int64_t relative_attention_num_buckets = 32, relative_attention_max_distance = 128;
  float layer_norm_epsilon = 1e-6f;
  bool gated = false;
  Activation dense_act = Activation::relu;

  static T5EncoderConfig from_json(const nlohmann::json& json, const std::string& source) {
    const std::string class_name = model_class_name(json, source);
    SDNQ_REQUIRE(class_name == "T5EncoderModel", UnsupportedError, "{}: model class {} is not T5EncoderModel", source,
                 class_name);
    T5EncoderConfig c;
    c.vocab_size = config_int(json, "vocab_size", c.vocab_size, source);
    c.d_model = config_int(json, "d_model", c.d_model, source);
    c.d_kv = config_int(json, "d_kv", c.d_kv, source);
    c.d_ff = config_int(json, "d_ff", c.d_ff, source);
    c.num_layers = config_int(json, "num_layers", c.num_layers, source);
    c.num_heads = config_int(json, "num_heads", c.num_heads, source);
    c.relative_attention_num_buckets =
        config_int(json, "relative_attention_num_buckets", c.relative_attention_num_buckets, source);
    c.relative_attention_max_distance =
        config_int(json, "relative_attention_max_distance", c.relative_attention_max_distance, source);
    c.layer_norm_epsilon = static_cast<float>(config_float(json, "layer_norm_epsilon", 1e-6, source));
    // feed_forward_proj is "<act>" or "gated-<act>"; gated-gelu means gelu_new (transformers' rule).
    const std::string projection = config_string(json, "feed_forward_proj", "relu", source);
    c.gated = projection.rfind("gated-", 0) == 0;
    std::string activation = c.gated ? projection.substr(6) : projection;
    if (activation == "gelu" && c.gated) activation = "gelu_new";
    activation = config_string(json, "dense_act_fn", activation, source);
    const auto act = activation_from_name(activation);
    SDNQ_REQUIRE(act.has_value(), UnsupportedError,
                 "{}: T5 activation \"{}\" (feed_forward_proj \"{}\") is not supported", source, activation,
                 projection);
    c.dense_act = *act;
    SDNQ_REQUIRE(
        c.num_layers >= 1 && c.num_heads >= 1 && c.d_kv >= 1 && c.relative_attention_num_buckets >= 4 &&
            c.relative_attention_max_distance > c.relative_attention_num_buckets / 4,
        ConfigError, "{}: invalid T5 sizes (num_layers {}, num_heads {}, d_kv {}, buckets {}, max distance {})", source,
        c.num_layers, c.num_heads, c.d_kv, c.relative_attention_num_buckets, c.relative_attention_max_distance);
    return c;
  }
};

// transformers' _relative_position_bucket, bidirectional, with its fp32 logarithm.
inline std::int64_t t5_relative_position_bucket(std::int64_t relative_position, std::int64_t num_buckets,
                                                std::int64_t max_distance) {
  num_buckets /= 2;
  std::int64_t bucket = relative_position > 0 ? num_buckets : 0;
  const std::int64_t distance = relative_position < 0 ? -relative_position : relative_position;
  const std::int64_t max_exact = num_buckets / 2;
  if (distance < max_exact) return bucket + distance;
  const float ratio = static_cast<float>(distance) / static_cast<float>(max_exact);
  const float log_ratio = std::log(ratio) / static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact));
  const auto large = max_exact + static_cast<std::int64_t>(log_ratio * static_cast<float>(num_buckets - max_exact));
  return bucket + std::min(large, num_buckets - 1);
}

class T5EncoderModel {
 public:
  static T5EncoderModel load(const std::filesystem::path& component_folder) {
    WeightLoader weights = WeightLoader::open(component_folder);
    T5EncoderModel model;
    model.config_ = T5EncoderConfig::from_json(weights.config(), (component_folder / "config.json").string());
    const T5EncoderConfig& c = model.config_;
    const std::string embedding = weights.contains("shared.weight") ? "shared" : "encoder.embed_tokens";
    model.embed_tokens_ = Embedding::load(weights, embedding, c.vocab_size, c.d_model);
    const std::int64_t inner = c.num_heads * c.d_kv;
    for (std::int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = "encoder.block." + std::to_string(i) + ".layer.";
      Block block{RMSNorm::load(weights, p + "0.layer_norm", c.d_model, c.layer_norm_epsilon),
                  Linear::load(weights, p + "0.SelfAttention.q", c.d_model, inner, false),
                  Linear::load(weights, p + "0.SelfAttention.k", c.d_model, inner, false),
                  Linear::load(weights, p + "0.SelfAttention.v", c.d_model, inner, false),
                  Linear::load(weights, p + "0.SelfAttention.o", inner, c.d_model, false),
                  RMSNorm::load(weights, p + "1.layer_norm", c.d_model, c.layer_norm_epsilon),
                  {},
                  {},
                  {}};
      if (c.gated) {
        block.wi_0 = Linear::load(weights, p + "1.DenseReluDense.wi_0", c.d_model, c.d_ff, false);
        block.wi_1 = Linear::load(weights, p + "1.DenseReluDense.wi_1", c.d_model, c.d_ff, false);
      } else {
        block.wi_0 = Linear::load(weights, p + "1.DenseReluDense.wi", c.d_model, c.d_ff, false);
      }
      block.wo = Linear::load(weights, p + "1.DenseReluDense.wo", c.d_ff, c.d_model, false);
      model.blocks_.push_back(std::move(block));
    }
    model.relative_attention_bias_ =
        weights.dense("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                      Shape{c.relative_attention_num_buckets, c.num_heads});
    model.final_layer_norm_ = RMSNorm::load(weights, "encoder.final_layer_norm", c.d_model, c.layer_norm_epsilon);
    // The tied copy of `shared` may be stored too (transformers writes it for some checkpoints).
    weights.require_all_used("T5EncoderModel",
                             [](std::string_view name) { return name == "encoder.embed_tokens.weight"; });
    return model;
  }

  const T5EncoderConfig& config() const { return config_; }

  // input_ids: I64 or I32 [B, L] -> last_hidden_state [B, L, d_model]. No attention mask (as FLUX and SD3 call it).
  Tensor forward(const TensorView& input_ids) const {
    const T5EncoderConfig& c = config_;
    SDNQ_REQUIRE(input_ids.rank() == 2 && input_ids.size(1) >= 1, ShapeError,
                 "T5 encoder: input_ids must be [batch, tokens] with tokens >= 1, got {}",
                 input_ids.shape().to_string());
    const std::int64_t tokens = input_ids.size(1);
    Tensor x = embed_tokens_.forward(input_ids);  // [B, L, d_model]
    const Tensor bias = position_bias(tokens);    // [1, H, L, L]
    AttentionOptions options;
    options.scale = 1.0f;  // T5 folds the scaling into its weights
    options.additive_mask = &bias.view();
    for (const Block& block : blocks_) {
      Tensor h = block.attention_norm.forward(x);
      Tensor q = split_heads(block.q.forward(h), c.num_heads);  // [B, H, L, d_kv]
      Tensor k = split_heads(block.k.forward(h), c.num_heads);
      Tensor v = split_heads(block.v.forward(h), c.num_heads);
      x = add(x, block.o.forward(merge_heads(attention(q, k, v, options))));
      h = block.feed_forward_norm.forward(x);
      Tensor hidden = block.wi_0.forward(h);  // [B, L, d_ff]
      activate_(hidden, c.dense_act);
      if (c.gated) hidden = mul(hidden, block.wi_1.forward(h));
      x = add(x, block.wo.forward(hidden));
    }
    return final_layer_norm_.forward(x);
  }

 private:
  struct Block {
    RMSNorm attention_norm;
    Linear q, k, v, o;
    RMSNorm feed_forward_norm;
    Linear wi_0, wi_1, wo;  // wi_1 unused (empty) when not gated; wi_0 is `wi` then
  };

  Tensor position_bias(std::int64_t tokens) const {
    const T5EncoderConfig& c = config_;
    Tensor bias = Tensor::empty({1, c.num_heads, tokens, tokens}, DType::f32);
    const float* table = relative_attention_bias_.data_as<float>();  // [buckets, H]
    float* out = bias.data_as<float>();
    for (std::int64_t i = 0; i < tokens; ++i)
      for (std::int64_t j = 0; j < tokens; ++j) {
        const std::int64_t bucket =
            t5_relative_position_bucket(j - i, c.relative_attention_num_buckets, c.relative_attention_max_distance);
        for (std::int64_t h = 0; h < c.num_heads; ++h)
          out[(h * tokens + i) * tokens + j] = table[bucket * c.num_heads + h];
      }
    return bias;
  }

  T5EncoderConfig config_;
  Embedding embed_tokens_;
  std::vector<Block> blocks_;
  Tensor relative_attention_bias_;  // [num_buckets, num_heads] f32
  RMSNorm final_layer_norm_;
};

inline ModelCaseResult run_case_t5(const ModelCase& model_case) {
  const T5EncoderModel model = T5EncoderModel::load(model_case.folder);
  std::vector<std::pair<std::string, Tensor>> outputs;
  outputs.emplace_back("last_hidden_state", model.forward(model_case.input("input_ids")));
  return compare_outputs(model_case, outputs);
}

}  // namespace sdnq::nn
