#pragma once
// The warp-specialized Hopper (sm_90a) path of gemm_w8a8, int8 and float8_e4m3fn. One block of 3
// warpgroups computes 128×BN output tiles: with a grid of one block per SM it walks tiles blockIdx.x,
// blockIdx.x + gridDim.x, ... (persistent: the next tile's loads overlap this tile's epilogue); with
// one block per tile it computes one.
//   warpgroup 0   producer: one thread issues TMA loads (tma_pipeline.cuh) of the 128×128-byte A tile
//                 (quantized activation codes) and the BN×128-byte B tile (weight codes) of each K tile
//                 into a Stages-deep shared-memory ring; the full barrier of a stage completes when
//                 its bytes have landed, the empty barrier when both consumers are done with it.
//                 Warps 1-3 quantize the activation rows of the block's later tiles meanwhile.
//   warpgroups 1-2 consumers: rows 0-63 and 64-127 of the tile, 4 wgmma m64nBNk32 per K tile.
// TMA's 128-byte swizzle writes the layout wgmma_descriptor (wgmma.cuh) describes, and zero-fills
// rows past M / N and bytes past K, so any M, N and K % 16 == 0 work.
// Activation quantization (w8a8_quantize.cuh, rows shared between blocks through the workspace
// counters): before the pipeline all 384 threads help quantize the first tile's rows; later tiles'
// rows are quantized ahead by the producer warpgroup's spare warps (and any other block needing them),
// and the TMA thread waits for a row tile to be complete (acquire, proxy fence) before loading it.
// No wait can deadlock: a row is only waited for once claimed, and a claimed row's warp never waits.
// With codes_ready (codes and scales quantized by an earlier launch, quantize_w8a8_activations) none of
// this runs: no counters are read or written, the producer loads every tile's codes right away (the
// kernel boundary orders the earlier launch's stores before these TMA reads) and the spare warps idle.
// int8: int32 accumulators (exact); one wgmma group stays in flight while the next K tile is waited for.
// e4m3: the fp8 tensor cores add products with reduced precision, so the K tiles are summed on them in
// runs of p.e4m3_promotion_tiles (128 inputs each) and each run's sums are then added into fp32 totals
// on the CUDA cores (the promotion DeepGEMM and CUTLASS use): error stays bounded for K up to 15360 and
// beyond. A promotion must wait for its MMAs, so
// the two consumers issue in turn (named barriers consumer_0_issued / consumer_1_issued): consumer 0's K
// tile, then consumer 1's, then consumer 0's next, ... and each one's promotion runs while the other's
// MMAs keep the tensor cores busy (in lockstep both promoted at once, tensor cores idle). A run's ring
// stages are freed together after its wait. Two accumulator sets alternating between K tiles (no wait
// for the MMAs just issued) were tried: ptxas serializes the wgmmas once a promotion reads one set while
// the other's group is in flight (C7514), and the 64×128 tile has no registers for more.
// SVD branch (W8A8TmaTile<BN, Stages, true>, int8, BN 128 or 256): once an output tile's K tiles are
// summed, each consumer turns its int32 accumulators into the outputs without the low-rank term,
// fma(acc·s_x, s_w, bias) in fp32, in registers that wgmma then accumulates onto: after the K tiles come
// the stages of the tile's own ranks (svd_tile_ranks: a joined layer's parts it covers, nothing past the
// true rank), each 64 ranks of low_rank (x·svd_downᵀ, T, by an earlier launch) and of svd_up, run as
// bf16/fp16 wgmma. The low-rank term needs no registers of its own, so the SVD tiles are as wide as the
// plain ones.
// Epilogue as the other kernels: y = fma(acc·s_x, s_w, bias) in fp32, rounded once to T. With N % 8 == 0
// (and y 16-byte aligned) each consumer stages its 64×BN outputs in shared memory and one thread writes
// them with TMA stores that drain while the consumer's next tile runs its MMAs (the global writes no
// longer stall the tensor cores: at K = 640 the store of a tile takes about as long as its MMAs);
// otherwise the consumers store their fragments directly.
// Built only for sm_90a; elsewhere the kernel traps and the host never launches it.
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/tma_pipeline.cuh"
#include "sdnq/cuda/detail/w8a8_kernel.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"
#include "sdnq/cuda/detail/w8a8_wgmma.cuh"
#include "sdnq/cuda/detail/wgmma.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// d = A[64×32] · B[BN×32]ᵀ (+ d with Accumulate) in e4m3 with fp32 accumulators, BN 128 or 192
// (fragment as wgmma_s8_m64n128k32, BN / 8 column groups). Accumulate is the instruction's scale-d as
// an immediate: a run's first MMA overwrites d, so no zeroing instructions precede it.
#define SDNQ_WGMMA_E4M3(shape, R, D, descriptors, scale_d)                                                          \
  asm volatile("wgmma.mma_async.sync.aligned." shape ".f32.e4m3.e4m3 " R "}, " descriptors ", " scale_d ", 1, 1;\n" \
               : D("+f")                                                                                            \
               : "l"(a), "l"(b))
