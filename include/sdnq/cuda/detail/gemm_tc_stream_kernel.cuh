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
// A row block is 32 output rows (two 16-row fragment blocks) over all of K. The grid has at most one
// block an SM, and each block runs row blocks blockIdx.x, + gridDim.x, ... in turn. Its 16 warps take
// every 16th 64-wide K tile of a row block (16 warps of one block rather than two blocks of 8: N/32 row
// blocks then fill the SMs about twice as evenly). Each warp streams its tiles' codes and group
// parameters through a private ring of shared-memory stages with cp.async (Stages − 1 tiles in flight,
// only __syncwarp, no block barrier); the ring runs on from one row block into the next, so the DRAM
// latency is paid once per SM and the next row block's codes arrive while this one is reduced. x's B
// fragments come through L1/L2 one tile ahead, and the warps' sums are added in shared memory in warp
// order (deterministic) before the bias and one rounding to T.
// 4-bit codes enter the mma as exact T values magic + code with the group scale applied per output in
// fp32 after the group's k-steps (accumulate_tile_factored); 8-bit codes are dequantized to w = q·s + z
// in T first (accumulate_tile_dequantized).
//
// SVD branch: gemm_tc_stream_down_kernel (the same roles: svd_down rows as A) writes fp32 partial sums
// of low_rank = x · svd_downᵀ per K split; the main kernel, launched behind it as a programmatic
// dependent launch on sm_90, streams its codes meanwhile and waits (griddepcontrol.wait) only before
// its first up-projection: warp w runs the rank's k-step w of every row block with svd_up fragments
// loaded at the row block's start, on low_rank's splits added in order and rounded to T once, as a
// bf16 matmul would.
// Row-major 8-bit codes (StreamCodes::*_rows: w8a8_dequantized_linear, the dequantized path of a
// quantized-matmul layer, on gemm_w8a8's weights without a second copy): the same kernel with a stage of
// 32 rows × 64 codes copied row by row, one F32 scale per row, and x's fragments in the k order the
// codes' 16-byte loads give (accumulate_tile_rows).
// Layouts: detail/gemm_tc_repack.hpp, detail/w8a8_repack.hpp; parameters: GemmTcParams (gemm_tc_kernel.cuh;
// row-major codes: b = codes [N, K], group_params = F32 scales [N]).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/gemm_tc_kernel.cuh"
#include "sdnq/cuda/detail/gemm_tc_repack.hpp"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/w8a8_gemv.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

inline constexpr int stream_warps = 16;
inline constexpr int stream_rows = 32;  // output rows of one block
inline constexpr int stream_max_tokens = 16;
inline constexpr int stream_down_tiles_per_split = stream_warps;  // K tiles of one down-projection block

// How the codes lie in memory:
//   fragments   the tensor-core repack (gemm_tc_repack.hpp): fragment-ordered codes, (scale, zero) words
//               per group, any GemmTcParams layer;
//   int8_rows,  an 8-bit quantized-matmul weight as gemm_w8a8 reads it (w8a8_repack.hpp): [N, K] codes,
//   e4m3_rows   K contiguous, and one F32 scale per row; w = round_T(q · s) exactly as the dequantize
//               kernel and the reference's dequantized path below 32 tokens (decode_pair, w8a8_gemv.cuh).
//               Bits = 8, N % 32 == 0, K % 64 == 0, no SVD branch.
enum class StreamCodes : std::uint8_t { fragments, int8_rows, e4m3_rows };

// Ring depth: 6 stages of uint4 codes, 3 of 8-bit; 4 of uint4 when x of 9..16 tokens is staged beside
// the rings (the 2 tiles less still keep 48 KB of codes in flight per SM).
template <int Bits, int TokenTiles, bool XShared>
inline constexpr int stream_stages = Bits == 4 ? (TokenTiles == 2 && XShared ? 4 : 6) : 3;

