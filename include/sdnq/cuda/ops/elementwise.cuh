#pragma once
// Element-wise ops on device bf16/fp16 tensors (f32 math, one pass, explicit stream, outputs passed
// in, no allocation; shapes checked before launch):
//   activation(x, out, act)                     out = act(x)          (silu, gelu, gelu_tanh, quick_gelu, relu)
//   activation_rows(x [R, C], out [R, C], act)  the same on row-strided column blocks of wider buffers
//   geglu(x [..., 2N], out [..., N])            out = x[..., :N] · gelu(x[..., N:])   (erf gelu, diffusers' GEGLU)
//   add(a, b, out)                              out = a + b           (same shapes)
//   add_vector / mul_vector(x [B, ..., C], v, out)       v [C] or [B, C]: bias-like, along the last axis
//   add_channel_vector(x [N, C, ...], v, out)           v [C] or [N, C]: along axis 1 (UNet's temb add)
//   modulate(x [B, ..., D], shift, scale, out)          out = x · (1 + scale) + shift   (AdaLN)
//   gated_add(residual [B, ..., D], gate, update, out)  out = residual + gate · update
// Per-sample vectors ([B, C] views, unit stride along C, any row stride) come from modulation_chunk().
// `out` may be the input it replaces (x, a or residual) for in-place use.
#include <cuda_runtime.h>

#include <cstdint>
#include <string_view>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"
#include "sdnq/cuda/ops/detail/elementwise_kernels.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

// Chunk `index` of a modulation vector emb [B, chunks·D] (torch.chunk(emb, chunks, dim=1)[index]) as a
// [B, D] view without a copy.
inline TensorView modulation_chunk(const TensorView& emb, int chunks, int index) {
  SDNQ_REQUIRE(
      emb.rank() == 2 && chunks > 0 && index >= 0 && index < chunks && emb.size(1) % chunks == 0 && emb.stride(1) == 1,
      ShapeError, "cuda::ops::modulation_chunk: chunk {} of {} from emb {} (needs [B, chunks·D], unit stride)", index,
      chunks, emb.shape().to_string());
  const std::int64_t dim = emb.size(1) / chunks;
  auto* base = static_cast<std::byte*>(emb.data()) + index * dim * static_cast<std::int64_t>(emb.element_size());
  return TensorView(base, emb.dtype(), Shape{emb.size(0), dim}, Shape{emb.stride(0), 1}, emb.device());
}

