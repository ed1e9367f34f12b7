#pragma once
// The Hopper (sm_90a) weight-only GEMM for large M behind gemm_weight_only_sm90.cuh:
//   y = x · dequant(W)ᵀ (+ low_rank · svd_upᵀ) (+ bias),  computed as yᵀ = W · xᵀ
// so that the dequantized weight is wgmma's A operand in registers (the "RS" form) and x, loaded by
// TMA, is the shared-memory B operand. One block of 3 warpgroups owns 128 weight rows × BN tokens:
//   warpgroup 0   producer: one thread fills a Stages-deep ring (full / empty mbarriers of
//                 tma_pipeline.cuh); a stage holds x's BN×64 tile by TMA (128-byte rows, 128-byte
//                 swizzle: the layout wgmma_descriptor of wgmma.cuh describes) and, by 1-D bulk
//                 copies, the 128 rows' codes of that K tile (contiguous in gemm_tc's repacked layout,
//                 detail/gemm_tc_repack.hpp) and their one or two groups' (scale, zero) pairs. After the
//                 K tiles come the rp/64 tiles of low_rank = x · svd_downᵀ for the SVD branch.
//   warpgroups 1-2 consumers: weight rows 0-63 and 64-127. A lane's staged code words are exactly its
//                 m16n8k16 fragment, which is also the per-warp A fragment of wgmma m64k16; each warp
//                 dequantizes its 16 rows in registers with gemm_tc's exponent trick (w = q·s + z
//                 rounded once in T) and issues m64nBNk16 per 16 inputs.
// One wgmma group (4 steps of 16 inputs) per K tile; the next tile is dequantized into a second set of
// A registers while it runs (wait_group 1 then frees the first set), so dequantization runs under the
// tensor cores.
// After the K tiles, the SVD tiles use svd_up's rows (dense T, loaded as A fragments) with the staged
// low_rank tile as B, into the same fp32 accumulators: the branch is a few extra K steps.
// Epilogue: + bias in fp32, one rounding to T, staged transposed in shared memory (accumulator rows
// are y's columns), then stored as whole 16-byte pieces of y's rows.
// TMA zero-fills tokens past M; N % 64 == 0 (a warpgroup past N idles), K % 64 == 0.
// Built only for sm_90a; elsewhere the kernel traps and the host never launches it.
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/gemm_tc_kernel.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/tma_pipeline.cuh"
#include "sdnq/cuda/detail/wgmma.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// BN tokens per block (the wgmma N); 128 weight rows (two consumer warpgroups of m64). A stage holds
// x's BN×64 tile, the 128 rows' codes of the K tile (gemm_tc's layout: 8 contiguous 16-row blocks) and
// up to two groups' (scale, zero) pairs of the 128 rows.
template <int BN_, int Stages_>
struct WeightOnlySm90Tile {
  static constexpr int BM = 128, BN = BN_, Stages = Stages_, threads = 384;
  static constexpr int x_bytes = BN * 128;  // BN token rows × 64 inputs of T
  static constexpr int param_bytes = 2 * BM * 4;
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int code_bytes() {
    return BM * 64 * Bits / 8;
  }
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int stage_bytes() {  // a multiple of 1024: every x tile stays swizzle-aligned
    return x_bytes + code_bytes<Bits>() + param_bytes;
  }
  // The ring (1024-byte aligned for the swizzle), then full[Stages] and empty[Stages] barriers.
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int shared_bytes() {
    return 1024 + Stages * stage_bytes<Bits>() + 2 * Stages * 8;
  }
};

// Bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned) global → shared, completing
// on `barrier` (the 1-D form of tma_pipeline.cuh's tma_load_2d).
__device__ __forceinline__ void bulk_load(void* destination, const void* source, std::uint32_t bytes,
                                          std::uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
          shared_address(destination)),
      "l"(source), "r"(bytes), "r"(shared_address(barrier))
      : "memory");
#else
  (void)destination, (void)source, (void)bytes, (void)barrier;
#endif
}

