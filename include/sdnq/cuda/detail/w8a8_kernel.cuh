#pragma once
// The 8-bit tensor-core GEMM behind gemm_w8a8.cuh. One block computes a BM×BN tile of
//   y = (x_codes · w_codesᵀ) · s_x[m] · s_w[n] (+ bias[n])
// after quantizing its rows of x (w8a8_quantize.cuh), or on codes and scales quantized beforehand
// (W8A8Params::codes_ready: no prologue, no counters, x unused). K runs in tiles of 128 codes (128
// bytes a row) through a Stages-deep cp.async pipeline; both operands are staged in XOR-swizzled
// shared tiles and loaded with ldmatrix; each warp owns a WM×WN sub-tile and issues mma.m16n8k32.
// Rows past M, columns past N and codes past K are zero-filled by cp.async, so M and N are arbitrary
// and K needs only 16-byte rows (K % 16 == 0).
// int8: int32 accumulators, exact. e4m3: the tensor core's fp32 accumulation is not a full fp32 add
// on Hopper, so each 128-wide K tile is summed in its own accumulators and then added into fp32
// totals on the CUDA cores (the DeepGEMM promotion), which keeps K = 15360 accurate.
// Epilogue in fp32 as the reference: y = fma(acc·s_x, s_w, bias), rounded once to T.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/gemm_tc_kernel.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/w8a8_fragments.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

template <int BM_, int BN_, int WarpsM_, int WarpsN_, int Stages_, int MinBlocks_ = 1>
struct W8A8Tile {
  static constexpr int BM = BM_, BN = BN_, WarpsM = WarpsM_, WarpsN = WarpsN_, Stages = Stages_;
  static constexpr int min_blocks = MinBlocks_;
  static constexpr int threads = WarpsM * WarpsN * 32;
  static constexpr int WM = BM / WarpsM, WN = BN / WarpsN;
  static constexpr int MT = WM / 16, NT = WN / 8;  // m16 and n8 tiles per warp
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are whole 16×16 blocks");
  static constexpr int k_tile = 128;  // codes (bytes) per row per stage
  static constexpr int stage_bytes = (BM + BN) * k_tile;
  static constexpr int shared_bytes = Stages * stage_bytes;
};

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a rows×128-byte tile: chunks XOR-swizzled
// by row % 8, so the 8 row addresses of each ldmatrix phase hit 8 different bank groups.
__device__ __forceinline__ int swizzled_byte_offset(int row, int chunk) {
  return row * 128 + ((chunk ^ (row & 7)) << 4);
}

// Rows × 128 codes of k-tile `tile` from a [rows, k] byte matrix; rows ≥ valid_rows and chunks past k are zeros.
template <int Rows, int Threads>
__device__ __forceinline__ void load_code_rows_async(std::uint8_t* tile, const std::uint8_t* source, int k,
                                                     int valid_rows, int k_tile_index) {
  const int chunks_per_row = k / 16;
#pragma unroll
  for (int c = threadIdx.x; c < Rows * 8; c += Threads) {
    const int row = c >> 3, chunk = c & 7;
    const int k_chunk = k_tile_index * 8 + chunk;
    const bool valid = row < valid_rows && k_chunk < chunks_per_row;
    copy_async_16(tile + swizzled_byte_offset(row, chunk),
                  source + (valid ? static_cast<std::size_t>(row) * k + k_chunk * 16 : 0), valid);
  }
}

// (row tile, column tile) of output tile `index` of a row_tiles × col_tiles grid. Grouped order: consecutive indices walk 8 row tiles
// of one column tile, then the next column tile, so the tiles in flight at one time (a wave of blocks,
// or the current tiles of a persistent grid) reuse their weight tiles and activation rows from L2.
__device__ __forceinline__ int2 tile_coordinates(int row_tiles, int col_tiles, int index) {
  constexpr int group_rows = 8;
  const int group = index / (group_rows * col_tiles), in_group = index % (group_rows * col_tiles);
  const int first_row_tile = group * group_rows;
  const int rows_in_group = min(row_tiles - first_row_tile, group_rows);
  return make_int2(first_row_tile + in_group % rows_in_group, in_group / rows_in_group);
}

// The tile of this block when the grid has one block per tile.
template <int BM, int BN>
__device__ __forceinline__ int2 block_tile(const W8A8Params& p) {
  return tile_coordinates((p.m + BM - 1) / BM, (p.n + BN - 1) / BN, blockIdx.x);
}

