#pragma once
// Normalizations and softmax on device bf16/fp16 tensors (f32 statistics, explicit stream, outputs
// passed in, no allocation; checked before launch). `out` may be `x`.
//   layer_norm(x [..., D], weight*, bias*, eps, out)   (x − mean) / sqrt(var + eps) · weight + bias
//   layer_norm_modulate(x [B, ..., D], shift, scale, eps, out)   LayerNorm(x) · (1 + scale) + shift (AdaLN)
//   rms_norm(x [..., D], weight*, eps, out[, rounding])   x / sqrt(mean(x²) + eps) · weight, rounded once or,
//     RmsNormRounding::t5_two_step, as T5LayerNorm does
//   group_norm(x [N, C, ...], groups, weight*, bias*, eps, out, silu[, scratch])   per (sample, group); SiLU
//     fused; with scratch (group_norm_workspace_bytes) a group spreads over several blocks in two passes
//   softmax(x [..., D], out)                            over the last axis; an all -inf row gives zeros
// weight / bias: [D] (or [C]) device tensors of x's dtype, or null.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string_view>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"
#include "sdnq/cuda/ops/detail/normalization_kernels.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

// Where rms_norm rounds to x's dtype. once: the whole x · rsqrt(mean(x²) + eps) · weight in f32, one
// rounding (torch's RMSNorm, the QK-norms). t5_two_step: transformers' T5LayerNorm, which casts
// hidden = x · rsqrt(mean(x²) + eps) (f32) to the weight's dtype, then multiplies weight · hidden in that
// dtype: two roundings. Matching it matters at bf16 (the T5 fixtures' output_bf16, see nn::gpu::T5EncoderModel).
enum class RmsNormRounding : std::uint8_t { once, t5_two_step };

