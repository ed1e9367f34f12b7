#pragma once
// Kernels of normalization.cuh. One warp per row for LayerNorm, RMSNorm and softmax over the last axis
// (rows of a few thousand elements; the re-reads after the first hit L1/L2); one block per (sample,
// group) for GroupNorm, or several per group in two passes when the caller gives scratch (split GroupNorm). Statistics
// in f32 with the mean subtracted before squaring (two passes).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

inline constexpr int rows_per_block = 4;  // warps per block of the row kernels

// rms_rounded_twice: RMSNorm as transformers' T5LayerNorm rounds it, x · rsqrt(mean(x²) + eps) rounded to
// T, then · weight rounded again (see ops::RmsNormRounding).
enum class RowNorm { layer, rms, rms_rounded_twice };

struct RowNormParams {
  const void* x = nullptr;       // [rows, dim]
  const void* weight = nullptr;  // [dim] or null
  const void* bias = nullptr;    // [dim] or null
  // AdaLN modulation after the norm (null: none): row r belongs to sample r / rows_per_sample, whose
  // shift / scale vectors start at sample · *_batch_stride.
  const void* shift = nullptr;
  const void* scale = nullptr;
  void* out = nullptr;  // [rows, dim]
  std::int64_t rows = 0, rows_per_sample = 1, shift_batch_stride = 0, scale_batch_stride = 0;
  int dim = 0;
  float eps = 0.0f;
};

// One warp per row. Vector: dim % 8 == 0 and 16-byte aligned rows (and vectors).
template <class T, RowNorm Norm, bool Vector>
__global__ void __launch_bounds__(rows_per_block * 32) row_norm_kernel(const RowNormParams p) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= p.rows) return;
  const int dim = p.dim;
  const T* in = static_cast<const T*>(p.x) + row * dim;
  T* o = static_cast<T*>(p.out) + row * dim;
  const T* weight = static_cast<const T*>(p.weight);
  const T* bias = static_cast<const T*>(p.bias);
  const std::int64_t sample = row / p.rows_per_sample;
  const T* shift = p.shift != nullptr ? static_cast<const T*>(p.shift) + sample * p.shift_batch_stride : nullptr;
  const T* scale = p.scale != nullptr ? static_cast<const T*>(p.scale) + sample * p.scale_batch_stride : nullptr;
  constexpr int width = Vector ? 8 : 1;
  const auto load = [](const T* source, float(&v)[width]) {
    if constexpr (Vector)
      load8(source, v);
    else
      v[0] = to_float(*source);
  };
  float mean = 0.0f;
  if constexpr (Norm == RowNorm::layer) {
    float sum = 0.0f;
    for (int i = lane * width; i < dim; i += 32 * width) {
      float v[width];
      load(in + i, v);
#pragma unroll
      for (int e = 0; e < width; ++e) sum += v[e];
    }
    mean = warp_sum(sum) / static_cast<float>(dim);
  }
  float squares = 0.0f;
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width];
    load(in + i, v);
#pragma unroll
    for (int e = 0; e < width; ++e) squares += (v[e] - mean) * (v[e] - mean);
  }
  const float inverse = rsqrtf(warp_sum(squares) / static_cast<float>(dim) + p.eps);
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width], w[width], b[width], sh[width], sc[width];
    load(in + i, v);
    if (weight != nullptr) load(weight + i, w);
    if (bias != nullptr) load(bias + i, b);
    if (shift != nullptr) {
      load(shift + i, sh);
      load(scale + i, sc);
    }
#pragma unroll
    for (int e = 0; e < width; ++e) {
      v[e] = (v[e] - mean) * inverse;
      if constexpr (Norm == RowNorm::rms_rounded_twice) v[e] = to_float(from_float<T>(v[e]));
      if (weight != nullptr) v[e] *= w[e];
      if (bias != nullptr) v[e] += b[e];
      if (shift != nullptr) v[e] = fmaf(v[e], 1.0f + sc[e], sh[e]);
    }
    if constexpr (Vector)
      store8(o + i, v);
    else
      o[i] = from_float<T>(v[0]);
  }
}

// Softmax over rows of `dim` elements; a row that is entirely -inf becomes zeros.
template <class T, bool Vector>
__global__ void __launch_bounds__(rows_per_block * 32) softmax_kernel(const T* x, T* out, std::int64_t rows, int dim) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* in = x + row * dim;
  T* o = out + row * dim;
  constexpr int width = Vector ? 8 : 1;
  float local_max = -INFINITY;
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width];
    if constexpr (Vector)
      load8(in + i, v);
    else
      v[0] = to_float(in[i]);
