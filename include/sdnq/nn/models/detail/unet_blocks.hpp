#pragma once
// The UNet's down, mid and up blocks (diffusers unet_2d_blocks.py): DownBlock2D / CrossAttnDownBlock2D,
// UNetMidBlock2DCrossAttn and UpBlock2D / CrossAttnUpBlock2D.
//   down: per layer h = resnet(h, temb) [-> transformer(h, context)], push h as a skip; then
//         optionally h = downsample(h), push h.
//   mid:  h = resnet0(h); per transformer: h = transformer(h, context); h = resnet(h).
//   up:   per layer h = resnet(concat(h, pop skip), temb) [-> transformer]; then optionally upsample.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/nn/models/detail/resnet_block.hpp"
#include "sdnq/nn/models/detail/resnet_sampling.hpp"
#include "sdnq/nn/models/detail/transformer2d.hpp"
#include "sdnq/nn/models/detail/unet_config.hpp"

namespace sdnq::nn::detail {

// What every block of one UNet shares.
struct UNetBlockCommon {
  std::int64_t temb_channels = 0;
  int groups = 32;
  float eps = 1e-5f;
  bool linear_projection = false;
};

struct UNetBlockSettings {
  std::string prefix;                          // "down_blocks.1"
  std::int64_t in_channels = 0;                // down: the input; up: the skip width of the last layer
  std::int64_t out_channels = 0;
  std::int64_t previous_out_channels = 0;      // up blocks: the width arriving from below
  std::int64_t layers = 1;                     // resnets in the block
  bool cross_attention = false;
  std::vector<std::int64_t> transformer_layers;  // per resnet, when cross_attention
  std::int64_t heads = 1;
  std::int64_t cross_attention_dim = 0;
  bool add_sampler = false;                    // a downsampler / upsampler after the layers
  int downsample_padding = 1;
};

// The settings of every block of a UNet2DConditionModel with config `c`, in load order: the CPU model
// and the GPU model (nn/gpu/unet.cuh) build their blocks from this one list.
struct UNetBlockLayout {
  UNetBlockCommon common;
  std::vector<UNetBlockSettings> down, up;
  std::optional<UNetBlockSettings> mid;
};

inline UNetBlockLayout unet_block_layout(const UNet2DConditionConfig& c) {
  UNetBlockLayout layout;
  layout.common = {.temb_channels = c.time_embedding_dim,
                   .groups = c.norm_num_groups,
                   .eps = static_cast<float>(c.norm_eps),
                   .linear_projection = c.use_linear_projection};
  const std::size_t blocks = c.block_count();
  std::int64_t out_channels = c.block_out_channels[0];
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::int64_t in_channels = out_channels;
    out_channels = c.block_out_channels[i];
    layout.down.push_back({.prefix = "down_blocks." + std::to_string(i),
                           .in_channels = in_channels,
                           .out_channels = out_channels,
                           .layers = c.layers_per_block[i],
                           .cross_attention = is_cross_attention_block(c.down_block_types[i]),
                           .transformer_layers = c.down_transformer_layers[i],
                           .heads = c.attention_heads[i],
                           .cross_attention_dim = c.cross_attention_dim[i],
                           .add_sampler = i + 1 < blocks,
                           .downsample_padding = static_cast<int>(c.downsample_padding)});
  }
  if (c.has_mid_block)
    layout.mid = UNetBlockSettings{.prefix = "mid_block",
                                   .out_channels = c.block_out_channels.back(),
                                   .cross_attention = true,
                                   .transformer_layers = {c.down_transformer_layers.back().front()},
                                   .heads = c.attention_heads.back(),
                                   .cross_attention_dim = c.cross_attention_dim.back()};
  out_channels = c.block_out_channels.back();
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::size_t mirrored = blocks - 1 - i;  // the down block this up block mirrors
    const std::int64_t previous = out_channels;
    out_channels = c.block_out_channels[mirrored];
    layout.up.push_back({.prefix = "up_blocks." + std::to_string(i),
                         .in_channels = c.block_out_channels[mirrored == 0 ? 0 : mirrored - 1],
                         .out_channels = out_channels,
                         .previous_out_channels = previous,
                         .layers = c.layers_per_block[mirrored] + 1,
                         .cross_attention = is_cross_attention_block(c.up_block_types[i]),
                         .transformer_layers = c.up_transformer_layers[i],
                         .heads = c.attention_heads[mirrored],
                         .cross_attention_dim = c.cross_attention_dim[mirrored],
                         .add_sampler = i + 1 < blocks});
  }
  return layout;
}

inline Transformer2D load_block_transformer(WeightLoader& weights, const std::string& prefix,
                                            const UNetBlockSettings& block, const UNetBlockCommon& common,
                                            std::int64_t layers) {
  return Transformer2D::load(weights, prefix,
                             {.channels = block.out_channels,
                              .heads = block.heads,
                              .head_dim = block.out_channels / block.heads,
                              .layers = layers,
                              .cross_attention_dim = block.cross_attention_dim,
                              .groups = common.groups,
                              .linear_projection = common.linear_projection});
}

