#pragma once
// The weight-streaming kernel behind gemm_tc.cuh for M ≤ 16:
//   y[M, N] = x · dequant(W)ᵀ (+ low_rank · svd_upᵀ) (+ bias)
// on the same repacked codes as gemm_tc_kernel, with the operands' roles swapped: the weight is the
// mma's A operand (16 output rows), x the B operand (one n8 tile of tokens for M ≤ 8, two for M ≤ 16).
// The tensor-core layout gives each lane the codes of rows g and g+8 at the k pairs of a B fragment,
// which are exactly the lane's A fragment elements, so a lane's 128-bit code words dequantize straight
// into A fragments; a 16×64 block of codes costs 4 or 8 mma whatever M ≤ 16 is, so the time does not
// grow with the token count.
//
// One block: 32 output rows (two 16-row fragment blocks) over all of K. Its 8 warps take every 8th
// 64-wide K tile and hold `Depth` tiles' codes and group parameters in registers before dequantizing
// any: bytes in flight hide the DRAM latency, no shared memory is staged. x is small and every block
// reads all of it, so its B fragments come through L1. The warps' partial sums are added in shared
// memory in warp order (deterministic), then bias and one rounding to T.
// SVD branch: the rank's 16-wide k-steps are spread over the warps after the codes. low_rank comes from
// the down-projection launched just before, which this kernel may overlap (programmatic dependent
// launch on sm_90): it waits for that grid (griddepcontrol.wait) only right before reading low_rank.
// Layouts: detail/gemm_tc_repack.hpp; parameters: GemmTcParams (gemm_tc_kernel.cuh).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/gemm_tc_kernel.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

inline constexpr int stream_warps = 8;
inline constexpr int stream_rows = 32;  // output rows of one block
inline constexpr int stream_max_tokens = 16;

// 16 bytes read once: not kept in L1, where x lives.
__device__ __forceinline__ uint4 load_streamed_16(const uint4* address) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(address));
  return v;
}

__device__ __forceinline__ std::uint32_t load_word(const void* address) {
  return __ldg(static_cast<const unsigned int*>(address));
}

// One 64-wide K tile of the block's two fragment blocks: the lane's code words and the (scale, zero)
// words of rows g and g+8 for the tile's first and second half (different only for groups of 32).
template <int Bits>
struct StreamTile {
  std::uint32_t words[2][Bits];
  std::uint32_t params[2][2][2];  // [fragment block][row half][K half]
};

template <class T, int Bits, int TokenTiles>
__global__ void __launch_bounds__(stream_warps * 32, 2) gemm_tc_stream_kernel(const GemmTcParams p) {
  constexpr int Depth = Bits == 4 ? 4 : 2;  // K tiles in registers per warp and batch
  constexpr int Slices = Bits / 4;          // 128-bit loads per fragment block and K tile
  __shared__ float4 sums[stream_warps][2][TokenTiles][32];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * stream_rows;
  const int k_tiles = p.k / 64;
  const std::size_t blocks_per_k_tile = static_cast<std::size_t>(p.n / 16);
  const uint4* codes = static_cast<const uint4*>(p.b) + static_cast<std::size_t>(row0 / 16) * 8 * Bits;
  const std::uint32_t* params = static_cast<const std::uint32_t*>(p.group_params) + row0 + g;
  const T* x = static_cast<const T*>(p.a);
  const bool groups_of_32 = p.group_size == 32;
  const DequantConstants<T> constants{as_pair<T>(p.minus), p.minus_f};
  // The lane's token in each n8 tile; tokens past M read row M − 1 and their sums are not stored.
  const T* x_rows[TokenTiles];
#pragma unroll
  for (int j = 0; j < TokenTiles; ++j) x_rows[j] = x + static_cast<std::size_t>(min(8 * j + g, p.m - 1)) * p.k + 2 * t;

  float acc[2][TokenTiles][4] = {};

  auto load_tile = [&](StreamTile<Bits>& tile, int k_tile) {
#pragma unroll
    for (int block = 0; block < 2; ++block) {
      const uint4* source = codes + (k_tile * blocks_per_k_tile + block) * 8 * Bits + lane;
#pragma unroll
      for (int slice = 0; slice < Slices; ++slice) {
        const uint4 v = load_streamed_16(source + slice * 32);
        tile.words[block][4 * slice] = v.x, tile.words[block][4 * slice + 1] = v.y;
        tile.words[block][4 * slice + 2] = v.z, tile.words[block][4 * slice + 3] = v.w;
      }
    }
    const int first_group = groups_of_32 ? 2 * k_tile : k_tile * 64 / p.group_size;
#pragma unroll
    for (int block = 0; block < 2; ++block)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const std::uint32_t* row_params = params + static_cast<std::size_t>(first_group) * p.n + 16 * block + 8 * half;
        tile.params[block][half][0] = load_word(row_params);
        tile.params[block][half][1] = groups_of_32 ? load_word(row_params + p.n) : tile.params[block][half][0];
      }
  };

  auto compute_tile = [&](const StreamTile<Bits>& tile, int k_tile) {
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      std::uint32_t xb[TokenTiles][2];
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) {
        const T* source = x_rows[j] + k_tile * 64 + 16 * step;
        xb[j][0] = load_word(source);
        xb[j][1] = load_word(source + 8);
      }
