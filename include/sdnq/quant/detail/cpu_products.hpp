#pragma once
// Cache-blocked, multithreaded dense products for the CPU codec paths (randomized SVD, SVD split and
// add-back). Each output element is computed by exactly one thread, summing in a fixed order (the
// reduction index ascending), so results are bit-identical whatever the thread count. The fp32
// low-rank products keep the per-element operation order of the loops they replace (bit-exact with the
// reference dequantizer); the SVD's double products are fused multiply-add chains.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "sdnq/core/parallel.hpp"

// x86-64 GCC/Clang: kernels with a fused multiply-add also get an AVX2+FMA clone, chosen at run time;
// std::fma is exact on either, so the result is the same bits, only faster.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#include <immintrin.h>
#define SDNQ_HAS_AVX2_CLONE 1
#define SDNQ_TARGET_AVX2_FMA __attribute__((target("avx2,fma")))
#define SDNQ_INLINE_BODY __attribute__((always_inline)) inline
#else
#define SDNQ_HAS_AVX2_CLONE 0
#define SDNQ_TARGET_AVX2_FMA
#define SDNQ_INLINE_BODY inline
#endif

namespace sdnq::quant::detail {

inline bool cpu_has_avx2_fma() {
#if SDNQ_HAS_AVX2_CLONE
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
#else
  return false;
#endif
}

// `vectors` holds `count` vectors of `length` (vector k at k·length) -> [length, count] (k fastest).
inline std::vector<double> interleave_vectors(const std::vector<double>& vectors, std::int64_t count,
                                              std::int64_t length) {
  std::vector<double> interleaved(vectors.size());
  for (std::int64_t k = 0; k < count; ++k)
    for (std::int64_t i = 0; i < length; ++i) interleaved[i * count + k] = vectors[k * length + i];
  return interleaved;
}

// sums[t·count + k] = fma(weights[t·weight_stride + s], vectors[s·count + k], ...) for s < steps
// ascending: `tile` accumulator rows of `count` doubles, each a fused multiply-add chain.
SDNQ_INLINE_BODY void accumulate_tile_body(const float* weights, std::int64_t weight_stride, std::int64_t weight_step,
                                           std::int64_t tile, const double* vectors, std::int64_t steps,
                                           std::int64_t count, double* sums) {
  for (std::int64_t s = 0; s < steps; ++s) {
    const double* vector = vectors + s * count;
    for (std::int64_t t = 0; t < tile; ++t) {
      const double weight = weights[t * weight_stride + s * weight_step];
      double* sum = sums + t * count;
      for (std::int64_t k = 0; k < count; ++k) sum[k] = std::fma(weight, vector[k], sum[k]);
    }
  }
}

#if SDNQ_HAS_AVX2_CLONE
// Rows t0 .. t0 + Rows − 1 and sums columns k0 .. k0 + 4·Vectors − 1 of accumulate_tile_body, held in
// registers for all `steps` (the body keeps the whole [tile, count] block in memory and reloads and
// stores every sum each step). Per step: Vectors loads of the vectors, Rows widened weights, Rows·Vectors
// fused multiply-adds: the same fma per element in the same order, so the same bits.
// Unrolled at any optimization level (-O2 keeps a loop over a register array in memory: 3× slower).
#define SDNQ_UNROLLED _Pragma("GCC unroll 4")
template <int Rows, int Vectors>
SDNQ_TARGET_AVX2_FMA inline void accumulate_block_avx2(const float* weights, std::int64_t weight_stride,
                                                       std::int64_t weight_step, const double* vectors,
                                                       std::int64_t steps, std::int64_t count, double* sums) {
  __m256d acc[Rows][Vectors];
  SDNQ_UNROLLED for (int r = 0; r < Rows; ++r) {
    SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_loadu_pd(sums + r * count + 4 * v);
  }
  for (std::int64_t s = 0; s < steps; ++s) {
    __m256d vector[Vectors];
    SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) vector[v] = _mm256_loadu_pd(vectors + s * count + 4 * v);
    SDNQ_UNROLLED for (int r = 0; r < Rows; ++r) {
      const __m256d weight = _mm256_set1_pd(static_cast<double>(weights[r * weight_stride + s * weight_step]));
      SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_fmadd_pd(weight, vector[v], acc[r][v]);
    }
  }
  SDNQ_UNROLLED for (int r = 0; r < Rows; ++r) {
    SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) _mm256_storeu_pd(sums + r * count + 4 * v, acc[r][v]);
  }
}
#undef SDNQ_UNROLLED

