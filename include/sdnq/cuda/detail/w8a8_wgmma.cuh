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
// launches them (w8a8_wgmma_probe tells whether this build has the sm_90a code).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/w8a8_kernel.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// Shared-memory matrix descriptor of a K-major operand in the 128-byte-swizzle layout: start address,
// leading offset (unused for this layout, 1 by convention), stride 1024 bytes between 8-row atoms,
// swizzle mode 1 (128 B) in bits 62-63.
__device__ __forceinline__ std::uint64_t wgmma_descriptor(std::uint32_t shared_byte_address) {
  return static_cast<std::uint64_t>((shared_byte_address & 0x3FFFF) >> 4) | (std::uint64_t{1} << 16) |
         (std::uint64_t{1024 >> 4} << 32) | (std::uint64_t{1} << 62);
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_wait_all() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
// Generic-proxy writes (cp.async) made visible to the async proxy (wgmma) before the barrier.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// d (+)= A[64×32] · B[N×32]ᵀ, operands by descriptor; d: the m64nN accumulator fragment
// (d[4j + i]: rows 16·warp + lane/4 (+8 for i ≥ 2), column 8j + 2·(lane%4) + i%2).
__device__ __forceinline__ void wgmma_s8_m64n256k32(int (&d)[128], std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "
      "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "
      "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "
      "%90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, "
      "%110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, 1;\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]),
        "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]),
        "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]),
        "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]),
        "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]),
        "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]),
        "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]),
        "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]),
        "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]), "+r"(d[72]),
        "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]),
        "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]),
        "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]),
        "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]), "+r"(d[104]),
        "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]), "+r"(d[112]),
        "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]),
        "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
      : "l"(a), "l"(b));
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

__device__ __forceinline__ void wgmma_s8_m64n128k32(int (&d)[64], std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "
      "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, 1;\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]),
        "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]),
        "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]),
        "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]),
        "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]),
        "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]),
        "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]),
        "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
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
    wgmma_wait_all();
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

// Writes 1 where this build has sm_90a code for the running device, else 0. A template so that every
// translation unit including this header may emit it (a plain __global__ would be defined twice at link).
template <int Unused = 0>
__global__ void w8a8_wgmma_probe(int* has_sm90a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *has_sm90a = 1;
#else
  *has_sm90a = 0;
#endif
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
