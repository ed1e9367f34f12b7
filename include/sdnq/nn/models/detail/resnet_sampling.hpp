#pragma once
// diffusers' Downsample2D and Upsample2D with use_conv=True, as the UNet and the VAE use them.
//   Downsample2D: 3x3 conv, stride 2, `padding` on every side; padding 0 (the VAE encoder) first pads
//                 one zero row at the bottom and one zero column at the right.
//   Upsample2D:   nearest-neighbour x2, then a 3x3 conv with padding 1.
#include <cstdint>
#include <optional>
#include <string>

#include "sdnq/nn/models/detail/resnet_ops.hpp"

namespace sdnq::nn::detail {

class Downsample2D {
 public:
  static Downsample2D load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int padding) {
    Downsample2D block;
    block.channels_ = channels;
    block.pad_asymmetric_ = padding == 0;
    block.prefix_ = prefix + ".conv";
    const Conv2dParams params{.stride_h = 2, .stride_w = 2, .pad_h = padding, .pad_w = padding};
    block.conv_ = Conv2d::load(weights, block.prefix_, channels, channels, 3, params);
    return block;
  }

  // [N, C, H, W] -> [N, C, H/2, W/2] (for even H, W)
  Tensor forward(const TensorView& x) const {
    require_channels(x, channels_, prefix_, "input");
    if (!pad_asymmetric_) return conv_->forward(x);
    return conv_->forward(pad_right_bottom(x));
  }

 private:
  std::int64_t channels_ = 0;
  bool pad_asymmetric_ = false;
  std::string prefix_;
  std::optional<Conv2d> conv_;
};

class Upsample2D {
 public:
  static Upsample2D load(WeightLoader& weights, const std::string& prefix, std::int64_t channels) {
    Upsample2D block;
    block.channels_ = channels;
    block.prefix_ = prefix + ".conv";
    block.conv_ = Conv2d::load(weights, block.prefix_, channels, channels, 3, Conv2dParams{.pad_h = 1, .pad_w = 1});
    return block;
  }

  // [N, C, H, W] -> [N, C, 2H, 2W]
  Tensor forward(const TensorView& x) const {
    require_channels(x, channels_, prefix_, "input");
    return conv_->forward(upsample_nearest2x(x));
  }

 private:
  std::int64_t channels_ = 0;
  std::string prefix_;
  std::optional<Conv2d> conv_;
};

}  // namespace sdnq::nn::detail
