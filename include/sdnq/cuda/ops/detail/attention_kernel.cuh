#pragma once
// The fused attention forward kernel (FlashAttention-2 style): one block owns `rows` query rows of one
// (batch, head); it walks the key/value sequence in tiles of 64 keys, double-buffered in shared memory
// by cp.async, computes S = Q·Kᵀ and O += P·V with mma.sync m16n8k16 (bf16/fp16 operands, fp32
// accumulators) and keeps a running row maximum and row sum (online softmax), so the [Lq, Lk] score
// matrix never exists. P goes from the S accumulators straight into A fragments (the C layout of two
// adjacent n8 tiles is the A layout of one k16 step). Shared-memory rows are 16-byte chunks XOR-swizzled
// by (row % 8), so ldmatrix and cp.async hit distinct banks.
// With an additive bias (T5's relative positions, a key padding mask as -inf) each thread reads the bias
// of the scores it holds straight from global memory after Q·Kᵀ; the bias-free kernel is compiled
// without that code (HasBias = false), so it is the same kernel as before the bias existed.
// Fragment ownership: see sdnq/cuda/detail/gemm_tc_fragments.cuh (g = lane / 4, t = lane % 4).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

using sdnq::cuda::kernel_detail::copy_async_16;
using sdnq::cuda::kernel_detail::copy_async_commit;
using sdnq::cuda::kernel_detail::copy_async_wait;
using sdnq::cuda::kernel_detail::load_matrix_x4;
using sdnq::cuda::kernel_detail::mma_16816;
using sdnq::cuda::kernel_detail::pack_pair;
using sdnq::cuda::kernel_detail::shared_address;

// Element strides of batch, head and token; the head-dim stride is 1.
struct AttentionStrides {
  long long batch = 0, head = 0, token = 0;
};

struct AttentionParams {
  const void* q = nullptr;  // [B, H, Lq, D] (strided)
  const void* k = nullptr;  // [B, H, Lk, D]
  const void* v = nullptr;  // [B, H, Lk, D]
  void* out = nullptr;      // [B, H, Lq, D]
  AttentionStrides q_strides, k_strides, v_strides, out_strides;
  int heads = 0, query_length = 0, key_length = 0;
  float scale_log2 = 0.0f;  // softmax scale · log2(e): the kernel works with exp2
  bool causal = false;      // query i sees keys j ≤ i (top-left aligned)
  // Additive bias of the scores, element (b, h, i, j) at bias + b·batch + h·head + i·token + j (a zero
  // stride broadcasts), dtype of q; null when none. The kernel adds bias / scale to the unscaled q·k, so
  // that the later multiplication by scale_log2 gives (q·k·scale + bias)·log2(e).
  const void* bias = nullptr;
  AttentionStrides bias_strides;
  float bias_factor = 0.0f;  // 1 / scale
};

// Warps × MTiles m16 tiles of query rows per block, 64 keys per step. LazyRescale: skip the O rescale
// of a step when no row maximum of the warp moved (a warp vote) instead of always multiplying.
template <int HeadDim, int Warps, int MTiles, bool LazyRescale = true>
struct AttentionTile {
  static constexpr bool lazy_rescale = LazyRescale;
  static_assert(HeadDim == 64 || HeadDim == 128, "head_dim 64 or 128");
  static constexpr int head_dim = HeadDim;
  static constexpr int warps = Warps;
  static constexpr int threads = Warps * 32;
  static constexpr int m_tiles = MTiles;
  static constexpr int rows = 16 * Warps * MTiles;  // query rows per block
  // Two resident blocks per SM: 8 warps must fit 128 registers per thread.
  static constexpr int min_blocks = Warps == 8 ? 2 : 1;
  static constexpr int keys = 64;             // keys per pipeline step
  static constexpr int chunks = HeadDim / 8;  // 16-byte chunks per row
  static constexpr int q_elements = rows * HeadDim;
  static constexpr int kv_elements = keys * HeadDim;
  // Q tile (reused for the output), two K tiles, two V tiles.
  static constexpr int shared_bytes = (q_elements + 4 * kv_elements) * 2;
};

// Element offset of (row, chunk) in a swizzled tile of `Chunks` 16-byte chunks per row.
template <int Chunks>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * Chunks * 8 + ((chunk ^ (row & 7)) * 8);
}

// Four 8×8 b16 matrices, transposed on the way (B fragments of row-major V).
__device__ __forceinline__ void load_matrix_x4_transposed(std::uint32_t (&regs)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(shared_address(row_address)));
}

// Rows [0, Rows) of a tile into shared memory; rows at or past `valid_rows` become zeros (no read).
template <class Tile, int Rows, class T>
__device__ __forceinline__ void load_tile_async(T* shared, const T* global, long long row_stride, int valid_rows) {
  constexpr int chunks = Tile::chunks;
  for (int i = threadIdx.x; i < Rows * chunks; i += Tile::threads) {
    const int row = i / chunks, chunk = i % chunks;
    const bool valid = row < valid_rows;
    copy_async_16(shared + swizzled<chunks>(row, chunk), valid ? global + row * row_stride + chunk * 8 : global, valid);
  }
}

