#pragma once
// linear (x·Wᵀ + b) and conv2d (im2col, then the same GEMM per image and group).
#include <cstdint>
#include <vector>

#include "sdnq/core/parallel.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq/nn/detail/ops_gemm.hpp"

namespace sdnq::nn {

inline Tensor linear(const TensorView& x, const TensorView& weight, const TensorView* bias) {
  Tensor xs, ws, bs;
  const float* px = detail::contiguous_f32(x, xs, "linear", "x");
  const float* pw = detail::contiguous_f32(weight, ws, "linear", "weight");
  SDNQ_REQUIRE(weight.rank() == 2, ShapeError, "nn::linear: weight must be [out, in], got {}",
               weight.shape().to_string());
  const std::int64_t out_features = weight.size(0), in_features = weight.size(1);
  SDNQ_REQUIRE(x.rank() >= 1 && x.size(-1) == in_features, ShapeError,
               "nn::linear: x must be [..., in_features = {}], got {}", in_features, x.shape().to_string());
  const float* pb = nullptr;
  if (bias != nullptr) {
    pb = detail::contiguous_f32(*bias, bs, "linear", "bias");
    SDNQ_REQUIRE(bias->rank() == 1 && bias->size(0) == out_features, ShapeError,
                 "nn::linear: bias must be [out_features = {}], got {}", out_features, bias->shape().to_string());
  }
  Shape shape = x.shape();
  shape[-1] = out_features;
  Tensor out = Tensor::empty(shape, DType::f32);
  const std::int64_t rows = detail::extent_product(x.shape(), 0, x.rank() - 1);
  detail::gemm_nt_f32(px, pw, pb, out.data_as<float>(), rows, out_features, in_features, out_features);
  return out;
}

struct Conv2dParams {
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

inline Tensor conv2d(const TensorView& x, const TensorView& weight, const TensorView* bias, const Conv2dParams& p) {
  Tensor xs, ws, bs;
  const float* px = detail::contiguous_f32(x, xs, "conv2d", "x");
  const float* pw = detail::contiguous_f32(weight, ws, "conv2d", "weight");
  SDNQ_REQUIRE(x.rank() == 4 && weight.rank() == 4, ShapeError,
               "nn::conv2d needs x [N, C, H, W] and weight [O, C/groups, kh, kw], got {} and {}", x.shape().to_string(),
               weight.shape().to_string());
  SDNQ_REQUIRE(p.groups >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 &&
                   p.pad_h >= 0 && p.pad_w >= 0,
               ShapeError, "nn::conv2d: groups, strides and dilations must be >= 1 and paddings >= 0");
  const std::int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const std::int64_t out_channels = weight.size(0), kh = weight.size(2), kw = weight.size(3), groups = p.groups;
  SDNQ_REQUIRE(out_channels % groups == 0 && weight.size(1) * groups == channels, ShapeError,
               "nn::conv2d: weight {} with groups = {} does not fit x {} ({} input channels)",
               weight.shape().to_string(), groups, x.shape().to_string(), channels);
  const std::int64_t out_h = (height + 2 * p.pad_h - p.dilation_h * (kh - 1) - 1) / p.stride_h + 1;
  const std::int64_t out_w = (width + 2 * p.pad_w - p.dilation_w * (kw - 1) - 1) / p.stride_w + 1;
  SDNQ_REQUIRE(out_h >= 1 && out_w >= 1, ShapeError, "nn::conv2d: x {} is smaller than the dilated kernel {}x{}",
               x.shape().to_string(), kh, kw);
  const float* pb = nullptr;
  if (bias != nullptr) {
    pb = detail::contiguous_f32(*bias, bs, "conv2d", "bias");
    SDNQ_REQUIRE(bias->rank() == 1 && bias->size(0) == out_channels, ShapeError,
                 "nn::conv2d: bias must be [out_channels = {}], got {}", out_channels, bias->shape().to_string());
  }
  const std::int64_t group_channels = channels / groups, group_out = out_channels / groups;
  const std::int64_t patch = group_channels * kh * kw, positions = out_h * out_w;
  Tensor out = Tensor::empty({batch, out_channels, out_h, out_w}, DType::f32);
  float* po = out.data_as<float>();
  std::vector<float> columns(static_cast<std::size_t>(positions * patch));  // [OH·OW, C/g·kh·kw]
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t g = 0; g < groups; ++g) {
      const float* image = px + (n * channels + g * group_channels) * height * width;
      parallel_for(0, positions, 64, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t position = begin; position < end; ++position) {
          const std::int64_t oy = position / out_w, ox = position % out_w;
          float* column = columns.data() + position * patch;
          for (std::int64_t c = 0; c < group_channels; ++c)
            for (std::int64_t ky = 0; ky < kh; ++ky)
              for (std::int64_t kx = 0; kx < kw; ++kx) {
                const std::int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dilation_h;
                const std::int64_t ix = ox * p.stride_w - p.pad_w + kx * p.dilation_w;
                const bool inside = iy >= 0 && iy < height && ix >= 0 && ix < width;
                *column++ = inside ? image[(c * height + iy) * width + ix] : 0.0f;
              }
        }
      });
      // out[n, g·O/g + o, :] = W_g [O/g, patch] · columnsᵀ — channels-first directly.
      detail::gemm_nt_f32(pw + g * group_out * patch, columns.data(), nullptr,
                          po + (n * out_channels + g * group_out) * positions, group_out, positions, patch, positions);
      if (pb != nullptr)
        for (std::int64_t o = 0; o < group_out; ++o) {
          float* plane = po + (n * out_channels + g * group_out + o) * positions;
          for (std::int64_t i = 0; i < positions; ++i) plane[i] += pb[g * group_out + o];
        }
    }
  return out;
}

}  // namespace sdnq::nn
