#pragma once
// The tensor-core GEMM kernel behind gemm_tc.cuh. One block computes a BM×BN tile of
//   y = a · dequant(B)ᵀ (+ low_rank · svd_upᵀ) (+ bias)
// over K in tiles of 64 with a Stages-deep cp.async pipeline (activations and packed codes); each
// warp owns a WM×WN sub-tile, loads A fragments with ldmatrix from a swizzled tile, its packed codes
// with 128-bit shared loads, dequantizes them in registers into B fragments and issues mma.m16n8k16.
// After the weight tiles the SVD branch runs as extra K tiles over the padded rank rp (a multiple of
// 16, not of 64) with dense operands (A = low_rank [M, rp], B = svd_up [N, rp]) into the same fp32
// accumulators; the last tile's columns past rp are zero-filled and its k-steps past rp skipped.
// Bits == 16 is the plain dense GEMM that computes low_rank = x · svd_downᵀ; its N (= rp) need only be
// a multiple of 16: rows of B past N are zero-filled and columns past N not stored.
// Layouts: detail/gemm_tc_repack.hpp.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

struct GemmTcParams {
  const void* a;             // [M, K] T
  const void* b;             // Bits 4/8: codes U32 [K/64, N/16, 32, Bits]; Bits 16: [N, K] T, N % 16 == 0
  const void* group_params;  // [G, N] (scale, zero) pairs of T
  const void* low_rank;      // [M, rank_padded] T, or null
  const void* svd_up;        // [N, rank_padded] T; rank_padded a multiple of 16
  const void* bias;          // [N] T, or null
  void* y;                   // [M, N] T
  float* partial;            // [splits, M, N] fp32 when K is split over gridDim.z, else null
  int m, n, k, group_size, rank_padded;
  int tiles_per_split;  // 64-wide K tiles of one split
  int low_rank_splits;  // weight-streaming kernel: fp32 K splits of low_rank in `partial` ([splits, M, rp])
  std::uint64_t group_magic;  // weight-streaming kernel: (tile · group_magic) >> 32 = tile · 64 / group_size
  std::uint32_t minus;  // T pair: magic − code offset
  float minus_f;        // 2^23 − code offset
};

template <int BM_, int BN_, int WarpsM_, int WarpsN_, int Stages_, int MinBlocks_ = 1>
struct TcTile {
  static constexpr int BM = BM_, BN = BN_, WarpsM = WarpsM_, WarpsN = WarpsN_, Stages = Stages_;
  static constexpr int min_blocks = MinBlocks_;  // blocks per SM the register budget must allow
  static constexpr int threads = WarpsM * WarpsN * 32;
  static constexpr int WM = BM / WarpsM, WN = BN / WarpsN;
  static constexpr int MT = WM / 16, NT = WN / 8;  // m16 and n8 tiles per warp
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles are whole 16×16 blocks");
  static constexpr int a_bytes = BM * 64 * 2;
  static constexpr int dense_b_bytes = BN * 64 * 2;
  static constexpr int param_bytes = 2 * BN * 4;  // up to two groups (of 32) per k-tile
  template <int Bits>
  static constexpr int quant_stage_bytes() {
    return a_bytes + BN * 64 * Bits / 8 + param_bytes;
  }
  template <int Bits>
  static constexpr int shared_bytes() {
    const int dense = Stages * (a_bytes + dense_b_bytes);
    const int quant = Stages * quant_stage_bytes<Bits>();
    const int svd = 2 * (a_bytes + dense_b_bytes);
    return Bits == 16 ? dense : (quant > svd ? quant : svd);
  }
};

// Rows × 64 tile of T, row-major, the 16-byte chunks of row r XOR-swizzled by r % 8 so that the 8 row
// addresses of each ldmatrix phase hit 8 different bank groups.
__device__ __forceinline__ int swizzled_offset(int row, int chunk) { return row * 64 + ((chunk ^ (row & 7)) << 3); }

// Rows past `valid_rows` and 8-element chunks from `valid_chunks` on are zero-filled (nothing read).
template <class T, int Rows, int Threads>
__device__ __forceinline__ void load_rows_async(T* tile, const T* source, int ld, int valid_rows, int k0,
                                                int valid_chunks = 8) {
#pragma unroll
  for (int c = threadIdx.x; c < Rows * 8; c += Threads) {
    const int row = c >> 3, chunk = c & 7;
    const bool valid = row < valid_rows && chunk < valid_chunks;
    copy_async_16(tile + swizzled_offset(row, chunk),
                  source + static_cast<std::size_t>(valid ? row : 0) * ld + k0 + chunk * 8, valid);
  }
}