// Columns k0 .. k0 + 4·Vectors − 1 of every row of the tile: 4-row register blocks, then single rows.
// The columns are the outer loop so that their slice of the vectors stays in L1 across the rows.
template <int Vectors>
SDNQ_TARGET_AVX2_FMA inline void accumulate_columns_avx2(const float* weights, std::int64_t weight_stride,
                                                         std::int64_t weight_step, std::int64_t tile,
                                                         const double* vectors, std::int64_t steps, std::int64_t count,
                                                         double* sums) {
  std::int64_t t = 0;
  for (; t + 4 <= tile; t += 4)
    accumulate_block_avx2<4, Vectors>(weights + t * weight_stride, weight_stride, weight_step, vectors, steps, count,
                                      sums + t * count);
  for (; t < tile; ++t)
    accumulate_block_avx2<1, Vectors>(weights + t * weight_stride, weight_stride, weight_step, vectors, steps, count,
                                      sums + t * count);
}

SDNQ_TARGET_AVX2_FMA inline void accumulate_tile_avx2(const float* weights, std::int64_t weight_stride,
                                                      std::int64_t weight_step, std::int64_t tile,
                                                      const double* vectors, std::int64_t steps, std::int64_t count,
                                                      double* sums) {
  std::int64_t k = 0;
  for (; k + 12 <= count; k += 12)
    accumulate_columns_avx2<3>(weights, weight_stride, weight_step, tile, vectors + k, steps, count, sums + k);
  for (; k + 8 <= count; k += 8)
    accumulate_columns_avx2<2>(weights, weight_stride, weight_step, tile, vectors + k, steps, count, sums + k);
  for (; k + 4 <= count; k += 4)
    accumulate_columns_avx2<1>(weights, weight_stride, weight_step, tile, vectors + k, steps, count, sums + k);
  for (; k < count; ++k)  // the last count % 4 sums: scalar fma chains
    for (std::int64_t t = 0; t < tile; ++t) {
      double sum = sums[t * count + k];
      for (std::int64_t s = 0; s < steps; ++s)
        sum = std::fma(static_cast<double>(weights[t * weight_stride + s * weight_step]), vectors[s * count + k], sum);
      sums[t * count + k] = sum;
    }
}
#endif

inline void accumulate_tile(const float* weights, std::int64_t weight_stride, std::int64_t weight_step,
                            std::int64_t tile, const double* vectors, std::int64_t steps, std::int64_t count,
                            double* sums) {
#if SDNQ_HAS_AVX2_CLONE
  if (cpu_has_avx2_fma())
    return accumulate_tile_avx2(weights, weight_stride, weight_step, tile, vectors, steps, count, sums);
#endif
  accumulate_tile_body(weights, weight_stride, weight_step, tile, vectors, steps, count, sums);
}

// The products below take `line_tile` rows (or columns) of W at a time, each with `count` sums in
// memory, and walk the reduction index in blocks of `step_block`: the block of vectors ([step_block,
// count] doubles, 128 KiB at count 32) stays in L2 while every line of the tile uses it. Each sum still
// runs its fma chain over the whole reduction index in ascending order.
inline constexpr std::int64_t line_tile = 64, step_block = 512;

// out[k·rows + i] = Σ_j W[i, j]·x[k·cols + j] in double (fma chain, j ascending). W [rows, cols]
// row-major; x holds `count` vectors of length cols, out `count` vectors of length rows.
inline void matrix_times_vectors(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                 const std::vector<double>& x, std::int64_t count, std::vector<double>& out) {
  const std::vector<double> x_interleaved = interleave_vectors(x, count, cols);  // [cols, count]
  out.assign(static_cast<std::size_t>(rows * count), 0.0);
  parallel_for(0, (rows + line_tile - 1) / line_tile, 1, [&](std::int64_t tile_begin, std::int64_t tile_end) {
    std::vector<double> sums(static_cast<std::size_t>(line_tile * count));  // [line_tile, count]
    for (std::int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const std::int64_t row0 = tile * line_tile, tile_rows = std::min(line_tile, rows - row0);
      std::fill(sums.begin(), sums.end(), 0.0);
      for (std::int64_t s0 = 0; s0 < cols; s0 += step_block)
        accumulate_tile(w.data() + row0 * cols + s0, cols, 1, tile_rows, x_interleaved.data() + s0 * count,
                        std::min(step_block, cols - s0), count, sums.data());
      for (std::int64_t r = 0; r < tile_rows; ++r)
        for (std::int64_t k = 0; k < count; ++k) out[k * rows + row0 + r] = sums[r * count + k];
    }
  });
}