namespace kernel_detail {

inline constexpr int elementwise_threads = 256;

// Batch stride of a per-sample vector for x [B, ..., channels]: 0 for [C], the row stride for [B, C].
inline std::int64_t vector_batch_stride(const TensorView& v, const TensorView& x, std::int64_t channels,
                                        std::string_view op, std::string_view name) {
  SDNQ_REQUIRE(v.dtype() == x.dtype() && v.device().is_cuda(), ShapeError,
               "cuda::ops::{}: {} must be a device {} tensor like x, got {} on {}", op, name, dtype_name(x.dtype()),
               dtype_name(v.dtype()), v.device().to_string());
  const bool shared = v.rank() == 1 && v.size(0) == channels;
  const bool per_sample = v.rank() == 2 && v.size(0) == x.size(0) && v.size(1) == channels;
  SDNQ_REQUIRE((shared || per_sample) && v.stride(v.rank() - 1) == 1, ShapeError,
               "cuda::ops::{}: {} must be [{}] or [{}, {}] with unit stride along the channels (x {}), got {} with "
               "strides {}",
               op, name, channels, x.size(0), channels, x.shape().to_string(), v.shape().to_string(),
               v.strides().to_string());
  return shared ? 0 : v.stride(0);
}

template <VectorOp Op>
void launch_vector_op(const VectorOpParams& p, DType dtype, cudaStream_t stream) {
  const bool packs_fit = p.inner % 8 == 0 || (p.inner == 1 && p.channels % 8 == 0);
  const bool vector_aligned =
      p.inner != 1 || ((p.first == nullptr || (aligned16(p.first) && p.first_batch_stride % 8 == 0)) &&
                       (p.second == nullptr || (aligned16(p.second) && p.second_batch_stride % 8 == 0)));
  const bool vector =
      packs_fit && vector_aligned && aligned16(p.x) && aligned16(p.out) && (p.update == nullptr || aligned16(p.update));
  dispatch_16bit(dtype, [&]<class T>() {
    const std::int64_t items = vector ? p.numel / 8 : p.numel;
    const unsigned blocks = grid_for(items, elementwise_threads);
    if (vector)
      vector_op_kernel<T, Op, true><<<blocks, elementwise_threads, 0, stream>>>(p);
    else
      vector_op_kernel<T, Op, false><<<blocks, elementwise_threads, 0, stream>>>(p);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// x [B, ..., C] with vectors along the last axis (last_axis) or x [N, C, ...] along axis 1.
inline VectorOpParams vector_op_params(const TensorView& x, const TensorView& out, bool last_axis,
                                       std::string_view op) {
  require_operand(x, op, "x");
  require_like(out, x, x.shape(), op, "out");
  SDNQ_REQUIRE(x.rank() >= 2, ShapeError, "cuda::ops::{}: x must have a batch axis and a channel axis, got {}", op,
               x.shape().to_string());
  VectorOpParams p;
  p.x = x.data();
  p.out = out.data();
  p.numel = x.numel();
  if (last_axis) {
    p.channels = x.size(x.rank() - 1);
    p.inner = 1;
    p.middle = x.size(0) == 0 || p.channels == 0 ? 1 : x.numel() / (x.size(0) * p.channels);
  } else {
    p.channels = x.size(1);
    p.middle = 1;
    p.inner = x.size(0) == 0 || p.channels == 0 ? 1 : x.numel() / (x.size(0) * p.channels);
  }
  return p;
}

template <VectorOp Op>
void run_vector_op(const TensorView& x, const TensorView& first, const TensorView* second, const TensorView* update,
                   const TensorView& out, bool last_axis, std::string_view op, std::string_view first_name,
                   cudaStream_t stream) {
  VectorOpParams p = vector_op_params(x, out, last_axis, op);
  p.first = first.data();
  p.first_batch_stride = vector_batch_stride(first, x, p.channels, op, first_name);
  if (second != nullptr) {
    p.second = second->data();
    p.second_batch_stride = vector_batch_stride(*second, x, p.channels, op, "shift");
  }
  if (update != nullptr) {
    require_like(*update, x, x.shape(), op, "update");
    p.update = update->data();
  }
  if (p.numel == 0) return;
  launch_vector_op<Op>(p, x.dtype(), stream);
}

}  // namespace kernel_detail

inline void activation(const TensorView& x, const TensorView& out, Activation act, cudaStream_t stream) {
  using namespace kernel_detail;
  require_operand(x, "activation", "x");
  require_like(out, x, x.shape(), "activation", "out");
  const std::int64_t n = x.numel();
  if (n == 0) return;
  const bool vector = n % 8 == 0 && aligned16(x.data()) && aligned16(out.data());
  dispatch_16bit(x.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(x.data());
    auto* o = static_cast<T*>(out.data());
    if (vector)
      activation_kernel<T, true>
          <<<grid_for(n / 8, elementwise_threads), elementwise_threads, 0, stream>>>(in, o, n, act);
    else
      activation_kernel<T, false><<<grid_for(n, elementwise_threads), elementwise_threads, 0, stream>>>(in, o, n, act);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// out = act(x) on [rows, columns] views whose rows may be strided (unit column stride, row stride ≥
// columns): a column block of one buffer into a column block of another, e.g. FLUX's MLP half of a fused
// projection into the [attention; MLP] input of proj_out. x and out must not overlap unless equal.
inline void activation_rows(const TensorView& x, const TensorView& out, Activation act, cudaStream_t stream) {
  using namespace kernel_detail;
  const auto row_view = [](const TensorView& v) {
    return v.rank() == 2 && v.stride(1) == 1 && v.stride(0) >= v.size(1) && v.device().is_cuda() &&
           (v.dtype() == DType::bf16 || v.dtype() == DType::f16);
  };
  SDNQ_REQUIRE(row_view(x) && row_view(out) && out.shape() == x.shape() && out.dtype() == x.dtype(), ShapeError,
               "cuda::ops::activation_rows: x and out must be BF16/F16 device views [rows, columns] of one shape "
               "with unit column stride, got {} (strides {}) and {} (strides {})",
               x.shape().to_string(), x.strides().to_string(), out.shape().to_string(), out.strides().to_string());
  const std::int64_t rows = x.size(0), columns = x.size(1);
  if (rows == 0 || columns == 0) return;
  const bool vector = columns % 8 == 0 && x.stride(0) % 8 == 0 && out.stride(0) % 8 == 0 && aligned16(x.data()) &&
                      aligned16(out.data());
  dispatch_16bit(x.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(x.data());
    auto* o = static_cast<T*>(out.data());
    const std::int64_t items = rows * (vector ? columns / 8 : columns);
    if (vector)
      activation_rows_kernel<T, true><<<grid_for(items, elementwise_threads), elementwise_threads, 0, stream>>>(
          in, x.stride(0), o, out.stride(0), rows, columns, act);
    else
      activation_rows_kernel<T, false><<<grid_for(items, elementwise_threads), elementwise_threads, 0, stream>>>(
          in, x.stride(0), o, out.stride(0), rows, columns, act);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline void geglu(const TensorView& x, const TensorView& out, cudaStream_t stream) {
  using namespace kernel_detail;
  require_operand(x, "geglu", "x");
  SDNQ_REQUIRE(x.rank() >= 1 && x.size(x.rank() - 1) % 2 == 0, ShapeError,
               "cuda::ops::geglu: x must be [..., 2N] (hidden and gate halves), got {}", x.shape().to_string());
  Shape out_shape = x.shape();
  out_shape[out_shape.rank() - 1] /= 2;
  require_like(out, x, out_shape, "geglu", "out");
  const std::int64_t half = out_shape[out_shape.rank() - 1];
  const std::int64_t rows = half == 0 ? 0 : out.numel() / half;
  if (rows == 0) return;
  const bool vector = half % 8 == 0 && aligned16(x.data()) && aligned16(out.data());
  dispatch_16bit(x.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(x.data());
    auto* o = static_cast<T*>(out.data());
    if (vector)
      gated_activation_kernel<T, true>
          <<<grid_for(rows * half / 8, elementwise_threads), elementwise_threads, 0, stream>>>(in, o, rows, half,
                                                                                               Activation::gelu);
    else
      gated_activation_kernel<T, false><<<grid_for(rows * half, elementwise_threads), elementwise_threads, 0, stream>>>(
          in, o, rows, half, Activation::gelu);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline void add(const TensorView& a, const TensorView& b, const TensorView& out, cudaStream_t stream) {
  using namespace kernel_detail;
  require_operand(a, "add", "a");
  require_like(b, a, a.shape(), "add", "b");
  require_like(out, a, a.shape(), "add", "out");
  VectorOpParams p;
  p.x = a.data();
  p.update = b.data();
  p.out = out.data();
  p.numel = a.numel();
  // No per-channel vector here: 8 consecutive elements can always go together when numel % 8 == 0.
  p.inner = p.numel % 8 == 0 ? 8 : 1;
  if (p.numel == 0) return;
  launch_vector_op<VectorOp::add_tensor>(p, a.dtype(), stream);
}

inline void add_vector(const TensorView& x, const TensorView& v, const TensorView& out, cudaStream_t stream) {
  kernel_detail::run_vector_op<kernel_detail::VectorOp::add>(x, v, nullptr, nullptr, out, true, "add_vector", "v",
                                                             stream);
}
inline void mul_vector(const TensorView& x, const TensorView& v, const TensorView& out, cudaStream_t stream) {
  kernel_detail::run_vector_op<kernel_detail::VectorOp::mul>(x, v, nullptr, nullptr, out, true, "mul_vector", "v",
                                                             stream);
}
inline void add_channel_vector(const TensorView& x, const TensorView& v, const TensorView& out, cudaStream_t stream) {
  kernel_detail::run_vector_op<kernel_detail::VectorOp::add>(x, v, nullptr, nullptr, out, false, "add_channel_vector",
                                                             "v", stream);
}
inline void modulate(const TensorView& x, const TensorView& shift, const TensorView& scale, const TensorView& out,
                     cudaStream_t stream) {
  kernel_detail::run_vector_op<kernel_detail::VectorOp::modulate>(x, scale, &shift, nullptr, out, true, "modulate",
                                                                  "scale", stream);
}
inline void gated_add(const TensorView& residual, const TensorView& gate, const TensorView& update,
                      const TensorView& out, cudaStream_t stream) {
  kernel_detail::run_vector_op<kernel_detail::VectorOp::gated_add>(residual, gate, nullptr, &update, out, true,
                                                                   "gated_add", "gate", stream);
}

}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
