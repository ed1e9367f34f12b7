#pragma once
// diffusers' ResnetBlock2D (time_embedding_norm "default"), shared by the UNet and the AutoencoderKL:
//   h = conv1(SiLU(norm1(x)))  (+ time_emb_proj(SiLU(temb))[:, :, None, None] in the UNet)
//   h = conv2(SiLU(norm2(h)))
//   y = (shortcut(x) + h) / output_scale_factor,  shortcut = 1x1 conv_shortcut when channels change.
#include <cstdint>
#include <optional>
#include <string>

#include "sdnq/nn/models/detail/resnet_ops.hpp"

namespace sdnq::nn::detail {

struct ResnetBlockSettings {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  std::optional<std::int64_t> temb_channels;  // the UNet's time embedding width; none in the VAE
  int groups = 32;
  float eps = 1e-6f;
  float output_scale_factor = 1.0f;
};

class ResnetBlock2D {
 public:
  static ResnetBlock2D load(WeightLoader& weights, const std::string& prefix, const ResnetBlockSettings& settings) {
    const Conv2dParams same_3x3{.pad_h = 1, .pad_w = 1};
    ResnetBlock2D block;
    block.in_channels_ = settings.in_channels;
    block.out_channels_ = settings.out_channels;
    block.output_scale_factor_ = settings.output_scale_factor;
    block.prefix_ = prefix;
    block.norm1_ = GroupNorm::load(weights, prefix + ".norm1", settings.groups, settings.in_channels, settings.eps);
    block.conv1_ = Conv2d::load(weights, prefix + ".conv1", settings.in_channels, settings.out_channels, 3, same_3x3);
    if (settings.temb_channels)
      block.time_emb_proj_ =
          Linear::load(weights, prefix + ".time_emb_proj", *settings.temb_channels, settings.out_channels);
    block.norm2_ = GroupNorm::load(weights, prefix + ".norm2", settings.groups, settings.out_channels, settings.eps);
    block.conv2_ = Conv2d::load(weights, prefix + ".conv2", settings.out_channels, settings.out_channels, 3, same_3x3);
    if (settings.in_channels != settings.out_channels)
      block.conv_shortcut_ =
          Conv2d::load(weights, prefix + ".conv_shortcut", settings.in_channels, settings.out_channels, 1, {});
    return block;
  }

  // x [N, in, H, W]; temb_activated = SiLU(temb) [N, temb_channels] (UNet only) -> [N, out, H, W]
  Tensor forward(const TensorView& x, const TensorView* temb_activated = nullptr) const {
    require_channels(x, in_channels_, prefix_, "input");
    Tensor h = norm1_->forward(x);
    activate_(h, Activation::silu);
    h = conv1_->forward(h);
    if (time_emb_proj_) {
      SDNQ_REQUIRE(temb_activated != nullptr, ShapeError, "{}: this resnet block needs the time embedding", prefix_);
      Tensor projected = time_emb_proj_->forward(*temb_activated);  // [N, out]
      projected.reshape({projected.size(0), projected.size(1), 1, 1});
      h = add(h, projected);
    }
    h = norm2_->forward(h);
    activate_(h, Activation::silu);
    h = conv2_->forward(h);
    Tensor shortcut_storage;
    TensorView shortcut = x;
    if (conv_shortcut_) {
      shortcut_storage = conv_shortcut_->forward(x);
      shortcut = shortcut_storage.view();
    }
    Tensor out = add(shortcut, h);
    if (output_scale_factor_ != 1.0f) divide_(out, output_scale_factor_);
    return out;
  }

  std::int64_t out_channels() const { return out_channels_; }

 private:
  std::int64_t in_channels_ = 0, out_channels_ = 0;
  float output_scale_factor_ = 1.0f;
  std::string prefix_;
  std::optional<GroupNorm> norm1_, norm2_;
  std::optional<Conv2d> conv1_, conv2_, conv_shortcut_;
  std::optional<Linear> time_emb_proj_;
};

}  // namespace sdnq::nn::detail