// A fragments of the warp's MT m16 tiles for k-step `step` of a staged A tile.
template <class T, class Tile>
__device__ __forceinline__ void load_a_fragments(const T* tile, int warp_m, int lane, int step,
                                                 std::uint32_t (&a)[Tile::MT][4]) {
#pragma unroll
  for (int mt = 0; mt < Tile::MT; ++mt) {
    const int row = warp_m * Tile::WM + mt * 16 + (lane & 15);
    load_matrix_x4(a[mt], tile + swizzled_offset(row, step * 2 + (lane >> 4)));
  }
}

// Multi-stage cp.async pipeline: `load(stage, tile)` issues the copies of a tile, `compute(stage)`
// consumes one; Stages − 1 tiles are in flight while one is computed.
template <int Stages, class Load, class Compute>
__device__ __forceinline__ void pipelined_k_loop(int tiles, Load&& load, Compute&& compute) {
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < tiles) load(s, s);
    copy_async_commit();
  }
  for (int tile = 0; tile < tiles; ++tile) {
    copy_async_wait<Stages - 2>();
    __syncthreads();  // tile `tile` visible to all; everyone is done with the stage reloaded next
    const int next = tile + Stages - 1;
    if (next < tiles) load(next % Stages, next);
    copy_async_commit();
    compute(tile % Stages);
  }
  copy_async_wait<0>();
  __syncthreads();
}

// acc += a[row0.., :K] · b[col0.., :K]ᵀ with both operands dense T (row stride k); rows of a from
// `valid_rows` and of b from `valid_b_rows` on are zeros. K a multiple of 64, or with PartialK of 16:
// the last tile's columns past K are zero-filled (never read from global memory) and its k-steps
// past K skipped, which adds exactly what the zero padding to 64 added.
template <class T, class Tile, int Stages, bool PartialK = false>
__device__ __forceinline__ void dense_k_loop(char* shared, const T* a, const T* b, int k, int first_tile, int tiles,
                                             int valid_rows, int valid_b_rows, float (&acc)[Tile::MT][Tile::NT][4]) {
  T* a_tiles = reinterpret_cast<T*>(shared);
  T* b_tiles = reinterpret_cast<T*>(shared + Stages * Tile::a_bytes);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / Tile::WarpsN, warp_n = warp % Tile::WarpsN;
  auto load = [&](int stage, int tile) {
    const int k0 = (first_tile + tile) * 64;
    const int chunks = PartialK ? min(8, (k - k0) / 8) : 8;
    load_rows_async<T, Tile::BM, Tile::threads>(a_tiles + stage * Tile::BM * 64, a, k, valid_rows, k0, chunks);
    load_rows_async<T, Tile::BN, Tile::threads>(b_tiles + stage * Tile::BN * 64, b, k, valid_b_rows, k0, chunks);
  };
  int computed = 0;  // pipelined_k_loop computes the tiles in order
  auto compute = [&](int stage) {
    const T* a_tile = a_tiles + stage * Tile::BM * 64;
    const T* b_tile = b_tiles + stage * Tile::BN * 64;
    const int steps = PartialK ? min(4, (k - (first_tile + computed) * 64) / 16) : 4;
    ++computed;
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      if (PartialK && step >= steps) break;
      std::uint32_t fa[Tile::MT][4];
      load_a_fragments<T, Tile>(a_tile, warp_m, lane, step, fa);
#pragma unroll
      for (int block = 0; block < Tile::NT / 2; ++block) {
        // Matrices: rows n0..7 k0..7 (b0), n0..7 k8..15 (b1), n8..15 k0..7, n8..15 k8..15.
        const int row = warp_n * Tile::WN + block * 16 + (lane & 7) + ((lane >> 4) << 3);
        std::uint32_t fb[4];
        load_matrix_x4(fb, b_tile + swizzled_offset(row, step * 2 + ((lane >> 3) & 1)));
#pragma unroll
        for (int mt = 0; mt < Tile::MT; ++mt) {
          mma_16816<T>(acc[mt][2 * block], fa[mt], fb[0], fb[1]);
          mma_16816<T>(acc[mt][2 * block + 1], fa[mt], fb[2], fb[3]);
        }
      }
    }
  };
  pipelined_k_loop<Stages>(tiles, load, compute);
}

