#pragma once
// Element-wise ops: activations (in place), broadcasting add / mul, softmax over the last axis,
// and the sinusoidal timestep embedding of diffusers' get_timestep_embedding.
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include "sdnq/core/activation.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/nn/detail/ops_common.hpp"

namespace sdnq::nn {

// The models' activations (enum, formulas, config names) live in core/activation.hpp, shared with the
// CUDA kernels; nn code names them unqualified or as nn::Activation.
using sdnq::Activation;
using sdnq::activation_from_name;
using sdnq::activation_value;

inline void activate_(Tensor& x, Activation activation) {
  detail::require_host_f32(x, "activate_", "x");
  float* values = x.data_as<float>();
  parallel_for(0, x.numel(), 1 << 14, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) values[i] = activation_value(values[i], activation);
  });
}

namespace detail {

template <class Op>
Tensor broadcast_binary(const TensorView& a, const TensorView& b, std::string_view op_name, Op op) {
  Tensor a_storage, b_storage;
  const float* pa = contiguous_f32(a, a_storage, op_name, "a");
  const float* pb = contiguous_f32(b, b_storage, op_name, "b");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op_name);
  Tensor out = Tensor::empty(shape, DType::f32);
  float* po = out.data_as<float>();
  if (a.shape() == shape && b.shape() == shape) {
    parallel_for(0, out.numel(), 1 << 15, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) po[i] = op(pa[i], pb[i]);
    });
    return out;
  }
  const Shape sa = broadcast_strides(a.shape(), shape), sb = broadcast_strides(b.shape(), shape);
  const int rank = shape.rank();
  // Rows over the last axis; the offsets of each row are recomputed from its multi-index.
  const std::int64_t inner = rank > 0 ? shape[rank - 1] : 1, rows = out.numel() / std::max<std::int64_t>(inner, 1);
  const std::int64_t step_a = rank > 0 ? sa[rank - 1] : 0, step_b = rank > 0 ? sb[rank - 1] : 0;
  parallel_for(0, rows, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(inner, 1)),
               [&](std::int64_t begin, std::int64_t end) {
                 for (std::int64_t row = begin; row < end; ++row) {
                   std::int64_t rest = row, offset_a = 0, offset_b = 0;
                   for (int axis = rank - 2; axis >= 0; --axis) {
                     const std::int64_t index = rest % shape[axis];
                     rest /= shape[axis];
                     offset_a += index * sa[axis];
                     offset_b += index * sb[axis];
                   }
                   for (std::int64_t i = 0; i < inner; ++i)
                     po[row * inner + i] = op(pa[offset_a + i * step_a], pb[offset_b + i * step_b]);
                 }
               });
  return out;
}

}  // namespace detail

inline Tensor add(const TensorView& a, const TensorView& b) {
  return detail::broadcast_binary(a, b, "add", [](float x, float y) { return x + y; });
}
inline Tensor mul(const TensorView& a, const TensorView& b) {
  return detail::broadcast_binary(a, b, "mul", [](float x, float y) { return x * y; });
}

// Softmax over the last axis, max-subtracted; a row that is entirely -inf gives zeros.
inline Tensor softmax(const TensorView& x) {
  Tensor storage;
  const float* values = detail::contiguous_f32(x, storage, "softmax", "x");
  SDNQ_REQUIRE(x.rank() >= 1, ShapeError, "nn::softmax needs rank >= 1, got a scalar");
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  float* po = out.data_as<float>();
  const std::int64_t inner = x.size(-1), rows = inner == 0 ? 0 : x.numel() / inner;
  parallel_for(0, rows, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      const float* in = values + row * inner;
      float* o = po + row * inner;
      float max_value = -std::numeric_limits<float>::infinity();
      for (std::int64_t i = 0; i < inner; ++i) max_value = std::max(max_value, in[i]);
      if (max_value == -std::numeric_limits<float>::infinity()) {
        for (std::int64_t i = 0; i < inner; ++i) o[i] = 0.0f;
        continue;
      }
      float sum = 0.0f;
      for (std::int64_t i = 0; i < inner; ++i) sum += (o[i] = std::exp(in[i] - max_value));
      for (std::int64_t i = 0; i < inner; ++i) o[i] /= sum;
    }
  });
  return out;
}

// diffusers' get_timestep_embedding, in fp32 like the reference: t [N] -> [N, dim].
inline Tensor timestep_embedding(const TensorView& t, int dim, bool flip_sin_to_cos, float downscale_freq_shift,
                                 float scale = 1.0f, int max_period = 10000) {
  Tensor storage;
  const float* steps = detail::contiguous_f32(t, storage, "timestep_embedding", "t");
  SDNQ_REQUIRE(t.rank() == 1, ShapeError, "nn::timestep_embedding: timesteps must be [N], got {}",
               t.shape().to_string());
  SDNQ_REQUIRE(dim >= 2, ShapeError, "nn::timestep_embedding: dim must be >= 2, got {}", dim);
  const int half = dim / 2;
  const std::int64_t count = t.size(0);
  std::vector<float> frequencies(static_cast<std::size_t>(half));
  const float log_period = -static_cast<float>(std::log(static_cast<double>(max_period)));
  const float denominator = static_cast<float>(half) - downscale_freq_shift;
  for (int i = 0; i < half; ++i)
    frequencies[static_cast<std::size_t>(i)] = std::exp(log_period * static_cast<float>(i) / denominator);
  Tensor out = Tensor::zeros({count, dim}, DType::f32);
  float* po = out.data_as<float>();
  for (std::int64_t n = 0; n < count; ++n)
    for (int i = 0; i < half; ++i) {
      const float argument = scale * (steps[n] * frequencies[static_cast<std::size_t>(i)]);
      const float sine = std::sin(argument), cosine = std::cos(argument);
      po[n * dim + i] = flip_sin_to_cos ? cosine : sine;
      po[n * dim + half + i] = flip_sin_to_cos ? sine : cosine;
    }
  return out;
}

}  // namespace sdnq::nn