#pragma unroll
    for (int e = 0; e < width; ++e) local_max = fmaxf(local_max, v[e]);
  }
  const float row_max = warp_max(local_max);
  float local_sum = 0.0f;
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width];
    if constexpr (Vector)
      load8(in + i, v);
    else
      v[0] = to_float(in[i]);
#pragma unroll
    for (int e = 0; e < width; ++e) local_sum += expf(v[e] - row_max);
  }
  const float total = warp_sum(local_sum);
  const bool masked = row_max == -INFINITY;
  const float inverse = masked ? 0.0f : 1.0f / total;
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width];
    if constexpr (Vector)
      load8(in + i, v);
    else
      v[0] = to_float(in[i]);
#pragma unroll
    for (int e = 0; e < width; ++e) v[e] = masked ? 0.0f : expf(v[e] - row_max) * inverse;
    if constexpr (Vector)
      store8(o + i, v);
    else
      o[i] = from_float<T>(v[0]);
  }
}

inline constexpr int group_norm_threads = 512;

__device__ __forceinline__ float block_sum(float x, float* scratch /*[32]*/) {
  x = warp_sum(x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += scratch[w];
  return total;
}

// The per-thread loops of GroupNorm over elements [begin, end) of one group's contiguous run `in`
// (Vector: 8 elements per step, 16-byte aligned), shared by the one-block and the split kernels so
// both sum in the same order.
template <bool Vector, class T>
__device__ __forceinline__ void load_group_values(const T* at, float (&v)[Vector ? 8 : 1]) {
  if constexpr (Vector)
    load8(at, v);
  else
    v[0] = to_float(*at);
}

template <bool Vector, class T>
__device__ __forceinline__ float thread_range_sum(const T* in, std::int64_t begin, std::int64_t end) {
  constexpr int width = Vector ? 8 : 1;
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * width;
  float sum = 0.0f;
  for (std::int64_t i = begin + threadIdx.x * width; i < end; i += stride) {
    float v[width];
    load_group_values<Vector>(in + i, v);
#pragma unroll
    for (int e = 0; e < width; ++e) sum += v[e];
  }
  return sum;
}

template <bool Vector, class T>
__device__ __forceinline__ float thread_range_centred_squares(const T* in, std::int64_t begin, std::int64_t end,
                                                              float mean) {
  constexpr int width = Vector ? 8 : 1;
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * width;
  float squares = 0.0f;
  for (std::int64_t i = begin + threadIdx.x * width; i < end; i += stride) {
    float v[width];
    load_group_values<Vector>(in + i, v);
#pragma unroll
    for (int e = 0; e < width; ++e) squares += (v[e] - mean) * (v[e] - mean);
  }
  return squares;
}

// o[i] = (in[i] - mean) · inverse · weight[c] + bias[c] (then SiLU) for i in [begin, end), where c is
// the channel of element i (`first_channel` + i / positions; one channel per 8-pack).
template <bool Vector, class T>
__device__ __forceinline__ void normalize_range(const T* in, T* o, std::int64_t begin, std::int64_t end,
                                                std::int64_t positions, int first_channel, const T* weight,
                                                const T* bias, float mean, float inverse, bool silu) {
  constexpr int width = Vector ? 8 : 1;
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * width;
  for (std::int64_t i = begin + threadIdx.x * width; i < end; i += stride) {
    const int channel = first_channel + static_cast<int>(i / positions);
    const float scale = (weight != nullptr ? to_float(weight[channel]) : 1.0f) * inverse;
    const float shift = bias != nullptr ? to_float(bias[channel]) : 0.0f;
    float v[width];
    load_group_values<Vector>(in + i, v);
#pragma unroll
    for (int e = 0; e < width; ++e) {
      v[e] = fmaf(v[e] - mean, scale, shift);
      if (silu) v[e] = v[e] / (1.0f + expf(-v[e]));
    }
    if constexpr (Vector)
      store8(o + i, v);
    else
      o[i] = from_float<T>(v[0]);
  }
}

// x, out [N, C, positions]; block (n, g) normalizes channels [g·C/G, (g+1)·C/G) × positions, a
// contiguous run of group_size elements. Then per-channel weight/bias (or null) and optional SiLU.
// Vector: positions % 8 == 0 and 16-byte aligned x and out.
template <class T, bool Vector>
__global__ void __launch_bounds__(group_norm_threads)
    group_norm_kernel(const T* x, const T* weight, const T* bias, T* out, int channels, int groups,
                      std::int64_t positions, float eps, bool silu) {
  __shared__ float scratch[32];
  const int group = blockIdx.x % groups;
  const std::int64_t sample = blockIdx.x / groups;
  const int group_channels = channels / groups;
  const std::int64_t group_size = group_channels * positions;
  const std::int64_t offset = (sample * channels + static_cast<std::int64_t>(group) * group_channels) * positions;
  const T* in = x + offset;
  const float mean = block_sum(thread_range_sum<Vector>(in, 0, group_size), scratch) / static_cast<float>(group_size);
  const float squares = block_sum(thread_range_centred_squares<Vector>(in, 0, group_size, mean), scratch);
  const float inverse = rsqrtf(squares / static_cast<float>(group_size) + eps);
  normalize_range<Vector>(in, out + offset, 0, group_size, positions, group * group_channels, weight, bias, mean,
                          inverse, silu);
}

// Split GroupNorm, for few (sample, group) pairs over many positions (the VAE's 1024² levels with
// N·G = 32 would leave most SMs idle): each group is cut into `splits` slices of `slice` elements
// (a multiple of 8). Pass 1 writes each slice's mean and centred sum of squares (two passes over
// the slice, which the second finds in cache); pass 2 merges a group's partials in double with Chan's
// formula in one warp, then normalizes its slice.
inline constexpr int group_norm_split_threads = 256;

template <class T, bool Vector>
__global__ void __launch_bounds__(group_norm_split_threads)
    group_norm_partial_kernel(const T* x, std::int64_t group_size, std::int64_t slice, float2* partials) {
  __shared__ float scratch[32];
  const std::int64_t begin = static_cast<std::int64_t>(blockIdx.y) * slice;
  const std::int64_t end = begin + slice < group_size ? begin + slice : group_size;
  const T* in = x + static_cast<std::int64_t>(blockIdx.x) * group_size;
  const float count = end > begin ? static_cast<float>(end - begin) : 1.0f;
  const float mean = block_sum(thread_range_sum<Vector>(in, begin, end), scratch) / count;
  const float centred = block_sum(thread_range_centred_squares<Vector>(in, begin, end, mean), scratch);
  if (threadIdx.x == 0) partials[static_cast<std::int64_t>(blockIdx.x) * gridDim.y + blockIdx.y] = {mean, centred};
}

template <class T, bool Vector>
__global__ void __launch_bounds__(group_norm_split_threads)
    group_norm_apply_kernel(const T* x, const T* weight, const T* bias, T* out, int channels, int groups,
                            std::int64_t positions, std::int64_t slice, const float2* partials, float eps, bool silu) {
  __shared__ float statistics[2];  // mean, 1 / sqrt(var + eps)
  const int splits = static_cast<int>(gridDim.y);
  const int group = static_cast<int>(blockIdx.x % groups);
  const int group_channels = channels / groups;
  const std::int64_t group_size = group_channels * positions;
  if (threadIdx.x < 32) {
    // Lane l merges slices l, l + 32, ...; then the lanes merge pairwise (Chan et al.).
    double n = 0.0, mean = 0.0, m2 = 0.0;
    for (int s = static_cast<int>(threadIdx.x); s < splits; s += 32) {
      const std::int64_t begin = static_cast<std::int64_t>(s) * slice;
      const double count = static_cast<double>((begin + slice < group_size ? begin + slice : group_size) - begin);
      if (count <= 0.0) continue;
      const float2 p = partials[static_cast<std::int64_t>(blockIdx.x) * splits + s];
      const double total = n + count, delta = p.x - mean;
      mean += delta * count / total;
      m2 += p.y + delta * delta * n * count / total;
      n = total;
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const double other_n = __shfl_xor_sync(0xFFFFFFFFu, n, offset);
      const double other_mean = __shfl_xor_sync(0xFFFFFFFFu, mean, offset);
      const double other_m2 = __shfl_xor_sync(0xFFFFFFFFu, m2, offset);
      const double total = n + other_n;
      if (total > 0.0) {
        const double delta = other_mean - mean;
        m2 += other_m2 + delta * delta * n * other_n / total;
        mean += delta * other_n / total;
      }
      n = total;
    }
    if (threadIdx.x == 0) {
      statistics[0] = static_cast<float>(mean);
      statistics[1] = rsqrtf(static_cast<float>(m2 / n) + eps);
    }
  }
  __syncthreads();
  const float mean = statistics[0], inverse = statistics[1];
  const std::int64_t begin = static_cast<std::int64_t>(blockIdx.y) * slice;
  const std::int64_t end = begin + slice < group_size ? begin + slice : group_size;
  const std::int64_t offset = static_cast<std::int64_t>(blockIdx.x) * group_size;
  normalize_range<Vector>(x + offset, out + offset, begin, end, positions, group * group_channels, weight, bias, mean,
                          inverse, silu);
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
