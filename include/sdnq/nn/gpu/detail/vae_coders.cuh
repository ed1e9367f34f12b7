#pragma once
// The AutoencoderKL's Encoder and Decoder on the GPU (the CPU nn/models/detail/vae_coders.hpp's
// structure and tensor names):
//   Encoder: conv_in -> down_blocks[i] (resnets, stride-2 downsampler on all but the last) -> mid_block
//            -> conv_norm_out, SiLU -> conv_out (2 · latent channels)
//   Decoder: conv_in -> mid_block -> up_blocks[i] (layers_per_block + 1 resnets, nearest ×2 + conv on all
//            but the last; channels reversed) -> conv_norm_out, SiLU -> conv_out
// plan() walks the blocks for a given input shape (VaePlan); forward() runs them through VaeBuffers and
// writes the result into `out`, a tensor outside the buffers.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdnq/nn/gpu/detail/vae_blocks.cuh"
#include "sdnq/nn/models/detail/vae_config.hpp"

namespace sdnq::nn::gpu::detail {

class VaeGpuEncoder {
 public:
  static VaeGpuEncoder load(WeightLoader& weights, const AutoencoderKLConfig& config, int device) {
    const auto& channels = config.block_out_channels;
    const int groups = config.norm_num_groups;
    VaeGpuEncoder encoder;
    encoder.conv_in_ =
        Conv2d::load(weights, "encoder.conv_in", config.in_channels, channels[0], 3, vae_same_3x3, device);
    std::int64_t previous = channels[0];
    for (std::size_t level = 0; level < channels.size(); ++level) {
      const std::string prefix = "encoder.down_blocks." + std::to_string(level);
      Level block;
      for (std::int64_t layer = 0; layer < config.layers_per_block; ++layer)
        block.resnets.push_back(VaeResnetBlock::load(weights, prefix + ".resnets." + std::to_string(layer),
                                                     layer == 0 ? previous : channels[level], channels[level], groups,
                                                     device));
      if (level + 1 < channels.size())
        block.downsampler = VaeDownsample::load(weights, prefix + ".downsamplers.0", channels[level], 0, device);
      encoder.levels_.push_back(std::move(block));
      previous = channels[level];
    }
    encoder.mid_block_ = VaeMidBlock::load(weights, "encoder.mid_block", channels.back(), groups,
                                           config.mid_block_add_attention, device);
    encoder.norm_out_ = VaeGroupNorm::load(weights, "encoder.conv_norm_out", groups, channels.back(), device);
    encoder.conv_out_ = Conv2d::load(weights, "encoder.conv_out", channels.back(), 2 * config.latent_channels, 3,
                                     vae_same_3x3, device);
    return encoder;
  }

  // image [N, in, H, W] -> moments [N, 2 · latent, H / f, W / f]
  Shape plan(const Shape& image, VaePlan& plan) const {
    plan.scratch(conv_in_->workspace_bytes(image));
    Shape h = conv_in_->output_shape(image);
    plan.activation(h);
    for (const Level& level : levels_) {
      for (const VaeResnetBlock& resnet : level.resnets) h = resnet.plan(h, plan);
      if (level.downsampler) h = level.downsampler->plan(h, plan);
    }
    h = mid_block_->plan(h, plan);
    plan.scratch(norm_out_->workspace_bytes(h));
    plan.scratch(conv_out_->workspace_bytes(h));
    return conv_out_->output_shape(h);
  }

  void forward(const TensorView& image, VaeBuffers& b, const VaeRun& run, const TensorView& moments) const {
    Shape h = conv_in_->output_shape(image.shape());
    conv_in_->forward(image, b.at(b.current, h), run.arena, run.cublas, run.stream);
    for (const Level& level : levels_) {
      for (const VaeResnetBlock& resnet : level.resnets) {
        VaePlan unused;
        const Shape in = h;
        h = resnet.plan(in, unused);
        resnet.forward(b, in, run);
      }
      if (level.downsampler) {
        VaePlan unused;
        const Shape in = h;
        h = level.downsampler->plan(in, unused);
        level.downsampler->forward(b, in, run);
        std::swap(b.current, b.spare);
      }
    }
    mid_block_->forward(b, h, run);
    norm_out_->forward(b.at(b.current, h), b.at(b.spare, h), true, run.arena, run.stream);
    conv_out_->forward(b.at(b.spare, h), moments, run.arena, run.cublas, run.stream);
  }