// y[row, col..col+1] = fma(sum·s_x, s_w, bias) in fp32, rounded once to T; col + 1 only if < N.
template <class T>
__device__ __forceinline__ void store_output_pair(const W8A8Params& p, int row, int col, float sum_lo, float sum_hi) {
  if (row >= p.m || col >= p.n) return;
  const bool second = col + 1 < p.n;
  const float s_x = __ldcg(p.x_scale + row);  // written by other blocks: read from L2
  const T* bias = static_cast<const T*>(p.bias);
  const float b_lo = bias != nullptr ? to_float(bias[col]) : 0.0f;
  const float b_hi = bias != nullptr && second ? to_float(bias[col + 1]) : 0.0f;
  const float lo = __fmaf_rn(__fmul_rn(sum_lo, s_x), p.w_scale[col], b_lo);
  const float hi = second ? __fmaf_rn(__fmul_rn(sum_hi, s_x), p.w_scale[col + 1], b_hi) : 0.0f;
  T* out = static_cast<T*>(p.y) + static_cast<std::size_t>(row) * p.n + col;
  if ((p.n & 1) == 0) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>)
      *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(lo, hi);
    else
      *reinterpret_cast<__half2*>(out) = __floats2half2_rn(lo, hi);
  } else {
    out[0] = from_float<T>(lo);
    if (second) out[1] = from_float<T>(hi);
  }
}

template <W8A8Operand Operand>
using w8a8_accumulator = std::conditional_t<Operand == W8A8Operand::int8, int, float>;

// A warp's MT×NT sub-tile of sums: per-K-step accumulators (int32, or fp32 for e4m3) and, for e4m3, the
// fp32 totals each 128-input step is promoted into (the DeepGEMM promotion, see above).
template <W8A8Operand Operand, class Tile>
using W8A8Sums = w8a8_accumulator<Operand>[Tile::MT][Tile::NT][4];
template <W8A8Operand Operand>
inline constexpr bool w8a8_promotes = Operand == W8A8Operand::float8_e4m3fn;
template <W8A8Operand Operand, class Tile>
using W8A8Totals = float[w8a8_promotes<Operand> ? Tile::MT : 1][w8a8_promotes<Operand> ? Tile::NT : 1][4];

template <W8A8Operand Operand, class Tile>
__device__ __forceinline__ void zero_w8a8_sums(W8A8Sums<Operand, Tile>& acc, W8A8Totals<Operand, Tile>& total) {
#pragma unroll
  for (int mt = 0; mt < Tile::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Tile::NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        acc[mt][nt][i] = w8a8_accumulator<Operand>(0);
        if constexpr (w8a8_promotes<Operand>) total[mt][nt][i] = 0.0f;
      }
}

// One staged 128-code K step of a warp: A and B fragments by ldmatrix from the XOR-swizzled tiles,
// mma.m16n8k32 into acc, then (e4m3) acc promoted into the totals.
template <W8A8Operand Operand, class Tile>
__device__ __forceinline__ void multiply_w8a8_k_tile(W8A8Sums<Operand, Tile>& acc, W8A8Totals<Operand, Tile>& total,
                                                     const std::uint8_t* a_tile, const std::uint8_t* b_tile,
                                                     int warp_m, int warp_n, int lane) {
#pragma unroll
  for (int step = 0; step < Tile::k_tile / 32; ++step) {
    std::uint32_t fa[Tile::MT][4];
#pragma unroll
    for (int mt = 0; mt < Tile::MT; ++mt) {
      const int row = warp_m * Tile::WM + mt * 16 + (lane & 15);
      load_matrix_x4(fa[mt], a_tile + swizzled_byte_offset(row, step * 2 + (lane >> 4)));
    }
#pragma unroll
    for (int block = 0; block < Tile::NT / 2; ++block) {
      // Matrices: n0..7 k0..15 (b0), n0..7 k16..31 (b1), n8..15 k0..15, n8..15 k16..31.
      const int row = warp_n * Tile::WN + block * 16 + (lane & 7) + ((lane >> 4) << 3);
      std::uint32_t fb[4];
      load_matrix_x4(fb, b_tile + swizzled_byte_offset(row, step * 2 + ((lane >> 3) & 1)));
#pragma unroll
      for (int mt = 0; mt < Tile::MT; ++mt) {
        if constexpr (Operand == W8A8Operand::int8) {
          mma_s8_16832(acc[mt][2 * block], fa[mt], fb[0], fb[1]);
          mma_s8_16832(acc[mt][2 * block + 1], fa[mt], fb[2], fb[3]);
        } else {
          mma_e4m3_16832(acc[mt][2 * block], fa[mt], fb[0], fb[1]);
          mma_e4m3_16832(acc[mt][2 * block + 1], fa[mt], fb[2], fb[3]);
        }
      }
    }
  }
  if constexpr (w8a8_promotes<Operand>) {
#pragma unroll
    for (int mt = 0; mt < Tile::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < Tile::NT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          total[mt][nt][i] += acc[mt][nt][i];
          acc[mt][nt][i] = 0.0f;
        }
  }
}

