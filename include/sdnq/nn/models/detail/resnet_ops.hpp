#pragma once
// What the UNet and VAE blocks use from the graph library, plus the few small tensor helpers they need
// that are not general ops: an input check, in-place division by a scalar and the asymmetric zero
// padding of diffusers' Downsample2D(padding=0).
#include <cstdint>
#include <cstring>
#include <string_view>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/modules/conv2d.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/modules/norms.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::detail {

// A host f32 tensor [N, channels, H, W], or a ShapeError naming the layer and the argument.
inline void require_channels(const TensorView& x, std::int64_t channels, std::string_view layer,
                             std::string_view what) {
  SDNQ_REQUIRE(x.dtype() == DType::f32 && x.device().is_cpu(), ShapeError, "{}: {} must be a host F32 tensor, got {}",
               layer, what, dtype_name(x.dtype()));
  SDNQ_REQUIRE(x.rank() == 4 && x.size(1) == channels, ShapeError, "{}: {} must be [N, {}, H, W], got {}", layer,
               what, channels, x.shape().to_string());
}

// x /= divisor, element by element (a true division, like PyTorch's `x / factor`).
inline void divide_(Tensor& x, float divisor) {
  float* values = x.data_as<float>();
  for (std::int64_t i = 0, n = x.numel(); i < n; ++i) values[i] /= divisor;
}

// [N, C, H, W] -> [N, C, H + 1, W + 1] with a zero row at the bottom and a zero column at the right.
inline Tensor pad_right_bottom(const TensorView& x) {
  SDNQ_REQUIRE(x.rank() == 4 && x.is_contiguous(), ShapeError, "pad_right_bottom: needs a contiguous [N, C, H, W], got {}",
               x.shape().to_string());
  const std::int64_t planes = x.size(0) * x.size(1), height = x.size(2), width = x.size(3);
  Tensor out = Tensor::zeros({x.size(0), x.size(1), height + 1, width + 1}, DType::f32);
  const float* in = x.data_as<const float>();
  float* po = out.data_as<float>();
  for (std::int64_t plane = 0; plane < planes; ++plane)
    for (std::int64_t row = 0; row < height; ++row)
      std::memcpy(po + (plane * (height + 1) + row) * (width + 1), in + (plane * height + row) * width,
                  static_cast<std::size_t>(width) * sizeof(float));
  return out;
}

}  // namespace sdnq::nn::detail
