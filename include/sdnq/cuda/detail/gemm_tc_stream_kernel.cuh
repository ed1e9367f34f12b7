#pragma once
// The weight-streaming kernels behind gemm_tc.cuh for M ≤ 16:
//   y[M, N] = x · dequant(W)ᵀ (+ low_rank · svd_upᵀ) (+ bias)
// on the same repacked codes as gemm_tc_kernel, with the operands' roles swapped: the weight is the
// mma's A operand (16 output rows), x the B operand (one n8 tile of tokens for M ≤ 8, two for M ≤ 16).
// The tensor-core layout gives each lane the codes of rows g and g+8 at the k pairs of a B fragment,
// which are exactly the lane's A fragment elements, so a lane's 128-bit code words dequantize straight
// into A fragments; a 16×64 block of codes costs 4 or 8 mma whatever M ≤ 16 is, so the time does not
// grow with the token count.
//
// One block: 32 output rows (two 16-row fragment blocks) over all of K, one block an SM. Its 16 warps
// take every 16th 64-wide K tile (16 warps of one block rather than two blocks of 8: N/32 blocks then
// fill the SMs' waves about twice as evenly). Each warp streams its tiles' codes and group parameters through a private ring of
// shared-memory stages with cp.async (Stages − 1 tiles in flight per warp hide the DRAM latency; only
// __syncwarp, no block barrier), reads x's B fragments through L1 (x is small and every block reads all
// of it), and the warps' sums are added in shared memory in warp order (deterministic) before the bias
// and one rounding to T.
//
// SVD branch: gemm_tc_stream_down_kernel (the same roles: svd_down rows as A) writes fp32 partial sums
// of low_rank = x · svd_downᵀ per K split; the main kernel, launched behind it as a programmatic
// dependent launch on sm_90, streams its codes meanwhile and waits (griddepcontrol.wait) only before
// its up-projection: warp w runs the rank's k-step w with svd_up fragments it loaded at the start,
// adding the splits in order and rounding to T, as a bf16 matmul would.
// Layouts: detail/gemm_tc_repack.hpp; parameters: GemmTcParams (gemm_tc_kernel.cuh).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/gemm_tc_kernel.cuh"
#include "sdnq/cuda/detail/gemm_tc_repack.hpp"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

inline constexpr int stream_warps = 16;
inline constexpr int stream_rows = 32;  // output rows of one block
inline constexpr int stream_max_tokens = 16;
inline constexpr int stream_down_tiles_per_split = stream_warps;  // K tiles of one down-projection block

// A warp's ring: per stage, the codes of one K tile of both fragment blocks, then the (scale, zero)
// words of the block's 32 rows for the tile's first and second half (the same group twice unless
// groups are 32 wide, so that the math reads them without a branch).
template <int Bits>
struct StreamRing {
  static constexpr int stages = Bits == 4 ? 8 : 4;
  static constexpr int code_bytes = 2 * 32 * Bits * 4;  // 2 fragment blocks × 32 lanes × Bits words
  static constexpr int param_bytes = 2 * stream_rows * 4;
  static constexpr int stage_bytes = code_bytes + param_bytes;
  static constexpr int warp_bytes = stages * stage_bytes;
  static constexpr int block_bytes = stream_warps * warp_bytes;
};

__device__ __forceinline__ std::uint32_t load_word(const void* address) {
  return __ldg(static_cast<const unsigned int*>(address));
}

// The lanes' B fragments of x (or low_rank) for one k-step: rows clamped to M − 1 (their sums are not
// stored), row stride `ld`.
template <class T, int TokenTiles>
__device__ __forceinline__ void load_token_fragments(const T* rows, int m, int ld, int k0, int lane,
                                                     std::uint32_t (&b)[TokenTiles][2]) {
#pragma unroll
  for (int j = 0; j < TokenTiles; ++j) {
    const T* source = rows + static_cast<std::size_t>(min(8 * j + (lane >> 2), m - 1)) * ld + k0 + 2 * (lane & 3);
    b[j][0] = load_word(source);
    b[j][1] = load_word(source + 8);
  }
}