template <int BN, bool Accumulate = true>
__device__ __forceinline__ void wgmma_e4m3_k32(float (&d)[BN / 2], std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(BN == 128 || BN == 192, "e4m3 tiles: 128 or 192 columns");
  if constexpr (BN == 128 && Accumulate)
    SDNQ_WGMMA_E4M3("m64n128k32", SDNQ_WGMMA_R64, SDNQ_WGMMA_D64, "%64, %65", "1");
  else if constexpr (BN == 128)
    SDNQ_WGMMA_E4M3("m64n128k32", SDNQ_WGMMA_R64, SDNQ_WGMMA_D64, "%64, %65", "0");
  else if constexpr (Accumulate)
    SDNQ_WGMMA_E4M3("m64n192k32", SDNQ_WGMMA_R96, SDNQ_WGMMA_D96, "%96, %97", "1");
  else
    SDNQ_WGMMA_E4M3("m64n192k32", SDNQ_WGMMA_R96, SDNQ_WGMMA_D96, "%96, %97", "0");
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}
#undef SDNQ_WGMMA_E4M3

// d += A[64×16] · B[BN×16]ᵀ in bf16 / fp16 with fp32 accumulators, both operands K-major by descriptor
// (the SVD stages: 64 ranks of T are 128 bytes, one ring stage like a K tile of codes).
#define SDNQ_WGMMA_SS_16BIT(shape, types, R, D, operands)                                                   \
  asm volatile("wgmma.mma_async.sync.aligned." shape ".f32" types " " R "}, " operands ", 1, 1, 1, 0, 0;\n" \
               : D("+f")                                                                                    \
               : "l"(a), "l"(b))
template <int BN, class T>
__device__ __forceinline__ void wgmma_16bit_k16(float (&d)[BN / 2], std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool bf16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (BN == 128 && bf16)
    SDNQ_WGMMA_SS_16BIT("m64n128k16", ".bf16.bf16", SDNQ_WGMMA_R64, SDNQ_WGMMA_D64, "%64, %65");
  else if constexpr (BN == 128)
    SDNQ_WGMMA_SS_16BIT("m64n128k16", ".f16.f16", SDNQ_WGMMA_R64, SDNQ_WGMMA_D64, "%64, %65");
  else if constexpr (bf16)
    SDNQ_WGMMA_SS_16BIT("m64n256k16", ".bf16.bf16", SDNQ_WGMMA_R128, SDNQ_WGMMA_D128, "%128, %129");
  else
    SDNQ_WGMMA_SS_16BIT("m64n256k16", ".f16.f16", SDNQ_WGMMA_R128, SDNQ_WGMMA_D128, "%128, %129");
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}
#undef SDNQ_WGMMA_SS_16BIT

