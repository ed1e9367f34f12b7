#pragma once
// The activation quantization of gemm_w8a8, per token, in two forms sharing quantize_row (one warp
// per row, the same bits either way):
// - fused, done on demand by the GEMM's own blocks, once per row. A block needing rows row0..row0+BM
//   of x first helps quantize them: each warp claims a row (atomic counter of the row tile), reads it
//   (bf16/fp16, 16-byte loads), reduces its absmax, writes the row's 8-bit codes and scale to the
//   workspace and counts the row as done. Then the block waits until every row of its tile is done,
//   and its main loop reads codes like any 8-bit GEMM. Every block that needs a row tile works on it,
//   so the N/BN blocks of one row tile share its quantization; a block only ever waits for rows that
//   running blocks claimed, so nothing can deadlock whatever the launch order. The codes stay in L2
//   between the blocks of a row tile; x is read twice (absmax, then codes) by exactly one warp per row.
// - standalone (quantize_w8a8_rows_kernel, behind quantize_w8a8_activations): one launch, one warp per
//   row, no counters; the GEMMs then run with codes_ready and skip the prologue. Memory-bound: reads x
//   (the second pass mostly from L1/L2), writes M·K codes and M scales.
//
// Numerics as activation_quant.hpp: amax propagates NaN (a row holding NaN gets a NaN scale and all
// codes 0), s = amax / range in fp32 or rounded to T, codes per quantize_value (w8a8_fragments.cuh).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/tma_pipeline.cuh"
#include "sdnq/cuda/detail/w8a8_fragments.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

struct W8A8Params {
  const void* x;          // [M, K] T activations (null when codes_ready)
  const void* w;          // [N, K] int8 or e4m3 codes (K contiguous)
  const float* w_scale;   // [N]
  const void* bias;       // [N] T, or null
  void* y;                // [M, N] T
  std::uint8_t* x_codes;  // [M, K] 8-bit codes: the workspace, or the caller's codes (only read) when codes_ready
  float* x_scale;         // [M]: likewise
  int* row_claims;        // workspace [row tiles]: rows claimed (zeroed before the launch; null when codes_ready)
  int* rows_done;         // workspace [row tiles]: rows quantized (zeroed before the launch; null when codes_ready)
  int m, n, k;
  bool scale_in_activation_dtype;  // quantization arithmetic rounded to T (dequantize_fp32 = false)
  // x_codes / x_scale already hold x quantized (quantize_w8a8_activations, then the pre-quantized
  // gemm_w8a8): every kernel skips the prologue and the counters and only reads the codes and scales,
  // which a launch earlier in the stream wrote.
  bool codes_ready = false;
  // e4m3 on the TMA kernel: K tiles (128 inputs each) summed on the tensor cores between two promotions
  // into the fp32 totals, 1 ≤ e4m3_promotion_tiles ≤ the ring's stages (set by the launch:
  // gemm_w8a8.cuh's e4m3_promotion_tiles).
  int e4m3_promotion_tiles = 1;
  // TMA kernel without an SVD branch, codes_ready only: launched in clusters of two blocks that walk
  // vertically adjacent output tiles (rows 2i and 2i + 1 of the same columns) together, each loading
  // half of the shared weight tile into both (gemm_w8a8.cuh's w8a8_pairs).
  bool paired = false;
};

__device__ __forceinline__ int load_acquire(const int* address) {
  int value;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(value) : "l"(address) : "memory");
  return value;
}

__device__ __forceinline__ void add_release(int* address, int value) {
  asm volatile("red.release.gpu.global.add.s32 [%0], %1;\n" ::"l"(address), "r"(value) : "memory");
}

// Eight T values of one 16-byte word, widened exactly.
template <class T>
__device__ __forceinline__ void widen_eight(const uint4& word, float (&values)[8]) {
  const unsigned int parts[4] = {word.x, word.y, word.z, word.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 pair = pair_to_float2<T>(parts[i]);
    values[2 * i] = pair.x, values[2 * i + 1] = pair.y;
  }
}

// Folds the eight values of one word into the running absmax and NaN flag of a row.
template <class T>
__device__ __forceinline__ void accumulate_absmax(const uint4& word, float& amax, bool& has_nan) {
  float values[8];
  widen_eight<T>(word, values);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    has_nan |= values[i] != values[i];
    amax = fmaxf(amax, fabsf(values[i]));
  }
}