#pragma unroll
      for (int block = 0; block < 2; ++block) {
        pair_of<T> s[2], z[2];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const std::uint32_t sz = tile.params[block][half][step / 2];
          s[half] = as_pair<T>(__byte_perm(sz, 0, 0x1010));  // scale in both halves
          z[half] = as_pair<T>(__byte_perm(sz, 0, 0x3232));  // zero point in both halves
        }
        std::uint32_t step_words[Slices];
#pragma unroll
        for (int w = 0; w < Slices; ++w) step_words[w] = tile.words[block][step * Slices + w];
        std::uint32_t fb[2][2];  // [row half][k half], as B fragments of two n8 tiles
        dequantize_step<T, Bits>(step_words, s, z, constants, fb);
        const std::uint32_t fa[4] = {fb[0][0], fb[1][0], fb[0][1], fb[1][1]};
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j) mma_16816<T>(acc[block][j], fa, xb[j][0], xb[j][1]);
      }
    }
  };

  for (int first = warp; first < k_tiles; first += stream_warps * Depth) {
    StreamTile<Bits> tiles[Depth];
#pragma unroll
    for (int d = 0; d < Depth; ++d)
      if (first + d * stream_warps < k_tiles) load_tile(tiles[d], first + d * stream_warps);
#pragma unroll
    for (int d = 0; d < Depth; ++d)
      if (first + d * stream_warps < k_tiles) compute_tile(tiles[d], first + d * stream_warps);
  }

  if (p.rank_padded > 0) {
    const int rank_steps = p.rank_padded / 16;
    if (warp < rank_steps) wait_for_prior_grid();
    const T* low_rank = static_cast<const T*>(p.low_rank);
    const T* up = static_cast<const T*>(p.svd_up) + static_cast<std::size_t>(row0 + g) * p.rank_padded + 2 * t;
    for (int step = warp; step < rank_steps; step += stream_warps) {
      std::uint32_t lb[TokenTiles][2];
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) {
        const T* source =
            low_rank + static_cast<std::size_t>(min(8 * j + g, p.m - 1)) * p.rank_padded + 16 * step + 2 * t;
        lb[j][0] = load_word(source);
        lb[j][1] = load_word(source + 8);
      }
#pragma unroll
      for (int block = 0; block < 2; ++block) {
        const T* rows = up + static_cast<std::size_t>(16 * block) * p.rank_padded + 16 * step;
        const std::size_t eight_rows = static_cast<std::size_t>(8) * p.rank_padded;
        const std::uint32_t fa[4] = {load_word(rows), load_word(rows + eight_rows), load_word(rows + 8),
                                     load_word(rows + eight_rows + 8)};
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j) mma_16816<T>(acc[block][j], fa, lb[j][0], lb[j][1]);
      }
    }
  }

  // Add the warps' sums in warp order; C fragment: c0 c1 (row g, tokens 2t, 2t+1), c2 c3 (row g+8).
#pragma unroll
  for (int block = 0; block < 2; ++block)
#pragma unroll
    for (int j = 0; j < TokenTiles; ++j)
      sums[warp][block][j][lane] = make_float4(acc[block][j][0], acc[block][j][1], acc[block][j][2], acc[block][j][3]);
  __syncthreads();
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
  for (int index = threadIdx.x; index < 2 * TokenTiles * 32 * 4; index += stream_warps * 32) {
    const int element = index & 3, owner = (index >> 2) & 31, j = (index >> 7) % TokenTiles,
              block = (index >> 7) / TokenTiles;
    const int token = 8 * j + 2 * (owner & 3) + (element & 1);
    if (token >= p.m) continue;
    const int row = row0 + 16 * block + 8 * (element >> 1) + (owner >> 2);
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < stream_warps; ++w) sum += reinterpret_cast<const float*>(&sums[w][block][j][owner])[element];
    if (bias != nullptr) sum += to_float(bias[row]);
    y[static_cast<std::size_t>(token) * p.n + row] = from_float<T>(sum);
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
