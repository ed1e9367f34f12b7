#pragma once
// The CUDA-core weight-streaming kernel behind w8a8_dequantized_linear (linear.cuh) for more than 16
// tokens and shapes the tensor-core streaming kernel does not take (N % 32 != 0 or K % 64 != 0): the
// dequantized path of an 8-bit quantized-matmul Linear (what the reference runs below 32 tokens), read
// straight from the gemm_w8a8 weights without materializing the dense weight:
//   w[n, k] = round_T(decode(code[n, k]) · scale[n])     (the same values the dequantize kernel writes)
//   y[m, n] = round_T(Σ_k float(x[m, k]) · float(w[n, k]) + bias[n])     fp32 sums, rounded once
// decode: int8 codes exactly; float8_e4m3fn codes by cvt.rn.f16x2.e4m3x2 (exact for every code, NaN
// codes give NaN: the same 256 values as the checkpoint's e4m3 table, which the kernel does not
// read). w equals fp32 q · s rounded to T, what dispatch_dequantize_vector writes, bit for bit (see
// decode_pair).
//
// Tiling. A block of 4 warps owns 4·Rows output features and all of K; its warps split K (split-K
// inside the block, summed in shared memory in a fixed order: deterministic, no workspace, no
// atomics). In a warp, 8 lanes read one feature's row (8 × 16-byte loads = one 128-byte line per row
// and instruction), the 4 lane groups 4 different features, and a lane handles Rows features
// (Rows = 1 up to 4 tokens, 2 from 8 tokens: each x element loaded and widened once for two rows).
// A warp step covers 8·U consecutive 16-byte chunks of each of its rows (U = 3 with one row per lane,
// 2 with two: three or four 16-byte code loads per lane), steps go round-robin to the block's 4 warps,
// and the next step's codes are loaded before the current step is computed (up to six or eight
// 16-byte loads in flight per lane).
// Each decoded weight element is used for all the tokens of the tile (Tokens ∈ {1, 2, 4, 8, 16, 32},
// the smallest ≥ M, with a warp-uniform guard per token); M > 32 runs slabs of 32 tokens (grid.y),
// each slab streaming the codes again. x is read through L1 (__ldg, 32 bytes per token and chunk;
// the lanes of the 4 groups share addresses); codes are streamed with evict-first loads.
// Grid: ceil(N / (4·Rows)) blocks: 768 blocks of 4 warps at N = 3072, M ≤ 4 (5.8 per SM on 132 SMs).
//
// Bytes: N·K codes + 4·N scale + M·K·2 x + M·N·2 y; FLOPs 2·M·N·K. Memory-bound for M ≤ 4 (about
// 5 instructions per weight element besides the M FMAs); from M ≈ 8 the fp32 FMAs (M per element)
// dominate (bench/cuda/bench_linear.cu, "w8a8_dequantized_cuda_cores_" rows).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

inline constexpr int w8a8_gemv_warps = 4;           // warps per block; they split K
inline constexpr int w8a8_gemv_lanes_per_row = 8;   // lanes reading one row: 8 × 16 B = one 128-byte line
inline constexpr int w8a8_gemv_row_groups = 32 / w8a8_gemv_lanes_per_row;
inline constexpr int w8a8_gemv_chunk_codes = 16;    // codes per 16-byte load
inline constexpr int w8a8_gemv_max_tokens = 32;     // largest token tile; more tokens run in slabs

struct W8A8GemvParams {
  const void* codes;   // [N, K] int8 or float8_e4m3fn bytes, rows 16-byte aligned (K % 16 == 0)
  const float* scale;  // [N] F32, already rounded to T
  const void* x;       // [M, K] T, 16-byte aligned
  const void* bias;    // [N] T or null
  void* y;             // [M, N] T
  std::int64_t tokens, out_features, in_features;
};

// Features per lane: two from 8 tokens on (x loaded and widened once for both), else one (twice
// the blocks for the memory-bound small tiles).
template <int Tokens>
inline constexpr int w8a8_gemv_rows = Tokens >= 8 ? 2 : 1;