// The eight 8-bit codes of one word of x at the row's scale, packed as they are stored.
template <class T, W8A8Operand Operand>
__device__ __forceinline__ uint2 quantize_eight(const uint4& word, float scale, bool in_activation_dtype) {
  float values[8];
  widen_eight<T>(word, values);
  std::uint32_t packed[2] = {0u, 0u};
#pragma unroll
  for (int i = 0; i < 8; ++i)
    packed[i / 4] |= quantize_value<T, Operand>(values[i], scale, in_activation_dtype) << (8 * (i % 4));
  return make_uint2(packed[0], packed[1]);
}

// The scale of one row of x (K % 8 == 0, `source` its 16-byte words), reduced by one warp: amax / range
// in fp32 or rounded to T, NaN when the row holds NaN. Each lane keeps `in_flight` independent 16-byte
// loads outstanding: one warp per row is a latency chain otherwise (fewer in warps whose register
// budget is small). Every lane returns the scale.
template <class T, W8A8Operand Operand, int in_flight = 8>
__device__ __forceinline__ float row_scale(const uint4* source, int words, int lane, bool in_activation_dtype) {
  float amax = 0.0f;
  bool has_nan = false;
  for (int base = lane; base < words; base += 32 * in_flight) {
    uint4 chunk[in_flight];
#pragma unroll
    for (int u = 0; u < in_flight; ++u)  // zeros past the row change neither amax nor has_nan
      chunk[u] = base + 32 * u < words ? __ldg(source + base + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
    for (int u = 0; u < in_flight; ++u) accumulate_absmax<T>(chunk[u], amax, has_nan);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
  if (__any_sync(0xFFFFFFFFu, has_nan)) amax = __int_as_float(0x7FFFFFFF);  // torch.amax propagates NaN
  return round_to_compute<T>(__fdiv_rn(amax, code_range<Operand>), in_activation_dtype);
}

// One warp quantizes row `row` of x (K % 8 == 0) into x_codes / x_scale: row_scale, then a second read
// of the row for the codes.
template <class T, W8A8Operand Operand, int in_flight = 8>
__device__ __forceinline__ void quantize_row(const W8A8Params& p, int row, int lane) {
  const uint4* source =
      reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + static_cast<std::size_t>(row) * p.k);
  const int words = p.k / 8;
  const bool in_t = p.scale_in_activation_dtype;
  const float scale = row_scale<T, Operand, in_flight>(source, words, lane, in_t);

  uint2* codes = reinterpret_cast<uint2*>(p.x_codes + static_cast<std::size_t>(row) * p.k);
  for (int base = lane; base < words; base += 32 * in_flight) {
    uint4 chunk[in_flight];
#pragma unroll
    for (int u = 0; u < in_flight; ++u)
      chunk[u] = base + 32 * u < words ? __ldg(source + base + 32 * u) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
    for (int u = 0; u < in_flight; ++u) {
      if (base + 32 * u >= words) break;
      codes[base + 32 * u] = quantize_eight<T, Operand>(chunk[u], scale, in_t);
    }
  }
  if (lane == 0) p.x_scale[row] = scale;
}

// The calling warp claims unclaimed rows of the row tile (row0, valid_rows rows) and quantizes them
// until none is left; it never waits for rows other warps claimed.
template <class T, W8A8Operand Operand, int in_flight = 8>
__device__ __forceinline__ void quantize_claimed_rows(const W8A8Params& p, int row_tile, int row0, int valid_rows) {
  const int lane = threadIdx.x & 31;
  int* claims = p.row_claims + row_tile;
  int* done = p.rows_done + row_tile;
  while (true) {
    int row = 0;
    if (lane == 0) row = atomicAdd(claims, 1);
    row = __shfl_sync(0xFFFFFFFFu, row, 0);
    if (row >= valid_rows) break;
    quantize_row<T, Operand, in_flight>(p, row0 + row, lane);
    __threadfence();             // this lane's codes and scale, before the row is counted
    fence_proxy_async_global();  // ... and before TMA loads of other blocks read them (sm_90+)
    __syncwarp();
    if (lane == 0) add_release(done, 1);
  }
}

// One thread waits until every row of the row tile is quantized (acquiring the codes and scales).
__device__ __forceinline__ void wait_for_rows(const W8A8Params& p, int row_tile, int valid_rows) {
  while (load_acquire(p.rows_done + row_tile) < valid_rows) __nanosleep(100);
}

// Makes rows row0 .. row0 + valid_rows − 1 quantized before the block reads them (see the file comment).
// With codes_ready (uniform over the launch) there is nothing to quantize or wait for: only the
// block-wide barrier remains, which callers may rely on.
template <class T, W8A8Operand Operand>
__device__ __forceinline__ void quantize_row_tile(const W8A8Params& p, int row_tile, int row0, int valid_rows) {
  if (!p.codes_ready) {
    quantize_claimed_rows<T, Operand>(p, row_tile, row0, valid_rows);
    if (threadIdx.x == 0) wait_for_rows(p, row_tile, valid_rows);
  }
  __syncthreads();
}

inline constexpr int w8a8_quantize_threads = 128;  // 4 rows per block: many small blocks balance the tail

// The standalone quantization of rows longer than w8a8_resident_max_k (shorter ones: the resident kernel
// below): warp w of block b quantizes row 4b + w of x into x_codes / x_scale (the same quantize_row as
// the fused prologue, hence the same bits). It reads each row twice; measured on the H100 before the
// resident kernel took the shorter rows: M = 4096, K = 3072 bf16 in 23.5 µs (1.6 TB/s), K = 15360 in 120.6 µs.
template <class T, W8A8Operand Operand>
__global__ void __launch_bounds__(w8a8_quantize_threads) quantize_w8a8_rows_kernel(const W8A8Params p) {
  const int row = static_cast<int>(blockIdx.x) * (w8a8_quantize_threads / 32) + static_cast<int>(threadIdx.x >> 5);
  if (row >= p.m) return;  // whole warps leave together: quantize_row's shuffles see full warps
  quantize_row<T, Operand>(p, row, static_cast<int>(threadIdx.x & 31));
}

// The standalone quantization for rows of up to w8a8_resident_max_k values: one block of
// w8a8_resident_threads per row holds the row in registers (Words 16-byte words per thread), so x is
// read from memory once (quantize_row reads it twice: for the absmax, then for the codes). Same
// arithmetic as quantize_row, hence the same bits.
inline constexpr int w8a8_resident_threads = 128;
inline constexpr int w8a8_resident_max_words = 16;  // per thread: K ≤ 128 · 16 · 8 = 16384
inline constexpr int w8a8_resident_max_k = w8a8_resident_threads * w8a8_resident_max_words * 8;

template <class T, W8A8Operand Operand, int Words>
__global__ void __launch_bounds__(w8a8_resident_threads) quantize_w8a8_resident_rows_kernel(const W8A8Params p) {
  const int row = static_cast<int>(blockIdx.x), thread = static_cast<int>(threadIdx.x);
  const int words = p.k / 8;
  const uint4* source =
      reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + static_cast<std::size_t>(row) * p.k);
  uint4 chunk[Words];
  float amax = 0.0f;
  bool has_nan = false;
#pragma unroll
  for (int u = 0; u < Words; ++u) {  // zeros past the row change neither amax nor has_nan
    const int word = thread + u * w8a8_resident_threads;
    chunk[u] = word < words ? __ldg(source + word) : make_uint4(0u, 0u, 0u, 0u);
  }
#pragma unroll
  for (int u = 0; u < Words; ++u) accumulate_absmax<T>(chunk[u], amax, has_nan);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
  const bool warp_nan = __any_sync(0xFFFFFFFFu, has_nan);
  __shared__ float warp_amax[w8a8_resident_threads / 32];
  __shared__ int warp_has_nan[w8a8_resident_threads / 32];
  if ((thread & 31) == 0) warp_amax[thread >> 5] = amax, warp_has_nan[thread >> 5] = warp_nan ? 1 : 0;
  __syncthreads();
  amax = warp_amax[0];
  bool row_nan = warp_has_nan[0] != 0;
#pragma unroll
  for (int w = 1; w < w8a8_resident_threads / 32; ++w) amax = fmaxf(amax, warp_amax[w]), row_nan |= warp_has_nan[w] != 0;
  if (row_nan) amax = __int_as_float(0x7FFFFFFF);  // torch.amax propagates NaN
  const bool in_t = p.scale_in_activation_dtype;
  const float scale = round_to_compute<T>(__fdiv_rn(amax, code_range<Operand>), in_t);

  uint2* codes = reinterpret_cast<uint2*>(p.x_codes + static_cast<std::size_t>(row) * p.k);
#pragma unroll
  for (int u = 0; u < Words; ++u) {
    const int word = thread + u * w8a8_resident_threads;
    if (word >= words) break;
    codes[word] = quantize_eight<T, Operand>(chunk[u], scale, in_t);
  }
  if (thread == 0) p.x_scale[row] = scale;
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