 private:
  struct Level {
    std::vector<VaeResnetBlock> resnets;
    std::optional<VaeDownsample> downsampler;
  };
  std::optional<Conv2d> conv_in_, conv_out_;
  std::vector<Level> levels_;
  std::optional<VaeMidBlock> mid_block_;
  std::optional<VaeGroupNorm> norm_out_;
};

class VaeGpuDecoder {
 public:
  static VaeGpuDecoder load(WeightLoader& weights, const AutoencoderKLConfig& config, int device) {
    const std::vector<std::int64_t> channels(config.block_out_channels.rbegin(), config.block_out_channels.rend());
    const int groups = config.norm_num_groups;
    VaeGpuDecoder decoder;
    decoder.conv_in_ =
        Conv2d::load(weights, "decoder.conv_in", config.latent_channels, channels[0], 3, vae_same_3x3, device);
    decoder.mid_block_ = VaeMidBlock::load(weights, "decoder.mid_block", channels[0], groups,
                                           config.mid_block_add_attention, device);
    std::int64_t previous = channels[0];
    for (std::size_t level = 0; level < channels.size(); ++level) {
      const std::string prefix = "decoder.up_blocks." + std::to_string(level);
      Level block;
      for (std::int64_t layer = 0; layer <= config.layers_per_block; ++layer)
        block.resnets.push_back(VaeResnetBlock::load(weights, prefix + ".resnets." + std::to_string(layer),
                                                     layer == 0 ? previous : channels[level], channels[level], groups,
                                                     device));
      if (level + 1 < channels.size())
        block.upsampler = VaeUpsample::load(weights, prefix + ".upsamplers.0", channels[level], device);
      decoder.levels_.push_back(std::move(block));
      previous = channels[level];
    }
    decoder.norm_out_ = VaeGroupNorm::load(weights, "decoder.conv_norm_out", groups, channels.back(), device);
    decoder.conv_out_ = Conv2d::load(weights, "decoder.conv_out", channels.back(), config.out_channels, 3,
                                     vae_same_3x3, device);
    return decoder;
  }

  // z [N, latent, h, w] -> [N, out, h · f, w · f]
  Shape plan(const Shape& z, VaePlan& plan) const {
    plan.scratch(conv_in_->workspace_bytes(z));
    Shape h = conv_in_->output_shape(z);
    plan.activation(h);
    h = mid_block_->plan(h, plan);
    for (const Level& level : levels_) {
      for (const VaeResnetBlock& resnet : level.resnets) h = resnet.plan(h, plan);
      if (level.upsampler) h = level.upsampler->plan(h, plan);
    }
    plan.scratch(norm_out_->workspace_bytes(h));
    plan.scratch(conv_out_->workspace_bytes(h));
    return conv_out_->output_shape(h);
  }

  void forward(const TensorView& z, VaeBuffers& b, const VaeRun& run, const TensorView& out) const {
    Shape h = conv_in_->output_shape(z.shape());
    conv_in_->forward(z, b.at(b.current, h), run.arena, run.cublas, run.stream);
    mid_block_->forward(b, h, run);
    for (const Level& level : levels_) {
      for (const VaeResnetBlock& resnet : level.resnets) {
        VaePlan unused;
        const Shape in = h;
        h = resnet.plan(in, unused);
        resnet.forward(b, in, run);
      }
      if (level.upsampler) {
        VaePlan unused;
        const Shape in = h;
        h = level.upsampler->plan(in, unused);
        level.upsampler->forward(b, in, run);
      }
    }
    norm_out_->forward(b.at(b.current, h), b.at(b.spare, h), true, run.arena, run.stream);
    conv_out_->forward(b.at(b.spare, h), out, run.arena, run.cublas, run.stream);
  }

 private:
  struct Level {
    std::vector<VaeResnetBlock> resnets;
    std::optional<VaeUpsample> upsampler;
  };
  std::optional<Conv2d> conv_in_, conv_out_;
  std::optional<VaeMidBlock> mid_block_;
  std::vector<Level> levels_;
  std::optional<VaeGroupNorm> norm_out_;
};

}  // namespace sdnq::nn::gpu::detail