// A warp's ring: per stage, the codes of one K tile of both fragment blocks, then the (scale, zero)
// words of the block's 32 rows for the tile's first and second half (the same group twice unless
// groups are 32 wide, so that the math reads them without a branch).
// Row-major codes (StreamCodes::*_rows) have no group words: a stage is the 32 rows × 64 codes.
template <int Bits, int Stages, bool GroupParams = true>
struct StreamRing {
  static constexpr int stages = Stages;
  static constexpr int code_bytes = 2 * 32 * Bits * 4;  // 2 fragment blocks × 32 lanes × Bits words
  static constexpr int param_bytes = GroupParams ? 2 * stream_rows * 4 : 0;
  static constexpr int stage_bytes = code_bytes + param_bytes;
  static constexpr int warp_bytes = stages * stage_bytes;
  static constexpr int block_bytes = stream_warps * warp_bytes;
};

// Dynamic shared memory of gemm_tc_stream_kernel: the rings, then the warps' sums (reduce_warps), then
// x when it is staged (stream_x_bytes more).
template <int Bits, int TokenTiles, bool XShared, StreamCodes Codes = StreamCodes::fragments>
inline constexpr int stream_shared_bytes =
    StreamRing<Bits, stream_stages<Bits, TokenTiles, XShared>, Codes == StreamCodes::fragments>::block_bytes +
    stream_warps * 2 * TokenTiles * 32 * 16;
inline std::int64_t stream_x_bytes(std::int64_t tokens, std::int64_t in_features) {
  return tokens * (2 * in_features + 16);
}

__device__ __forceinline__ std::uint32_t load_word(const void* address) {
  return __ldg(static_cast<const unsigned int*>(address));
}
// The same load kept where it is written: the compiler may sink a plain __ldg to its first use, and the
// row scales of row-major codes are requested a row block ahead to queue behind the ring's codes.
__device__ __forceinline__ std::uint32_t load_word_now(const void* address) {
  std::uint32_t word;
  asm volatile("ld.global.nc.b32 %0, [%1];\n" : "=r"(word) : "l"(address));
  return word;
}
__device__ __forceinline__ std::uint32_t load_shared_word(const void* address) {
  std::uint32_t word;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(word) : "r"(shared_address(address)));
  return word;
}
__device__ __forceinline__ uint4 load_shared_16(const void* address) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(shared_address(address)));
  return v;
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

// One K tile of 8-bit codes (the stage's 2 fragment blocks): each code dequantized to w = q·s + z,
// rounded once to T as the reference loader does, into the mma's A fragments.
template <class T, int Bits, int TokenTiles>
__device__ __forceinline__ void accumulate_tile_dequantized(const uint4* stage_codes, const std::uint32_t* stage_params,
                                                            int lane, const std::uint32_t (&xb)[4][TokenTiles][2],
                                                            const DequantConstants<T>& constants,
                                                            float (&acc)[2][TokenTiles][4]) {
  constexpr int Slices = Bits / 4;
  const int g = lane >> 2;
  // (scale, zero) of rows g and g+8 of each fragment block, for the tile's first and second half.
  pair_of<T> s[2][2][2], z[2][2][2];
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
      const uint4 v = stage_codes[(block * Slices + slice) * 32 + lane];
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

// One K tile of 4-bit codes with the group scale factored out of the k sum:
//   Σ x·(q·s + z) = s·Σ x·(magic + c) + (z − minus·s)·Σ x,   q = c + offset, minus = magic − offset,
// where magic + c is exact in T with one LOP3 (the code OR-ed into the mantissa of 128 or 1024), so the
// A fragments cost a shift and a LOP3 a pair instead of five instructions, and the scale is applied
// once per group and output in fp32. Σ x per token comes from one more mma against a fragment of ones.
// The weights are not rounded to T on the way (the tiled kernel and the reference round w = q·s + z
// once): the sum is closer to the exact product, not bit-identical to a dequantize-then-matmul.
template <class T, int TokenTiles>
__device__ __forceinline__ void accumulate_tile_factored(const uint4* stage_codes, const std::uint32_t* stage_params,
                                                         int lane, const std::uint32_t (&xb)[4][TokenTiles][2],
                                                         bool groups_of_32, float minus,
                                                         float (&acc)[2][TokenTiles][4]) {
  constexpr bool is_bf16 = std::is_same_v<T, __nv_bfloat16>;
  constexpr std::uint32_t magic = is_bf16 ? 0x43004300u : 0x64006400u;  // 128 or 1024 in both halves
  constexpr std::uint32_t one = is_bf16 ? 0x3F803F80u : 0x3C003C00u;
  const std::uint32_t ones[4] = {one, one, one, one};
  const int g = lane >> 2;
  const uint4 block_codes[2] = {stage_codes[lane], stage_codes[32 + lane]};
  float group_sum[2][TokenTiles][4], x_sum[TokenTiles][4];
  // acc += s·group_sum + (z − minus·s)·x_sum with the (scale, zero) of `part` (the tile's first or
  // second 32 columns; the same group unless groups are 32 wide). C rows: g (c0, c1), g + 8 (c2, c3).
  auto scale_group = [&](int part) {
#pragma unroll
    for (int block = 0; block < 2; ++block)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float2 sz = pair_to_float2<T>(stage_params[part * stream_rows + 16 * block + 8 * half + g]);
        const float shift = fmaf(-minus, sz.x, sz.y);
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j)
#pragma unroll
          for (int e = 2 * half; e < 2 * half + 2; ++e)
            acc[block][j][e] = fmaf(sz.x, group_sum[block][j][e], fmaf(shift, x_sum[j][e], acc[block][j][e]));
      }
  };
