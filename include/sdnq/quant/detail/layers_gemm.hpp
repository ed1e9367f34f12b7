#pragma once
// The GEMM of the CPU reference layers: C[m, n] = Σ_k A[m, k]·B[n, k] with A [M, K] and B [N, K] both
// row-major (k contiguous: B is a weight in PyTorch [out, in] layout). fp32 inputs accumulate in fp32,
// int8 inputs in int32 (exact). Tiles of 64×64 outputs run in parallel; K is walked in blocks of 256
// so a tile's operands stay in L2, and a 4×4 micro-kernel keeps LANES independent partial sums per
// output so the compiler vectorises it without reassociating. The summation order is fixed (it does
// not depend on the thread count): per K block, lane sums combined pairwise, blocks added in order.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "sdnq/core/parallel.hpp"

namespace sdnq::quant::detail {

inline constexpr std::int64_t gemm_tile = 64;      // outputs per tile side
inline constexpr std::int64_t gemm_k_block = 256;  // reduction block
inline constexpr int gemm_lanes = 8;

template <class T, class Acc>
inline Acc gemm_lane_sum(const std::array<Acc, gemm_lanes>& lanes) {
  Acc sum4[4], sum2[2];
  for (int i = 0; i < 4; ++i) sum4[i] = lanes[i] + lanes[i + 4];
  for (int i = 0; i < 2; ++i) sum2[i] = sum4[i] + sum4[i + 2];
  return sum2[0] + sum2[1];
}

// rows × cols outputs (each <= 4) of one K block [k0, k1), added into c.
template <int Rows, int Cols, class T, class Acc>
inline void gemm_micro(const T* a, const T* b, Acc* c, std::int64_t K, std::int64_t ldc, std::int64_t k0,
                       std::int64_t k1) {
  std::array<std::array<std::array<Acc, gemm_lanes>, Cols>, Rows> acc{};
  std::int64_t k = k0;
  for (; k + gemm_lanes <= k1; k += gemm_lanes)
    for (int i = 0; i < Rows; ++i)
      for (int j = 0; j < Cols; ++j)
        for (int l = 0; l < gemm_lanes; ++l)
          acc[i][j][l] += static_cast<Acc>(a[i * K + k + l]) * static_cast<Acc>(b[j * K + k + l]);
  for (int i = 0; i < Rows; ++i)
    for (int j = 0; j < Cols; ++j) {
      Acc sum = gemm_lane_sum<T, Acc>(acc[i][j]);
      for (std::int64_t t = k; t < k1; ++t) sum += static_cast<Acc>(a[i * K + t]) * static_cast<Acc>(b[j * K + t]);
      c[i * ldc + j] += sum;
    }
}

template <class T, class Acc>
inline void gemm_micro_dispatch(int rows, int cols, const T* a, const T* b, Acc* c, std::int64_t K, std::int64_t ldc,
                                std::int64_t k0, std::int64_t k1) {
  if (rows == 4 && cols == 4) return gemm_micro<4, 4>(a, b, c, K, ldc, k0, k1);
  // edges: one output row at a time, up to 4 columns
  for (int i = 0; i < rows; ++i) {
    switch (cols) {
      case 4: gemm_micro<1, 4>(a + i * K, b, c + i * ldc, K, ldc, k0, k1); break;
      case 3: gemm_micro<1, 3>(a + i * K, b, c + i * ldc, K, ldc, k0, k1); break;
      case 2: gemm_micro<1, 2>(a + i * K, b, c + i * ldc, K, ldc, k0, k1); break;
      default: gemm_micro<1, 1>(a + i * K, b, c + i * ldc, K, ldc, k0, k1); break;
    }
  }
}

// c [M, N] = a [M, K] · b [N, K]ᵀ
template <class T, class Acc>
inline void gemm_nt(const T* a, const T* b, Acc* c, std::int64_t M, std::int64_t N, std::int64_t K) {
  if (M == 0 || N == 0) return;
  const std::int64_t tiles_m = (M + gemm_tile - 1) / gemm_tile, tiles_n = (N + gemm_tile - 1) / gemm_tile;
  parallel_for(0, tiles_m * tiles_n, 1, [&](std::int64_t first_tile, std::int64_t last_tile) {
    for (std::int64_t tile = first_tile; tile < last_tile; ++tile) {
      const std::int64_t m0 = (tile / tiles_n) * gemm_tile, n0 = (tile % tiles_n) * gemm_tile;
      const std::int64_t m1 = std::min(M, m0 + gemm_tile), n1 = std::min(N, n0 + gemm_tile);
      for (std::int64_t m = m0; m < m1; ++m) std::fill(c + m * N + n0, c + m * N + n1, Acc{});
      for (std::int64_t k0 = 0; k0 < K; k0 += gemm_k_block) {
        const std::int64_t k1 = std::min(K, k0 + gemm_k_block);
        for (std::int64_t m = m0; m < m1; m += 4)
          for (std::int64_t n = n0; n < n1; n += 4)
            gemm_micro_dispatch<T, Acc>(static_cast<int>(std::min<std::int64_t>(4, m1 - m)),
                                        static_cast<int>(std::min<std::int64_t>(4, n1 - n)), a + m * K, b + n * K,
                                        c + m * N + n, K, N, k0, k1);
      }
    }
  });
}

}  // namespace sdnq::quant::detail