// The SVD branch of a W4A8-style layer (§5.1 step 3, + (x·svd_down)·svd_up): ring stages of 64 ranks
// after the K tiles of each output tile, low_rank [M, rp] T (x·svd_downᵀ, computed by an earlier launch)
// against svd_up [N, rp] T on the tensor cores, accumulated in fp32 onto the scaled outputs.
// `parts`: the branch's blocks. A layer has one; a joined layer (nn::gpu::Linear::concatenate) one per
// joined layer, svd_up block-diagonal: output columns [previous column_end, column_end) have non-zero
// factors only in ranks [rank_begin, rank_begin + rank) (rank the true rank, rank_begin a multiple of
// 64). An output tile runs only the ranks of the parts its columns fall in, and of the last stage only
// the 32-rank halves that hold ranks: zeros skipped, not multiplied, so the sums are the same.
struct W8A8SvdPart {
  int column_end = 0, rank_begin = 0, rank = 0;
};
inline constexpr int w8a8_max_svd_parts = 8;

struct W8A8SvdParams {
  int part_count = 0;  // 0: no SVD branch
  W8A8SvdPart parts[w8a8_max_svd_parts] = {};
};

// The low-rank ranks one output tile (columns col0 .. col_last) multiplies: `stages` ring stages from
// rank `begin`, the last one `last_halves` 32-rank halves deep (1 or 2); no stages where its parts have
// no ranks.
struct SvdTileRanks {
  int begin = 0, stages = 0, last_halves = 0;
};

__host__ __device__ inline SvdTileRanks svd_tile_ranks(const W8A8SvdParams& svd, int col0, int col_last) {
  int begin = -1, end = 0, column_begin = 0;
#pragma unroll  // constant indices: the kernel reads the parameter, no copy to the stack
  for (int i = 0; i < w8a8_max_svd_parts; ++i) {
    const W8A8SvdPart& part = svd.parts[i];
    if (i < svd.part_count && part.column_end > col0 && column_begin <= col_last && part.rank > 0) {
      if (begin < 0) begin = part.rank_begin;  // parts are consecutive in columns and in ranks
      end = part.rank_begin + part.rank;
    }
    column_begin = part.column_end;
  }
  SvdTileRanks out;
  if (begin < 0) return out;
  out.begin = begin;
  out.stages = (end - begin + 63) / 64;
  out.last_halves = (end - begin - 64 * (out.stages - 1) + 31) / 32;
  return out;
}

template <int BN_, int Stages_, bool Svd_ = false>
struct W8A8TmaTile {
  static constexpr int BM = 128, BN = BN_, Stages = Stages_, threads = 384, k_tile = 128;
  static constexpr bool svd = Svd_;  // int8, BN 128: fp32 SVD accumulators next to the int32 ones
  // setmaxnreg budgets after the role split (128·producer + 256·consumer ≤ 64K registers): the
  // producer warpgroup also runs the look-ahead quantization, so it keeps more than the TMA thread needs.
  static constexpr int producer_registers = 72, consumer_registers = 216;
  static constexpr int a_bytes = BM * k_tile, b_bytes = BN * k_tile, stage_bytes = a_bytes + b_bytes;
  // The output tile in T (2 bytes), staged for the TMA store: per consumer BN / 64 boxes of 64 rows ×
  // 64 columns (128 bytes a row, the store map's swizzle).
  static constexpr int out_box_columns = 64, out_box_bytes = 64 * 128, out_bytes = BM * BN * 2;
  // The ring (1024-byte aligned for the swizzle), the output tile, then full[Stages] and empty[Stages].
  static constexpr int shared_bytes = 1024 + Stages * stage_bytes + out_bytes + 2 * Stages * 8;
};

// The epilogue's value of one output: fma(sum·s_x, s_w, bias) in fp32 (one rounding to T later).
__device__ __forceinline__ float scaled_output(float sum, float s_x, float s_w, float bias) {
  return __fmaf_rn(__fmul_rn(sum, s_x), s_w, bias);
}


// Named barriers (0 is __syncthreads): `threads` arrivals complete one; sync waits for that, arrive not.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// The 128 threads of one consumer warpgroup (barriers 1 and 2); 3 and 4 order the e4m3 issue.
__device__ __forceinline__ void consumer_sync(int consumer) { named_barrier_sync(1 + consumer, 128); }
inline constexpr int consumer_0_issued = 3, consumer_1_issued = 4;