#pragma unroll
  for (int step = 0; step < 4; ++step) {
    const bool fresh = step == 0 || (step == 2 && groups_of_32);
    std::uint32_t fa[2][4];
#pragma unroll
    for (int block = 0; block < 2; ++block) {
      const std::uint32_t word = step == 0 ? block_codes[block].x
                                 : step == 1 ? block_codes[block].y
                                 : step == 2 ? block_codes[block].z
                                             : block_codes[block].w;
      // A: a0 row g k 2t.., a1 row g+8, a2 row g k 2t+8.., a3 row g+8 (nibble pairs 0, 2, 1, 3).
      fa[block][0] = and_or(word, 0x000F000Fu, magic);
      fa[block][1] = and_or(word >> 8, 0x000F000Fu, magic);
      fa[block][2] = and_or(word >> 4, 0x000F000Fu, magic);
      fa[block][3] = and_or(word >> 12, 0x000F000Fu, magic);
    }
    if (fresh) {
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) {
        mma_16816_fresh<T>(x_sum[j], ones, xb[step][j][0], xb[step][j][1]);
#pragma unroll
        for (int block = 0; block < 2; ++block)
          mma_16816_fresh<T>(group_sum[block][j], fa[block], xb[step][j][0], xb[step][j][1]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) {
        mma_16816<T>(x_sum[j], ones, xb[step][j][0], xb[step][j][1]);
#pragma unroll
        for (int block = 0; block < 2; ++block)
          mma_16816<T>(group_sum[block][j], fa[block], xb[step][j][0], xb[step][j][1]);
      }
    }
    if (step == 1 && groups_of_32) scale_group(0);
  }
  scale_group(1);
}

// One K tile of row-major 8-bit codes (StreamCodes::*_rows): the stage holds rows 0..31 × 64 codes, and
// lane (g, t) reads the 16 codes [16t, 16t + 16) of rows g and g + 8 of each fragment block with one
// 16-byte load each (8 lanes cover 128 distinct bytes: no bank conflict). The k sum does not care which
// slot of the mma holds which k, as long as A and B agree: step i puts codes 16t + 4i + {0, 1} in the
// fragment's k slots 2t, 2t + 1 and 16t + 4i + {2, 3} in slots 2t + 8, 2t + 9, and load_x gives x the
// same order. Each code becomes w = round_T(q · s) (decode_pair; `Packed`: s is a T value).
template <class T, bool E4m3, bool Packed, int TokenTiles>
__device__ __forceinline__ void accumulate_tile_rows(const uint4* stage_rows, int lane,
                                                     const std::uint32_t (&xb)[4][TokenTiles][2],
                                                     const std::uint32_t (&scale2)[2][2], const float (&scale)[2][2],
                                                     float (&acc)[2][TokenTiles][4]) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int block = 0; block < 2; ++block) {
    const uint4 low = stage_rows[(16 * block + g) * 4 + t], high = stage_rows[(16 * block + 8 + g) * 4 + t];
    const std::uint32_t row_g[4] = {low.x, low.y, low.z, low.w}, row_g8[4] = {high.x, high.y, high.z, high.w};
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      const std::uint32_t fa[4] = {
          decode_pair<T, E4m3, Packed, 0>(row_g[step], scale2[block][0], scale[block][0]),
          decode_pair<T, E4m3, Packed, 0>(row_g8[step], scale2[block][1], scale[block][1]),
          decode_pair<T, E4m3, Packed, 1>(row_g[step], scale2[block][0], scale[block][0]),
          decode_pair<T, E4m3, Packed, 1>(row_g8[step], scale2[block][1], scale[block][1])};
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) mma_16816<T>(acc[block][j], fa, xb[step][j][0], xb[step][j][1]);
    }
  }
}

