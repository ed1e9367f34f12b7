#pragma once
// The Hopper (sm_90a) weight-only GEMM for large M behind gemm_weight_only_sm90.cuh:
//   y = x · dequant(W)ᵀ (+ low_rank · svd_upᵀ) (+ bias),  computed as yᵀ = W · xᵀ
// so that the dequantized weight is wgmma's A operand in registers (the "RS" form) and x, loaded by
// TMA, is the shared-memory B operand. An output tile is 128 weight rows × BN tokens. The consumers'
// registers allow one block per SM, so with one block per tile each SM idled while a block filled its
// ring and while it stored its outputs; instead one block per SM walks the tiles blockIdx.x,
// + gridDim.x, ... (persistent), so the producer loads the next tile during this tile's epilogue and
// the output stores drain under the next tile's MMAs. A grid of one block per tile runs the same code
// once per block (kept for comparison).
//   warpgroup 0   producer: one thread fills a Stages-deep ring (full / empty mbarriers of
//                 tma_pipeline.cuh); a stage holds x's BN×64 tile by TMA (128-byte rows, 128-byte
//                 swizzle: the layout wgmma_descriptor of wgmma.cuh describes) and, by 1-D bulk
//                 copies, the 128 rows' codes of that K tile (contiguous in gemm_tc's repacked layout,
//                 detail/gemm_tc_repack.hpp) and their one or two groups' (scale, zero) pairs. After the
//                 K tiles of an output tile come the ⌈rp/64⌉ tiles of low_rank = x · svd_downᵀ [M, rp]
//                 for the SVD branch (rp a multiple of 16: TMA zero-fills the last box's columns past rp).
//   warpgroups 1-2 consumers: weight rows 0-63 and 64-127. A lane's staged code words are exactly its
//                 m16n8k16 fragment, which is also the per-warp A fragment of wgmma m64k16; each warp
//                 dequantizes its 16 rows in registers with gemm_tc's exponent trick (w = q·s + z
//                 rounded once in T) and issues m64nBNk16 per 16 inputs.
// One wgmma group (4 steps of 16 inputs) per K tile; the next K tile is dequantized into a second set
// of A registers while it runs (wait_group 1 then frees the first set), so dequantization runs under
// the tensor cores. After the K tiles, the SVD tiles use svd_up's rows (dense T, loaded as A fragments)
// with the staged low_rank tile as B, into the same fp32 accumulators: the branch is a few extra K steps.
// The k16 steps of the last SVD tile past rp take zero A fragments (svd_up has no columns there) times
// TMA's zero fill: the same sums as the former zero padding to 64, with no branch around the wgmma.
// The ring's stage and barrier phase follow `step`, the K tile number counted over all of the block's
// output tiles, in the producer and in both consumers alike. Each output tile ends with wait_group 0
// and the release of its last stage, so the double-buffered A registers hold nothing across tiles.
// Epilogue: + bias in fp32, one rounding to T. Accumulator rows are weight rows (y's columns), so each
// consumer writes its 64 rows × BN tokens transposed (stmatrix .trans) into its own staging buffer:
// BN token rows × 128 bytes, exactly one box of the y map in its 128-byte swizzle, which one thread
// stores by TMA (tokens past M clipped). The warpgroup waits for that store to have read the buffer
// only before overwriting it at the end of its next output tile.
// TMA zero-fills tokens past M; N % 64 == 0 (a warpgroup past N only keeps the barriers in step),
// K % 64 == 0, y 16-byte aligned (the store map's base).
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