// acc += a[row0.., :] · dequant(codes)[col0.., :]ᵀ over all K.
template <class T, int Bits, class Tile>
__device__ __forceinline__ void quantized_k_loop(char* shared, const GemmTcParams& p, const T* a, int first_tile,
                                                 int tiles, int valid_rows, float (&acc)[Tile::MT][Tile::NT][4]) {
  constexpr int Stages = Tile::Stages;
  constexpr int b_bytes = Tile::BN * 64 * Bits / 8;
  T* a_tiles = reinterpret_cast<T*>(shared);
  char* b_tiles = shared + Stages * Tile::a_bytes;
  std::uint32_t* param_tiles = reinterpret_cast<std::uint32_t*>(b_tiles + Stages * b_bytes);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / Tile::WarpsN, warp_n = warp % Tile::WarpsN;
  const int col0 = blockIdx.x * Tile::BN;
  const int groups_per_tile = p.group_size == 32 ? 2 : 1;
  const char* codes = static_cast<const char*>(p.b) + static_cast<std::size_t>(col0 / 16) * 32 * Bits * 4;
  const std::size_t codes_tile_stride = static_cast<std::size_t>(p.n / 16) * 32 * Bits * 4;
  const std::uint32_t* params = static_cast<const std::uint32_t*>(p.group_params) + col0;
  DequantConstants<T> constants{as_pair<T>(p.minus), p.minus_f};

  auto load = [&](int stage, int local_tile) {
    const int tile = first_tile + local_tile;
    load_rows_async<T, Tile::BM, Tile::threads>(a_tiles + stage * Tile::BM * 64, a, p.k, valid_rows, tile * 64);
    const char* source = codes + tile * codes_tile_stride;
    char* target = b_tiles + stage * b_bytes;
#pragma unroll
    for (int c = threadIdx.x; c < b_bytes / 16; c += Tile::threads) copy_async_16(target + c * 16, source + c * 16);
    const int first_group = p.group_size == 32 ? 2 * tile : tile * 64 / p.group_size;
    for (int c = threadIdx.x; c < groups_per_tile * Tile::BN / 4; c += Tile::threads) {
      const int group = c / (Tile::BN / 4), chunk = c % (Tile::BN / 4);
      copy_async_16(param_tiles + stage * 2 * Tile::BN + group * Tile::BN + chunk * 4,
                    params + static_cast<std::size_t>(first_group + group) * p.n + chunk * 4);
    }
  };
  auto compute = [&](int stage) {
    const T* a_tile = a_tiles + stage * Tile::BM * 64;
    const std::uint32_t* b_tile = reinterpret_cast<const std::uint32_t*>(b_tiles + stage * b_bytes);
    const std::uint32_t* param_tile = param_tiles + stage * 2 * Tile::BN;
    // The lane's words of each of its 16-row blocks for the whole k-tile: Bits words, 128 bits a load.
    std::uint32_t words[Tile::NT / 2][Bits];
#pragma unroll
    for (int block = 0; block < Tile::NT / 2; ++block) {
      const int n_block = (warp_n * Tile::WN) / 16 + block;
#pragma unroll
      for (int slice = 0; slice < Bits / 4; ++slice) {
        const uint4 v = *reinterpret_cast<const uint4*>(b_tile + n_block * 32 * Bits + slice * 128 + lane * 4);
        words[block][slice * 4] = v.x, words[block][slice * 4 + 1] = v.y;
        words[block][slice * 4 + 2] = v.z, words[block][slice * 4 + 3] = v.w;
      }
    }
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      std::uint32_t fa[Tile::MT][4];
      load_a_fragments<T, Tile>(a_tile, warp_m, lane, step, fa);
      const int group = groups_per_tile == 2 ? step / 2 : 0;
#pragma unroll
      for (int block = 0; block < Tile::NT / 2; ++block) {
        pair_of<T> s[2], z[2];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const std::uint32_t sz =
              param_tile[group * Tile::BN + warp_n * Tile::WN + block * 16 + half * 8 + (lane >> 2)];
          s[half] = as_pair<T>(__byte_perm(sz, 0, 0x1010));  // scale in both halves
          z[half] = as_pair<T>(__byte_perm(sz, 0, 0x3232));  // zero point in both halves
        }
        std::uint32_t step_words[Bits / 4];
#pragma unroll
        for (int w = 0; w < Bits / 4; ++w) step_words[w] = words[block][step * (Bits / 4) + w];
        std::uint32_t fb[2][2];
        dequantize_step<T, Bits>(step_words, s, z, constants, fb);
#pragma unroll
        for (int mt = 0; mt < Tile::MT; ++mt) {
          mma_16816<T>(acc[mt][2 * block], fa[mt], fb[0][0], fb[0][1]);
          mma_16816<T>(acc[mt][2 * block + 1], fa[mt], fb[1][0], fb[1][1]);
        }
      }
    }
  };
  pipelined_k_loop<Stages>(tiles, load, compute);
}