// 16-byte chunks per row, lane and step: three with one row per lane (K = 3072, 15360 and 12288 then
// give a step count divisible by the 4 warps: 8, 40, 32 steps), two with two rows (12 steps at 3072).
// Blocks per SM the register allocation must allow: 6 (24 warps, at most 80 registers) for the
// memory-bound small tiles, whose loads in flight scale with the resident warps.
template <int Tokens>
inline constexpr int w8a8_gemv_min_blocks = Tokens <= 4 ? 6 : 1;

template <int Tokens>
inline constexpr int w8a8_gemv_chunks_per_step = w8a8_gemv_rows<Tokens> == 1 ? 3 : 2;

// round_T(a · b) for two packed T pairs: the exact product rounded once to nearest even.
template <class T>
__device__ __forceinline__ std::uint32_t t2_mul(std::uint32_t a, std::uint32_t b) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 r = __hmul2_rn(*reinterpret_cast<const __nv_bfloat162*>(&a),
                                        *reinterpret_cast<const __nv_bfloat162*>(&b));
    return *reinterpret_cast<const std::uint32_t*>(&r);
  } else {
    const __half2 r = __hmul2_rn(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
    return *reinterpret_cast<const std::uint32_t*>(&r);
  }
}

// The weights of codes 2·Pair and 2·Pair + 1 of `word` (four codes, little-endian), as a packed T
// pair round_T(q · s). The code values q are formed exactly in T:
//   int8 into bf16: bf16 128 + (c & 0x7F) (exponent 2^7, the low seven bits as mantissa) minus 128 or
//   256 (bf16 0x4300 | (c & 0x80)); int8 into fp16: c ^ 0x80 in the low byte of fp16 1024 gives
//   1024 + c + 128, minus 1152; e4m3: the hardware conversion to an fp16 pair (exact for every code,
//   NaN codes give NaN; a software conversion below sm_89), exact in bf16 too.
// Then, where the scale is a T value (`Packed`: what repack_for_w8a8 stores by default), one packed
// multiply rounded to nearest even; otherwise (and for e4m3 into bf16) the fp32 product rounded to T.
// Either way the result equals fp32 q · s rounded to T, what dispatch_dequantize_vector writes.
template <class T, bool E4m3, bool Packed, int Pair>
__device__ __forceinline__ std::uint32_t decode_pair(std::uint32_t word, std::uint32_t scale2, float scale) {
  constexpr std::uint32_t selector = Pair == 0 ? 0x5140u : 0x5342u;  // bytes (2·Pair, k, 2·Pair + 1, k)
  std::uint32_t q;  // a packed pair of exact values: fp16 for e4m3, else T
  if constexpr (E4m3) {
    const __half2_raw raw =
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> (16 * Pair)), __NV_E4M3);
    q = static_cast<std::uint32_t>(raw.x) | (static_cast<std::uint32_t>(raw.y) << 16);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const std::uint32_t spread = __byte_perm(word, 0x4343u, selector);  // 0x43cc per half
    const std::uint32_t magnitude = spread & 0xFF7FFF7Fu, offset = spread & 0xFF80FF80u;
    const __nv_bfloat162 value = __hsub2_rn(*reinterpret_cast<const __nv_bfloat162*>(&magnitude),
                                            *reinterpret_cast<const __nv_bfloat162*>(&offset));
    q = *reinterpret_cast<const std::uint32_t*>(&value);
  } else {
    const std::uint32_t spread = __byte_perm(word ^ 0x80808080u, 0x6464u, selector);  // 0x64uu per half
    const __half2 value = __hsub2_rn(*reinterpret_cast<const __half2*>(&spread), __float2half2_rn(1152.0f));
    q = *reinterpret_cast<const std::uint32_t*>(&value);
  }
  using Q = std::conditional_t<E4m3, __half, T>;
  if constexpr (Packed && std::is_same_v<Q, T>) {
    return t2_mul<T>(q, scale2);
  } else {
    const float2 value = pair_to_float2<Q>(q);
    return pack_pair<T>(__fmul_rn(value.x, scale), __fmul_rn(value.y, scale));
  }
}