// BN tokens per output tile (the wgmma N); 128 weight rows (two consumer warpgroups of m64). A stage
// holds x's BN×64 tile, the 128 rows' codes of the K tile (gemm_tc's layout: 8 contiguous 16-row
// blocks) and up to two groups' (scale, zero) pairs of the 128 rows. The staging buffers of the
// output take a fixed share of shared memory; the ring gets as many stages as fit in the rest.
template <int BN_>
struct WeightOnlySm90Tile {
  static constexpr int BM = 128, BN = BN_, threads = 384;
  static constexpr int x_bytes = BN * 128;  // BN token rows × 64 inputs of T
  static constexpr int param_bytes = 2 * BM * 4;
  // A consumer's outputs: BN token rows × its 64 weight rows of T (128 bytes), one TMA store box.
  static constexpr int out_box_bytes = BN * 128, out_bytes = 2 * out_box_bytes;
  static constexpr int max_shared_bytes = 232448;  // H100's opt-in dynamic shared memory per block
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int code_bytes() {
    return BM * 64 * Bits / 8;
  }
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int stage_bytes() {  // a multiple of 1024: every x tile stays swizzle-aligned
    return x_bytes + code_bytes<Bits>() + param_bytes;
  }
  // 1024 bytes of alignment slack, the staging buffers and 16 bytes of barriers a stage besides the ring.
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int stages() {
    return (max_shared_bytes - 1024 - out_bytes) / (stage_bytes<Bits>() + 16);
  }
  // The ring (1024-byte aligned for the swizzle), the staging buffers, then full[Stages] and empty[Stages].
  template <int Bits>
  SDNQ_HOST_DEVICE static constexpr int shared_bytes() {
    return 1024 + stages<Bits>() * stage_bytes<Bits>() + out_bytes + 2 * stages<Bits>() * 8;
  }
};

// Bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned) global → shared, completing
// on `barrier` (the 1-D form of tma_pipeline.cuh's tma_load_2d).
__device__ __forceinline__ void bulk_load(void* destination, const void* source, std::uint32_t bytes,
                                          std::uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   shared_address(destination)),
               "l"(source), "r"(bytes), "r"(shared_address(barrier))
               : "memory");
#else
  (void)destination, (void)source, (void)bytes, (void)barrier;
#endif
}

// Synchronizes the 128 threads of consumer warpgroup `consumer` (named barrier 1 + consumer; barrier 0
// is __syncthreads), leaving the other warpgroups running.
__device__ __forceinline__ void weight_only_warpgroup_sync(int consumer) {
#if defined(__CUDA_ARCH__)
  asm volatile("bar.sync %0, 128;\n" ::"r"(1 + consumer) : "memory");
#else
  (void)consumer;
#endif
}

// Stores four 8×8 matrices of 16-bit values transposed (stmatrix .trans). Register m holds the lane's
// mma fragment pair of matrix m (row lane / 4, columns 2·(lane % 4) and + 1, low half first), which
// lands in memory rows 2·(lane % 4) and + 1 at column lane / 4; lane l gives the address of memory
// row l % 8 of matrix l / 8 (16 bytes, 16-byte aligned).
__device__ __forceinline__ void store_matrices_transposed(std::uint32_t row_address, const std::uint32_t (&m)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(row_address), "r"(m[0]),
               "r"(m[1]), "r"(m[2]), "r"(m[3])
               : "memory");
#else
  (void)row_address, (void)m;
#endif
}

// The last partial wave of output tiles, split along K (persistent grid only): the first `full_tiles`
// tiles are whole work units; each later tile is `splits` units of `chunk_k_tiles` weight K tiles (the
// last one also runs the SVD tiles). A split unit writes its fp32 sums to `partial` [unit][consumer]
// [BN/2][128 threads] and counts itself in `arrivals` [tile][consumer] (zeroed before the launch); the
// unit that arrives last adds every chunk's sums in chunk order (deterministic) and stores the tile.
struct WeightOnlySm90Split {
  int full_tiles = 0;
  int splits = 1;
  int chunk_k_tiles = 0;
  float* partial = nullptr;
  int* arrivals = nullptr;
};