template <class T, int Bits, class Tile>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks) gemm_tc_kernel(const GemmTcParams p) {
  extern __shared__ uint4 shared_words[];
  char* shared = reinterpret_cast<char*>(shared_words);
  const int row0 = blockIdx.y * Tile::BM, col0 = blockIdx.x * Tile::BN;
  const int valid_rows = min(Tile::BM, p.m - row0);
  const T* a = static_cast<const T*>(p.a) + static_cast<std::size_t>(row0) * p.k;
  const int first_tile = blockIdx.z * p.tiles_per_split;
  const int tiles = min(p.tiles_per_split, p.k / 64 - first_tile);

  float acc[Tile::MT][Tile::NT][4];
#pragma unroll
  for (int mt = 0; mt < Tile::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Tile::NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;

  if constexpr (Bits == 16) {
    const T* b = static_cast<const T*>(p.b) + static_cast<std::size_t>(col0) * p.k;
    dense_k_loop<T, Tile, Tile::Stages>(shared, a, b, p.k, first_tile, tiles, valid_rows, min(Tile::BN, p.n - col0),
                                        acc);
  } else {
    quantized_k_loop<T, Bits, Tile>(shared, p, a, first_tile, tiles, valid_rows, acc);
    if (p.rank_padded > 0 && blockIdx.z == 0) {  // the SVD branch belongs to one split
      const T* low_rank = static_cast<const T*>(p.low_rank) + static_cast<std::size_t>(row0) * p.rank_padded;
      const T* up = static_cast<const T*>(p.svd_up) + static_cast<std::size_t>(col0) * p.rank_padded;
      dense_k_loop<T, Tile, 2, true>(shared, low_rank, up, p.rank_padded, 0, (p.rank_padded + 63) / 64, valid_rows,
                                     Tile::BN, acc);
    }
  }

  // Epilogue: + bias, one rounding to T, stored as T pairs straight from the accumulators; with split
  // K the fp32 partial sums go to the workspace instead and gemm_tc_reduce_kernel finishes.
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / Tile::WarpsN, warp_n = warp % Tile::WarpsN;
  const T* bias = static_cast<const T*>(p.bias);
  T* y = static_cast<T*>(p.y);
#pragma unroll
  for (int nt = 0; nt < Tile::NT; ++nt) {
    const int col = col0 + warp_n * Tile::WN + nt * 8 + 2 * (lane & 3);
    if constexpr (Bits == 16)
      if (col >= p.n) continue;  // the dense launch's N (the SVD rank) need not fill the tile
    float2 b = make_float2(0.0f, 0.0f);
    if (bias != nullptr && p.partial == nullptr) b = make_float2(to_float(bias[col]), to_float(bias[col + 1]));
#pragma unroll
    for (int mt = 0; mt < Tile::MT; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = row0 + warp_m * Tile::WM + mt * 16 + half * 8 + (lane >> 2);
        if (row >= p.m) continue;
        const float lo = acc[mt][nt][2 * half] + b.x, hi = acc[mt][nt][2 * half + 1] + b.y;
        if (p.partial != nullptr) {
          *reinterpret_cast<float2*>(p.partial + (static_cast<std::size_t>(blockIdx.z) * p.m + row) * p.n + col) =
              make_float2(lo, hi);
          continue;
        }
        pair_of<T> out;
        if constexpr (std::is_same_v<T, __nv_bfloat16>)
          out = __floats2bfloat162_rn(lo, hi);
        else
          out = __floats2half2_rn(lo, hi);
        *reinterpret_cast<pair_of<T>*>(y + static_cast<std::size_t>(row) * p.n + col) = out;
      }
  }
}

// y = Σ_splits partial (+ bias), rounded once; four columns per thread (N % 64 == 0).
template <class T>
__global__ void __launch_bounds__(256)
    gemm_tc_reduce_kernel(const float* partial, int splits, int m, int n, const T* bias, T* y) {
  const std::size_t quads = static_cast<std::size_t>(m) * n / 4;
  for (std::size_t q = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; q < quads;
       q += std::size_t(gridDim.x) * blockDim.x) {
    float4 sum = reinterpret_cast<const float4*>(partial)[q];
    for (int s = 1; s < splits; ++s) {
      const float4 v = reinterpret_cast<const float4*>(partial + static_cast<std::size_t>(s) * m * n)[q];
      sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
    }
    if (bias != nullptr) {
      const int col = static_cast<int>(q * 4 % n);
      sum.x += to_float(bias[col]), sum.y += to_float(bias[col + 1]);
      sum.z += to_float(bias[col + 2]), sum.w += to_float(bias[col + 3]);
    }
    pair_of<T>* out = reinterpret_cast<pair_of<T>*>(y) + 2 * q;
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      out[0] = __floats2bfloat162_rn(sum.x, sum.y), out[1] = __floats2bfloat162_rn(sum.z, sum.w);
    } else {
      out[0] = __floats2half2_rn(sum.x, sum.y), out[1] = __floats2half2_rn(sum.z, sum.w);
    }
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