template <class T, int Bits, class Tile>
__global__ void __launch_bounds__(Tile::threads, 1)
    gemm_weight_only_sm90_kernel(const GemmTcParams p, const __grid_constant__ CUtensorMap x_map,
                                 const __grid_constant__ CUtensorMap low_rank_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BN = Tile::BN, Stages = Tile::Stages;
  extern __shared__ uint4 shared_words[];
  auto* unaligned = reinterpret_cast<std::uint8_t*>(shared_words);
  constexpr int stage_bytes = Tile::template stage_bytes<Bits>(), x_bytes = Tile::x_bytes;
  constexpr int code_bytes = Tile::template code_bytes<Bits>();
  std::uint8_t* ring = unaligned + ((1024 - (shared_address(unaligned) & 1023)) & 1023);  // [Stages][stage_bytes]
  auto* full = reinterpret_cast<std::uint64_t*>(ring + Stages * stage_bytes);            // [Stages]
  std::uint64_t* empty = full + Stages;                                                  // [Stages]

  const int n0 = blockIdx.x * Tile::BM, token0 = blockIdx.y * BN;
  const int k_tiles = p.k / 64, tiles = k_tiles + p.rank_padded / 64;
  if (threadIdx.x == 0) {
    for (int s = 0; s < Stages; ++s) {
      barrier_init(full + s, 1);   // the producer's arrival; the bytes complete it
      barrier_init(empty + s, 2);  // one arrival per consumer warpgroup
    }
    barrier_init_fence();
    tma_prefetch_map(&x_map);
    if (p.rank_padded > 0) tma_prefetch_map(&low_rank_map);
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    shrink_registers<40>();
    if (threadIdx.x == 0) {
      // Codes and group parameters of the rows that exist (the last row block may end 64 rows early).
      const int valid_rows = min(Tile::BM, p.n - n0);
      const std::uint32_t tile_code_bytes = valid_rows * 64 * Bits / 8, row_param_bytes = valid_rows * 4;
      const std::size_t codes_tile_stride = static_cast<std::size_t>(p.n) * 64 * Bits / 8;
      const char* codes = static_cast<const char*>(p.b) + static_cast<std::size_t>(n0) * 64 * Bits / 8;
      const auto* params = static_cast<const char*>(p.group_params) + static_cast<std::size_t>(n0) * 4;
      const int groups_per_tile = p.group_size == 32 ? 2 : 1;
      for (int tile = 0; tile < tiles; ++tile) {
        const int stage = tile % Stages;
        std::uint8_t* target = ring + stage * stage_bytes;
        if (tile >= Stages) barrier_wait(empty + stage, (tile / Stages - 1) & 1);
        // Byte coordinates: 64 inputs of T are 128 bytes.
        if (tile < k_tiles) {
          barrier_arrive_expect_bytes(full + stage,
                                      x_bytes + tile_code_bytes + groups_per_tile * row_param_bytes);
          tma_load_2d(target, &x_map, tile * 128, token0, full + stage);
          bulk_load(target + x_bytes, codes + tile * codes_tile_stride, tile_code_bytes, full + stage);
          const int first_group = p.group_size == 32 ? 2 * tile : tile * 64 / p.group_size;
          for (int g = 0; g < groups_per_tile; ++g)
            bulk_load(target + x_bytes + code_bytes + g * Tile::BM * 4,
                      params + static_cast<std::size_t>(first_group + g) * p.n * 4, row_param_bytes, full + stage);
        } else {
          barrier_arrive_expect_bytes(full + stage, x_bytes);
          tma_load_2d(target, &low_rank_map, (tile - k_tiles) * 128, token0, full + stage);
        }
      }
    }
    return;
  }
  grow_registers<232>();
  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31;
  const int rows0 = n0 + consumer * 64;  // this warpgroup's first weight row
  // A warpgroup past N (N % 128 == 64) only releases the stages it is counted on.
  const bool active = rows0 < p.n;
  const int n_block = rows0 / 16 + warp;
  const int row_lo = n_block * 16 + (lane >> 2);  // the lane's fragment rows: row_lo and row_lo + 8
  const bool signals = threadIdx.x % 128 == 0;

  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

  if (!active) {
    for (int tile = 0; tile < tiles; ++tile) {
      barrier_wait(full + tile % Stages, (tile / Stages) & 1);
      if (signals) barrier_arrive(empty + tile % Stages);
    }
  } else {
    const DequantConstants<T> constants{as_pair<T>(p.minus), p.minus_f};
    const T* up_lo =
        static_cast<const T*>(p.svd_up) + static_cast<std::size_t>(row_lo) * p.rank_padded + 2 * (lane & 3);
    const T* up_hi = up_lo + 8 * static_cast<std::size_t>(p.rank_padded);
    const int warp_block = consumer * 4 + warp;  // the warp's 16-row block within the stage's codes

    // A fragments of one tile's 4 steps in registers: dequantized from the stage (or svd_up's) while
    // the tensor cores still run the previous tile's group from the other buffer.
    const auto make_fragments = [&](int tile, std::uint32_t(&a)[4][4]) {
      const int stage = tile % Stages;
      if (tile >= k_tiles) {  // svd_up from global memory before waiting for the low-rank tile
        const int r0 = (tile - k_tiles) * 64;
#pragma unroll
        for (int step = 0; step < 4; ++step) {
          const int r = r0 + 16 * step;
          a[step][0] = *reinterpret_cast<const std::uint32_t*>(up_lo + r);
          a[step][1] = *reinterpret_cast<const std::uint32_t*>(up_hi + r);
          a[step][2] = *reinterpret_cast<const std::uint32_t*>(up_lo + r + 8);
          a[step][3] = *reinterpret_cast<const std::uint32_t*>(up_hi + r + 8);
        }
      }
      barrier_wait(full + stage, (tile / Stages) & 1);
      if (tile >= k_tiles) return;
      const std::uint8_t* staged = ring + stage * stage_bytes + x_bytes;
      std::uint32_t words[Bits];  // the lane's words of the tile, 128 bits a load
#pragma unroll
      for (int slice = 0; slice < Bits / 4; ++slice) {
        const uint4 v = *reinterpret_cast<const uint4*>(staged + warp_block * 128 * Bits + slice * 512 + lane * 16);
        words[4 * slice] = v.x, words[4 * slice + 1] = v.y, words[4 * slice + 2] = v.z, words[4 * slice + 3] = v.w;
      }
      const auto* params = reinterpret_cast<const std::uint32_t*>(staged + code_bytes);
      const int row = row_lo - n0;
      std::uint32_t sz[2][2];  // [group within the tile][row half]
#pragma unroll
      for (int g = 0; g < 2; ++g)
#pragma unroll
        for (int half = 0; half < 2; ++half) sz[g][half] = params[(p.group_size == 32 ? g : 0) * Tile::BM + row + 8 * half];
#pragma unroll
      for (int step = 0; step < 4; ++step) {
        pair_of<T> s[2], z[2];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          s[half] = as_pair<T>(__byte_perm(sz[step / 2][half], 0, 0x1010));  // scale in both halves
          z[half] = as_pair<T>(__byte_perm(sz[step / 2][half], 0, 0x3232));  // zero point in both halves
        }
        std::uint32_t step_words[Bits / 4];
#pragma unroll
        for (int w = 0; w < Bits / 4; ++w) step_words[w] = words[step * (Bits / 4) + w];
        std::uint32_t b[2][2];  // [row half][k half] as gemm_tc's B fragments
        dequantize_step<T, Bits>(step_words, s, z, constants, b);
        a[step][0] = b[0][0], a[step][1] = b[1][0], a[step][2] = b[0][1], a[step][3] = b[1][1];
      }
    };
    // One group of 4 wgmma per tile; waiting for all but it frees the previous tile's stage and
    // A buffer (`previous` stays live until here so its registers are not reused while being read).
    const auto issue = [&](int tile, std::uint32_t(&a)[4][4], std::uint32_t(&previous)[4][4]) {
      const std::uint32_t x_base = shared_address(ring + (tile % Stages) * stage_bytes);
      wgmma_fence();
#pragma unroll
      for (int step = 0; step < 4; ++step)
        wgmma_rs_k16<T, BN, false>(acc, a[step], wgmma_descriptor(x_base + 32 * step));  // x: K-major B
      wgmma_commit();
      wgmma_wait<1>();
#pragma unroll
      for (int step = 0; step < 4; ++step)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(previous[step][i]));
      if (tile > 0 && signals) barrier_arrive(empty + (tile - 1) % Stages);
    };
    std::uint32_t a0[4][4] = {}, a1[4][4] = {};