template <class T, int Bits, class Tile>
__global__ void __launch_bounds__(Tile::threads, 1)
    gemm_weight_only_sm90_kernel(const GemmTcParams p, const __grid_constant__ CUtensorMap x_map,
                                 const __grid_constant__ CUtensorMap low_rank_map,
                                 const __grid_constant__ CUtensorMap y_map, const WeightOnlySm90Split split) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = Tile::BM, BN = Tile::BN, Stages = Tile::template stages<Bits>();
  // Dequantizing K tile t + 1 waits for a stage that only issuing K tile t released.
  static_assert(Stages >= 2, "the ring needs two stages");
  static_assert(Tile::template shared_bytes<Bits>() <= Tile::max_shared_bytes, "fits H100's shared memory");
  extern __shared__ uint4 shared_words[];
  auto* unaligned = reinterpret_cast<std::uint8_t*>(shared_words);
  constexpr int stage_bytes = Tile::template stage_bytes<Bits>(), x_bytes = Tile::x_bytes;
  constexpr int code_bytes = Tile::template code_bytes<Bits>();
  std::uint8_t* ring = unaligned + ((1024 - (shared_address(unaligned) & 1023)) & 1023);  // [Stages][stage_bytes]
  std::uint8_t* out_boxes = ring + Stages * stage_bytes;  // [consumer][BN tokens][128 bytes], y map's swizzle
  auto* full = reinterpret_cast<std::uint64_t*>(out_boxes + Tile::out_bytes);  // [Stages]
  std::uint64_t* empty = full + Stages;                                        // [Stages]
  __shared__ int last_of_split[2];  // per consumer: whether its split unit arrived last

  // Output tile `index`: weight-row blocks fastest (the order of the former grid), so the blocks in
  // flight share a few token tiles of x and walk the weight, which stays in L2.
  const int row_blocks = (p.n + BM - 1) / BM, token_tiles = (p.m + BN - 1) / BN;
  const int tile_count = row_blocks * token_tiles;
  const auto first_row_of = [&](int index) { return index % row_blocks * BM; };
  const auto first_token_of = [&](int index) { return index / row_blocks * BN; };
  // K tiles of one output tile: x's p.k / 64, then low_rank's.
  const int weight_k_tiles = p.k / 64, svd_k_tiles = (p.rank_padded + 63) / 64;
  // Work units: whole tiles, then the split tiles' K chunks (WeightOnlySm90Split).
  const int unit_count = split.full_tiles + (tile_count - split.full_tiles) * split.splits;
  struct Unit {
    int tile, chunk;     // chunk -1: a whole tile
    int k_begin, k_end;  // its weight K tiles; the SVD tiles follow in the last chunk
    int k_tiles;         // ring steps: its weight K tiles, plus the SVD tiles if it has them
  };
  const auto unit_of = [&](int u) {
    if (u < split.full_tiles) return Unit{u, -1, 0, weight_k_tiles, weight_k_tiles + svd_k_tiles};
    const int tail = u - split.full_tiles, chunk = tail % split.splits;
    const int k_begin = chunk * split.chunk_k_tiles, k_end = min(weight_k_tiles, k_begin + split.chunk_k_tiles);
    const int svd = chunk == split.splits - 1 ? svd_k_tiles : 0;
    return Unit{split.full_tiles + tail / split.splits, chunk, k_begin, k_end, k_end - k_begin + svd};
  };
  // The K tile (weight or SVD: ≥ weight_k_tiles) a unit's j-th ring step holds.
  const auto k_tile_of = [&](const Unit& unit, int j) {
    const int weight = unit.k_end - unit.k_begin;
    return j < weight ? unit.k_begin + j : weight_k_tiles + (j - weight);
  };
  if (threadIdx.x == 0) {
    for (int s = 0; s < Stages; ++s) {
      barrier_init(full + s, 1);   // the producer's arrival; the bytes complete it
      barrier_init(empty + s, 8);  // one arrival per consumer warp
    }
    barrier_init_fence();
    tma_prefetch_map(&x_map);
    if (p.rank_padded > 0) tma_prefetch_map(&low_rank_map);
    tma_prefetch_map(&y_map);
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    shrink_registers<40>();
    if (threadIdx.x == 0) {
      const std::size_t codes_tile_stride = static_cast<std::size_t>(p.n) * 64 * Bits / 8;
      const int groups_per_tile = p.group_size == 32 ? 2 : 1;
      int step = 0;
#pragma unroll 1
      for (int u = blockIdx.x; u < unit_count; u += gridDim.x) {
        const Unit unit = unit_of(u);
        const int n0 = first_row_of(unit.tile), token0 = first_token_of(unit.tile);
        // Codes and group parameters of the rows that exist (the last row block may end 64 rows early).
        const int valid_rows = min(BM, p.n - n0);
        const std::uint32_t tile_code_bytes = valid_rows * 64 * Bits / 8, row_param_bytes = valid_rows * 4;
        const char* codes = static_cast<const char*>(p.b) + static_cast<std::size_t>(n0) * 64 * Bits / 8;
        const auto* params = static_cast<const char*>(p.group_params) + static_cast<std::size_t>(n0) * 4;
#pragma unroll 1
        for (int j = 0; j < unit.k_tiles; ++j, ++step) {
          const int k_tile = k_tile_of(unit, j);
          const int stage = step % Stages;
          std::uint8_t* target = ring + stage * stage_bytes;
          if (step >= Stages) barrier_wait(empty + stage, (step / Stages - 1) & 1);
          // Byte coordinates: 64 inputs of T are 128 bytes.
          if (k_tile < weight_k_tiles) {
            barrier_arrive_expect_bytes(full + stage, x_bytes + tile_code_bytes + groups_per_tile * row_param_bytes);
            tma_load_2d(target, &x_map, k_tile * 128, token0, full + stage);
            bulk_load(target + x_bytes, codes + k_tile * codes_tile_stride, tile_code_bytes, full + stage);
            const int first_group = p.group_size == 32 ? 2 * k_tile : k_tile * 64 / p.group_size;
            for (int g = 0; g < groups_per_tile; ++g)
              bulk_load(target + x_bytes + code_bytes + g * BM * 4,
                        params + static_cast<std::size_t>(first_group + g) * p.n * 4, row_param_bytes, full + stage);
          } else {
            barrier_arrive_expect_bytes(full + stage, x_bytes);
            tma_load_2d(target, &low_rank_map, (k_tile - weight_k_tiles) * 128, token0, full + stage);
          }
        }
      }
    }
    return;
  }
  grow_registers<232>();
  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31;
  const bool signals = threadIdx.x % 128 == 0;  // the thread that stores the output
  const int warp_block = consumer * 4 + warp;   // the warp's 16-row block within a stage's codes
  std::uint8_t* out_box = out_boxes + consumer * Tile::out_box_bytes;
  const DequantConstants<T> constants{as_pair<T>(p.minus), p.minus_f};

  float acc[BN / 2];
  std::uint32_t a0[4][4] = {}, a1[4][4] = {};
  int step = 0;