// The weight scales and biases of columns col and col + 1 (both < N; no bias: zeros).
template <class T>
__device__ __forceinline__ void column_pair(const W8A8Params& p, int col, float2& s_w, float2& bias) {
  s_w = *reinterpret_cast<const float2*>(p.w_scale + col);
  bias = make_float2(0.0f, 0.0f);
  if (p.bias != nullptr) {
    const T* b = static_cast<const T*>(p.bias) + col;
    bias = make_float2(to_float(b[0]), to_float(b[1]));
  }
}

// y rows `row` and `row + 8`, columns col, col + 1: `lo` / `hi` the accumulator pairs of one fragment
// column, or with `Finished` the outputs themselves (an SVD kernel applies scales and bias before its
// ranks; the host gives it even N only).
template <class T, bool Finished>
__device__ __forceinline__ void store_output_rows(const W8A8Params& p, int row, int col, float s_x_lo, float s_x_hi,
                                                  float2 lo, float2 hi) {
  if (col >= p.n) return;
  float2 s_w = make_float2(0.0f, 0.0f), b = s_w;
  if constexpr (!Finished) {
    if ((p.n & 1) != 0 || col + 1 >= p.n) {  // odd N: element-wise stores with their own bounds checks
      store_output_pair<T>(p, row, col, lo.x, lo.y);
      store_output_pair<T>(p, row + 8, col, hi.x, hi.y);
      return;
    }
    column_pair<T>(p, col, s_w, b);
  }
  const auto store = [&](int r, float s_x, float2 value) {
    if (r >= p.m) return;
    if constexpr (!Finished)
      value = make_float2(scaled_output(value.x, s_x, s_w.x, b.x), scaled_output(value.y, s_x, s_w.y, b.y));
    T* out = static_cast<T*>(p.y) + static_cast<std::size_t>(r) * p.n + col;
    *reinterpret_cast<std::uint32_t*>(out) = pack_pair<T>(value.x, value.y);
  };
  store(row, s_x_lo, lo);
  store(row + 8, s_x_hi, hi);
}

