#pragma once
// Kernels of the element-wise ops (elementwise.cuh): activations, GEGLU, and the per-sample vector
// broadcasts (bias add / mul, AdaLN modulation, gated residual add). Memory-bound: 16-byte accesses of
// 8 elements when sizes and alignment allow (`Vector`), one element per step otherwise; f32 math.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/activation.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

// The models' activations: one enum and one formula for host and device (core/activation.hpp).
using sdnq::Activation;

namespace kernel_detail {

// out[i] = activation(x[i]), n elements (Vector: n % 8 == 0, 16-byte aligned).
template <class T, bool Vector>
__global__ void activation_kernel(const T* x, T* out, std::int64_t n, Activation activation) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (Vector) {
    for (std::int64_t pack = first; pack < n / 8; pack += step) {
      float values[8];
      load8(x + pack * 8, values);
#pragma unroll
      for (int i = 0; i < 8; ++i) values[i] = sdnq::activation_value(values[i], activation);
      store8(out + pack * 8, values);
    }
  } else {
    for (std::int64_t i = first; i < n; i += step)
      out[i] = from_float<T>(sdnq::activation_value(to_float(x[i]), activation));
  }
}

// out[r, c] = act(x[r, c]) on [rows, columns] with row pitches x_pitch / out_pitch (elements): one
// column block of a wider buffer into another (Vector: columns and pitches multiples of 8, 16-byte aligned).
template <class T, bool Vector>
__global__ void activation_rows_kernel(const T* x, std::int64_t x_pitch, T* out, std::int64_t out_pitch,
                                       std::int64_t rows, std::int64_t columns, Activation activation) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  constexpr int width = Vector ? 8 : 1;
  const std::int64_t per_row = columns / width;
  for (std::int64_t item = first; item < rows * per_row; item += step) {
    const std::int64_t row = item / per_row, column = (item % per_row) * width;
    const T* in = x + row * x_pitch + column;
    T* o = out + row * out_pitch + column;
    if constexpr (Vector) {
      float values[8];
      load8(in, values);
#pragma unroll
      for (int i = 0; i < 8; ++i) values[i] = sdnq::activation_value(values[i], activation);
      store8(o, values);
    } else {
      *o = from_float<T>(sdnq::activation_value(to_float(*in), activation));
    }
  }
}

// x [rows, 2·half] -> out [rows, half] = x[:, :half] · act(x[:, half:]) (GEGLU with act = gelu).
template <class T, bool Vector>
__global__ void gated_activation_kernel(const T* x, T* out, std::int64_t rows, std::int64_t half,
                                        Activation activation) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  constexpr int width = Vector ? 8 : 1;
  const std::int64_t per_row = half / width;
  for (std::int64_t item = first; item < rows * per_row; item += step) {
    const std::int64_t row = item / per_row, column = (item % per_row) * width;
    const T* h = x + row * 2 * half + column;
    T* o = out + row * half + column;
    if constexpr (Vector) {
      float value[8], gate[8];
      load8(h, value);
      load8(h + half, gate);
#pragma unroll
      for (int i = 0; i < 8; ++i) value[i] *= sdnq::activation_value(gate[i], activation);
      store8(o, value);
    } else {
      *o = from_float<T>(to_float(*h) * sdnq::activation_value(to_float(h[half]), activation));
    }
  }
}

enum class VectorOp { add, mul, modulate, gated_add, add_tensor };

// x seen as [batch, middle, channels, inner]; first/second: per-sample vectors [batch, channels]
// (element (b, c) at first + b·first_batch_stride + c; stride 0 shares one vector), `update` shaped like x.
//   add:        out = x + first            mul:       out = x · first
//   modulate:   out = x · (1 + first) + second   (first = scale, second = shift)
//   gated_add:  out = x + first · update   (first = gate)        add_tensor: out = x + update
struct VectorOpParams {
  const void* x = nullptr;
  const void* update = nullptr;
  const void* first = nullptr;
  const void* second = nullptr;
  void* out = nullptr;
  std::int64_t first_batch_stride = 0, second_batch_stride = 0;
  std::int64_t middle = 1, channels = 1, inner = 1, numel = 0;
};

template <VectorOp Op>
__device__ __forceinline__ float apply_vector_op(float x, float first, float second, float update) {
  if constexpr (Op == VectorOp::add) return x + first;
  if constexpr (Op == VectorOp::mul) return x * first;
  if constexpr (Op == VectorOp::modulate) return fmaf(x, 1.0f + first, second);
  if constexpr (Op == VectorOp::gated_add) return fmaf(first, update, x);
  return x + update;
}

// Vector: 8 elements per step; needs inner % 8 == 0 (one channel per pack) or inner == 1 and
// channels % 8 == 0 (8 consecutive channels per pack), and 16-byte aligned operands.
template <class T, VectorOp Op, bool Vector>
__global__ void vector_op_kernel(const VectorOpParams p) {
  const T* x = static_cast<const T*>(p.x);
  const T* update = static_cast<const T*>(p.update);
  const T* first = static_cast<const T*>(p.first);
  const T* second = static_cast<const T*>(p.second);
  T* out = static_cast<T*>(p.out);
  constexpr bool uses_update = Op == VectorOp::gated_add || Op == VectorOp::add_tensor;
  constexpr bool uses_first = Op != VectorOp::add_tensor;
  constexpr bool uses_second = Op == VectorOp::modulate;
  constexpr int width = Vector ? 8 : 1;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first_item = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (std::int64_t item = first_item; item < p.numel / width; item += step) {
    const std::int64_t i = item * width;
    const std::int64_t outer = i / p.inner;
    const std::int64_t channel = outer % p.channels;
    const std::int64_t batch = outer / p.channels / p.middle;
    const std::int64_t first_at = batch * p.first_batch_stride + channel;
    const std::int64_t second_at = batch * p.second_batch_stride + channel;
    const bool channel_per_element = p.inner == 1;  // pack spans channels c..c+7
    float xs[width], us[width], fs[width], ss[width];
    if constexpr (Vector) {
      load8(x + i, xs);
      if constexpr (uses_update) load8(update + i, us);
      if (channel_per_element) {
        if constexpr (uses_first) load8(first + first_at, fs);
        if constexpr (uses_second) load8(second + second_at, ss);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          if constexpr (uses_first) fs[e] = to_float(first[first_at]);
          if constexpr (uses_second) ss[e] = to_float(second[second_at]);
        }
      }
    } else {
      xs[0] = to_float(x[i]);
      if constexpr (uses_update) us[0] = to_float(update[i]);
      if constexpr (uses_first) fs[0] = to_float(first[first_at]);
      if constexpr (uses_second) ss[0] = to_float(second[second_at]);
    }
#pragma unroll
    for (int e = 0; e < width; ++e)
      xs[e] =
          apply_vector_op<Op>(xs[e], uses_first ? fs[e] : 0.0f, uses_second ? ss[e] : 0.0f, uses_update ? us[e] : 0.0f);
    if constexpr (Vector)
      store8(out + i, xs);
    else
      out[i] = from_float<T>(xs[0]);
  }
}

}  // namespace kernel_detail
}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
