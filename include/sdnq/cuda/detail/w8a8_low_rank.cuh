#pragma once
// The down-projection of gemm_w8a8's SVD branch, low_rank = x · svd_downᵀ [M, rp] in T, optionally
// fused with the activation quantization (§5.1: the low-rank branch reads x unquantized, the GEMM its
// codes), so that x leaves memory once for both.
//
// One block computes a BM × 64 tile of low_rank (BM = 16·RowTiles rows of x, 64 ranks: blockIdx.y is
// the rank tile). Four warps, each all BM rows × 16 ranks; x and svd_down stream through a cp.async
// ring of 64-wide K slices into mma.sync m16n8k16 (fp32 sums, rounded to T once at the end).
// With quantization (rank tile 0 only; the other rank tiles' blocks only multiply): before the ring
// drains, the block reduces each of its rows' absmax from global memory (row_scale, the same
// arithmetic as quantize_w8a8_activations, hence the same bits); then every K slice that reaches
// shared memory for the product is also turned into codes there, so the codes cost no second pass
// over x beyond what the absmax read left in L2.
// Ranks that no output of the GEMM reads (past a part's true rank, W8A8SvdPart) are neither loaded nor
// multiplied: their 16-rank slices are written as zeros.
// Measured on an H200 (docs/benchmarks.md session 15) it loses to the separate quantization pass plus
// gemm_tc's split-K down-projection at every FLUX shape (M = 4096, 3072²: 133.6 against 103.2 µs for the
// whole layer with 16-row tiles, worse with 32 and 64): each warp's absmax rows are a chain of DRAM
// latencies, the K ring of one block is latency-bound, and 16-row tiles read svd_down from L2 once per
// tile. So plan_w8a8_svd takes it only when forced; what it would need: the absmax from the ring itself
// (codes in a second, parallel pass), a deeper ring, and wider row tiles over several rank tiles.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/w8a8_fragments.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

struct W8A8LowRankParams {
  const void* x;              // [M, K] T, 16-byte aligned
  const void* svd_down;       // [rp, K] T
  void* low_rank;             // [M, rp] T
  std::uint8_t* x_codes;      // [M, K] codes, or null: no quantization
  float* x_scale;             // [M] (with x_codes)
  std::uint64_t live_slices;  // bit s: ranks 16s .. 16s + 15 are read by the GEMM (all bits when rp > 1024)
  int m, k, rank_padded;      // K % 64 == 0, rp % 64 == 0
  bool scale_in_activation_dtype;
};

inline constexpr int low_rank_threads = 128;
inline constexpr int low_rank_stages = 4;
inline constexpr int low_rank_pitch = 72;  // T per shared row: 64 + 8, so ldmatrix's 8 rows hit distinct banks

template <int RowTiles>
inline constexpr int low_rank_shared_bytes = (16 * RowTiles + 64) * low_rank_pitch * 2 * low_rank_stages;

__device__ __forceinline__ bool low_rank_slice_live(const W8A8LowRankParams& p, int slice) {
  return slice >= 64 || ((p.live_slices >> slice) & 1u) != 0;
}