// out[k·cols + j] = Σ_i W[i, j]·y[k·rows + i] in double (fma chain, i ascending): Wᵀ times `count` vectors.
inline void transposed_matrix_times_vectors(std::span<const float> w, std::int64_t rows, std::int64_t cols,
                                            const std::vector<double>& y, std::int64_t count,
                                            std::vector<double>& out) {
  const std::vector<double> y_interleaved = interleave_vectors(y, count, rows);  // [rows, count]
  out.assign(static_cast<std::size_t>(cols * count), 0.0);
  parallel_for(0, (cols + line_tile - 1) / line_tile, 1, [&](std::int64_t tile_begin, std::int64_t tile_end) {
    std::vector<double> sums(static_cast<std::size_t>(line_tile * count));  // [line_tile, count]
    for (std::int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const std::int64_t col0 = tile * line_tile, tile_cols = std::min(line_tile, cols - col0);
      std::fill(sums.begin(), sums.end(), 0.0);
      for (std::int64_t s0 = 0; s0 < rows; s0 += step_block)
        accumulate_tile(w.data() + s0 * cols + col0, 1, cols, tile_cols, y_interleaved.data() + s0 * count,
                        std::min(step_block, rows - s0), count, sums.data());
      for (std::int64_t c = 0; c < tile_cols; ++c)
        for (std::int64_t k = 0; k < count; ++k) out[k * cols + col0 + c] = sums[c * count + k];
    }
  });
}

// Column block of the low-rank products below: `rank` rows of this many factor values stay in L1/L2.
inline constexpr std::int64_t low_rank_column_block = 256;

// sums[c] = fma(up_row[r], down[r·cols + c], sums[c]) for r ascending, from 0: one row block of U·D in
// fp32 with a fused multiply-add per term (the reference CPU GEMM's per-element order).
SDNQ_INLINE_BODY void fused_low_rank_row_body(const float* up_row, const float* down, std::int64_t rank,
                                              std::int64_t cols, std::int64_t width, float* sums) {
  for (std::int64_t c = 0; c < width; ++c) sums[c] = 0.0f;
  for (std::int64_t r = 0; r < rank; ++r) {
    const float u = up_row[r];
    const float* d = down + r * cols;
    for (std::int64_t c = 0; c < width; ++c) sums[c] = std::fma(u, d[c], sums[c]);
  }
}

#if SDNQ_HAS_AVX2_CLONE
SDNQ_TARGET_AVX2_FMA inline void fused_low_rank_row_avx2(const float* up_row, const float* down, std::int64_t rank,
                                                         std::int64_t cols, std::int64_t width, float* sums) {
  fused_low_rank_row_body(up_row, down, rank, cols, width, sums);
}
#endif

inline void fused_low_rank_row(const float* up_row, const float* down, std::int64_t rank, std::int64_t cols,
                               std::int64_t width, float* sums) {
#if SDNQ_HAS_AVX2_CLONE
  if (cpu_has_avx2_fma()) return fused_low_rank_row_avx2(up_row, down, rank, cols, width, sums);
#endif
  fused_low_rank_row_body(up_row, down, rank, cols, width, sums);
}

#if SDNQ_HAS_AVX2_CLONE
// fused_low_rank_row_body for `Rows` rows at once (sums [Rows, low_rank_column_block]): each block of
// 8·Vectors columns of every row in registers over all r, so a row of D is loaded once for all the rows.
// The same fma per element in the same order, so the same bits.
#define SDNQ_UNROLLED _Pragma("GCC unroll 4")
template <int Rows, int Vectors>
SDNQ_TARGET_AVX2_FMA inline void fused_low_rank_block_avx2(const float* up, const float* down, std::int64_t rank,
                                                           std::int64_t cols, float* sums) {
  __m256 acc[Rows][Vectors];
  SDNQ_UNROLLED for (int row = 0; row < Rows; ++row) {
    SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) acc[row][v] = _mm256_setzero_ps();
  }
  for (std::int64_t r = 0; r < rank; ++r) {
    __m256 d[Vectors];
    SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) d[v] = _mm256_loadu_ps(down + r * cols + 8 * v);
    SDNQ_UNROLLED for (int row = 0; row < Rows; ++row) {
      const __m256 u = _mm256_set1_ps(up[row * rank + r]);
      SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v) acc[row][v] = _mm256_fmadd_ps(u, d[v], acc[row][v]);
    }
  }
  SDNQ_UNROLLED for (int row = 0; row < Rows; ++row) {
    SDNQ_UNROLLED for (int v = 0; v < Vectors; ++v)
        _mm256_storeu_ps(sums + row * low_rank_column_block + 8 * v, acc[row][v]);
  }
}
#undef SDNQ_UNROLLED

