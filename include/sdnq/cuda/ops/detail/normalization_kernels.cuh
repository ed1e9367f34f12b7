#pragma once
// Kernels of normalization.cuh. One warp per row for LayerNorm, RMSNorm and softmax over the last axis
// (rows of a few thousand elements; the re-reads after the first hit L1/L2); one block per (sample,
// group) for GroupNorm, or several per group in two passes when the caller gives scratch (split GroupNorm). Statistics
// in f32 with the mean subtracted before squaring (two passes).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"
#include "sdnq/cuda/ops/detail/w8a8_rows.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

inline constexpr int rows_per_block = 4;  // warps per block of the row kernels

enum class RowNorm { layer, rms };

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

// The arithmetic of row_norm_kernel, shared with row_norm_w8a8_kernel (the same rows straight to 8-bit
// codes) and written with explicit roundings: no multiply-add contraction the compiler might do in one
// kernel and not the other, so both compute the same bits. Statistics: each lane sums its elements in
// order (lane l: elements 8l..8l+7, then 256 further on, ...), then the warp; the centred squares likewise.
__device__ __forceinline__ void add_values(float& sum, const float* v, int count) {
  for (int e = 0; e < count; ++e) sum = __fadd_rn(sum, v[e]);
}
__device__ __forceinline__ void add_centred_squares(float& squares, const float* v, int count, float mean) {
  for (int e = 0; e < count; ++e) {
    const float centred = __fsub_rn(v[e], mean);
    squares = __fmaf_rn(centred, centred, squares);
  }
}
__device__ __forceinline__ float row_mean(float lane_sum, int dim) {
  return __fdiv_rn(warp_sum(lane_sum), static_cast<float>(dim));
}
__device__ __forceinline__ float row_inverse_deviation(float lane_squares, int dim, float eps) {
  return rsqrtf(__fadd_rn(__fdiv_rn(warp_sum(lane_squares), static_cast<float>(dim)), eps));
}
// (v − mean) · inverse, then · weight, + bias, · (1 + scale) + shift where given.
__device__ __forceinline__ float normalized_value(float v, float mean, float inverse, const float* weight,
                                                  const float* bias, const float* shift, const float* scale) {
  v = __fmul_rn(__fsub_rn(v, mean), inverse);
  if (weight != nullptr) v = __fmul_rn(v, *weight);
  if (bias != nullptr) v = __fadd_rn(v, *bias);
  if (shift != nullptr) v = __fmaf_rn(v, __fadd_rn(1.0f, *scale), *shift);
  return v;
}

// The per-row vectors of a RowNormParams row (null where absent).
template <class T>
struct RowNormVectors {
  const T *weight, *bias, *shift, *scale;
  __device__ RowNormVectors(const RowNormParams& p, std::int64_t row) {
    const std::int64_t sample = row / p.rows_per_sample;
    weight = static_cast<const T*>(p.weight);
    bias = static_cast<const T*>(p.bias);
    shift = p.shift != nullptr ? static_cast<const T*>(p.shift) + sample * p.shift_batch_stride : nullptr;
    scale = p.scale != nullptr ? static_cast<const T*>(p.scale) + sample * p.scale_batch_stride : nullptr;
  }
};

// v[0..width) = the normalized values of the row's elements i..i+width (Vector: 8, 16-byte loads).
template <class T, int width>
__device__ __forceinline__ void normalize_values(float (&v)[width], const RowNormVectors<T>& r, int i, float mean,
                                                 float inverse) {
  float w[width], b[width], sh[width], sc[width];
  const auto load = [](const T* source, float(&values)[width]) {
    if constexpr (width == 8)
      load8(source, values);
    else
      values[0] = to_float(*source);
  };
  if (r.weight != nullptr) load(r.weight + i, w);
  if (r.bias != nullptr) load(r.bias + i, b);
  if (r.shift != nullptr) {
    load(r.shift + i, sh);
    load(r.scale + i, sc);
  }
#pragma unroll
  for (int e = 0; e < width; ++e)
    v[e] = normalized_value(v[e], mean, inverse, r.weight != nullptr ? &w[e] : nullptr,
                            r.bias != nullptr ? &b[e] : nullptr, r.shift != nullptr ? &sh[e] : nullptr,
                            r.shift != nullptr ? &sc[e] : nullptr);
}

