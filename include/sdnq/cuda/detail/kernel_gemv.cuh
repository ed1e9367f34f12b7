#pragma once
// Kernels behind gemv.cuh: the weight-streaming main loop, the SVD down-projection pre-pass and the
// split-K / SVD-up / bias epilogue. Layouts: see repack.hpp.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

inline constexpr int gemv_warps = 4;             // warps per block of the main kernel
inline constexpr int gemv_epilogue_tokens = 8;   // tokens per block of the pre-pass and epilogue
// 256: a joined nn::gpu::Linear reads its parts' ranks zero-padded to 64 each (four parts of rank <= 64).
inline constexpr int gemv_max_rank = 256;

// How the main kernel turns a code into the value the scale multiplies (a template argument).
enum class GemvDecode : int {
  integer,     // the 2^23 mantissa trick: q = code − offset
  table,       // float codes: the block's shared-memory copy of their 2^Bits values
  fp8_e4m3fn,  // 8-bit float codes converted by the hardware, two an instruction (cvt e4m3x2 → f16x2, sm_89+)
  fp8_e5m2,    // e5m2 is the upper byte of a half: one byte permute makes two halves
};

struct GemvParams {
  const std::uint32_t* codes;         // [N, K/32, Bits]
  const std::uint32_t* group_params;  // [N, G] (scale, zero) pairs of T
  const void* x;                      // [M, K] T
  const void* bias;                   // [N] T or null (only read when writing y directly)
  void* y;                            // [M, N] T, written when partial is null
  float* partial;                     // [splits, M, N] fp32 or null
  int tokens, out_features, in_features;
  int chunks_per_row, chunks_per_group, groups_per_row, chunks_per_split;
  float code_minus;                   // 2^23 − code offset
  const float* code_values;           // GemvDecode::table: [2^Bits] decoded values (group zero 0)
  // The SVD branch's up-projection, added here when the kernel writes y (one split): low_rank [M, rank]
  // from the down-projection pre-pass this grid is launched behind (programmatic dependent launch on
  // sm_90), svd_up [N, rank] T; low_rank null otherwise.
  const float* low_rank;
  const void* svd_up;
  int rank;
};

// Code j (0..31) of a run of 32 codes stored in Bits little-endian words; j is a compile-time
// constant after unrolling, so this is one or two shifts and a mask.
template <int Bits>
__device__ __forceinline__ std::uint32_t extract_code(const std::uint32_t (&words)[Bits], int j) {
  const int bit = j * Bits;
  const int word = bit >> 5, shift = bit & 31;
  std::uint32_t code = words[word] >> shift;
  if (shift + Bits > 32) code |= words[word + 1] << (32 - shift);
  return code & ((1u << Bits) - 1u);
}

template <int Bits>
__device__ __forceinline__ void load_chunk(const std::uint32_t* source, std::uint32_t (&words)[Bits]) {
  // Streaming loads (evict-first): each weight byte is read exactly once.
  if constexpr (Bits % 4 == 0) {
    for (int i = 0; i < Bits / 4; ++i) {
      const uint4 v = __ldcs(reinterpret_cast<const uint4*>(source) + i);
      words[4 * i] = v.x, words[4 * i + 1] = v.y, words[4 * i + 2] = v.z, words[4 * i + 3] = v.w;
    }
  } else if constexpr (Bits % 2 == 0) {
    for (int i = 0; i < Bits / 2; ++i) {
      const uint2 v = __ldcs(reinterpret_cast<const uint2*>(source) + i);
      words[2 * i] = v.x, words[2 * i + 1] = v.y;
    }
  } else {
    for (int i = 0; i < Bits; ++i) words[i] = __ldcs(source + i);
  }
}

// Two fp8 codes (the low 16 bits of `pair`) as floats, exactly their format's values (NaN included).
template <GemvDecode Decode>
__device__ __forceinline__ float2 fp8_pair_to_float2(std::uint32_t pair) {
  __half2_raw halves;
  if constexpr (Decode == GemvDecode::fp8_e5m2) {
    const std::uint32_t bits = __byte_perm(pair, 0u, 0x1404u);  // byte 0 → bits 8..15, byte 1 → bits 24..31
    halves.x = static_cast<unsigned short>(bits & 0xFFFFu);
    halves.y = static_cast<unsigned short>(bits >> 16);
  } else {
    halves = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(pair & 0xFFFFu), __NV_E4M3);
  }
  return __half22float2(__half2(halves));
}