template <int Rows>
SDNQ_TARGET_AVX2_FMA inline void fused_low_rank_rows_avx2(const float* up_rows, const float* down, std::int64_t rank,
                                                          std::int64_t cols, std::int64_t width, float* sums) {
  std::int64_t c = 0;
  for (; c + 24 <= width; c += 24) fused_low_rank_block_avx2<Rows, 3>(up_rows, down + c, rank, cols, sums + c);
  for (; c + 8 <= width; c += 8) fused_low_rank_block_avx2<Rows, 1>(up_rows, down + c, rank, cols, sums + c);
  for (int row = 0; row < Rows; ++row)  // the last width % 8 columns: scalar fma chains
    for (std::int64_t column = c; column < width; ++column) {
      float sum = 0.0f;
      for (std::int64_t r = 0; r < rank; ++r) sum = std::fma(up_rows[row * rank + r], down[r * cols + column], sum);
      sums[row * low_rank_column_block + column] = sum;
    }
}
#endif

// U·D with U [rows, rank] and D [rank, cols] (fp32, row-major) for rows [row_begin, row_end): calls
// finish(row, col0, width, sums) with sums[c] = (U·D)[row, col0 + c], each an fp32 fma chain over r.
// With AVX2, 4 rows at a time share each load of D.
template <class Finish>
void fused_low_rank_rows(const float* up, const float* down, std::int64_t row_begin, std::int64_t row_end,
                         std::int64_t rank, std::int64_t cols, Finish&& finish) {
  constexpr std::int64_t block_rows = 4;
  float sums[block_rows * low_rank_column_block];
#if SDNQ_HAS_AVX2_CLONE
  const bool blocked = cpu_has_avx2_fma();
#endif
  for (std::int64_t col0 = 0; col0 < cols; col0 += low_rank_column_block) {
    const std::int64_t width = std::min(low_rank_column_block, cols - col0);
    for (std::int64_t row = row_begin, done = 1; row < row_end; row += done) {
      done = 1;
#if SDNQ_HAS_AVX2_CLONE
      if (blocked && row + block_rows <= row_end) {
        fused_low_rank_rows_avx2<block_rows>(up + row * rank, down + col0, rank, cols, width, sums);
        done = block_rows;
      } else
#endif
        fused_low_rank_row(up + row * rank, down + col0, rank, cols, width, sums);
      for (std::int64_t r = 0; r < done; ++r) finish(row + r, col0, width, sums + r * low_rank_column_block);
    }
  }
}

// Unfused variant (sum += u·d, one rounding per multiply and per add; Sum = double widens the
// product first): the torch GEMM the quantizer's SVD split mirrors.
template <class Sum, class Finish>
void plain_low_rank_product(const std::vector<float>& up, const std::vector<float>& down, std::int64_t rows,
                            std::int64_t rank, std::int64_t cols, Finish&& finish) {
  parallel_for(0, rows, 4, [&](std::int64_t row_begin, std::int64_t row_end) {
    std::vector<Sum> sums(static_cast<std::size_t>(low_rank_column_block));
    for (std::int64_t col0 = 0; col0 < cols; col0 += low_rank_column_block) {
      const std::int64_t width = std::min(low_rank_column_block, cols - col0);
      for (std::int64_t row = row_begin; row < row_end; ++row) {
        std::fill(sums.begin(), sums.begin() + width, Sum(0));
        for (std::int64_t r = 0; r < rank; ++r) {
          const Sum u = up[row * rank + r];
          const float* d = down.data() + r * cols + col0;
          for (std::int64_t c = 0; c < width; ++c) sums[c] += u * d[c];
        }
        finish(row, col0, width, sums.data());
      }
    }
  });
}

// values[c] = fma(values[c], scale, zero_point): the asymmetric affine map of one scale group.
SDNQ_INLINE_BODY void fused_scale_shift_body(float* values, std::int64_t count, float scale, float zero_point) {
  for (std::int64_t c = 0; c < count; ++c) values[c] = std::fma(values[c], scale, zero_point);
}

#if SDNQ_HAS_AVX2_CLONE
SDNQ_TARGET_AVX2_FMA inline void fused_scale_shift_avx2(float* values, std::int64_t count, float scale,
                                                        float zero_point) {
  fused_scale_shift_body(values, count, scale, zero_point);
}
#endif

inline void fused_scale_shift(float* values, std::int64_t count, float scale, float zero_point) {
#if SDNQ_HAS_AVX2_CLONE
  if (cpu_has_avx2_fma()) return fused_scale_shift_avx2(values, count, scale, zero_point);
#endif
  fused_scale_shift_body(values, count, scale, zero_point);
}

}  // namespace sdnq::quant::detail
