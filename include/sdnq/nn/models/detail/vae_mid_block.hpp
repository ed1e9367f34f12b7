#pragma once
// The AutoencoderKL's mid block (diffusers' UNetMidBlock2D without time embedding):
//   resnets.0 -> attentions.0 (optional) -> resnets.1
// The attention is diffusers' Attention over the H*W spatial tokens with one head spanning all
// channels, a GroupNorm on its input, biased projections and a residual connection.
#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "sdnq/nn/models/detail/resnet_block.hpp"
#include "sdnq/nn/models/detail/transformer2d_attention.hpp"

namespace sdnq::nn::detail {

class VaeSpatialAttention {
 public:
  static VaeSpatialAttention load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int groups,
                                  float eps) {
    // Old checkpoints (query/key/value/proj_attn, stored as 1x1 convs) are converted by diffusers at load time.
    SDNQ_REQUIRE(!weights.contains(prefix + ".query.weight"), UnsupportedError,
                 "{}: tensor '{}.query.weight' uses the old attention naming (query/key/value/proj_attn); "
                 "re-save the model with diffusers so it uses to_q/to_k/to_v/to_out.0",
                 weights.folder().string(), prefix);
    VaeSpatialAttention attention;
    attention.channels_ = channels;
    attention.prefix_ = prefix;
    attention.group_norm_ = GroupNorm::load(weights, prefix + ".group_norm", groups, channels, eps);
    attention.attention_ = MultiHeadAttention::load(
        weights, prefix,
        {.query_dim = channels, .context_dim = channels, .heads = 1, .head_dim = channels, .qkv_bias = true});
    return attention;
  }

  // x [N, C, H, W] -> [N, C, H, W]
  Tensor forward(const TensorView& x) const {
    require_channels(x, channels_, prefix_, "input");
    const std::int64_t batch = x.size(0), height = x.size(2), width = x.size(3);
    const Tensor normalized = group_norm_->forward(x);
    constexpr std::array<int, 4> to_tokens_axes{0, 2, 3, 1};
    Tensor tokens = permute(normalized, to_tokens_axes);  // [N, H, W, C]
    tokens.reshape({batch, height * width, channels_});
    Tensor attended = attention_->forward(tokens);  // [N, H*W, C]
    attended.reshape({batch, height, width, channels_});
    constexpr std::array<int, 4> to_image_axes{0, 3, 1, 2};
    return add(permute(attended, to_image_axes), x);
  }

 private:
  std::int64_t channels_ = 0;
  std::string prefix_;
  std::optional<GroupNorm> group_norm_;
  std::optional<MultiHeadAttention> attention_;
};

class VaeMidBlock {
 public:
  static VaeMidBlock load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int groups,
                          bool add_attention) {
    constexpr float eps = 1e-6f;
    const ResnetBlockSettings resnet{.in_channels = channels, .out_channels = channels, .temb_channels = std::nullopt, .groups = groups, .eps = eps};
    VaeMidBlock block;
    block.first_ = ResnetBlock2D::load(weights, prefix + ".resnets.0", resnet);
    if (add_attention) block.attention_ = VaeSpatialAttention::load(weights, prefix + ".attentions.0", channels, groups, eps);
    block.second_ = ResnetBlock2D::load(weights, prefix + ".resnets.1", resnet);
    return block;
  }

  // [N, C, H, W] -> [N, C, H, W]
  Tensor forward(const TensorView& x) const {
    Tensor h = first_->forward(x);
    if (attention_) h = attention_->forward(h);
    return second_->forward(h);
  }

 private:
  std::optional<ResnetBlock2D> first_, second_;
  std::optional<VaeSpatialAttention> attention_;
};

}  // namespace sdnq::nn::detail