// Adds the warps' accumulators in warp order and hands each (row, token) sum with row < valid_rows and
// token < m to `store`. C fragment: c0 c1 (row g, tokens 2t, 2t+1), c2 c3 (row g+8). `sums` holds
// stream_warps · 2 · TokenTiles · 32 float4.
template <int TokenTiles, class Store>
__device__ __forceinline__ void reduce_warps(float4* sums, const float (&acc)[2][TokenTiles][4], int m,
                                             int valid_rows, Store&& store) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int block = 0; block < 2; ++block)
#pragma unroll
    for (int j = 0; j < TokenTiles; ++j)
      sums[((warp * 2 + block) * TokenTiles + j) * 32 + lane] =
          make_float4(acc[block][j][0], acc[block][j][1], acc[block][j][2], acc[block][j][3]);
  __syncthreads();
  for (int index = threadIdx.x; index < 2 * TokenTiles * 32 * 4; index += stream_warps * 32) {
    const int element = index & 3, owner = (index >> 2) & 31, j = (index >> 7) % TokenTiles,
              block = (index >> 7) / TokenTiles;
    const int token = 8 * j + 2 * (owner & 3) + (element & 1);
    const int row = 16 * block + 8 * (element >> 1) + (owner >> 2);
    if (token >= m || row >= valid_rows) continue;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < stream_warps; ++w)
      sum += reinterpret_cast<const float*>(&sums[((w * 2 + block) * TokenTiles + j) * 32 + owner])[element];
    store(row, token, sum);
  }
}

