#pragma once
// The Hopper (sm_90a) int8 path of gemm_w8a8: the same fused quantization prologue and epilogue as
// w8a8_kernel.cuh, with the 8-bit product on wgmma (warpgroup MMA, operands read by the tensor cores
// straight from shared memory) instead of mma.sync. One block = 2 warpgroups = a 128×BN tile, each
// warpgroup 64×BN with m64nBNk32 instructions. The cp.async pipeline fills K tiles of 128 codes whose
// rows are 128 bytes with 16-byte chunks XOR-swizzled by row % 8: exactly the canonical K-major
// 128-byte-swizzle layout wgmma reads (8-row atoms of 1024 bytes, tile bases 1024-byte aligned).
// Every K tile: wait for its copies, fence them to the async proxy, barrier, issue 4 wgmma (k32 each),
// issue the copies of a later tile, wait for the wgmma. int8 only, int32 accumulators (exact).
// This cp.async kernel is the predecessor of the warp-specialized TMA kernel (w8a8_tma.cuh), which
// gemm_w8a8 now chooses on Hopper; it stays as a forced tile for comparison. e4m3 on wgmma lives only
// in w8a8_tma.cuh (fp32 promotion every K tile, tested at relative L2 ≤ 1e-2).
// Built only for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL); elsewhere the kernels trap and the host never
// launches them (has_sm90a_code in wgmma.cuh tells whether this build has the sm_90a code).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/w8a8_kernel.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"
#include "sdnq/cuda/detail/wgmma.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// d (+)= A[64×32] · B[N×32]ᵀ, operands by descriptor; d: the m64nN accumulator fragment
// (d[4j + i]: rows 16·warp + lane/4 (+8 for i ≥ 2), column 8j + 2·(lane%4) + i%2).
__device__ __forceinline__ void wgmma_s8_m64n256k32(int (&d)[128], std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 " SDNQ_WGMMA_R128 "}, %128, %129, 1;\n"
               : SDNQ_WGMMA_D128("+r")
               : "l"(a), "l"(b));
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_s8_m64n128k32(int (&d)[64], std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " SDNQ_WGMMA_R64 "}, %64, %65, 1;\n"
               : SDNQ_WGMMA_D64("+r")
               : "l"(a), "l"(b));
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

template <int BN>
__device__ __forceinline__ void wgmma_s8_k32(int (&d)[BN / 2], std::uint64_t a, std::uint64_t b) {
  if constexpr (BN == 256)
    wgmma_s8_m64n256k32(d, a, b);
  else
    wgmma_s8_m64n128k32(d, a, b);
}

template <int BN_, int Stages_>
struct W8A8WgmmaTile {
  static constexpr int BM = 128, BN = BN_, Stages = Stages_, threads = 256, k_tile = 128;
  static constexpr int shared_bytes = Stages * (BM + BN) * k_tile + 1024;  // + realignment to 1024
};

template <class T, W8A8Operand Operand, class Tile>
__global__ void __launch_bounds__(Tile::threads, 1) gemm_w8a8_wgmma_kernel(const W8A8Params p) {
  static_assert(Operand == W8A8Operand::int8, "the wgmma path is int8 only (see the file comment)");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = Tile::BM, BN = Tile::BN, Stages = Tile::Stages;
  extern __shared__ uint4 shared_words[];
  auto* unaligned = reinterpret_cast<std::uint8_t*>(shared_words);
  std::uint8_t* shared = unaligned + ((1024 - (shared_address(unaligned) & 1023)) & 1023);
  const int2 tile_index = block_tile<BM, BN>(p);
  const int row0 = tile_index.x * BM, col0 = tile_index.y * BN;
  const int valid_rows = min(BM, p.m - row0), valid_cols = min(BN, p.n - col0);

  quantize_row_tile<T, Operand>(p, tile_index.x, row0, valid_rows);

  int acc[BN / 2];  // the m64nBN fragment of this thread's warpgroup
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0;

  std::uint8_t* a_tiles = shared;                      // [Stages][BM][128]
  std::uint8_t* b_tiles = shared + Stages * BM * 128;  // [Stages][BN][128]
  const std::uint8_t* a = p.x_codes + static_cast<std::size_t>(row0) * p.k;
  const std::uint8_t* b = static_cast<const std::uint8_t*>(p.w) + static_cast<std::size_t>(col0) * p.k;
  const int warpgroup = threadIdx.x / 128;
  const int tiles = (p.k + 127) / 128;
  auto load = [&](int stage, int tile) {
    load_code_rows_async<BM, Tile::threads>(a_tiles + stage * BM * 128, a, p.k, valid_rows, tile);
    load_code_rows_async<BN, Tile::threads>(b_tiles + stage * BN * 128, b, p.k, valid_cols, tile);
  };
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < tiles) load(s, s);
    copy_async_commit();
  }
  for (int tile = 0; tile < tiles; ++tile) {
    copy_async_wait<Stages - 2>();
    fence_proxy_async_shared();
    __syncthreads();  // tile `tile` visible to both warpgroups; the stage reloaded below is free
    const int stage = tile % Stages;
    const std::uint32_t a_base = shared_address(a_tiles + stage * BM * 128 + warpgroup * 64 * 128);
    const std::uint32_t b_base = shared_address(b_tiles + stage * BN * 128);
    wgmma_fence();
#pragma unroll
    for (int step = 0; step < 4; ++step)
      wgmma_s8_k32<BN>(acc, wgmma_descriptor(a_base + step * 32), wgmma_descriptor(b_base + step * 32));
    wgmma_commit();
    const int next = tile + Stages - 1;
    if (next < tiles) load(next % Stages, next);
    copy_async_commit();
    wgmma_wait<0>();
  }
  copy_async_wait<0>();

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int col = col0 + 8 * j + 2 * (lane & 3);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = row0 + warp * 16 + half * 8 + (lane >> 2);
      store_output_pair<T>(p, row, col, __int2float_rn(acc[4 * j + 2 * half]),
                           __int2float_rn(acc[4 * j + 2 * half + 1]));
    }
  }
#else
  (void)p;
  __trap();
#endif
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
