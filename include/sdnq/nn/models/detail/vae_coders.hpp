#pragma once
// The AutoencoderKL's Encoder and Decoder (diffusers autoencoders/vae.py), GroupNorm eps 1e-6 throughout.
//   Encoder: conv_in -> down_blocks[i] (resnets, then a stride-2 downsampler on all but the last)
//            -> mid_block -> conv_norm_out, SiLU -> conv_out (2 * latent channels: mean and logvar)
//   Decoder: conv_in -> mid_block -> up_blocks[i] (layers_per_block + 1 resnets, then nearest x2 + conv
//            on all but the last; channels in reverse order) -> conv_norm_out, SiLU -> conv_out
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/nn/models/detail/resnet_block.hpp"
#include "sdnq/nn/models/detail/resnet_sampling.hpp"
#include "sdnq/nn/models/detail/vae_config.hpp"
#include "sdnq/nn/models/detail/vae_mid_block.hpp"

namespace sdnq::nn::detail {

inline constexpr float vae_norm_eps = 1e-6f;
inline constexpr Conv2dParams same_3x3_conv{.pad_h = 1, .pad_w = 1};

class VaeEncoder {
 public:
  static VaeEncoder load(WeightLoader& weights, const AutoencoderKLConfig& config) {
    const auto& channels = config.block_out_channels;
    const int groups = config.norm_num_groups;
    VaeEncoder encoder;
    encoder.conv_in_ = Conv2d::load(weights, "encoder.conv_in", config.in_channels, channels[0], 3, same_3x3_conv);
    std::int64_t previous = channels[0];
    for (std::size_t level = 0; level < channels.size(); ++level) {
      const std::string prefix = "encoder.down_blocks." + std::to_string(level);
      Level block;
      for (std::int64_t layer = 0; layer < config.layers_per_block; ++layer) {
        const ResnetBlockSettings settings{.in_channels = layer == 0 ? previous : channels[level],
                                           .out_channels = channels[level],
                                           .temb_channels = std::nullopt,
                                           .groups = groups,
                                           .eps = vae_norm_eps};
        block.resnets.push_back(ResnetBlock2D::load(weights, prefix + ".resnets." + std::to_string(layer), settings));
      }
      if (level + 1 < channels.size())
        block.downsampler = Downsample2D::load(weights, prefix + ".downsamplers.0", channels[level], 0);
      encoder.levels_.push_back(std::move(block));
      previous = channels[level];
    }
    encoder.mid_block_ =
        VaeMidBlock::load(weights, "encoder.mid_block", channels.back(), groups, config.mid_block_add_attention);
    encoder.norm_out_ = GroupNorm::load(weights, "encoder.conv_norm_out", groups, channels.back(), vae_norm_eps);
    encoder.conv_out_ =
        Conv2d::load(weights, "encoder.conv_out", channels.back(), 2 * config.latent_channels, 3, same_3x3_conv);
    return encoder;
  }

  // image [N, in_channels, H, W] -> moments [N, 2 * latent_channels, H / f, W / f]
  Tensor forward(const TensorView& image) const {
    Tensor h = conv_in_->forward(image);
    for (const Level& level : levels_) {
      for (const ResnetBlock2D& resnet : level.resnets) h = resnet.forward(h);
      if (level.downsampler) h = level.downsampler->forward(h);
    }
    h = mid_block_->forward(h);
    h = norm_out_->forward(h);
    activate_(h, Activation::silu);
    return conv_out_->forward(h);
  }

 private:
  struct Level {
    std::vector<ResnetBlock2D> resnets;
    std::optional<Downsample2D> downsampler;
  };
  std::optional<Conv2d> conv_in_, conv_out_;
  std::vector<Level> levels_;
  std::optional<VaeMidBlock> mid_block_;
  std::optional<GroupNorm> norm_out_;
};

class VaeDecoder {
 public:
  static VaeDecoder load(WeightLoader& weights, const AutoencoderKLConfig& config) {
    const std::vector<std::int64_t> channels(config.block_out_channels.rbegin(), config.block_out_channels.rend());
    const int groups = config.norm_num_groups;
    VaeDecoder decoder;
    decoder.conv_in_ =
        Conv2d::load(weights, "decoder.conv_in", config.latent_channels, channels[0], 3, same_3x3_conv);
    decoder.mid_block_ =
        VaeMidBlock::load(weights, "decoder.mid_block", channels[0], groups, config.mid_block_add_attention);
    std::int64_t previous = channels[0];
    for (std::size_t level = 0; level < channels.size(); ++level) {
      const std::string prefix = "decoder.up_blocks." + std::to_string(level);
      Level block;
      for (std::int64_t layer = 0; layer <= config.layers_per_block; ++layer) {
        const ResnetBlockSettings settings{.in_channels = layer == 0 ? previous : channels[level],
                                           .out_channels = channels[level],
                                           .temb_channels = std::nullopt,
                                           .groups = groups,
                                           .eps = vae_norm_eps};
        block.resnets.push_back(ResnetBlock2D::load(weights, prefix + ".resnets." + std::to_string(layer), settings));
      }
      if (level + 1 < channels.size())
        block.upsampler = Upsample2D::load(weights, prefix + ".upsamplers.0", channels[level]);
      decoder.levels_.push_back(std::move(block));
      previous = channels[level];
    }
    decoder.norm_out_ = GroupNorm::load(weights, "decoder.conv_norm_out", groups, channels.back(), vae_norm_eps);
    decoder.conv_out_ =
        Conv2d::load(weights, "decoder.conv_out", channels.back(), config.out_channels, 3, same_3x3_conv);
    return decoder;
  }

  // z [N, latent_channels, h, w] -> [N, out_channels, h * f, w * f]
  Tensor forward(const TensorView& z) const {
    Tensor h = conv_in_->forward(z);
    h = mid_block_->forward(h);
    for (const Level& level : levels_) {
      for (const ResnetBlock2D& resnet : level.resnets) h = resnet.forward(h);
      if (level.upsampler) h = level.upsampler->forward(h);
    }
    h = norm_out_->forward(h);
    activate_(h, Activation::silu);
    return conv_out_->forward(h);
  }

 private:
  struct Level {
    std::vector<ResnetBlock2D> resnets;
    std::optional<Upsample2D> upsampler;
  };
  std::optional<Conv2d> conv_in_, conv_out_;
  std::optional<VaeMidBlock> mid_block_;
  std::vector<Level> levels_;
  std::optional<GroupNorm> norm_out_;
};

}  // namespace sdnq::nn::detail