template <class T, int Bits, int TokenTiles>
__global__ void __launch_bounds__(stream_warps * 32, 1) gemm_tc_stream_kernel(const GemmTcParams p) {
  using Ring = StreamRing<Bits>;
  constexpr int Slices = Bits / 4;  // 16-byte chunks per lane, fragment block and K tile
  extern __shared__ uint4 shared_words[];
  char* shared = reinterpret_cast<char*>(shared_words);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int row0 = blockIdx.x * stream_rows;
  const int k_tiles = p.k / 64;
  const int my_tiles = k_tiles > warp ? (k_tiles - warp + stream_warps - 1) / stream_warps : 0;
  const std::size_t blocks_per_k_tile = static_cast<std::size_t>(p.n / 16);
  const uint4* codes = static_cast<const uint4*>(p.b) + static_cast<std::size_t>(row0 / 16) * 8 * Bits + lane;
  const std::uint32_t* params = static_cast<const std::uint32_t*>(p.group_params) + row0;
  const T* x = static_cast<const T*>(p.a);
  const bool groups_of_32 = p.group_size == 32;
  const DequantConstants<T> constants{as_pair<T>(p.minus), p.minus_f};
  char* ring = shared + warp * Ring::warp_bytes;
  // The lane's x rows (tokens past M read row M − 1; their sums are not stored).
  const T* x_rows[TokenTiles];
#pragma unroll
  for (int j = 0; j < TokenTiles; ++j)
    x_rows[j] = x + static_cast<std::size_t>(min(8 * j + g, p.m - 1)) * p.k + 2 * (lane & 3);

  // The warp's i-th tile into stage i % stages; one commit group per call, empty past the last tile.
  // Pointers advance by a constant stride per tile (the warp takes every stream_warps-th K tile).
  const std::size_t code_stride = stream_warps * blocks_per_k_tile * 8 * Bits;  // uint4 per tile
  const uint4* next_codes = codes + warp * blocks_per_k_tile * 8 * Bits;
  auto issue = [&](int i) {
    if (i < my_tiles) {
      const int tile = warp + i * stream_warps;
      char* stage = ring + static_cast<unsigned>(i) % Ring::stages * Ring::stage_bytes;
#pragma unroll
      for (int block = 0; block < 2; ++block)
#pragma unroll
        for (int slice = 0; slice < Slices; ++slice)
          copy_async_16(stage + ((block * Slices + slice) * 32 + lane) * 16,
                        next_codes + block * 8 * Bits + slice * 32);
      next_codes += code_stride;
      // 8 lanes a half: 32 rows × 4 bytes. tile · 64 / group_size as a multiply and shift (exact for
      // tile < 2^16: gemm_tc_group_magic).
      if (lane < 16) {
        const int half = lane >> 3;
        const int group = groups_of_32 ? 2 * tile + half
                                       : static_cast<int>((static_cast<std::uint64_t>(tile) * p.group_magic) >> 32);
        copy_async_16(stage + Ring::code_bytes + half * stream_rows * 4 + (lane & 7) * 16,
                      params + static_cast<std::size_t>(group) * p.n + (lane & 7) * 4);
      }
    }
    copy_async_commit();
  };

  // SVD branch: warp w runs the rank's k-step w (rp ≤ 128 gives at most 8 steps); its svd_up A
  // fragments are loaded now, their latency hidden under the codes.
  static_assert(gemm_tc_max_rank / 16 <= stream_warps, "one rank k-step a warp");
  const bool rank_step_mine = warp < p.rank_padded / 16;
  std::uint32_t up_fragments[2][4] = {};
  if (rank_step_mine) {
    const std::size_t eight_rows = static_cast<std::size_t>(8) * p.rank_padded;
#pragma unroll
    for (int block = 0; block < 2; ++block) {
      const T* rows = static_cast<const T*>(p.svd_up) + static_cast<std::size_t>(row0 + 16 * block + g) * p.rank_padded +
                      16 * warp + 2 * (lane & 3);
      up_fragments[block][0] = load_word(rows);
      up_fragments[block][1] = load_word(rows + eight_rows);
      up_fragments[block][2] = load_word(rows + 8);
      up_fragments[block][3] = load_word(rows + eight_rows + 8);
    }
  }

  float acc[2][TokenTiles][4] = {};
#pragma unroll
  for (int i = 0; i < Ring::stages - 1; ++i) issue(i);
  const T* x_tile[TokenTiles];
#pragma unroll
  for (int j = 0; j < TokenTiles; ++j) x_tile[j] = x_rows[j] + warp * 64;
  for (int i = 0; i < my_tiles; ++i) {
    // x first: its L1 latency overlaps the wait for the stage.
    std::uint32_t xb[4][TokenTiles][2];
#pragma unroll
    for (int step = 0; step < 4; ++step)
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) {
        xb[step][j][0] = load_word(x_tile[j] + 16 * step);
        xb[step][j][1] = load_word(x_tile[j] + 16 * step + 8);
      }
#pragma unroll
    for (int j = 0; j < TokenTiles; ++j) x_tile[j] += stream_warps * 64;
    copy_async_wait<Ring::stages - 2>();
    __syncwarp();  // stage i visible to the warp; every lane is done with the stage refilled next
    issue(i + Ring::stages - 1);
    const char* stage = ring + static_cast<unsigned>(i) % Ring::stages * Ring::stage_bytes;
    // (scale, zero) of rows g and g+8 of each fragment block, for the tile's first and second half.
    pair_of<T> s[2][2][2], z[2][2][2];
    const std::uint32_t* stage_params = reinterpret_cast<const std::uint32_t*>(stage + Ring::code_bytes);
#pragma unroll
    for (int block = 0; block < 2; ++block)
#pragma unroll
      for (int half = 0; half < 2; ++half)
#pragma unroll
        for (int part = 0; part < 2; ++part) {
          const std::uint32_t sz = stage_params[part * stream_rows + 16 * block + 8 * half + g];
          s[block][half][part] = as_pair<T>(__byte_perm(sz, 0, 0x1010));  // scale in both halves
          z[block][half][part] = as_pair<T>(__byte_perm(sz, 0, 0x3232));  // zero point in both halves
        }
#pragma unroll
    for (int block = 0; block < 2; ++block) {
      std::uint32_t words[Bits];
#pragma unroll
      for (int slice = 0; slice < Slices; ++slice) {
        const uint4 v = *reinterpret_cast<const uint4*>(stage + ((block * Slices + slice) * 32 + lane) * 16);
        words[4 * slice] = v.x, words[4 * slice + 1] = v.y, words[4 * slice + 2] = v.z, words[4 * slice + 3] = v.w;
      }
#pragma unroll
      for (int step = 0; step < 4; ++step) {
        const pair_of<T> step_s[2] = {s[block][0][step / 2], s[block][1][step / 2]};
        const pair_of<T> step_z[2] = {z[block][0][step / 2], z[block][1][step / 2]};
        std::uint32_t step_words[Slices];
#pragma unroll
        for (int w = 0; w < Slices; ++w) step_words[w] = words[step * Slices + w];
        std::uint32_t fb[2][2];  // [row half][k half], as B fragments of two n8 tiles
        dequantize_step<T, Bits>(step_words, step_s, step_z, constants, fb);
        const std::uint32_t fa[4] = {fb[0][0], fb[1][0], fb[0][1], fb[1][1]};
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j) mma_16816<T>(acc[block][j], fa, xb[step][j][0], xb[step][j][1]);
      }
    }
  }
  copy_async_wait<0>();

  if (rank_step_mine) {
    wait_for_prior_grid();
    // low_rank's B fragments: the down-projection's splits added in order, rounded to T (all loads of
    // a group of splits in flight at once: this runs after the codes, on the kernel's critical path).
    const std::size_t split_stride = static_cast<std::size_t>(p.m) * p.rank_padded;
    std::uint32_t lb[TokenTiles][2];
#pragma unroll
    for (int j = 0; j < TokenTiles; ++j) {
      const float* first = p.partial + static_cast<std::size_t>(min(8 * j + g, p.m - 1)) * p.rank_padded +
                           16 * warp + 2 * (lane & 3);
      float2 low = make_float2(0.0f, 0.0f), high = make_float2(0.0f, 0.0f);
#pragma unroll 4
      for (int split = 0; split < p.low_rank_splits; ++split) {
        const float2 a = __ldg(reinterpret_cast<const float2*>(first + split * split_stride));
        const float2 b = __ldg(reinterpret_cast<const float2*>(first + split * split_stride + 8));
        low.x += a.x, low.y += a.y, high.x += b.x, high.y += b.y;
      }
      lb[j][0] = pack_pair<T>(low.x, low.y);
      lb[j][1] = pack_pair<T>(high.x, high.y);
    }
#pragma unroll
    for (int block = 0; block < 2; ++block)
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) mma_16816<T>(acc[block][j], up_fragments[block], lb[j][0], lb[j][1]);
  }

  __syncthreads();  // the rings are reused for the sums
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
  reduce_warps<TokenTiles>(reinterpret_cast<float4*>(shared), acc, p.m, stream_rows, [&](int row, int token, float sum) {
    if (bias != nullptr) sum += to_float(bias[row0 + row]);
    y[static_cast<std::size_t>(token) * p.n + row0 + row] = from_float<T>(sum);
  });
}