namespace kernel_detail {

inline const void* optional_parameter(const TensorView* p, const TensorView& x, std::int64_t length,
                                      std::string_view op, std::string_view name) {
  if (p == nullptr) return nullptr;
  require_operand(*p, op, name);
  SDNQ_REQUIRE(p->dtype() == x.dtype() && p->rank() == 1 && p->size(0) == length, ShapeError,
               "cuda::ops::{}: {} must be {} [{}] like x {}, got {} {}", op, name, dtype_name(x.dtype()), length,
               x.shape().to_string(), dtype_name(p->dtype()), p->shape().to_string());
  return p->data();
}

// Rows and row length of x [..., D] (D ≥ 1, below 2^31).
inline std::int64_t rows_of(const TensorView& x, std::string_view op) {
  SDNQ_REQUIRE(x.rank() >= 1 && x.size(x.rank() - 1) >= 1 && x.size(x.rank() - 1) <= std::numeric_limits<int>::max(),
               ShapeError, "cuda::ops::{}: x must be [..., D] with 1 ≤ D < 2^31, got {}", op, x.shape().to_string());
  return x.numel() / x.size(x.rank() - 1);
}

// Batch stride of an AdaLN vector [D] (shared) or [B, D] (per sample, unit stride along D) for x [B, ..., D].
inline std::int64_t modulation_batch_stride(const TensorView& v, const TensorView& x, std::string_view op,
                                            std::string_view name) {
  const std::int64_t dim = x.size(x.rank() - 1);
  SDNQ_REQUIRE(v.dtype() == x.dtype() && v.device().is_cuda(), ShapeError,
               "cuda::ops::{}: {} must be a device {} tensor like x, got {} on {}", op, name, dtype_name(x.dtype()),
               dtype_name(v.dtype()), v.device().to_string());
  const bool shared = v.rank() == 1 && v.size(0) == dim;
  const bool per_sample = v.rank() == 2 && v.size(0) == x.size(0) && v.size(1) == dim;
  SDNQ_REQUIRE((shared || per_sample) && v.stride(v.rank() - 1) == 1, ShapeError,
               "cuda::ops::{}: {} must be [{}] or [{}, {}] with unit stride along D (x {}), got {} with strides {}", op,
               name, dim, x.size(0), dim, x.shape().to_string(), v.shape().to_string(), v.strides().to_string());
  return shared ? 0 : v.stride(0);
}

template <RowNorm Norm>
void run_row_norm(const TensorView& x, const TensorView* weight, const TensorView* bias, const TensorView* shift,
                  const TensorView* scale, float eps, const TensorView& out, std::string_view op, cudaStream_t stream) {
  require_operand(x, op, "x");
  require_like(out, x, x.shape(), op, "out");
  RowNormParams p;
  p.rows = rows_of(x, op);
  p.dim = static_cast<int>(x.size(x.rank() - 1));
  p.weight = optional_parameter(weight, x, p.dim, op, "weight");
  p.bias = optional_parameter(bias, x, p.dim, op, "bias");
  SDNQ_REQUIRE(eps >= 0.0f, ShapeError, "cuda::ops::{}: eps must be >= 0, got {}", op, eps);
  p.eps = eps;
  if (shift != nullptr) {
    SDNQ_REQUIRE(x.rank() >= 2, ShapeError, "cuda::ops::{}: x must be [B, ..., D], got {}", op, x.shape().to_string());
    p.shift_batch_stride = modulation_batch_stride(*shift, x, op, "shift");
    p.scale_batch_stride = modulation_batch_stride(*scale, x, op, "scale");
    p.shift = shift->data();
    p.scale = scale->data();
    p.rows_per_sample = x.size(0) == 0 ? 1 : std::max<std::int64_t>(1, p.rows / x.size(0));
  }
  p.x = x.data();
  p.out = out.data();
  if (p.rows == 0) return;
  const auto vector_ready = [](const void* pointer, std::int64_t stride) {
    return pointer == nullptr || (aligned16(pointer) && stride % 8 == 0);
  };
  const bool vector = p.dim % 8 == 0 && aligned16(p.x) && aligned16(p.out) && vector_ready(p.weight, 0) &&
                      vector_ready(p.bias, 0) && vector_ready(p.shift, p.shift_batch_stride) &&
                      vector_ready(p.scale, p.scale_batch_stride);
  const auto blocks = static_cast<unsigned>((p.rows + rows_per_block - 1) / rows_per_block);
  dispatch_16bit(x.dtype(), [&]<class T>() {
    if (vector)
      row_norm_kernel<T, Norm, true><<<blocks, rows_per_block * 32, 0, stream>>>(p);
    else
      row_norm_kernel<T, Norm, false><<<blocks, rows_per_block * 32, 0, stream>>>(p);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kernel_detail

inline void layer_norm(const TensorView& x, const TensorView* weight, const TensorView* bias, float eps,
                       const TensorView& out, cudaStream_t stream) {
  kernel_detail::run_row_norm<kernel_detail::RowNorm::layer>(x, weight, bias, nullptr, nullptr, eps, out, "layer_norm",
                                                             stream);
}

// FLUX / SD3's AdaLN in one pass: LayerNorm(x) without affine parameters, then · (1 + scale) + shift.
// x [B, ..., D]; shift, scale [D] or [B, D] (modulation_chunk views of the modulation vector).
inline void layer_norm_modulate(const TensorView& x, const TensorView& shift, const TensorView& scale, float eps,
                                const TensorView& out, cudaStream_t stream) {
  kernel_detail::run_row_norm<kernel_detail::RowNorm::layer>(x, nullptr, nullptr, &shift, &scale, eps, out,
                                                             "layer_norm_modulate", stream);
}

inline void rms_norm(const TensorView& x, const TensorView* weight, float eps, const TensorView& out,
                     RmsNormRounding rounding, cudaStream_t stream) {
  using kernel_detail::RowNorm;
  if (rounding == RmsNormRounding::t5_two_step)
    kernel_detail::run_row_norm<RowNorm::rms_rounded_twice>(x, weight, nullptr, nullptr, nullptr, eps, out, "rms_norm",
                                                            stream);
  else
    kernel_detail::run_row_norm<RowNorm::rms>(x, weight, nullptr, nullptr, nullptr, eps, out, "rms_norm", stream);
}

inline void rms_norm(const TensorView& x, const TensorView* weight, float eps, const TensorView& out,
                     cudaStream_t stream) {
  rms_norm(x, weight, eps, out, RmsNormRounding::once, stream);
}

inline void softmax(const TensorView& x, const TensorView& out, cudaStream_t stream) {
  using namespace kernel_detail;
  require_operand(x, "softmax", "x");
  require_like(out, x, x.shape(), "softmax", "out");
  const std::int64_t rows = rows_of(x, "softmax");
  const int dim = static_cast<int>(x.size(x.rank() - 1));
  if (rows == 0) return;
  const bool vector = dim % 8 == 0 && aligned16(x.data()) && aligned16(out.data());
  const auto blocks = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
  dispatch_16bit(x.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(x.data());
    auto* o = static_cast<T*>(out.data());
    if (vector)
      softmax_kernel<T, true><<<blocks, rows_per_block * 32, 0, stream>>>(in, o, rows, dim);
    else
      softmax_kernel<T, false><<<blocks, rows_per_block * 32, 0, stream>>>(in, o, rows, dim);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

namespace kernel_detail {

// Checks group_norm's arguments; returns (samples, channels, positions).
inline std::array<std::int64_t, 3> group_norm_sizes(const TensorView& x, int groups, float eps, const TensorView& out) {
  require_operand(x, "group_norm", "x");
  require_like(out, x, x.shape(), "group_norm", "out");
  SDNQ_REQUIRE(x.rank() >= 2, ShapeError, "cuda::ops::group_norm: x must be [N, C, ...], got {}",
               x.shape().to_string());
  const std::int64_t samples = x.size(0), channels = x.size(1);
  SDNQ_REQUIRE(groups >= 1 && channels % groups == 0 && channels <= std::numeric_limits<int>::max(), ShapeError,
               "cuda::ops::group_norm: {} groups must divide the {} channels of x {}", groups, channels,
               x.shape().to_string());
  SDNQ_REQUIRE(samples * groups <= std::numeric_limits<int>::max(), UnsupportedError,
               "cuda::ops::group_norm: {} samples x {} groups exceed one launch", samples, groups);
  SDNQ_REQUIRE(eps >= 0.0f, ShapeError, "cuda::ops::group_norm: eps must be >= 0, got {}", eps);
  const std::int64_t positions = channels == 0 || samples == 0 ? 0 : x.numel() / (samples * channels);
  return {samples, channels, positions};
}

// Slices per group for the split GroupNorm: enough blocks to give every SM of an H100 (132) four,
// slices of at least 4096 elements, at most 1024 slices; 1 means the one-block-per-group kernel.
inline std::int64_t group_norm_splits(std::int64_t samples, int groups, std::int64_t group_size) {
  constexpr std::int64_t target_blocks = 4 * 132, min_slice = 4096, max_splits = 1024;
  const std::int64_t pairs = samples * groups;
  if (pairs == 0 || pairs >= target_blocks) return 1;
  const std::int64_t wanted = (target_blocks + pairs - 1) / pairs;
  return std::clamp<std::int64_t>(std::min(wanted, group_size / min_slice), 1, max_splits);
}

}  // namespace kernel_detail

// Scratch bytes the split GroupNorm takes for x of `shape` (0: the one-block-per-group kernel suffices).
inline std::size_t group_norm_workspace_bytes(const Shape& shape, int groups) {
  if (shape.rank() < 2 || groups < 1 || shape[1] % groups != 0 || shape[0] == 0 || shape[1] == 0) return 0;
  const std::int64_t positions = shape.numel() / (shape[0] * shape[1]);
  const std::int64_t splits = kernel_detail::group_norm_splits(shape[0], groups, (shape[1] / groups) * positions);
  return splits == 1 ? 0 : static_cast<std::size_t>(shape[0] * groups * splits) * sizeof(float2);
}

// scratch: device bytes for the split kernel's partial statistics (group_norm_workspace_bytes), or an
// empty view: then one block per (sample, group) does all the work.
inline void group_norm(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias, float eps,
                       const TensorView& out, bool silu, const TensorView& scratch, cudaStream_t stream) {
  using namespace kernel_detail;
  const auto [samples, channels, positions] = group_norm_sizes(x, groups, eps, out);
  const void* w = optional_parameter(weight, x, channels, "group_norm", "weight");
  const void* b = optional_parameter(bias, x, channels, "group_norm", "bias");
  if (samples == 0 || channels == 0 || positions == 0) return;
  const bool vector = positions % 8 == 0 && aligned16(x.data()) && aligned16(out.data());
  const int c = static_cast<int>(channels);
  const std::int64_t group_size = (channels / groups) * positions;
  const std::int64_t splits = group_norm_splits(samples, groups, group_size);
  const std::size_t partial_bytes = static_cast<std::size_t>(samples * groups * splits) * sizeof(float2);
  const bool split = splits > 1 && scratch.device().is_cuda() && scratch.nbytes() >= partial_bytes;
  dispatch_16bit(x.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(x.data());
    const auto* wt = static_cast<const T*>(w);
    const auto* bs = static_cast<const T*>(b);
    auto* o = static_cast<T*>(out.data());
    if (split) {
      const std::int64_t slice = ((group_size + splits - 1) / splits + 7) / 8 * 8;
      const dim3 grid(static_cast<unsigned>(samples * groups), static_cast<unsigned>(splits));
      auto* partials = static_cast<float2*>(scratch.data());
      constexpr int threads = group_norm_split_threads;
      if (vector) {
        group_norm_partial_kernel<T, true><<<grid, threads, 0, stream>>>(in, group_size, slice, partials);
        group_norm_apply_kernel<T, true>
            <<<grid, threads, 0, stream>>>(in, wt, bs, o, c, groups, positions, slice, partials, eps, silu);
      } else {
        group_norm_partial_kernel<T, false><<<grid, threads, 0, stream>>>(in, group_size, slice, partials);
        group_norm_apply_kernel<T, false>
            <<<grid, threads, 0, stream>>>(in, wt, bs, o, c, groups, positions, slice, partials, eps, silu);
      }
      return;
    }
    const auto blocks = static_cast<unsigned>(samples * groups);
    if (vector)
      group_norm_kernel<T, true>
          <<<blocks, group_norm_threads, 0, stream>>>(in, wt, bs, o, c, groups, positions, eps, silu);
    else
      group_norm_kernel<T, false>
          <<<blocks, group_norm_threads, 0, stream>>>(in, wt, bs, o, c, groups, positions, eps, silu);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline void group_norm(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias, float eps,
                       const TensorView& out, bool silu, cudaStream_t stream) {
  group_norm(x, groups, weight, bias, eps, out, silu, TensorView(), stream);
}

}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