// The values q of codes 8·sub .. 8·sub + 7 of a run of 32 (table: the block's copy of the code values).
template <int Bits, GemvDecode Decode>
__device__ __forceinline__ void decode_eight(const std::uint32_t (&words)[Bits], int sub, const float* table,
                                             float code_minus, float (&q)[8]) {
  if constexpr (Decode == GemvDecode::fp8_e4m3fn || Decode == GemvDecode::fp8_e5m2) {
    static_assert(Bits == 8, "fp8 codes are 8 bits wide");
#pragma unroll
    for (int h = 0; h < 4; ++h) {  // the 4 byte pairs of words 2·sub and 2·sub + 1
      const float2 v = fp8_pair_to_float2<Decode>(words[2 * sub + h / 2] >> (16 * (h % 2)));
      q[2 * h] = v.x, q[2 * h + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const std::uint32_t code = extract_code<Bits>(words, sub * 8 + j);
      if constexpr (Decode == GemvDecode::table)
        q[j] = table[code];
      else
        q[j] = code_to_float(code, code_minus);
    }
  }
}

// One warp computes Rows output features for Tokens tokens over one K slice: lanes take 32-code
// chunks round-robin, so a warp reads 32·Bits·4 contiguous bytes per row and iteration. GemvDecode::table:
// each code read through the block's copy of the values (2^Bits floats in shared memory: up to 5 bits one
// value a bank, so the lanes never conflict).
template <int Bits, class T, int Tokens, int Rows, GemvDecode Decode = GemvDecode::integer>
__global__ void __launch_bounds__(gemv_warps * 32) gemv_kernel(const GemvParams p) {
  constexpr bool lookup = Decode == GemvDecode::table;
  __shared__ float code_values[lookup ? (1 << Bits) : 1];
  if constexpr (lookup) {
    for (int i = threadIdx.x; i < (1 << Bits); i += blockDim.x) code_values[i] = __ldg(p.code_values + i);
    __syncthreads();
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int first_row = (blockIdx.x * gemv_warps + warp) * Rows;
  if (first_row >= p.out_features) return;  // no block-wide barrier below
  const int first_token = blockIdx.z * Tokens;
  const int chunk_begin = blockIdx.y * p.chunks_per_split;
  const int chunk_end = min(chunk_begin + p.chunks_per_split, p.chunks_per_row);
  const T* x = static_cast<const T*>(p.x);

  float acc[Tokens][Rows];
#pragma unroll
  for (int t = 0; t < Tokens; ++t)
#pragma unroll
    for (int r = 0; r < Rows; ++r) acc[t][r] = 0.0f;

  for (int chunk = chunk_begin + lane; chunk < chunk_end; chunk += 32) {
    std::uint32_t words[Rows][Bits];
    float scale[Rows], zero[Rows];
    const int group = chunk / p.chunks_per_group;
#pragma unroll
    for (int r = 0; r < Rows; ++r) {
      const int row = min(first_row + r, p.out_features - 1);  // past-the-end rows compute, never store
      load_chunk<Bits>(p.codes + (static_cast<std::size_t>(row) * p.chunks_per_row + chunk) * Bits, words[r]);
      const float2 params =
          pair_to_float2<T>(__ldg(p.group_params + static_cast<std::size_t>(row) * p.groups_per_row + group));
      scale[r] = params.x;
      zero[r] = params.y;
    }
#pragma unroll
    for (int sub = 0; sub < 4; ++sub) {
      float xs[Tokens][8];
#pragma unroll
      for (int t = 0; t < Tokens; ++t) {
        const int token = first_token + t;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (token < p.tokens)
          v = __ldg(reinterpret_cast<const uint4*>(x + static_cast<std::size_t>(token) * p.in_features + chunk * 32 +
                                                   sub * 8));
        const float2 a = pair_to_float2<T>(v.x), b = pair_to_float2<T>(v.y), c = pair_to_float2<T>(v.z),
                     d = pair_to_float2<T>(v.w);
        xs[t][0] = a.x, xs[t][1] = a.y, xs[t][2] = b.x, xs[t][3] = b.y;
        xs[t][4] = c.x, xs[t][5] = c.y, xs[t][6] = d.x, xs[t][7] = d.y;
      }
#pragma unroll
      for (int r = 0; r < Rows; ++r) {
        float q[8];
        decode_eight<Bits, Decode>(words[r], sub, code_values, p.code_minus, q);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const float w = fmaf(q[j], scale[r], zero[r]);
#pragma unroll
          for (int t = 0; t < Tokens; ++t) acc[t][r] = fmaf(xs[t][j], w, acc[t][r]);
        }
      }
    }
  }

#pragma unroll
  for (int t = 0; t < Tokens; ++t)
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) acc[t][r] += __shfl_xor_sync(0xFFFFFFFFu, acc[t][r], offset);

  if (p.low_rank != nullptr) {  // Σ_j low_rank[m, j] · svd_up[n, j], lanes over j
    wait_for_prior_grid();      // the pre-pass has finished writing low_rank
    const T* up = static_cast<const T*>(p.svd_up);
#pragma unroll
    for (int t = 0; t < Tokens; ++t)
#pragma unroll
      for (int r = 0; r < Rows; ++r) {
        const int token = first_token + t, row = min(first_row + r, p.out_features - 1);
        float sum = 0.0f;
        if (token < p.tokens)
          for (int j = lane; j < p.rank; j += 32)
            sum = fmaf(p.low_rank[static_cast<std::size_t>(token) * p.rank + j],
                       to_float(up[static_cast<std::size_t>(row) * p.rank + j]), sum);
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
        acc[t][r] += sum;
      }
  }

  if (lane != 0) return;
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int t = 0; t < Tokens; ++t)
#pragma unroll
    for (int r = 0; r < Rows; ++r) {
      const int token = first_token + t, row = first_row + r;
      if (token >= p.tokens || row >= p.out_features) continue;
      if (p.partial != nullptr) {
        p.partial[(static_cast<std::size_t>(blockIdx.y) * p.tokens + token) * p.out_features + row] = acc[t][r];
      } else {
        const float b = bias != nullptr ? to_float(bias[row]) : 0.0f;
        y[static_cast<std::size_t>(token) * p.out_features + row] = from_float<T>(acc[t][r] + b);
      }
    }
}