class UNetDownBlock {
 public:
  static UNetDownBlock load(WeightLoader& weights, const UNetBlockSettings& block, const UNetBlockCommon& common) {
    UNetDownBlock down;
    for (std::int64_t layer = 0; layer < block.layers; ++layer) {
      const std::string index = std::to_string(layer);
      down.resnets_.push_back(ResnetBlock2D::load(weights, block.prefix + ".resnets." + index,
                                                  {.in_channels = layer == 0 ? block.in_channels : block.out_channels,
                                                   .out_channels = block.out_channels,
                                                   .temb_channels = common.temb_channels,
                                                   .groups = common.groups,
                                                   .eps = common.eps}));
      if (block.cross_attention)
        down.attentions_.push_back(load_block_transformer(weights, block.prefix + ".attentions." + index, block,
                                                          common, block.transformer_layers[layer]));
    }
    if (block.add_sampler)
      down.downsampler_ = Downsample2D::load(weights, block.prefix + ".downsamplers.0", block.out_channels,
                                             block.downsample_padding);
    return down;
  }

  // h [N, in, H, W] -> [N, out, H', W']; appends this block's skip tensors to `skips`.
  Tensor forward(const TensorView& h, const TensorView& temb_activated, const TensorView& context,
                 std::vector<Tensor>& skips) const {
    TensorView current = h;
    for (std::size_t layer = 0; layer < resnets_.size(); ++layer) {
      Tensor out = resnets_[layer].forward(current, &temb_activated);
      if (!attentions_.empty()) out = attentions_[layer].forward(out, context);
      skips.push_back(std::move(out));
      current = skips.back().view();
    }
    if (downsampler_) {
      skips.push_back(downsampler_->forward(current));
      current = skips.back().view();
    }
    return skips.back().clone();
  }

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2D> attentions_;
  std::optional<Downsample2D> downsampler_;
};

class UNetMidBlock {
 public:
  static UNetMidBlock load(WeightLoader& weights, const UNetBlockSettings& block, const UNetBlockCommon& common,
                           float output_scale_factor) {
    const ResnetBlockSettings resnet{.in_channels = block.out_channels,
                                     .out_channels = block.out_channels,
                                     .temb_channels = common.temb_channels,
                                     .groups = common.groups,
                                     .eps = common.eps,
                                     .output_scale_factor = output_scale_factor};
    UNetMidBlock mid;
    mid.resnets_.push_back(ResnetBlock2D::load(weights, block.prefix + ".resnets.0", resnet));
    mid.attentions_.push_back(
        load_block_transformer(weights, block.prefix + ".attentions.0", block, common, block.transformer_layers[0]));
    mid.resnets_.push_back(ResnetBlock2D::load(weights, block.prefix + ".resnets.1", resnet));
    return mid;
  }

  // [N, C, H, W] -> [N, C, H, W]
  Tensor forward(const TensorView& h, const TensorView& temb_activated, const TensorView& context) const {
    Tensor out = resnets_[0].forward(h, &temb_activated);
    for (std::size_t i = 0; i < attentions_.size(); ++i) {
      out = attentions_[i].forward(out, context);
      out = resnets_[i + 1].forward(out, &temb_activated);
    }
    return out;
  }

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2D> attentions_;
};

class UNetUpBlock {
 public:
  static UNetUpBlock load(WeightLoader& weights, const UNetBlockSettings& block, const UNetBlockCommon& common) {
    UNetUpBlock up;
    for (std::int64_t layer = 0; layer < block.layers; ++layer) {
      const std::string index = std::to_string(layer);
      const std::int64_t skip_channels = layer == block.layers - 1 ? block.in_channels : block.out_channels;
      const std::int64_t from_below = layer == 0 ? block.previous_out_channels : block.out_channels;
      up.resnets_.push_back(ResnetBlock2D::load(weights, block.prefix + ".resnets." + index,
                                                {.in_channels = from_below + skip_channels,
                                                 .out_channels = block.out_channels,
                                                 .temb_channels = common.temb_channels,
                                                 .groups = common.groups,
                                                 .eps = common.eps}));
      if (block.cross_attention)
        up.attentions_.push_back(load_block_transformer(weights, block.prefix + ".attentions." + index, block, common,
                                                        block.transformer_layers[layer]));
    }
    if (block.add_sampler) up.upsampler_ = Upsample2D::load(weights, block.prefix + ".upsamplers.0", block.out_channels);
    return up;
  }

  std::size_t skip_count() const { return resnets_.size(); }

  // h [N, C, H, W] and the last skip_count() entries of `skips` (consumed) -> [N, out, H', W']
  Tensor forward(const TensorView& h, const TensorView& temb_activated, const TensorView& context,
                 std::vector<Tensor>& skips) const {
    Tensor out;
    TensorView current = h;
    for (std::size_t layer = 0; layer < resnets_.size(); ++layer) {
      const Tensor skip = std::move(skips.back());
      skips.pop_back();
      const std::array<TensorView, 2> parts{current, skip.view()};
      out = resnets_[layer].forward(concat(parts, 1), &temb_activated);
      if (!attentions_.empty()) out = attentions_[layer].forward(out, context);
      current = out.view();
    }
    if (upsampler_) out = upsampler_->forward(out);
    return out;
  }

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2D> attentions_;
  std::optional<Upsample2D> upsampler_;
};

}  // namespace sdnq::nn::detail