template <class T, W8A8Operand Operand, class Tile>
__global__ void __launch_bounds__(Tile::threads, 1)
    gemm_w8a8_tma_kernel(const W8A8Params p, const __grid_constant__ CUtensorMap a_map,
                         const __grid_constant__ CUtensorMap b_map, const __grid_constant__ CUtensorMap y_map,
                         const bool store_by_tma, const __grid_constant__ CUtensorMap low_rank_map,
                         const __grid_constant__ CUtensorMap svd_up_map, const W8A8SvdParams svd) {
  constexpr bool int8 = Operand == W8A8Operand::int8;
  static_assert(int8 ? (Tile::BN == 128 || Tile::BN == 256) : (Tile::BN == 128 || Tile::BN == 192),
                "e4m3 keeps accumulators and totals: 64×192 per warpgroup at most");
  static_assert(!Tile::svd || int8, "the SVD branch: int8");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = Tile::BM, BN = Tile::BN, Stages = Tile::Stages;
  extern __shared__ uint4 shared_words[];
  auto* unaligned = reinterpret_cast<std::uint8_t*>(shared_words);
  std::uint8_t* ring = unaligned + ((1024 - (shared_address(unaligned) & 1023)) & 1023);
  std::uint8_t* a_tiles = ring;                       // [Stages][BM rows][128 bytes], swizzled
  std::uint8_t* b_tiles = ring + Stages * Tile::a_bytes;  // [Stages][BN rows][128 bytes], swizzled
  std::uint8_t* out_tile = ring + Stages * Tile::stage_bytes;  // [consumer][BN / 64 boxes][64 rows][128 bytes]
  auto* full = reinterpret_cast<std::uint64_t*>(out_tile + Tile::out_bytes);  // [Stages]
  std::uint64_t* empty = full + Stages;                                             // [Stages]

  // Output tiles blockIdx.x, + gridDim.x, ... (grouped order, tile_coordinates); the ring's stages and
  // barrier phases run on across tiles (K tile number `step` counted over all of this block's tiles).
  // Paired blocks (a cluster of two, p.paired) walk pairs of row tiles instead: cluster c takes pairs c,
  // c + clusters, ..., block `rank` of it row tile 2i + rank. Each block loads its own activation rows
  // and half of the weight tile into both blocks' ring (multicast), so the L2 serves each weight tile once
  // per pair. With an odd row tile count the last pair's second tile lies past M (a ghost): that block
  // loads no activations, computes on what its ring holds and stores nothing, but still loads its half
  // of the weights for its partner and frees its stages in both blocks.
  const bool paired = !Tile::svd && p.paired;
  const int rank = paired ? cluster_rank() : 0, pair_rows = paired ? 2 : 1;
  const int row_tiles = (p.m + BM - 1) / BM, col_tiles = (p.n + BN - 1) / BN;
  const int walk_rows = (row_tiles + pair_rows - 1) / pair_rows;
  const int tile_count = walk_rows * col_tiles, first_index = blockIdx.x / pair_rows;
  const int index_step = gridDim.x / pair_rows;
  const int k_tiles = (p.k + Tile::k_tile - 1) / Tile::k_tile;
  // The SVD stages of an output tile (after its K tiles): none without an SVD branch.
  const auto svd_ranks_of = [&](int2 tile) {
    if constexpr (!Tile::svd) return SvdTileRanks{};
    return svd_tile_ranks(svd, tile.y * BN, min(tile.y * BN + BN, p.n) - 1);
  };
  const auto tile_of = [&](int index) {
    int2 tile = tile_coordinates(walk_rows, col_tiles, index);
    tile.x = tile.x * pair_rows + rank;
    return tile;
  };
  const auto rows_of = [&](int2 tile) { return min(BM, p.m - tile.x * BM); };
  if (threadIdx.x == 0) {
    for (int s = 0; s < Stages; ++s) {
      barrier_init(full + s, 1);   // the producer's arrival; the bytes complete it
      barrier_init(empty + s, 2 * pair_rows);  // one arrival per consumer warpgroup (of both blocks if paired)
    }
    barrier_init_fence();
    tma_prefetch_map(&a_map);
    tma_prefetch_map(&b_map);
    if (Tile::svd && svd.part_count > 0) {
      tma_prefetch_map(&low_rank_map);
      tma_prefetch_map(&svd_up_map);
    }
  }
  if (paired) cluster_sync();  // the partner's barriers are initialized before any copy or arrival reaches them
  // The first tile's rows: quantized by all 384 threads unless codes_ready. quantize_row_tile ends with
  // a block-wide barrier either way, which also publishes the initialized barriers.
  const int2 first = tile_of(first_index);
  quantize_row_tile<T, Operand>(p, first.x, first.x * BM, rows_of(first));

  const int warpgroup = threadIdx.x / 128, warp = threadIdx.x / 32;
  if (warpgroup == 0) {
    shrink_registers<Tile::producer_registers>();
    if (threadIdx.x == 0) {
      int step = 0;
      for (int index = first_index; index < tile_count; index += index_step) {
        const int2 tile = tile_of(index);
        if (index != first_index && !p.codes_ready) wait_for_rows(p, tile.x, rows_of(tile));
        fence_proxy_async_global();  // the codes acquired, before the copy engine reads them
        const SvdTileRanks ranks = svd_ranks_of(tile);
        const bool ghost = tile.x >= row_tiles;  // paired only
        for (int k_tile = 0; k_tile < k_tiles + ranks.stages; ++k_tile, ++step) {
          const int stage = step % Stages;
          if (step >= Stages) barrier_wait(empty + stage, (step / Stages - 1) & 1);
          barrier_arrive_expect_bytes(full + stage, ghost ? Tile::b_bytes : Tile::stage_bytes);
          // Codes by 128-byte K tiles, then the SVD operands by 128-byte (64-rank) tiles from the
          // tile's first rank.
          const bool codes = k_tile < k_tiles;
          const int inner = codes ? k_tile * Tile::k_tile : (ranks.begin + (k_tile - k_tiles) * 64) * 2;
          if (!ghost)
            tma_load_2d(a_tiles + stage * Tile::a_bytes, codes ? &a_map : &low_rank_map, inner, tile.x * BM,
                        full + stage);
          if (paired)  // b_map's boxes are BN / 2 rows: this block's half, into both blocks
            tma_load_2d_multicast(b_tiles + stage * Tile::b_bytes + rank * (Tile::b_bytes / 2), &b_map, inner,
                                  tile.y * BN + rank * (BN / 2), full + stage, 0b11);
          else
            tma_load_2d(b_tiles + stage * Tile::b_bytes, codes ? &b_map : &svd_up_map, inner, tile.y * BN,
                        full + stage);
        }
      }
    } else if (warp > 0 && !p.codes_ready) {
      // Warps 1-3 quantize the rows of this block's later tiles while the consumers compute, so
      // the producer rarely waits for them (other blocks needing the same rows share the work).
      for (int index = first_index + index_step; index < tile_count; index += index_step) {
        const int2 tile = tile_of(index);
        quantize_claimed_rows<T, Operand>(p, tile.x, tile.x * BM, rows_of(tile));
      }
    }
  } else {
    grow_registers<Tile::consumer_registers>();
    const int consumer = warpgroup - 1;  // rows 64·consumer .. 64·consumer + 63 of the tile
    const bool signals = threadIdx.x % 128 == 0;
    // The consumer is done with ring stage `stage`: in both blocks of a pair (the partner's producer
    // multicasts into this block's ring too).
    const auto release = [&](int stage) {
      barrier_arrive(empty + stage);
      if (paired) barrier_arrive_in_block(empty + stage, rank ^ 1);
    };
    using Acc = std::conditional_t<int8, int, float>;
    Acc acc[BN / 2];                 // the m64nBN fragment (see wgmma_s8_m64n256k32)
    float total[int8 ? 1 : BN / 2];  // e4m3: promoted sums
    int step = 0;
    // One K tile's four MMAs from ring stage `stage` (mma(a, b, k32) issues one k32 step); one group.
    const auto issue_k_tile = [&](int stage, auto mma) {
      const std::uint32_t a_base = shared_address(a_tiles + stage * Tile::a_bytes + consumer * 64 * 128);
      const std::uint32_t b_base = shared_address(b_tiles + stage * Tile::b_bytes);
      wgmma_fence();
#pragma unroll
      for (int k32 = 0; k32 < 4; ++k32)
        mma(wgmma_descriptor(a_base + k32 * 32), wgmma_descriptor(b_base + k32 * 32), k32);
      wgmma_commit();
    };
    if constexpr (!int8) {
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;  // defined once; every run's first MMA overwrites it
    }
    for (int index = first_index; index < tile_count; index += index_step) {
      const int2 tile = tile_of(index);
      const SvdTileRanks ranks = svd_ranks_of(tile);
      if constexpr (int8) {
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) acc[i] = 0;
        for (int k_tile = 0; k_tile < k_tiles; ++k_tile, ++step) {
          const int stage = step % Stages;
          barrier_wait(full + stage, (step / Stages) & 1);
          issue_k_tile(stage, [&](std::uint64_t a, std::uint64_t b, int) { wgmma_s8_k32<BN>(acc, a, b); });
          wgmma_wait<1>();  // the previous K tile's group is done: its stage is free
          if (k_tile > 0 && signals) release((step - 1) % Stages);
        }
        wgmma_wait<0>();
        if (signals) release((step - 1) % Stages);
      } else {
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) total[i] = 0.0f;
        // Staggered issue (consumer 1 after consumer 0, consumer 0 after consumer 1), then the K tile.
        const auto issue_in_turn = [&](auto mma) {
          const int stage = step % Stages;
          if (consumer == 1)
            named_barrier_sync(consumer_0_issued, 256);
          else if (step > 0)
            named_barrier_sync(consumer_1_issued, 256);
          barrier_wait(full + stage, (step / Stages) & 1);
          issue_k_tile(stage, mma);
          named_barrier_arrive(consumer == 0 ? consumer_0_issued : consumer_1_issued, 256);
          ++step;
        };
        for (int run = 0; run < k_tiles; run += p.e4m3_promotion_tiles) {
          const int run_tiles = min(p.e4m3_promotion_tiles, k_tiles - run), run_step = step;
          // The run's first K tile overwrites the sums (its first k32 step without scale-d), the
          // others add to them.
          issue_in_turn([&](std::uint64_t a, std::uint64_t b, int k32) {
            if (k32 == 0)
              wgmma_e4m3_k32<BN, false>(acc, a, b);
            else
              wgmma_e4m3_k32<BN>(acc, a, b);
          });
          for (int k_tile = 1; k_tile < run_tiles; ++k_tile)
            issue_in_turn([&](std::uint64_t a, std::uint64_t b, int) { wgmma_e4m3_k32<BN>(acc, a, b); });
          // Promote: wait for the run's MMAs, free its stages (at most Stages, unrolled and
          // predicated: no loop around the arrivals), add its sums into the totals.
          wgmma_wait<0>();
          if (signals) {
#pragma unroll
            for (int s = 0; s < Stages; ++s)
              if (s < run_tiles) release((run_step + s) % Stages);
          }
#pragma unroll
          for (int i = 0; i < BN / 2; ++i) total[i] += acc[i];
        }
      }

      if (tile.x >= row_tiles) continue;  // a ghost tile (paired): no rows to store
      // Epilogue, while the producer already fills the ring with the next tile's K tiles.
      const int row0 = tile.x * BM, col0 = tile.y * BN;
      const int consumer_warp = (threadIdx.x - 128) >> 5, lane = threadIdx.x & 31;  // 0..7 over both
      const int row = row0 + consumer_warp * 16 + (lane >> 2);
      const float s_x_lo = row < p.m ? __ldcg(p.x_scale + row) : 0.0f;  // written by other blocks: from L2
      const float s_x_hi = row + 8 < p.m ? __ldcg(p.x_scale + row + 8) : 0.0f;
      // SVD kernel: the outputs without their low-rank term, fma(acc·s_x, s_w, bias) in fp32 (the
      // fragment of acc), then the tile's rank stages accumulate low_rank · svd_upᵀ onto them on the
      // tensor cores. No registers beyond the accumulators' (acc is dead once converted), which is what
      // lets the SVD tiles be 128×256; a stage is split into 32-rank halves, each a wgmma group of its own
      // (a branch inside a group made ptxas inject waits, C7519), the last stage only as deep as its ranks.
      float finished[Tile::svd ? BN / 2 : 1];
      if constexpr (Tile::svd) {
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = col0 + 8 * j + 2 * (lane & 3);  // N % 8 == 0: col < N implies col + 1 < N
          float2 s_w = make_float2(0.0f, 0.0f), b = s_w;
          if (col < p.n) column_pair<T>(p, col, s_w, b);
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const float s_x = half == 0 ? s_x_lo : s_x_hi;
            const int i = 4 * j + 2 * half;
            finished[i] = scaled_output(__int2float_rn(acc[i]), s_x, s_w.x, b.x);
            finished[i + 1] = scaled_output(__int2float_rn(acc[i + 1]), s_x, s_w.y, b.y);
          }
        }
        for (int svd_tile = 0; svd_tile < ranks.stages; ++svd_tile, ++step) {
          const int stage = step % Stages;
          barrier_wait(full + stage, (step / Stages) & 1);
          const std::uint32_t a_base = shared_address(a_tiles + stage * Tile::a_bytes + consumer * 64 * 128);
          const std::uint32_t b_base = shared_address(b_tiles + stage * Tile::b_bytes);
          const int halves = svd_tile + 1 < ranks.stages ? 2 : ranks.last_halves;
          for (int half = 0; half < halves; ++half) {
            wgmma_fence();
#pragma unroll
            for (int k16 = 2 * half; k16 < 2 * half + 2; ++k16)  // 16 ranks of T are 32 bytes, as 32 codes
              wgmma_16bit_k16<BN, T>(finished, wgmma_descriptor(a_base + k16 * 32),
                                     wgmma_descriptor(b_base + k16 * 32));
            wgmma_commit();
          }
          wgmma_wait<1>();  // the previous stage's groups are done: free it (the K tiles' already are)
          if (svd_tile > 0 && signals) release((step - 1) % Stages);
        }
        wgmma_wait<0>();  // on every path: the epilogue reads what wgmma wrote (else ptxas adds a wait, C7517)
        if (ranks.stages > 0 && signals) release((step - 1) % Stages);
      }
      const auto sum_pair = [&](int j, int half) {
        if constexpr (Tile::svd)
          return make_float2(finished[4 * j + 2 * half], finished[4 * j + 2 * half + 1]);
        else if constexpr (int8)
          return make_float2(__int2float_rn(acc[4 * j + 2 * half]), __int2float_rn(acc[4 * j + 2 * half + 1]));
        else
          return make_float2(total[4 * j + 2 * half], total[4 * j + 2 * half + 1]);
      };
      if (store_by_tma) {
        // The consumer's 64 rows go through its part of out_tile: written in the store map's swizzle
        // (16-byte chunk c of row r at chunk c ^ (r % 8): the 8 rows of one store instruction hit 32
        // distinct banks), then copied out by one TMA store per 64-column box that the consumer's
        // next tile only waits for before overwriting the staging buffer; the MMAs of that tile run
        // while the copies drain.
        std::uint8_t* staged = out_tile + consumer * (Tile::out_bytes / 2);
        if (signals) tma_store_wait_read();  // the previous tile's stores have read the buffer
        consumer_sync(consumer);
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          const int col = col0 + 8 * j + 2 * (lane & 3);  // N % 8 == 0: col < N implies col + 1 < N
          float2 s_w = make_float2(0.0f, 0.0f), b = make_float2(0.0f, 0.0f);
          if (!Tile::svd && col < p.n) column_pair<T>(p, col, s_w, b);
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            float2 value = sum_pair(j, half);
            const float s_x = half == 0 ? s_x_lo : s_x_hi;
            if constexpr (!Tile::svd)
              value = make_float2(scaled_output(value.x, s_x, s_w.x, b.x), scaled_output(value.y, s_x, s_w.y, b.y));
            const int r = (consumer_warp & 3) * 16 + half * 8 + (lane >> 2);  // row within the consumer's 64
            const int chunk = (j % 8) ^ (r % 8);
            auto* word = reinterpret_cast<std::uint32_t*>(staged + (j / 8) * Tile::out_box_bytes + r * 128 +
                                                          chunk * 16 + (lane & 3) * 4);
            *word = pack_pair<T>(value.x, value.y);
          }
        }
        fence_proxy_async_shared();  // the staged values, visible to the copy engine
        consumer_sync(consumer);
        const int rows_start = row0 + consumer * 64;
        if (signals && rows_start < p.m) {
#pragma unroll
          for (int box = 0; box < BN / Tile::out_box_columns; ++box) {
            const int columns_start = col0 + box * Tile::out_box_columns;
            if (columns_start < p.n)
              tma_store_2d(&y_map, columns_start * 2, rows_start, staged + box * Tile::out_box_bytes);
          }
          tma_store_commit();
        }
        continue;
      }
#pragma unroll
      for (int j = 0; j < BN / 8; ++j) {
        const int col = col0 + 8 * j + 2 * (lane & 3);
        store_output_rows<T, Tile::svd>(p, row, col, s_x_lo, s_x_hi, sum_pair(j, 0), sum_pair(j, 1));
      }
    }
    // Consumer 1's last "issued" arrival, so no named barrier is left half-arrived at exit.
    if (!int8 && consumer == 0 && step > 0) named_barrier_sync(consumer_1_issued, 256);
    if (signals) tma_store_wait_all();  // the block's last stores complete before it exits
  }
  // A paired block leaves only with its partner: until then the partner may still arrive on its barriers.
  if (paired) cluster_sync();
#else
  (void)p, (void)a_map, (void)b_map, (void)y_map, (void)store_by_tma, (void)low_rank_map, (void)svd_up_map, (void)svd;
  __trap();
#endif
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
