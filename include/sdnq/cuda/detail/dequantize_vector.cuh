#pragma once
// The memory-speed dequantize kernel for the common byte-aligned widths (2, 4, 8 bits): codes read in
// wide vectors, 32 (2 and 4 bits) or 16 (8 bits) codes per thread, one scale/zero-point read per
// thread (all of a thread's codes sit in one row and one group), 16-byte stores of 8 outputs.
// The arithmetic is the reference loader's, element for element (dequantize.cuh): bit-exact.
//
// Codes stream: code i of the matrix (row-major [rows, K]) at bit i·bits of a little-endian byte
// stream. Both the checkpoint packing of widths 2/4/8 (§1.5) and the GEMV layout of repack.hpp are
// such a stream, so this kernel dequantizes either (the GEMV layout's 8-bit codes are offset binary:
// code_xor 0). Parameters: either two arrays (scale, zero point) of F32 or T, or the GEMV layout's
// interleaved (scale, zero) T pairs (param_stride 2).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

struct DequantizeVectorParams {
  const void* codes;              // the code stream of the first row (16-byte aligned; 8 for 2 bits)
  const void* scale;              // element of the first row's first group
  const void* zero_point;         // same, or null
  int param_stride;               // elements between consecutive parameters (2 for interleaved pairs)
  bool params_in_output_dtype;    // else F32
  bool round_params;              // F32 parameters rounded to the output dtype first
  const float* lookup_table;      // [2^bits] decoded float codes, or null
  void* out;                      // [rows, K] output dtype, 16-byte aligned
  std::int64_t rows, in_features;
  std::int64_t group_size;        // elements per group (K when row- or tensor-wise)
  std::int64_t param_row_stride;  // groups per row, 0 when tensor-wise
  std::uint32_t code_xor;         // 0x80 for native int8 (two's complement -> offset binary)
  float code_minus;               // 2^23 − code offset (code_to_float)
};

// Codes one thread dequantizes; K and the group size must be multiples of it.
template <int Bits>
inline constexpr int vector_codes = Bits == 8 ? 16 : 32;

template <int Bits>
struct CodeVector;  // the load of one thread's codes
template <>
struct CodeVector<2> {
  using type = uint2;
};
template <>
struct CodeVector<4> {
  using type = uint4;
};
template <>
struct CodeVector<8> {
  using type = uint4;
};

template <class T>
__device__ __forceinline__ float vector_param(const void* base, std::int64_t index, bool in_output_dtype, bool round) {
  if (in_output_dtype) return to_float(static_cast<const T*>(base)[index]);
  const float value = static_cast<const float*>(base)[index];
  return round ? to_float(from_float<T>(value)) : value;
}

// Two T values in one word, each rounded once from fp32 (cvt.rn.bf16x2.f32 / cvt.rn.f16x2.f32).
template <class T>
__device__ __forceinline__ std::uint32_t pack_pair(float low, float high) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    return *reinterpret_cast<const std::uint32_t*>(&pair);
  } else {
    const __half2 pair = __floats2half2_rn(low, high);
    return *reinterpret_cast<const std::uint32_t*>(&pair);
  }
}