// The 16 weights of one 16-byte chunk of codes, widened to fp32.
template <class T, bool E4m3, bool Packed>
__device__ __forceinline__ void decode_chunk(const uint4& codes, std::uint32_t scale2, float scale,
                                             float (&w)[w8a8_gemv_chunk_codes]) {
  const std::uint32_t words[4] = {codes.x, codes.y, codes.z, codes.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 low = pair_to_float2<T>(decode_pair<T, E4m3, Packed, 0>(words[i], scale2, scale));
    const float2 high = pair_to_float2<T>(decode_pair<T, E4m3, Packed, 1>(words[i], scale2, scale));
    w[4 * i] = low.x, w[4 * i + 1] = low.y, w[4 * i + 2] = high.x, w[4 * i + 3] = high.y;
  }
}

template <class T, bool E4m3, int Tokens>
__global__ void __launch_bounds__(w8a8_gemv_warps * 32, w8a8_gemv_min_blocks<Tokens>)
    w8a8_gemv_kernel(const W8A8GemvParams p) {
  constexpr int Rows = w8a8_gemv_rows<Tokens>;
  constexpr int U = w8a8_gemv_chunks_per_step<Tokens>;
  constexpr int L = w8a8_gemv_lanes_per_row, G = w8a8_gemv_row_groups;
  constexpr int block_rows = G * Rows;
  __shared__ float partial[w8a8_gemv_warps][block_rows][Tokens];

  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int group = lane / L, part = lane % L;
  const std::int64_t chunks = p.in_features / w8a8_gemv_chunk_codes;  // per row
  const std::int64_t steps = (chunks + L * U - 1) / (L * U);
  const std::int64_t first_row = static_cast<std::int64_t>(blockIdx.x) * block_rows;
  const std::int64_t slabs = (p.tokens + Tokens - 1) / Tokens;

  // This lane's features: first_row + r·G + group. Past-the-end features read the last row and are
  // never stored (every warp must reach the block barrier).
  const uint4* code_rows[Rows];
  std::uint32_t scale2[Rows];
  float scale[Rows];
  bool packed[Rows];  // the scale is a T value: one packed multiply per pair
#pragma unroll
  for (int r = 0; r < Rows; ++r) {
    std::int64_t row = first_row + r * G + group;
    if (row >= p.out_features) row = p.out_features - 1;
    code_rows[r] = static_cast<const uint4*>(p.codes) + row * chunks;
    scale[r] = __ldg(p.scale + row);
    scale2[r] = pack_pair<T>(scale[r], scale[r]);
    packed[r] = to_float(from_float<T>(scale[r])) == scale[r];
  }

  for (std::int64_t slab = blockIdx.y; slab < slabs; slab += gridDim.y) {
    const std::int64_t first_token = slab * Tokens;
    const int count = static_cast<int>(p.tokens - first_token < Tokens ? p.tokens - first_token : Tokens);
    const T* x = static_cast<const T*>(p.x) + first_token * p.in_features;

    float acc[Rows][Tokens];
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
      for (int t = 0; t < Tokens; ++t) acc[r][t] = 0.0f;

    // Chunk u of this lane in `step`: 8 lanes of a group read 8 consecutive chunks of their row.
    const auto chunk_of = [&](std::int64_t step, int u) { return (step * U + u) * L + part; };
    const auto load = [&](std::int64_t step, uint4 (&codes)[Rows][U]) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const std::int64_t chunk = chunk_of(step, u);
#pragma unroll
        for (int r = 0; r < Rows; ++r)
          codes[r][u] = chunk < chunks ? __ldcs(code_rows[r] + chunk) : make_uint4(0, 0, 0, 0);
      }
    };

    uint4 current[Rows][U] = {}, next[Rows][U] = {};
    std::int64_t step = warp;
    if (step < steps) load(step, current);
    for (; step < steps; step += w8a8_gemv_warps) {
      if (step + w8a8_gemv_warps < steps) load(step + w8a8_gemv_warps, next);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const std::int64_t chunk = chunk_of(step, u);
        if (chunk >= chunks) continue;
        float w[Rows][w8a8_gemv_chunk_codes];
#pragma unroll
        for (int r = 0; r < Rows; ++r) {
          if (packed[r])
            decode_chunk<T, E4m3, true>(current[r][u], scale2[r], scale[r], w[r]);
          else
            decode_chunk<T, E4m3, false>(current[r][u], scale2[r], scale[r], w[r]);
        }
#pragma unroll
        for (int t = 0; t < Tokens; ++t) {
          if (t >= count) break;  // warp-uniform
          const uint4* source =
              reinterpret_cast<const uint4*>(x + t * p.in_features + chunk * w8a8_gemv_chunk_codes);
          const uint4 a = __ldg(source), b = __ldg(source + 1);
          const std::uint32_t pairs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            const float2 v = pair_to_float2<T>(pairs[j]);
#pragma unroll
            for (int r = 0; r < Rows; ++r) {
              acc[r][t] = fmaf(v.x, w[r][2 * j], acc[r][t]);
              acc[r][t] = fmaf(v.y, w[r][2 * j + 1], acc[r][t]);
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < Rows; ++r)
#pragma unroll
        for (int u = 0; u < U; ++u) current[r][u] = next[r][u];
    }

    // The 8 lanes of a row, then the 4 warps in order 0..3, then the bias.
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
      for (int t = 0; t < Tokens; ++t) {
        float v = acc[r][t];
#pragma unroll
        for (int offset = L / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
        if (part == 0) partial[warp][r * G + group][t] = v;
      }
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < block_rows * Tokens; i += static_cast<int>(blockDim.x)) {
      const int local = i % block_rows, t = i / block_rows;
      const std::int64_t row = first_row + local;
      if (t >= count || row >= p.out_features) continue;
      float sum = partial[0][local][t];
#pragma unroll
      for (int s = 1; s < w8a8_gemv_warps; ++s) sum += partial[s][local][t];
      if (p.bias != nullptr) sum += to_float(static_cast<const T*>(p.bias)[row]);
      static_cast<T*>(p.y)[(first_token + t) * p.out_features + row] = from_float<T>(sum);
    }
    __syncthreads();  // `partial` is rewritten by the next slab
  }
}