// Down-projection of the SVD branch for M ≤ 16: partial[split, M, rp] = x · svd_downᵀ over the
// split's K tiles (blockIdx.y), fp32; svd_down [rp, K] rows as the A operand (rows past rp are zeros),
// one K tile a warp. Lets the main kernel launch at once (it waits for this grid before reading).
// p.b = svd_down, p.n = rp, p.partial = the output, p.tiles_per_split = stream_down_tiles_per_split.
template <class T, int TokenTiles>
__global__ void __launch_bounds__(stream_warps * 32) gemm_tc_stream_down_kernel(const GemmTcParams p) {
  __shared__ float4 sums[stream_warps * 2 * TokenTiles * 32];
  allow_dependent_launch();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = blockIdx.x * stream_rows;
  const int tile = blockIdx.y * p.tiles_per_split + warp;
  const T* x = static_cast<const T*>(p.a);
  const T* down = static_cast<const T*>(p.b);
  float acc[2][TokenTiles][4] = {};
  if (tile < p.k / 64) {
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      const int k0 = tile * 64 + 16 * step;
      std::uint32_t xb[TokenTiles][2];
      load_token_fragments<T, TokenTiles>(x, p.m, p.k, k0, lane, xb);
#pragma unroll
      for (int block = 0; block < 2; ++block) {
        const int row = row0 + 16 * block + (lane >> 2);
        if (row0 + 16 * block >= p.n) continue;  // rp is a multiple of 16: whole fragment blocks
        const T* rows = down + static_cast<std::size_t>(row) * p.k + k0 + 2 * (lane & 3);
        const std::size_t eight_rows = static_cast<std::size_t>(8) * p.k;
        const std::uint32_t fa[4] = {load_word(rows), load_word(rows + eight_rows), load_word(rows + 8),
                                     load_word(rows + eight_rows + 8)};
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j) mma_16816<T>(acc[block][j], fa, xb[j][0], xb[j][1]);
      }
    }
  }
  float* partial = p.partial + static_cast<std::size_t>(blockIdx.y) * p.m * p.n;
  reduce_warps<TokenTiles>(sums, acc, p.m, p.n - row0, [&](int row, int token, float sum) {
    partial[static_cast<std::size_t>(token) * p.n + row0 + row] = sum;
  });
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
