#pragma once
// The one float GEMM of the CPU path: c [M, N] = a [M, K] · b [N, K]ᵀ, rows of both operands
// contiguous along K (the layout of x · Wᵀ for a PyTorch [out, in] weight and of im2col · Wᵀ).
// Tiles of 16×16 outputs are spread over sdnq::parallel_for; each dot product runs 8 independent
// fp32 partial sums so the compiler can vectorize it.
#include <algorithm>
#include <cstdint>

#include "sdnq/core/parallel.hpp"

namespace sdnq::nn::detail {

inline float dot_f32(const float* a, const float* b, std::int64_t K) {
  float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    for (int lane = 0; lane < 8; ++lane) partial[lane] += a[k + lane] * b[k + lane];
  float sum =
      ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
  for (; k < K; ++k) sum += a[k] * b[k];
  return sum;
}

// c [M, N] (row stride ldc) = a [M, K] · b [N, K]ᵀ (+ bias [N] when not null).
inline void gemm_nt_f32(const float* a, const float* b, const float* bias, float* c, std::int64_t M, std::int64_t N,
                        std::int64_t K, std::int64_t ldc) {
  constexpr std::int64_t tile = 16;
  if (M == 0 || N == 0) return;
  const std::int64_t tiles_m = (M + tile - 1) / tile, tiles_n = (N + tile - 1) / tile;
  const std::int64_t grain = std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, tile * tile * K));
  parallel_for(0, tiles_m * tiles_n, grain, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t t = first; t < last; ++t) {
      const std::int64_t m0 = (t / tiles_n) * tile, n0 = (t % tiles_n) * tile;
      const std::int64_t m1 = std::min(M, m0 + tile), n1 = std::min(N, n0 + tile);
      for (std::int64_t m = m0; m < m1; ++m)
        for (std::int64_t n = n0; n < n1; ++n)
          c[m * ldc + n] = dot_f32(a + m * K, b + n * K, K) + (bias != nullptr ? bias[n] : 0.0f);
    }
  });
}

}  // namespace sdnq::nn::detail