template <class T, W8A8Operand Operand, int RowTiles>
__global__ void __launch_bounds__(low_rank_threads) w8a8_low_rank_kernel(const W8A8LowRankParams p) {
  constexpr int rows = 16 * RowTiles;
  constexpr int stage_elements = (rows + 64) * low_rank_pitch;
  extern __shared__ __align__(16) unsigned char low_rank_shared[];
  T* ring = reinterpret_cast<T*>(low_rank_shared);
  __shared__ float scales[rows];

  const int thread = static_cast<int>(threadIdx.x), warp = thread >> 5, lane = thread & 31;
  const int row0 = static_cast<int>(blockIdx.x) * rows, rank0 = static_cast<int>(blockIdx.y) * 64;
  const bool quantize = p.x_codes != nullptr && blockIdx.y == 0;
  const int slice = (rank0 >> 4) + warp;  // this warp's 16 ranks
  const bool live = low_rank_slice_live(p, slice);
  const T* x = static_cast<const T*>(p.x);
  const T* down = static_cast<const T*>(p.svd_down);
  const int k_tiles = p.k / 64;

  const auto load_slice = [&](int tile, int stage) {
    T* xs = ring + stage * stage_elements;
    T* ds = xs + rows * low_rank_pitch;
    const int k0 = tile * 64;
#pragma unroll
    for (int i = thread; i < rows * 8; i += low_rank_threads) {
      const int r = i >> 3, c = (i & 7) * 8, row = row0 + r;
      const bool valid = row < p.m;  // rows past M read as zeros
      copy_async_16(xs + r * low_rank_pitch + c, x + static_cast<std::size_t>(valid ? row : 0) * p.k + k0 + c, valid);
    }
#pragma unroll
    for (int i = thread; i < 64 * 8; i += low_rank_threads) {
      const int r = i >> 3, c = (i & 7) * 8;
      if (!low_rank_slice_live(p, (rank0 + r) >> 4)) continue;  // never read below
      copy_async_16(ds + r * low_rank_pitch + c, down + static_cast<std::size_t>(rank0 + r) * p.k + k0 + c);
    }
  };

#pragma unroll
  for (int s = 0; s < low_rank_stages - 1; ++s) {
    if (s < k_tiles) load_slice(s, s);
    copy_async_commit();
  }

  if (quantize) {  // each warp its rows' scales, read from global memory while the ring fills
    for (int r = warp; r < rows; r += low_rank_threads / 32) {
      const int row = row0 + r;
      if (row >= p.m) break;
      const uint4* source = reinterpret_cast<const uint4*>(x + static_cast<std::size_t>(row) * p.k);
      const float scale = row_scale<T, Operand, 4>(source, p.k / 8, lane, p.scale_in_activation_dtype);
      if (lane == 0) scales[r] = scale, p.x_scale[row] = scale;
    }
  }

  float acc[RowTiles][2][4] = {};
  for (int tile = 0; tile < k_tiles; ++tile) {
    copy_async_wait<low_rank_stages - 2>();
    __syncthreads();  // slice `tile` landed for every thread; the stage refilled below is free (and scales are set)
    const int next = tile + low_rank_stages - 1;
    if (next < k_tiles) load_slice(next, next % low_rank_stages);
    copy_async_commit();

    const T* xs = ring + (tile % low_rank_stages) * stage_elements;
    const T* ds = xs + rows * low_rank_pitch;
    if (live) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        std::uint32_t b[4];
        const int b_matrix = lane >> 3;  // (n tile, k half): (0,0) (0,1) (1,0) (1,1)
        load_matrix_x4(
            b, ds + (warp * 16 + (b_matrix >> 1) * 8 + (lane & 7)) * low_rank_pitch + kk * 16 + (b_matrix & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < RowTiles; ++mt) {
          std::uint32_t a[4];
          load_matrix_x4(a, xs + (mt * 16 + (lane & 15)) * low_rank_pitch + kk * 16 + (lane >> 4) * 8);
          mma_16816<T>(acc[mt][0], a, b[0], b[1]);
          mma_16816<T>(acc[mt][1], a, b[2], b[3]);
        }
      }
    }
    if (quantize) {
      std::uint8_t* codes = p.x_codes + static_cast<std::size_t>(tile) * 64;
#pragma unroll
      for (int i = thread; i < rows * 8; i += low_rank_threads) {
        const int r = i >> 3, c = (i & 7) * 8, row = row0 + r;
        if (row >= p.m) continue;
        const uint4 word = *reinterpret_cast<const uint4*>(xs + r * low_rank_pitch + c);
        *reinterpret_cast<uint2*>(codes + static_cast<std::size_t>(row) * p.k + c) =
            quantize_eight<T, Operand>(word, scales[r], p.scale_in_activation_dtype);
      }
    }
  }
  copy_async_wait<0>();

  const int g = lane >> 2, t = lane & 3;
  T* out = static_cast<T*>(p.low_rank);
#pragma unroll
  for (int mt = 0; mt < RowTiles; ++mt)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = row0 + mt * 16 + g + 8 * half;
      if (row >= p.m) continue;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const int col = rank0 + warp * 16 + nt * 8 + 2 * t;
        *reinterpret_cast<std::uint32_t*>(out + static_cast<std::size_t>(row) * p.rank_padded + col) =
            pack_pair<T>(acc[mt][nt][2 * half], acc[mt][nt][2 * half + 1]);
      }
    }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
