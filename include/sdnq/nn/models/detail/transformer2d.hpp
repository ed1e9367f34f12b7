#pragma once
// diffusers' Transformer2DModel (continuous input, norm_type "layer_norm") with its
// BasicTransformerBlocks, as the UNet's cross-attention blocks use it:
//   h = proj_in(GroupNorm(x)) as tokens [B, H*W, inner]  (proj_in: Linear, or a 1x1 conv before flattening)
//   each block: h += attn1(LN1(h)); h += attn2(LN2(h), context); h += GEGLU-FF(LN3(h))
//   y = x + proj_out(h) reshaped to [B, C, H, W]
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdnq/nn/models/detail/resnet_ops.hpp"
#include "sdnq/nn/models/detail/transformer2d_attention.hpp"

namespace sdnq::nn::detail {

struct Transformer2DSettings {
  std::int64_t channels = 0;  // in_channels = heads * head_dim in the UNet
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t layers = 1;
  std::int64_t cross_attention_dim = 0;
  int groups = 32;
  bool linear_projection = true;
};

class BasicTransformerBlock {
 public:
  static BasicTransformerBlock load(WeightLoader& weights, const std::string& prefix, std::int64_t dim,
                                    const Transformer2DSettings& settings) {
    constexpr float layer_norm_eps = 1e-5f;
    BasicTransformerBlock block;
    block.norm1_ = LayerNorm::load(weights, prefix + ".norm1", dim, layer_norm_eps, true);
    block.attn1_ = MultiHeadAttention::load(
        weights, prefix + ".attn1",
        {.query_dim = dim, .context_dim = dim, .heads = settings.heads, .head_dim = settings.head_dim});
    block.norm2_ = LayerNorm::load(weights, prefix + ".norm2", dim, layer_norm_eps, true);
    block.attn2_ = MultiHeadAttention::load(weights, prefix + ".attn2",
                                            {.query_dim = dim,
                                             .context_dim = settings.cross_attention_dim,
                                             .heads = settings.heads,
                                             .head_dim = settings.head_dim});
    block.norm3_ = LayerNorm::load(weights, prefix + ".norm3", dim, layer_norm_eps, true);
    block.ff_ = GegluFeedForward::load(weights, prefix + ".ff", dim, 4 * dim);
    return block;
  }

  // h [B, L, dim], context [B, Lc, cross_attention_dim] -> [B, L, dim]
  Tensor forward(Tensor h, const TensorView& context) const {
    h = add(attn1_->forward(norm1_->forward(h)), h);
    h = add(attn2_->forward(norm2_->forward(h), &context), h);
    return add(ff_->forward(norm3_->forward(h)), h);
  }

 private:
  std::optional<LayerNorm> norm1_, norm2_, norm3_;
  std::optional<MultiHeadAttention> attn1_, attn2_;
  std::optional<GegluFeedForward> ff_;
};

class Transformer2D {
 public:
  static Transformer2D load(WeightLoader& weights, const std::string& prefix, const Transformer2DSettings& settings) {
    Transformer2D model;
    model.settings_ = settings;
    model.prefix_ = prefix;
    const std::int64_t inner = settings.heads * settings.head_dim;
    model.norm_ = GroupNorm::load(weights, prefix + ".norm", settings.groups, settings.channels, 1e-6f);
    if (settings.linear_projection) {
      model.proj_in_linear_ = Linear::load(weights, prefix + ".proj_in", settings.channels, inner);
      model.proj_out_linear_ = Linear::load(weights, prefix + ".proj_out", inner, settings.channels);
    } else {
      model.proj_in_conv_ = Conv2d::load(weights, prefix + ".proj_in", settings.channels, inner, 1, {});
      model.proj_out_conv_ = Conv2d::load(weights, prefix + ".proj_out", inner, settings.channels, 1, {});
    }
    for (std::int64_t i = 0; i < settings.layers; ++i)
      model.blocks_.push_back(
          BasicTransformerBlock::load(weights, prefix + ".transformer_blocks." + std::to_string(i), inner, settings));
    return model;
  }

  // x [B, C, H, W], context [B, Lc, cross_attention_dim] -> [B, C, H, W]
  Tensor forward(const TensorView& x, const TensorView& context) const {
    require_channels(x, settings_.channels, prefix_, "input");
    SDNQ_REQUIRE(context.rank() == 3 && context.size(0) == x.size(0) &&
                     context.size(2) == settings_.cross_attention_dim,
                 ShapeError, "{}: encoder_hidden_states must be [{}, L, {}], got {}", prefix_, x.size(0),
                 settings_.cross_attention_dim, context.shape().to_string());
    const std::int64_t batch = x.size(0), height = x.size(2), width = x.size(3);
    Tensor h = norm_->forward(x);
    if (proj_in_conv_) h = proj_in_conv_->forward(h);
    h = to_tokens(h);  // [B, H*W, C or inner]
    if (proj_in_linear_) h = proj_in_linear_->forward(h);
    for (const BasicTransformerBlock& block : blocks_) h = block.forward(std::move(h), context);
    if (proj_out_linear_) h = proj_out_linear_->forward(h);
    h = to_image(std::move(h), batch, height, width);  // [B, C or inner, H, W]
    if (proj_out_conv_) h = proj_out_conv_->forward(h);
    return add(h, x);
  }

 private:
  // [B, C, H, W] -> [B, H*W, C]
  static Tensor to_tokens(const Tensor& x) {
    constexpr std::array<int, 4> axes{0, 2, 3, 1};
    Tensor tokens = permute(x, axes);
    tokens.reshape({x.size(0), x.size(2) * x.size(3), x.size(1)});
    return tokens;
  }
  // [B, H*W, C] -> [B, C, H, W]
  static Tensor to_image(Tensor tokens, std::int64_t batch, std::int64_t height, std::int64_t width) {
    const std::int64_t channels = tokens.size(2);
    tokens.reshape({batch, height, width, channels});
    constexpr std::array<int, 4> axes{0, 3, 1, 2};
    return permute(tokens, axes);
  }

  Transformer2DSettings settings_;
  std::string prefix_;
  std::optional<GroupNorm> norm_;
  std::optional<Linear> proj_in_linear_, proj_out_linear_;
  std::optional<Conv2d> proj_in_conv_, proj_out_conv_;
  std::vector<BasicTransformerBlock> blocks_;
};

}  // namespace sdnq::nn::detail