// XShared: x staged in shared memory (see below). Codes: StreamCodes.
template <class T, int Bits, int TokenTiles, bool XShared, StreamCodes Codes = StreamCodes::fragments>
__global__ void __launch_bounds__(stream_warps * 32, 1) gemm_tc_stream_kernel(const GemmTcParams p) {
  constexpr bool rows = Codes != StreamCodes::fragments;
  static_assert(!rows || Bits == 8, "row-major codes are 8-bit");
  using Ring = StreamRing<Bits, stream_stages<Bits, TokenTiles, XShared>, !rows>;
  constexpr int Slices = Bits / 4;  // 16-byte chunks per lane, fragment block and K tile
  extern __shared__ uint4 shared_words[];
  char* shared = reinterpret_cast<char*>(shared_words);
  float4* sums = reinterpret_cast<float4*>(shared + Ring::block_bytes);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int k_tiles = p.k / 64;
  const int my_tiles = k_tiles > warp ? (k_tiles - warp + stream_warps - 1) / stream_warps : 0;
  // Row blocks blockIdx.x, blockIdx.x + gridDim.x, ...: the grid is at most one block an SM, and each
  // warp's ring runs on from one row block into the next, so the DRAM latency is paid once per SM,
  // not once per row block, and the next row block's codes arrive during this one's reduction.
  const int row_blocks = p.n / stream_rows;
  const int my_row_blocks = (row_blocks - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) /
                            static_cast<int>(gridDim.x);
  const int my_items = my_row_blocks * my_tiles;
  const std::size_t blocks_per_k_tile = static_cast<std::size_t>(p.n / 16);
  const uint4* codes = static_cast<const uint4*>(p.b) + lane;
  const std::uint32_t* params = static_cast<const std::uint32_t*>(p.group_params);
  const T* x = static_cast<const T*>(p.a);
  const bool groups_of_32 = p.group_size == 32;
  const DequantConstants<T> constants{as_pair<T>(p.minus), p.minus_f};
  const float minus = pair_to_float2<T>(p.minus).x;
  char* ring = shared + warp * Ring::warp_bytes;

  // The warp's items (row block r, its tile t) in order, item i into stage i % stages; one commit
  // group per call, empty past the last item. The warp takes every stream_warps-th K tile.
  const std::size_t code_stride = stream_warps * blocks_per_k_tile * 8 * Bits;  // uint4 per tile
  // The lane's first code chunk of the warp's first tile in the row block starting at `row0`.
  auto first_codes = [&](int row0) {
    return codes + (static_cast<std::size_t>(row0 / 16) + warp * blocks_per_k_tile) * 8 * Bits;
  };
  int issued = 0, issue_tile = warp, issue_row0 = static_cast<int>(blockIdx.x) * stream_rows;
  const uint4* next_codes = first_codes(issue_row0);
  const std::uint8_t* row_codes = static_cast<const std::uint8_t*>(p.b);
  auto issue = [&]() {
    if (issued < my_items) {
      char* stage = ring + static_cast<unsigned>(issued) % Ring::stages * Ring::stage_bytes;
      if constexpr (rows) {  // 32 rows × 64 bytes: lane takes 16-byte column lane % 4 of rows lane / 4 + 8i
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int row = (lane >> 2) + 8 * i;
          copy_async_16(stage + row * 64 + (lane & 3) * 16,
                        row_codes + static_cast<std::size_t>(issue_row0 + row) * p.k + issue_tile * 64 + (lane & 3) * 16);
        }
      } else {
#pragma unroll
      for (int block = 0; block < 2; ++block)
#pragma unroll
        for (int slice = 0; slice < Slices; ++slice)
          copy_async_16(stage + ((block * Slices + slice) * 32 + lane) * 16,
                        next_codes + block * 8 * Bits + slice * 32);
      // 8 lanes a half: 32 rows × 4 bytes. tile · 64 / group_size as a multiply and shift (exact for
      // tile < 2^16: gemm_tc_group_magic).
      if (lane < 16) {
        const int half = lane >> 3;
        const int group = groups_of_32 ? 2 * issue_tile + half
                                       : static_cast<int>((static_cast<std::uint64_t>(issue_tile) * p.group_magic) >> 32);
        copy_async_16(stage + Ring::code_bytes + half * stream_rows * 4 + (lane & 7) * 16,
                      params + static_cast<std::size_t>(group) * p.n + issue_row0 + (lane & 7) * 4);
      }
      }
      ++issued;
      next_codes += code_stride;
      issue_tile += stream_warps;
      if (issue_tile >= k_tiles) {  // on to the next row block
        issue_tile = warp;
        issue_row0 += static_cast<int>(gridDim.x) * stream_rows;
        next_codes = first_codes(issue_row0);
      }
    }
    copy_async_commit();
  };

  // With XShared, x (M rows of K + 8 elements after the sums) is copied once per SM by one cp.async burst
  // ahead of the ring's first stages. Read from L2, the fragments queued behind the codes' stream (ncu: a
  // third of the loop's stalls at M = 1). The rows' 16 bytes of padding put the 8 rows of a B fragment in
  // different banks. A template parameter, not a runtime flag: a branch in the fragment loads cost M = 16
  // (where x does not fit) 10-15 %. For 9..16 tokens (uint4 only, K up to about 3600) the ring has 4
  // stages to make room.
  constexpr bool x_shared = XShared;
  const int x_stride = x_shared ? p.k + 8 : p.k;
  T* x_staged = reinterpret_cast<T*>(shared + stream_shared_bytes<Bits, TokenTiles, XShared, Codes>);
  if constexpr (x_shared) {
    const int chunks = p.k / 8;  // 16 bytes each
    for (int c = threadIdx.x; c < p.m * chunks; c += stream_warps * 32) {
      const int row = c / chunks, column = c - row * chunks;
      copy_async_16(x_staged + static_cast<std::size_t>(row) * x_stride + column * 8,
                    x + static_cast<std::size_t>(row) * p.k + column * 8);
    }
    copy_async_commit();
  }