template <int Bits, class T, bool Lookup>
__global__ void __launch_bounds__(256) dequantize_vector_kernel(const DequantizeVectorParams p) {
  constexpr int codes_per_thread = vector_codes<Bits>;
  constexpr int codes_per_word = 32 / Bits;
  constexpr std::uint32_t mask = (1u << Bits) - 1u;
  using Vector = typename CodeVector<Bits>::type;
  constexpr int words = sizeof(Vector) / 4;
  static_assert(words * codes_per_word == codes_per_thread, "one vector holds one thread's codes");

  __shared__ float table[Lookup ? (1 << Bits) : 1];
  if constexpr (Lookup) {
    for (int i = threadIdx.x; i < (1 << Bits); i += blockDim.x) table[i] = p.lookup_table[i];
    __syncthreads();
  }
  const std::int64_t chunks_per_row = p.in_features / codes_per_thread;
  const std::int64_t chunks = p.rows * chunks_per_row;
  const bool small = chunks <= 0xFFFFFFFFll;
  const auto* codes = static_cast<const Vector*>(p.codes);
  uint4* out = static_cast<uint4*>(p.out);
  const float neutral_zero = -0.0f;  // x + (−0) == x for every x, +0 included: q·s stays bit-exact

  for (std::int64_t chunk = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; chunk < chunks;
       chunk += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const Vector raw = __ldcs(codes + chunk);  // read once: evict first
    // 32-bit division where the matrix allows it (every realistic Linear).
    const std::int64_t row = small ? static_cast<std::uint32_t>(chunk) / static_cast<std::uint32_t>(chunks_per_row)
                                   : chunk / chunks_per_row;
    const std::int64_t column = (chunk - row * chunks_per_row) * codes_per_thread;
    const std::int64_t group = static_cast<std::uint32_t>(column) / static_cast<std::uint32_t>(p.group_size);
    const std::int64_t param = (row * p.param_row_stride + group) * p.param_stride;
    const float scale = vector_param<T>(p.scale, param, p.params_in_output_dtype, p.round_params);
    const float zero = p.zero_point != nullptr
                           ? vector_param<T>(p.zero_point, param, p.params_in_output_dtype, p.round_params)
                           : neutral_zero;
    std::uint32_t word[words];
    if constexpr (words == 2) {
      word[0] = raw.x;
      word[1] = raw.y;
    } else {
      word[0] = raw.x;
      word[1] = raw.y;
      word[2] = raw.z;
      word[3] = raw.w;
    }
    std::uint32_t packed[codes_per_thread / 2];
#pragma unroll
    for (int i = 0; i < codes_per_thread; i += 2) {
      float value[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int j = i + h;
        const std::uint32_t code = (word[j / codes_per_word] >> ((j % codes_per_word) * Bits)) & mask;
        float q;
        if constexpr (Lookup) {
          q = table[code];
        } else {
          q = code_to_float(code ^ p.code_xor, p.code_minus);
        }
        value[h] = fmaf(q, scale, zero);
      }
      packed[i / 2] = pack_pair<T>(value[0], value[1]);
    }
    uint4* destination = out + chunk * (codes_per_thread / 8);
#pragma unroll
    for (int v = 0; v < codes_per_thread / 8; ++v)
      destination[v] = make_uint4(packed[4 * v], packed[4 * v + 1], packed[4 * v + 2], packed[4 * v + 3]);
  }
}

// Grid: enough 256-thread blocks for every chunk, at most 8 per SM (full occupancy), grid-stride beyond.
template <int Bits, class T, bool Lookup>
void launch_dequantize_vector(const DequantizeVectorParams& params, int multiprocessors, cudaStream_t stream) {
  constexpr int threads = 256;
  const std::int64_t chunks = params.rows * (params.in_features / vector_codes<Bits>);
  if (chunks == 0) return;
  const std::int64_t wanted = (chunks + threads - 1) / threads;
  const std::int64_t most = std::int64_t{8} * multiprocessors;
  const unsigned grid = static_cast<unsigned>(wanted < most ? wanted : most);
  dequantize_vector_kernel<Bits, T, Lookup><<<grid, threads, 0, stream>>>(params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// True when the vector kernel handles this width, K, group size and these pointers.
inline bool dequantize_vector_supported(int bits, std::int64_t in_features, std::int64_t group_size,
                                        const void* codes, const void* out) {
  if (bits != 2 && bits != 4 && bits != 8) return false;
  const std::int64_t per_thread = bits == 8 ? 16 : 32;
  const std::uintptr_t code_alignment = bits == 2 ? 8 : 16;
  return in_features % per_thread == 0 && group_size % per_thread == 0 &&
         reinterpret_cast<std::uintptr_t>(codes) % code_alignment == 0 &&
         reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
}

template <int Bits, class T>
void dispatch_dequantize_vector_lookup(bool lookup, const DequantizeVectorParams& params, int multiprocessors,
                                       cudaStream_t stream) {
  if (lookup) launch_dequantize_vector<Bits, T, true>(params, multiprocessors, stream);
  else launch_dequantize_vector<Bits, T, false>(params, multiprocessors, stream);
}

template <class T>
void dispatch_dequantize_vector(int bits, bool lookup, const DequantizeVectorParams& params, int multiprocessors,
                                cudaStream_t stream) {
  switch (bits) {
    case 2: return dispatch_dequantize_vector_lookup<2, T>(lookup, params, multiprocessors, stream);
    case 4: return dispatch_dequantize_vector_lookup<4, T>(lookup, params, multiprocessors, stream);
    default: return dispatch_dequantize_vector_lookup<8, T>(lookup, params, multiprocessors, stream);
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