// 2^x by the MUFU unit alone (relative error ≤ 2^-22, subnormal results flushed to zero; 2^-inf = 0):
// exp2f without -ftz adds range fix-ups, and the kernel is close to issue-bound.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, 2));
}

template <class T>
__device__ __forceinline__ float widen(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(x);
  else
    return __half2float(x);
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xFFFFFFFFu, x, 1);
  return x + __shfl_xor_sync(0xFFFFFFFFu, x, 2);
}

// grid (ceil(Lq / rows), H, B), Tile::threads threads, Tile::shared_bytes dynamic shared memory.
template <class T, class Tile, bool HasBias = false>
__global__ void __launch_bounds__(Tile::threads, Tile::min_blocks) attention_kernel(const AttentionParams p) {
  constexpr int D = Tile::head_dim, MT = Tile::m_tiles, KEYS = Tile::keys, CH = Tile::chunks;
  extern __shared__ __align__(128) unsigned char shared_raw[];
  T* const q_tile = reinterpret_cast<T*>(shared_raw);  // [rows][D], later the output tile
  T* const k_tiles = q_tile + Tile::q_elements;        // [2][KEYS][D]
  T* const v_tiles = k_tiles + 2 * Tile::kv_elements;  // [2][KEYS][D]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int query_begin = blockIdx.x * Tile::rows;
  const int head = blockIdx.y, batch = blockIdx.z;
  const T* const q = static_cast<const T*>(p.q) + batch * p.q_strides.batch + head * p.q_strides.head +
                     static_cast<long long>(query_begin) * p.q_strides.token;
  const T* const k = static_cast<const T*>(p.k) + batch * p.k_strides.batch + head * p.k_strides.head;
  const T* const v = static_cast<const T*>(p.v) + batch * p.v_strides.batch + head * p.v_strides.head;

  int key_blocks = (p.key_length + KEYS - 1) / KEYS;
  if (p.causal) {
    const int last_query = min(query_begin + Tile::rows, p.query_length);  // exclusive
    key_blocks = min(key_blocks, (last_query + KEYS - 1) / KEYS);
  }

  load_tile_async<Tile, Tile::rows>(q_tile, q, p.q_strides.token, p.query_length - query_begin);
  if (key_blocks > 0) load_tile_async<Tile, KEYS>(k_tiles, k, p.k_strides.token, p.key_length);
  copy_async_commit();
  if (key_blocks > 0) load_tile_async<Tile, KEYS>(v_tiles, v, p.v_strides.token, p.key_length);
  copy_async_commit();

  float o[MT][D / 8][4];
  float row_max[MT][2], row_sum[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_max[mt][h] = -INFINITY;
      row_sum[mt][h] = 0.0f;
    }
  }
  const int warp_row = warp * MT * 16;  // first row of this warp within the block

  for (int block = 0; block < key_blocks; ++block) {
    const int buffer = block & 1;
    const T* const k_tile = k_tiles + buffer * Tile::kv_elements;
    const T* const v_tile = v_tiles + buffer * Tile::kv_elements;
    const int key_begin = block * KEYS;

    copy_async_wait<1>();  // K of this step (and Q) landed; V of this step may still be in flight
    __syncthreads();
    if (block + 1 < key_blocks)
      load_tile_async<Tile, KEYS>(k_tiles + (buffer ^ 1) * Tile::kv_elements,
                                  k + static_cast<long long>(key_begin + KEYS) * p.k_strides.token, p.k_strides.token,
                                  p.key_length - key_begin - KEYS);
    copy_async_commit();

    // S = Q · Kᵀ for this warp's rows and the step's 64 keys.
    float s[MT][KEYS / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < KEYS / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        load_matrix_x4(a[mt], q_tile + swizzled<CH>(warp_row + mt * 16 + (lane & 15), kk * 2 + (lane >> 4)));
#pragma unroll
      for (int nt2 = 0; nt2 < KEYS / 16; ++nt2) {
        std::uint32_t b[4];
        load_matrix_x4(b,
                       k_tile + swizzled<CH>(nt2 * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(s[mt][2 * nt2], a[mt], b[0], b[1]);
          mma_16816<T>(s[mt][2 * nt2 + 1], a[mt], b[2], b[3]);
        }
      }
    }

    if constexpr (HasBias) {
      const T* const bias = static_cast<const T*>(p.bias) + batch * p.bias_strides.batch + head * p.bias_strides.head;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < KEYS / 8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = key_begin + nt * 8 + 2 * (lane % 4) + (e & 1);
            const int query = query_begin + warp_row + mt * 16 + lane / 4 + (e >> 1) * 8;
            if (key < p.key_length && query < p.query_length)
              s[mt][nt][e] = fmaf(widen(bias[query * p.bias_strides.token + key]), p.bias_factor, s[mt][nt][e]);
          }
    }

    // Keys past the sequence and (causal) keys after the query get -inf.
    const bool tail = key_begin + KEYS > p.key_length;
    const bool diagonal = p.causal && key_begin + KEYS - 1 > query_begin + warp_row;
    if (tail || diagonal) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < KEYS / 8; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = key_begin + nt * 8 + 2 * (lane % 4) + (e & 1);
            const int query = query_begin + warp_row + mt * 16 + lane / 4 + (e >> 1) * 8;
            if (key >= p.key_length || (p.causal && key > query)) s[mt][nt][e] = -INFINITY;
          }
    }

    // Online softmax: rescale what was accumulated so far to the new row maximum. Once the row maxima
    // settle, whole steps keep them: the O rescale is skipped when no row of the warp moved.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float block_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < KEYS / 8; ++nt)
          block_max = fmaxf(block_max, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        const float new_max = fmaxf(row_max[mt][h], quad_max(block_max) * p.scale_log2);
        const float base = new_max == -INFINITY ? 0.0f : new_max;  // a fully masked row stays at zero
        const float correction = fast_exp2(row_max[mt][h] - base);
        row_max[mt][h] = new_max;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < KEYS / 8; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            s[mt][nt][e] = fast_exp2(fmaf(s[mt][nt][e], p.scale_log2, -base));
            sum += s[mt][nt][e];
          }
        row_sum[mt][h] = row_sum[mt][h] * correction + sum;  // per-thread partial; quad-summed at the end
        if (!Tile::lazy_rescale || __any_sync(0xFFFFFFFFu, correction != 1.0f)) {
#pragma unroll
          for (int dt = 0; dt < D / 8; ++dt) {
            o[mt][dt][2 * h] *= correction;
            o[mt][dt][2 * h + 1] *= correction;
          }
        }
      }

    copy_async_wait<1>();  // V of this step landed
    __syncthreads();
    if (block + 1 < key_blocks)
      load_tile_async<Tile, KEYS>(v_tiles + (buffer ^ 1) * Tile::kv_elements,
                                  v + static_cast<long long>(key_begin + KEYS) * p.v_strides.token, p.v_strides.token,
                                  p.key_length - key_begin - KEYS);
    copy_async_commit();

    // O += P · V, P rounded to T from the S accumulators.