template <class T, bool E4m3, int Tokens>
void launch_w8a8_gemv_tile(const W8A8GemvParams& p, cudaStream_t stream) {
  constexpr std::int64_t block_rows = w8a8_gemv_row_groups * w8a8_gemv_rows<Tokens>;
  const std::int64_t blocks = (p.out_features + block_rows - 1) / block_rows;
  const std::int64_t slabs = (p.tokens + Tokens - 1) / Tokens;
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(slabs < 65535 ? slabs : 65535));
  w8a8_gemv_kernel<T, E4m3, Tokens><<<grid, w8a8_gemv_warps * 32, 0, stream>>>(p);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// y = x · dequant(W)ᵀ (+ bias) for any M ≥ 1, N ≥ 1 and K % 16 == 0 (N / 4 blocks must fit grid.x:
// N < 2^33); the caller checks shapes, dtypes and 16-byte alignment of codes and x.
template <class T, bool E4m3>
void launch_w8a8_gemv(const W8A8GemvParams& p, cudaStream_t stream) {
  if (p.tokens <= 0 || p.out_features <= 0) return;
  if (p.tokens <= 1) return launch_w8a8_gemv_tile<T, E4m3, 1>(p, stream);
  if (p.tokens <= 2) return launch_w8a8_gemv_tile<T, E4m3, 2>(p, stream);
  if (p.tokens <= 4) return launch_w8a8_gemv_tile<T, E4m3, 4>(p, stream);
  if (p.tokens <= 8) return launch_w8a8_gemv_tile<T, E4m3, 8>(p, stream);
  if (p.tokens <= 16) return launch_w8a8_gemv_tile<T, E4m3, 16>(p, stream);
  launch_w8a8_gemv_tile<T, E4m3, w8a8_gemv_max_tokens>(p, stream);
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