// One warp per row. Vector: dim % 8 == 0 and 16-byte aligned rows (and vectors).
template <class T, RowNorm Norm, bool Vector>
__global__ void __launch_bounds__(rows_per_block * 32) row_norm_kernel(const RowNormParams p) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= p.rows) return;
  const int dim = p.dim;
  const T* in = static_cast<const T*>(p.x) + row * dim;
  T* o = static_cast<T*>(p.out) + row * dim;
  const RowNormVectors<T> vectors(p, row);
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
      add_values(sum, v, width);
    }
    mean = row_mean(sum, dim);
  }
  float squares = 0.0f;
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width];
    load(in + i, v);
    add_centred_squares(squares, v, width, mean);
  }
  const float inverse = row_inverse_deviation(squares, dim, p.eps);
  for (int i = lane * width; i < dim; i += 32 * width) {
    float v[width];
    load(in + i, v);
    normalize_values<T, width>(v, vectors, i, mean, inverse);
    if constexpr (Vector)
      store8(o + i, v);
    else
      o[i] = from_float<T>(v[0]);
  }
}

// row_norm_kernel's rows written as 8-bit codes and per-row scales (cuda::ops::layer_norm_to_w8a8 and
// layer_norm_modulate_to_w8a8): one warp per row with the same statistics and the same normalized values,
// each rounded to T as row_norm_kernel stores it, then quantized by the GEMM's own helpers
// (detail/w8a8_quantize.cuh). Words > 0: the row (dim ≤ 256·Words) stays in registers, read once; Words
// == 0: longer rows, read for the statistics, then normalized twice more (absmax, codes) from L1/L2.
// Needs dim % 8 == 0 and 16-byte aligned rows and vectors (the Vector layout of row_norm_kernel).
template <class T, RowNorm Norm, cuda::kernel_detail::W8A8Operand Operand, int Words>
__global__ void __launch_bounds__(rows_per_block * 32)
    row_norm_w8a8_kernel(const RowNormParams p, const W8A8RowsParams q) {
  namespace w8a8 = cuda::kernel_detail;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * rows_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= p.rows) return;
  const int dim = p.dim, words = dim / 8;
  const uint4* in = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + row * dim);
  uint2* codes = reinterpret_cast<uint2*>(q.codes + row * dim);
  const RowNormVectors<T> vectors(p, row);
  const auto normalized_word = [&](uint4 raw, int word, float mean, float inverse) {
    float v[8];
    unpack8<T>(raw, v);
    normalize_values<T, 8>(v, vectors, word * 8, mean, inverse);
    return pack8<T>(v);
  };
  if constexpr (Words > 0) {
    uint4 chunk[Words];
#pragma unroll
    for (int u = 0; u < Words; ++u) {
      const int word = lane + 32 * u;
      chunk[u] = word < words ? in[word] : make_uint4(0u, 0u, 0u, 0u);
    }
    float mean = 0.0f;
    if constexpr (Norm == RowNorm::layer) {
      float sum = 0.0f;
#pragma unroll
      for (int u = 0; u < Words; ++u) {
        if (lane + 32 * u >= words) break;
        float v[8];
        unpack8<T>(chunk[u], v);
        add_values(sum, v, 8);
      }
      mean = row_mean(sum, dim);
    }
    float squares = 0.0f;
#pragma unroll
    for (int u = 0; u < Words; ++u) {
      if (lane + 32 * u >= words) break;
      float v[8];
      unpack8<T>(chunk[u], v);
      add_centred_squares(squares, v, 8, mean);
    }
    const float inverse = row_inverse_deviation(squares, dim, p.eps);
#pragma unroll
    for (int u = 0; u < Words; ++u) {
      const int word = lane + 32 * u;
      if (word < words) chunk[u] = normalized_word(chunk[u], word, mean, inverse);  // zeros stay past the row
    }
    w8a8::quantize_warp_resident_words<T, Operand, Words>(chunk, words, codes, q.scale + row, lane,
                                                          q.scale_in_activation_dtype);
  } else {
    float mean = 0.0f;
    if constexpr (Norm == RowNorm::layer) {
      float sum = 0.0f;
      for (int word = lane; word < words; word += 32) {
        float v[8];
        unpack8<T>(in[word], v);
        add_values(sum, v, 8);
      }
      mean = row_mean(sum, dim);
    }
    float squares = 0.0f;
    for (int word = lane; word < words; word += 32) {
      float v[8];
      unpack8<T>(in[word], v);
      add_centred_squares(squares, v, 8, mean);
    }
    const float inverse = row_inverse_deviation(squares, dim, p.eps);
    w8a8::quantize_warp_row<T, Operand, 4>([&](int word) { return normalized_word(in[word], word, mean, inverse); },
                                           words, codes, q.scale + row, lane, q.scale_in_activation_dtype);
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