#pragma unroll 1
    for (int tile = 0; tile < tiles; tile += 2) {
      make_fragments(tile, a0);
      issue(tile, a0, a1);
      if (tile + 1 < tiles) {
        make_fragments(tile + 1, a1);
        issue(tile + 1, a1, a0);
      }
    }
    wgmma_wait<0>();
  }

  // Epilogue: both consumers are past every full barrier, so all copies have landed and the ring is
  // free. Each writes its rows (+ bias, rounded once) as a [token][row] tile into it, then all 256
  // threads store whole 16-byte pieces of y's rows.
  // Accumulator (i, j): weight row row_lo (+8 for i ≥ 2), token 8j + 2·(lane % 4) + i % 2 of the block.
  constexpr int pitch = Tile::BM + 8;  // elements per staged token row (16 bytes of padding: no conflicts)
  static_assert(BN * pitch * 2 <= Stages * stage_bytes, "the staged output tile fits in the ring");
  T* staged = reinterpret_cast<T*>(ring);
  const auto consumers_sync = [] { asm volatile("bar.sync 1, 256;\n" ::: "memory"); };
  consumers_sync();
  if (active) {
    const T* bias = static_cast<const T*>(p.bias);
    const float bias_lo = bias != nullptr ? to_float(bias[row_lo]) : 0.0f;
    const float bias_hi = bias != nullptr ? to_float(bias[row_lo + 8]) : 0.0f;
    const int row = row_lo - n0;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int token = 8 * j + 2 * (lane & 3) + (i & 1);
        staged[token * pitch + row + (i < 2 ? 0 : 8)] = from_float<T>(acc[4 * j + i] + (i < 2 ? bias_lo : bias_hi));
      }
  }
  consumers_sync();
  constexpr int pieces = Tile::BM / 8;  // 16-byte pieces per token row
  const int valid_rows = min(Tile::BM, p.n - n0);
  for (int piece = threadIdx.x - 128; piece < BN * pieces; piece += 256) {
    const int token = piece / pieces, column = (piece % pieces) * 8;
    if (token0 + token >= p.m || column >= valid_rows) continue;
    *reinterpret_cast<uint4*>(static_cast<T*>(p.y) + static_cast<std::size_t>(token0 + token) * p.n + n0 + column) =
        *reinterpret_cast<const uint4*>(staged + token * pitch + column);
  }
#else
  (void)p, (void)x_map, (void)low_rank_map;
  __trap();
#endif
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
