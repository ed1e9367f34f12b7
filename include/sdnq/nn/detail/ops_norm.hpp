#pragma once
// Normalizations: statistics in double (more accurate than the reference's fp32, well inside the
// conformance tolerance), output in fp32.
#include <cmath>
#include <cstdint>

#include "sdnq/core/parallel.hpp"
#include "sdnq/nn/detail/ops_common.hpp"

namespace sdnq::nn {

namespace detail {

inline const float* optional_vector(const TensorView* v, std::int64_t length, Tensor& storage, std::string_view op,
                                    std::string_view what) {
  if (v == nullptr) return nullptr;
  const float* values = contiguous_f32(*v, storage, op, what);
  SDNQ_REQUIRE(v->rank() == 1 && v->size(0) == length, ShapeError, "nn::{}: {} must be [{}], got {}", op, what, length,
               v->shape().to_string());
  return values;
}

}  // namespace detail

// x [..., D], normalized over D: (x - mean) / sqrt(var + eps) · weight + bias.
inline Tensor layer_norm(const TensorView& x, const TensorView* weight, const TensorView* bias, float eps) {
  Tensor xs, ws, bs;
  const float* in = detail::contiguous_f32(x, xs, "layer_norm", "x");
  SDNQ_REQUIRE(x.rank() >= 1, ShapeError, "nn::layer_norm needs x [..., D], got a scalar");
  const std::int64_t dim = x.size(-1), rows = dim == 0 ? 0 : x.numel() / dim;
  const float* w = detail::optional_vector(weight, dim, ws, "layer_norm", "weight");
  const float* b = detail::optional_vector(bias, dim, bs, "layer_norm", "bias");
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  float* po = out.data_as<float>();
  parallel_for(0, rows, 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      const float* r = in + row * dim;
      double sum = 0.0, squares = 0.0;
      for (std::int64_t i = 0; i < dim; ++i) sum += r[i];
      const double mean = sum / static_cast<double>(dim);
      for (std::int64_t i = 0; i < dim; ++i) squares += (r[i] - mean) * (r[i] - mean);
      const double inv = 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps);
      for (std::int64_t i = 0; i < dim; ++i) {
        float value = static_cast<float>((r[i] - mean) * inv);
        if (w != nullptr) value *= w[i];
        if (b != nullptr) value += b[i];
        po[row * dim + i] = value;
      }
    }
  });
  return out;
}

// x [..., D]: x / sqrt(mean(x²) + eps) · weight (no mean subtraction, no bias; T5LayerNorm, QK-norm).
inline Tensor rms_norm(const TensorView& x, const TensorView* weight, float eps) {
  Tensor xs, ws;
  const float* in = detail::contiguous_f32(x, xs, "rms_norm", "x");
  SDNQ_REQUIRE(x.rank() >= 1, ShapeError, "nn::rms_norm needs x [..., D], got a scalar");
  const std::int64_t dim = x.size(-1), rows = dim == 0 ? 0 : x.numel() / dim;
  const float* w = detail::optional_vector(weight, dim, ws, "rms_norm", "weight");
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  float* po = out.data_as<float>();
  parallel_for(0, rows, 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      const float* r = in + row * dim;
      double squares = 0.0;
      for (std::int64_t i = 0; i < dim; ++i) squares += static_cast<double>(r[i]) * r[i];
      const double inv = 1.0 / std::sqrt(squares / static_cast<double>(dim) + eps);
      for (std::int64_t i = 0; i < dim; ++i) {
        const float value = static_cast<float>(r[i] * inv);
        po[row * dim + i] = w != nullptr ? value * w[i] : value;
      }
    }
  });
  return out;
}

// x [N, C, ...]: each of `groups` channel groups normalized over its channels and positions,
// then per-channel weight and bias.
inline Tensor group_norm(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias, float eps) {
  Tensor xs, ws, bs;
  const float* in = detail::contiguous_f32(x, xs, "group_norm", "x");
  SDNQ_REQUIRE(x.rank() >= 2, ShapeError, "nn::group_norm needs x [N, C, ...], got {}", x.shape().to_string());
  const std::int64_t batch = x.size(0), channels = x.size(1);
  SDNQ_REQUIRE(groups >= 1 && channels % groups == 0, ShapeError,
               "nn::group_norm: {} groups must divide the {} channels of x {}", groups, channels,
               x.shape().to_string());
  const std::int64_t positions = detail::extent_product(x.shape(), 2, x.rank());
  const float* w = detail::optional_vector(weight, channels, ws, "group_norm", "weight");
  const float* b = detail::optional_vector(bias, channels, bs, "group_norm", "bias");
  const std::int64_t group_channels = channels / groups, group_size = group_channels * positions;
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  float* po = out.data_as<float>();
  parallel_for(0, batch * groups, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t index = begin; index < end; ++index) {
      const std::int64_t offset = index * group_size;
      double sum = 0.0, squares = 0.0;
      for (std::int64_t i = 0; i < group_size; ++i) sum += in[offset + i];
      const double mean = group_size > 0 ? sum / static_cast<double>(group_size) : 0.0;
      for (std::int64_t i = 0; i < group_size; ++i) squares += (in[offset + i] - mean) * (in[offset + i] - mean);
      const double inv = 1.0 / std::sqrt((group_size > 0 ? squares / static_cast<double>(group_size) : 0.0) + eps);
      const std::int64_t first_channel = (index % groups) * group_channels;
      for (std::int64_t c = 0; c < group_channels; ++c) {
        const std::int64_t channel = first_channel + c;
        const float scale = w != nullptr ? w[channel] : 1.0f, shift = b != nullptr ? b[channel] : 0.0f;
        for (std::int64_t p = 0; p < positions; ++p) {
          const std::int64_t i = offset + c * positions + p;
          po[i] = static_cast<float>((in[i] - mean) * inv) * scale + shift;
        }
      }
    }
  });
  return out;
}

}  // namespace sdnq::nn