#pragma unroll 1
  for (int u = blockIdx.x; u < unit_count; u += gridDim.x) {
    const Unit unit = unit_of(u);
    const int k_tiles = unit.k_tiles;
    const int n0 = first_row_of(unit.tile), token0 = first_token_of(unit.tile);
    const int rows0 = n0 + consumer * 64;  // this warpgroup's first weight row
    if (rows0 >= p.n) {
      // Past N (N % 128 == 64): only release the stages this warpgroup is counted on (its 4 warps'
      // arrivals). One thread walks them while the others wait, so no thread can fall a barrier phase behind.
      if (signals) {
#pragma unroll 1
        for (int k_tile = 0; k_tile < k_tiles; ++k_tile) {
          barrier_wait(full + (step + k_tile) % Stages, ((step + k_tile) / Stages) & 1);
          for (int w = 0; w < 4; ++w) barrier_arrive(empty + (step + k_tile) % Stages);
        }
      }
      step += k_tiles;
      weight_only_warpgroup_sync(consumer);
      continue;
    }
    const int row_lo = rows0 + 16 * warp + (lane >> 2);  // the lane's fragment rows: row_lo and row_lo + 8
    const T* up_lo =
        static_cast<const T*>(p.svd_up) + static_cast<std::size_t>(row_lo) * p.rank_padded + 2 * (lane & 3);
    const T* up_hi = up_lo + 8 * static_cast<std::size_t>(p.rank_padded);

    // Frees ring stage `at` once every lane of the warp is past its reads of the codes and parameters
    // there: an mbarrier arrival releases only the arriving thread's accesses, so each warp syncs
    // and one lane arrives (8 arrivals a stage). Waiting for the wgmma group that used the stage
    // already implies it in practice; this makes it hold in the memory model (and for racecheck).
    const auto release = [&](int at, bool when) {
      __syncwarp();
      if (when && lane == 0) barrier_arrive(empty + at % Stages);
    };
    // A fragments of one K tile's 4 steps in registers: dequantized from the stage (or svd_up's) while
    // the tensor cores still run the previous K tile's group from the other buffer.
    const auto make_fragments = [&](int j, std::uint32_t(&a)[4][4]) {
      const int at = step + j, stage = at % Stages, k_tile = k_tile_of(unit, j);
      if (k_tile >= weight_k_tiles) {  // svd_up from global memory before waiting for the low-rank tile
        const int r0 = (k_tile - weight_k_tiles) * 64;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          const int r = r0 + 16 * s;
          const bool inside = r < p.rank_padded;  // past rp: zeros (the staged low_rank columns are zero too)
          a[s][0] = inside ? *reinterpret_cast<const std::uint32_t*>(up_lo + r) : 0u;
          a[s][1] = inside ? *reinterpret_cast<const std::uint32_t*>(up_hi + r) : 0u;
          a[s][2] = inside ? *reinterpret_cast<const std::uint32_t*>(up_lo + r + 8) : 0u;
          a[s][3] = inside ? *reinterpret_cast<const std::uint32_t*>(up_hi + r + 8) : 0u;
        }
      }
      barrier_wait(full + stage, (at / Stages) & 1);
      if (k_tile >= weight_k_tiles) return;
      const std::uint8_t* staged = ring + stage * stage_bytes + x_bytes;
      std::uint32_t words[Bits];  // the lane's words of the K tile, 128 bits a load
#pragma unroll
      for (int slice = 0; slice < Bits / 4; ++slice) {
        const uint4 v = *reinterpret_cast<const uint4*>(staged + warp_block * 128 * Bits + slice * 512 + lane * 16);
        words[4 * slice] = v.x, words[4 * slice + 1] = v.y, words[4 * slice + 2] = v.z, words[4 * slice + 3] = v.w;
      }
      const auto* params = reinterpret_cast<const std::uint32_t*>(staged + code_bytes);
      const int row = row_lo - n0;
      std::uint32_t sz[2][2];  // [group within the K tile][row half]
#pragma unroll
      for (int g = 0; g < 2; ++g)
#pragma unroll
        for (int half = 0; half < 2; ++half) sz[g][half] = params[(p.group_size == 32 ? g : 0) * BM + row + 8 * half];
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        pair_of<T> scale[2], zero[2];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          scale[half] = as_pair<T>(__byte_perm(sz[s / 2][half], 0, 0x1010));  // scale in both halves
          zero[half] = as_pair<T>(__byte_perm(sz[s / 2][half], 0, 0x3232));   // zero point in both halves
        }
        std::uint32_t step_words[Bits / 4];