struct GemvLowRankParams {
  const void* x;          // [M, K] T
  const void* svd_down;   // [r, K] T
  const void* svd_up;     // [N, r] T
  const void* bias;       // [N] T or null
  const float* partial;   // [splits, M, N]
  float* low_rank;        // [M, r] = x · svd_downᵀ
  void* y;                // [M, N] T
  int tokens, out_features, in_features, rank, splits;
};

// low_rank[m, r] = Σ_k x[m, k] · svd_down[r, k]: one block per (r, 8 tokens).
template <class T>
__global__ void __launch_bounds__(256) gemv_svd_down_kernel(const GemvLowRankParams p) {
  allow_dependent_launch();  // the main kernel streams its codes meanwhile, waits before reading low_rank
  constexpr int tokens = gemv_epilogue_tokens;
  const int r = blockIdx.x, first_token = blockIdx.y * tokens;
  const T* x = static_cast<const T*>(p.x);
  const T* down = static_cast<const T*>(p.svd_down) + static_cast<std::size_t>(r) * p.in_features;
  float acc[tokens] = {};
  for (int k = threadIdx.x * 8; k < p.in_features; k += blockDim.x * 8) {
    const uint4 d = __ldg(reinterpret_cast<const uint4*>(down + k));
    const float2 d0 = pair_to_float2<T>(d.x), d1 = pair_to_float2<T>(d.y), d2 = pair_to_float2<T>(d.z),
                 d3 = pair_to_float2<T>(d.w);
#pragma unroll
    for (int t = 0; t < tokens; ++t) {
      if (first_token + t >= p.tokens) break;
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(x + static_cast<std::size_t>(first_token + t) * p.in_features + k));
      const float2 a = pair_to_float2<T>(v.x), b = pair_to_float2<T>(v.y), c = pair_to_float2<T>(v.z),
                   e = pair_to_float2<T>(v.w);
      acc[t] += a.x * d0.x + a.y * d0.y + b.x * d1.x + b.y * d1.y + c.x * d2.x + c.y * d2.y + e.x * d3.x + e.y * d3.y;
    }
  }
  __shared__ float partial_sums[8][tokens];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int t = 0; t < tokens; ++t) {
    float v = acc[t];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
    if (lane == 0) partial_sums[warp][t] = v;
  }
  __syncthreads();
  if (threadIdx.x < tokens && first_token + threadIdx.x < p.tokens) {
    float sum = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) sum += partial_sums[w][threadIdx.x];
    p.low_rank[static_cast<std::size_t>(first_token + threadIdx.x) * p.rank + r] = sum;
  }
}

// y[m, n] = Σ_splits partial + bias[n] + Σ_r low_rank[m, r] · svd_up[n, r]: one thread per n, 8 tokens.
template <class T>
__global__ void __launch_bounds__(128) gemv_epilogue_kernel(const GemvLowRankParams p) {
  constexpr int tokens = gemv_epilogue_tokens;
  __shared__ float low_rank[tokens][gemv_max_rank];
  const int first_token = blockIdx.y * tokens;
  for (int i = threadIdx.x; i < tokens * p.rank; i += blockDim.x) {
    const int t = i / p.rank, r = i - t * p.rank;
    low_rank[t][r] = first_token + t < p.tokens ? p.low_rank[static_cast<std::size_t>(first_token + t) * p.rank + r] : 0.0f;
  }
  __syncthreads();
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= p.out_features) return;
  const float b = p.bias != nullptr ? to_float(static_cast<const T*>(p.bias)[n]) : 0.0f;
  float acc[tokens];
#pragma unroll
  for (int t = 0; t < tokens; ++t) {
    acc[t] = b;
    if (first_token + t >= p.tokens) continue;
    for (int s = 0; s < p.splits; ++s)
      acc[t] += p.partial[(static_cast<std::size_t>(s) * p.tokens + first_token + t) * p.out_features + n];
  }
  const T* up = static_cast<const T*>(p.svd_up) + static_cast<std::size_t>(n) * p.rank;
  for (int r = 0; r < p.rank; ++r) {
    const float u = to_float(up[r]);
#pragma unroll
    for (int t = 0; t < tokens; ++t) acc[t] = fmaf(low_rank[t][r], u, acc[t]);
  }
  T* y = static_cast<T*>(p.y);
#pragma unroll
  for (int t = 0; t < tokens; ++t)
    if (first_token + t < p.tokens) y[static_cast<std::size_t>(first_token + t) * p.out_features + n] = from_float<T>(acc[t]);
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