#pragma unroll
    for (int ks = 0; ks < KEYS / 16; ++ks) {
      std::uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        a[mt][0] = pack_pair<T>(s[mt][2 * ks][0], s[mt][2 * ks][1]);
        a[mt][1] = pack_pair<T>(s[mt][2 * ks][2], s[mt][2 * ks][3]);
        a[mt][2] = pack_pair<T>(s[mt][2 * ks + 1][0], s[mt][2 * ks + 1][1]);
        a[mt][3] = pack_pair<T>(s[mt][2 * ks + 1][2], s[mt][2 * ks + 1][3]);
      }
#pragma unroll
      for (int dt2 = 0; dt2 < D / 16; ++dt2) {
        std::uint32_t b[4];
        load_matrix_x4_transposed(b, v_tile + swizzled<CH>(ks * 16 + (lane & 15), dt2 * 2 + (lane >> 4)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(o[mt][2 * dt2], a[mt], b[0], b[1]);
          mma_16816<T>(o[mt][2 * dt2 + 1], a[mt], b[2], b[3]);
        }
      }
    }
  }
  copy_async_wait<0>();

  // O / rowsum, staged through the Q tile for 16-byte coalesced stores.
  __syncthreads();  // every warp is done reading Q
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float total = quad_sum(row_sum[mt][h]);
      const float inverse = total > 0.0f ? 1.0f / total : 0.0f;
      const int row = warp_row + mt * 16 + lane / 4 + h * 8;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        *reinterpret_cast<std::uint32_t*>(q_tile + swizzled<CH>(row, dt) + 2 * (lane % 4)) =
            pack_pair<T>(o[mt][dt][2 * h] * inverse, o[mt][dt][2 * h + 1] * inverse);
    }
  __syncthreads();
  T* const out = static_cast<T*>(p.out) + batch * p.out_strides.batch + head * p.out_strides.head +
                 static_cast<long long>(query_begin) * p.out_strides.token;
  const int valid_rows = p.query_length - query_begin;
  for (int i = threadIdx.x; i < Tile::rows * CH; i += Tile::threads) {
    const int row = i / CH, chunk = i % CH;
    if (row < valid_rows)
      *reinterpret_cast<uint4*>(out + row * p.out_strides.token + chunk * 8) =
          *reinterpret_cast<const uint4*>(q_tile + swizzled<CH>(row, chunk));
  }
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