#pragma unroll
        for (int w = 0; w < Bits / 4; ++w) step_words[w] = words[s * (Bits / 4) + w];
        std::uint32_t b[2][2];  // [row half][k half] as gemm_tc's B fragments
        dequantize_step<T, Bits>(step_words, scale, zero, constants, b);
        a[s][0] = b[0][0], a[s][1] = b[1][0], a[s][2] = b[0][1], a[s][3] = b[1][1];
      }
    };
    // One group of 4 wgmma per K tile; waiting for all but it frees the previous K tile's stage and
    // A buffer (`previous` stays live until here so its registers are not reused while being read).
    const auto issue = [&](int j, std::uint32_t(&a)[4][4], std::uint32_t(&previous)[4][4]) {
      const std::uint32_t x_base = shared_address(ring + (step + j) % Stages * stage_bytes);
      wgmma_fence();
#pragma unroll
      for (int s = 0; s < 4; ++s)
        wgmma_rs_k16<T, BN, false>(acc, a[s], wgmma_descriptor(x_base + 32 * s));  // x: K-major B
      wgmma_commit();
      wgmma_wait<1>();
#pragma unroll
      for (int s = 0; s < 4; ++s)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(previous[s][i]));
      release(step + j - 1, j > 0);
    };

#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
#pragma unroll 1
    for (int j = 0; j < k_tiles; j += 2) {
      make_fragments(j, a0);
      issue(j, a0, a1);
      if (j + 1 < k_tiles) {
        make_fragments(j + 1, a1);
        issue(j + 1, a1, a0);
      }
    }
    step += k_tiles;
    wgmma_wait<0>();  // the tile's last group: its stage is free and both A buffers are idle
    release(step - 1, true);

    if (unit.chunk >= 0) {  // a K chunk of a split tile: publish its sums; the last of them stores the tile
      const int t = threadIdx.x % 128, tail = u - split.full_tiles;
      float* mine = split.partial + (static_cast<std::size_t>(tail) * 2 + consumer) * (BN / 2) * 128;
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) __stcg(mine + i * 128 + t, acc[i]);
      __threadfence();  // the sums, visible device-wide before the arrival that counts them
      weight_only_warpgroup_sync(consumer);
      int* arrivals = split.arrivals + (unit.tile - split.full_tiles) * 2 + consumer;
      if (signals) last_of_split[consumer] = atomicAdd(arrivals, 1) == split.splits - 1;
      weight_only_warpgroup_sync(consumer);
      if (!last_of_split[consumer]) continue;
      __threadfence();
      const float* first = split.partial + (static_cast<std::size_t>(unit.tile - split.full_tiles) * split.splits * 2 +
                                            consumer) * (BN / 2) * 128;
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
      for (int c = 0; c < split.splits; ++c) {
        const float* chunk = first + static_cast<std::size_t>(c) * 2 * (BN / 2) * 128;
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) acc[i] += __ldcg(chunk + i * 128 + t);
      }
      if (signals) *arrivals = 0;  // every chunk has arrived: ready for the next launch
    }

    // Epilogue, while the producer already fills the ring with the next output tile's K tiles.
    // Accumulator (i, j): weight row row_lo (+8 for i ≥ 2), token 8j + 2·(lane % 4) + i % 2 of the tile.
    // Matrix m of stmatrix group g: tokens 16g + 8·(m / 2) + 0..7 (memory rows) × the warp's weight
    // rows 8·(m % 2) + 0..7 (one 16-byte chunk, chunk c of token row r at chunk c ^ (r % 8) in the
    // swizzle): the 8 rows of each matrix hit all 32 banks once.
    const T* bias = static_cast<const T*>(p.bias);
    const float bias_lo = bias != nullptr ? to_float(bias[row_lo]) : 0.0f;
    const float bias_hi = bias != nullptr ? to_float(bias[row_lo + 8]) : 0.0f;
    const int matrix = lane >> 3, matrix_row = lane & 7;
    const int chunk = (2 * warp + (matrix & 1)) ^ matrix_row;
    const std::uint32_t lane_row_address =
        shared_address(out_box) + (8 * (matrix >> 1) + matrix_row) * 128 + chunk * 16;
    if (signals) tma_store_wait_read();  // the previous output tile's store has read the buffer
    weight_only_warpgroup_sync(consumer);
#pragma unroll
    for (int g = 0; g < BN / 16; ++g) {
      std::uint32_t packed[4];
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        const int j = 2 * g + m / 2, half = m % 2;
        const float b = half == 0 ? bias_lo : bias_hi;
        packed[m] = pack_pair<T>(acc[4 * j + 2 * half] + b, acc[4 * j + 2 * half + 1] + b);
      }
      store_matrices_transposed(lane_row_address + g * 16 * 128, packed);
    }
    fence_proxy_async_shared();  // the staged outputs, visible to the copy engine
    weight_only_warpgroup_sync(consumer);
    if (signals) {
      tma_store_2d(&y_map, rows0 * 2, token0, out_box);  // byte coordinates: a weight row is 2 bytes
      tma_store_commit();
    }
  }
  if (signals) tma_store_wait_all();  // the block's last stores complete before it exits
#else
  (void)p, (void)x_map, (void)low_rank_map, (void)y_map;
  __trap();
#endif
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