// Sum i (0..3, the C fragment's order) of sub-tile (mt, nt) as the fp32 the epilogue scales.
template <W8A8Operand Operand, class Tile>
__device__ __forceinline__ float w8a8_sum(const W8A8Sums<Operand, Tile>& acc, const W8A8Totals<Operand, Tile>& total,
                                          int mt, int nt, int i) {
  if constexpr (w8a8_promotes<Operand>)
    return total[mt][nt][i];
  else
    return __int2float_rn(acc[mt][nt][i]);
}

template <class T, W8A8Operand Operand, class Tile>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks) gemm_w8a8_kernel(const W8A8Params p) {
  extern __shared__ uint4 shared_words[];
  auto* shared = reinterpret_cast<std::uint8_t*>(shared_words);
  const int2 tile_index = block_tile<Tile::BM, Tile::BN>(p);
  const int row_tile = tile_index.x, row0 = row_tile * Tile::BM, col0 = tile_index.y * Tile::BN;
  const int valid_rows = min(Tile::BM, p.m - row0), valid_cols = min(Tile::BN, p.n - col0);

  // Fused: this tile's rows are quantized (with the other blocks of the row tile) before the main loop
  // reads them. codes_ready: quantize_row_tile returns after its barrier, and the loop and the epilogue
  // read the caller's codes and scales through the same x_codes / x_scale pointers.
  quantize_row_tile<T, Operand>(p, row_tile, row0, valid_rows);

  W8A8Sums<Operand, Tile> acc;
  W8A8Totals<Operand, Tile> total;
  zero_w8a8_sums<Operand, Tile>(acc, total);

  std::uint8_t* a_tiles = shared;
  std::uint8_t* b_tiles = shared + Tile::Stages * Tile::BM * Tile::k_tile;
  const std::uint8_t* a = p.x_codes + static_cast<std::size_t>(row0) * p.k;
  const std::uint8_t* b = static_cast<const std::uint8_t*>(p.w) + static_cast<std::size_t>(col0) * p.k;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / Tile::WarpsN, warp_n = warp % Tile::WarpsN;

  auto load = [&](int stage, int tile) {
    load_code_rows_async<Tile::BM, Tile::threads>(a_tiles + stage * Tile::BM * Tile::k_tile, a, p.k, valid_rows, tile);
    load_code_rows_async<Tile::BN, Tile::threads>(b_tiles + stage * Tile::BN * Tile::k_tile, b, p.k, valid_cols, tile);
  };
  auto compute = [&](int stage) {
    multiply_w8a8_k_tile<Operand, Tile>(acc, total, a_tiles + stage * Tile::BM * Tile::k_tile,
                                        b_tiles + stage * Tile::BN * Tile::k_tile, warp_m, warp_n, lane);
  };
  pipelined_k_loop<Tile::Stages>((p.k + Tile::k_tile - 1) / Tile::k_tile, load, compute);

  // Epilogue: y = fma(acc·s_x, s_w, bias) in fp32, one rounding to T. Odd N stores element by element.
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
  const bool pairs = (p.n & 1) == 0;
#pragma unroll
  for (int nt = 0; nt < Tile::NT; ++nt) {
    const int col = col0 + warp_n * Tile::WN + nt * 8 + 2 * (lane & 3);
    if (col >= p.n) continue;
    const bool second = col + 1 < p.n;
    const float2 s_w = make_float2(p.w_scale[col], second ? p.w_scale[col + 1] : 0.0f);
    float2 add = make_float2(0.0f, 0.0f);
    if (bias != nullptr) add = make_float2(to_float(bias[col]), second ? to_float(bias[col + 1]) : 0.0f);
#pragma unroll
    for (int mt = 0; mt < Tile::MT; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = row0 + warp_m * Tile::WM + mt * 16 + half * 8 + (lane >> 2);
        if (row >= p.m) continue;
        const float s_x = __ldcg(p.x_scale + row);  // written by other blocks: read from L2
        const float sum_lo = w8a8_sum<Operand, Tile>(acc, total, mt, nt, 2 * half);
        const float sum_hi = w8a8_sum<Operand, Tile>(acc, total, mt, nt, 2 * half + 1);
        const float lo = __fmaf_rn(__fmul_rn(sum_lo, s_x), s_w.x, add.x);
        const float hi = __fmaf_rn(__fmul_rn(sum_hi, s_x), s_w.y, add.y);
        T* out = y + static_cast<std::size_t>(row) * p.n + col;
        if (pairs) {
          if constexpr (std::is_same_v<T, __nv_bfloat16>)
            *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(lo, hi);
          else
            *reinterpret_cast<__half2*>(out) = __floats2half2_rn(lo, hi);
        } else {
          out[0] = from_float<T>(lo);
          if (second) out[1] = from_float<T>(hi);
        }
      }
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