#pragma unroll
  for (int i = 0; i < Ring::stages - 1; ++i) issue();
  if constexpr (x_shared) {
    copy_async_wait<Ring::stages - 1>();  // the x group, older than the ring's
    __syncthreads();
  }

  // x's B fragments are loaded one item ahead. The lane's x rows: tokens past M read row M − 1 (their
  // sums are not stored). Row-major codes: the lane's 16 elements [16t, 16t + 16) of the tile, in the
  // k order accumulate_tile_rows gives the codes.
  const T* x_rows[TokenTiles];
#pragma unroll
  for (int j = 0; j < TokenTiles; ++j)
    x_rows[j] = (x_shared ? x_staged : x) + static_cast<std::size_t>(min(8 * j + g, p.m - 1)) * x_stride +
                (rows ? 16 : 2) * (lane & 3) + warp * 64;
  int x_tile = 0;  // index of the next x tile among the warp's tiles
  auto load_x = [&](std::uint32_t (&xb)[4][TokenTiles][2]) {
    if constexpr (rows) {
#pragma unroll
      for (int j = 0; j < TokenTiles; ++j) {
        const T* source = x_rows[j] + x_tile * (stream_warps * 64);
        uint4 v[2];
        if constexpr (x_shared) {
          v[0] = load_shared_16(source), v[1] = load_shared_16(source + 8);
        } else {
          v[0] = __ldg(reinterpret_cast<const uint4*>(source)), v[1] = __ldg(reinterpret_cast<const uint4*>(source) + 1);
        }
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          xb[2 * half][j][0] = v[half].x, xb[2 * half][j][1] = v[half].y;
          xb[2 * half + 1][j][0] = v[half].z, xb[2 * half + 1][j][1] = v[half].w;
        }
      }
    } else {
#pragma unroll
      for (int step = 0; step < 4; ++step)
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j) {
          const T* source = x_rows[j] + x_tile * (stream_warps * 64) + 16 * step;
          if constexpr (x_shared) {
            xb[step][j][0] = load_shared_word(source);
            xb[step][j][1] = load_shared_word(source + 8);
          } else {
            xb[step][j][0] = load_word(source);
            xb[step][j][1] = load_word(source + 8);
          }
        }
    }
    x_tile = x_tile + 1 == my_tiles ? 0 : x_tile + 1;
  };
  std::uint32_t xb_next[4][TokenTiles][2] = {};
  if (my_items > 0) load_x(xb_next);

  // SVD branch: warp w runs the rank's k-step w (rp ≤ 128 gives at most 8 steps) for every row block:
  // low_rank's B fragments once (after the down-projection's grid), svd_up's A fragments per row block.
  // low_rank is fetched after the first row block's tiles: fetched after the first tile instead (with
  // svd_up requested a row block ahead), the wait for the down-projection stalled warps 0-1 and M = 1 got
  // 0.3-2.2 µs slower (K = 12288: 15.1 → 17.3 µs).
  static_assert(gemm_tc_max_rank / 16 <= stream_warps, "one rank k-step a warp");
  const bool rank_step_mine = warp < p.rank_padded / 16;
  std::uint32_t low_rank_fragments[TokenTiles][2] = {};
  bool have_low_rank = false;
  auto fetch_low_rank = [&]() {
    wait_for_prior_grid();
    // The down-projection's splits added in order, rounded to T (all loads of a group of splits in flight
    // at once).
    const std::size_t split_stride = static_cast<std::size_t>(p.m) * p.rank_padded;
#pragma unroll
    for (int j = 0; j < TokenTiles; ++j) {
      const float* first =
          p.partial + static_cast<std::size_t>(min(8 * j + g, p.m - 1)) * p.rank_padded + 16 * warp + 2 * (lane & 3);
      float2 low = make_float2(0.0f, 0.0f), high = make_float2(0.0f, 0.0f);
#pragma unroll 4
      for (int split = 0; split < p.low_rank_splits; ++split) {
        const float2 a = __ldg(reinterpret_cast<const float2*>(first + split * split_stride));
        const float2 b = __ldg(reinterpret_cast<const float2*>(first + split * split_stride + 8));
        low.x += a.x, low.y += a.y, high.x += b.x, high.y += b.y;
      }
      low_rank_fragments[j][0] = pack_pair<T>(low.x, low.y);
      low_rank_fragments[j][1] = pack_pair<T>(high.x, high.y);
    }
    have_low_rank = true;
  };

  // Row-major codes: the F32 scales of the lane's rows g and g + 8 of each fragment block, requested a
  // row block ahead (loads issued now arrive behind the ring's codes in flight).
  const float* row_scales = static_cast<const float*>(p.group_params);
  std::uint32_t scale_next[2][2] = {};
  auto load_scales = [&](int row0) {
#pragma unroll
    for (int block = 0; block < 2; ++block)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        scale_next[block][half] = load_word_now(row_scales + row0 + 16 * block + 8 * half + g);
  };
  if (rows && my_row_blocks > 0) load_scales(static_cast<int>(blockIdx.x) * stream_rows);

  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
  int consumed = 0;
  for (int r = 0; r < my_row_blocks; ++r) {
    const int row0 = (static_cast<int>(blockIdx.x) + r * static_cast<int>(gridDim.x)) * stream_rows;
    std::uint32_t up_fragments[2][4] = {};
    if (rank_step_mine) {  // loaded now, their latency hidden under the codes
      const std::size_t eight_rows = static_cast<std::size_t>(8) * p.rank_padded;
#pragma unroll
      for (int block = 0; block < 2; ++block) {
        const T* rows = static_cast<const T*>(p.svd_up) +
                        static_cast<std::size_t>(row0 + 16 * block + g) * p.rank_padded + 16 * warp + 2 * (lane & 3);
        up_fragments[block][0] = load_word(rows);
        up_fragments[block][1] = load_word(rows + eight_rows);
        up_fragments[block][2] = load_word(rows + 8);
        up_fragments[block][3] = load_word(rows + eight_rows + 8);
      }
    }
    float scale[2][2];
    std::uint32_t scale2[2][2];
    bool packed = true;  // every scale of the row block is a T value: one packed multiply per pair
    if constexpr (rows) {
#pragma unroll
      for (int block = 0; block < 2; ++block)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          scale[block][half] = __uint_as_float(scale_next[block][half]);
          scale2[block][half] = pack_pair<T>(scale[block][half], scale[block][half]);
          packed = packed && to_float(from_float<T>(scale[block][half])) == scale[block][half];
        }
      packed = __all_sync(0xFFFFFFFFu, packed);
      if (r + 1 < my_row_blocks) load_scales(row0 + static_cast<int>(gridDim.x) * stream_rows);
    }

    float acc[2][TokenTiles][4] = {};
    for (int t = 0; t < my_tiles; ++t, ++consumed) {
      std::uint32_t xb[4][TokenTiles][2];
#pragma unroll
      for (int step = 0; step < 4; ++step)
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j)
          xb[step][j][0] = xb_next[step][j][0], xb[step][j][1] = xb_next[step][j][1];
      if (consumed + 1 < my_items) load_x(xb_next);
      copy_async_wait<Ring::stages - 2>();
      __syncwarp();  // item `consumed` visible to the warp; every lane is done with the stage refilled next
      issue();
      const char* stage = ring + static_cast<unsigned>(consumed) % Ring::stages * Ring::stage_bytes;
      const std::uint32_t* stage_params = reinterpret_cast<const std::uint32_t*>(stage + Ring::code_bytes);
      if constexpr (rows) {
        constexpr bool e4m3 = Codes == StreamCodes::e4m3_rows;
        if (packed)
          accumulate_tile_rows<T, e4m3, true, TokenTiles>(reinterpret_cast<const uint4*>(stage), lane, xb, scale2,
                                                          scale, acc);
        else
          accumulate_tile_rows<T, e4m3, false, TokenTiles>(reinterpret_cast<const uint4*>(stage), lane, xb, scale2,
                                                           scale, acc);
      } else if constexpr (Bits == 4) {
        accumulate_tile_factored<T, TokenTiles>(reinterpret_cast<const uint4*>(stage), stage_params, lane, xb,
                                                groups_of_32, minus, acc);
      } else {
        accumulate_tile_dequantized<T, Bits, TokenTiles>(reinterpret_cast<const uint4*>(stage), stage_params, lane,
                                                         xb, constants, acc);
      }
    }

    if (rank_step_mine) {
      if (!have_low_rank) fetch_low_rank();
#pragma unroll
      for (int block = 0; block < 2; ++block)
#pragma unroll
        for (int j = 0; j < TokenTiles; ++j)
          mma_16816<T>(acc[block][j], up_fragments[block], low_rank_fragments[j][0], low_rank_fragments[j][1]);
    }

    __syncthreads();  // the previous row block's sums have been read
    reduce_warps<TokenTiles>(sums, acc, p.m, stream_rows, [&](int row, int token, float sum) {
      if (bias != nullptr) sum += to_float(bias[row0 + row]);
      y[static_cast<std::size_t>(token) * p.n + row0 + row] = from_float<T>(sum);
    });
  }
  copy_async_wait<0>();
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
