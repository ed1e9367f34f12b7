#pragma once
// The memory-speed dequantize kernel for the byte-aligned widths (2, 4, 8 bits). Work unit: a
// "piece" of 8 consecutive codes of one row (2, 4 or 8 bytes of codes in, one 16-byte store of 8
// outputs). A warp takes 128 consecutive pieces per step, lane l the pieces l, l+32, l+64, l+96: every
// load and store instruction of the warp covers one contiguous span (fully coalesced: 64-256 bytes in,
// 512 bytes out), and each thread has four independent loads in flight. One (scale, zero point) read
// per piece (an L1 hit for the other pieces of its group).
// The arithmetic is the reference loader's, element for element (dequantize.cuh): bit-exact.
//
// Codes stream: code i of the matrix (row-major [rows, K]) at bit i·bits of a little-endian byte
// stream. Both the checkpoint packing of widths 2/4/8 (§1.5) and the GEMV layout of repack.hpp are
// such a stream, so this kernel dequantizes either (the GEMV layout's 8-bit codes are offset binary:
// code_xor 0). Parameters: either two arrays (scale, zero point) of F32 or T, or the GEMV layout's
// interleaved (scale, zero) T pairs (param_stride 2). Output rows may be strided (out_row_stride ≥ K).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

struct DequantizeVectorParams {
  const void* codes;            // the code stream of the first row (aligned to the piece's bytes)
  const void* scale;            // element of the first row's first group
  const void* zero_point;       // same, or null
  int param_stride;             // elements between consecutive parameters (2 for interleaved pairs)
  bool params_in_output_dtype;  // else F32
  bool round_params;            // F32 parameters rounded to the output dtype first
  const float* lookup_table;    // [2^bits] decoded float codes, or null
  void* out;                    // [rows, out_row_stride] output dtype, 16-byte aligned
  std::int64_t rows, in_features, out_row_stride;
  std::int64_t group_size;        // elements per group (K when row- or tensor-wise)
  std::int64_t param_row_stride;  // groups per row, 0 when tensor-wise
  std::uint32_t code_xor;         // 0x80 for native int8 (two's complement -> offset binary)
  float code_minus;               // 2^23 − code offset (code_to_float)
};

inline constexpr int vector_piece_codes = 8;
inline constexpr int vector_pieces_per_lane = 4;

// The load of one piece: 8 codes of Bits bits.
template <int Bits>
using PieceLoad = std::conditional_t<Bits == 2, unsigned short, std::conditional_t<Bits == 4, unsigned int, uint2>>;

template <class T>
__device__ __forceinline__ float vector_param(const void* base, std::int64_t index, bool in_output_dtype, bool round) {
  if (in_output_dtype) return to_float(static_cast<const T*>(base)[index]);
  const float value = static_cast<const float*>(base)[index];
  return round ? to_float(from_float<T>(value)) : value;
}

template <int Bits>
__device__ __forceinline__ void piece_words(const PieceLoad<Bits>& load, std::uint32_t (&word)[2]) {
  if constexpr (Bits == 8) {
    word[0] = load.x;
    word[1] = load.y;
  } else {
    word[0] = load;
    word[1] = 0;
  }
}

template <int Bits, class T, bool Lookup>
__global__ void __launch_bounds__(256) dequantize_vector_kernel(const DequantizeVectorParams p) {
  constexpr std::uint32_t mask = (1u << Bits) - 1u;
  constexpr int codes_per_word = 32 / Bits;
  constexpr int tile_pieces = 32 * vector_pieces_per_lane;
  __shared__ float table[Lookup ? (1 << Bits) : 1];
  if constexpr (Lookup) {
    for (int i = threadIdx.x; i < (1 << Bits); i += blockDim.x) table[i] = p.lookup_table[i];
    __syncthreads();
  }
  const std::int64_t pieces_per_row = p.in_features / vector_piece_codes;
  const std::int64_t pieces = p.rows * pieces_per_row;
  const bool small = pieces <= 0xFFFFFFFFll;
  const auto* codes = static_cast<const PieceLoad<Bits>*>(p.codes);
  auto* out = static_cast<T*>(p.out);
  const float neutral_zero = -0.0f;  // x + (−0) == x for every x, +0 included: q·s stays bit-exact
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);

  for (std::int64_t tile = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
       tile * tile_pieces < pieces; tile += warps) {
    PieceLoad<Bits> loads[vector_pieces_per_lane];
#pragma unroll
    for (int j = 0; j < vector_pieces_per_lane; ++j) {
      const std::int64_t piece = tile * tile_pieces + j * 32 + lane;
      if (piece < pieces) loads[j] = __ldcs(codes + piece);  // read once: evict first
    }
#pragma unroll
    for (int j = 0; j < vector_pieces_per_lane; ++j) {
      const std::int64_t piece = tile * tile_pieces + j * 32 + lane;
      if (piece >= pieces) break;
      // 32-bit division where the matrix allows it (every realistic Linear).
      const std::int64_t row = small ? static_cast<std::uint32_t>(piece) / static_cast<std::uint32_t>(pieces_per_row)
                                     : piece / pieces_per_row;
      const std::int64_t column = (piece - row * pieces_per_row) * vector_piece_codes;
      const std::int64_t group = static_cast<std::uint32_t>(column) / static_cast<std::uint32_t>(p.group_size);
      const std::int64_t param = (row * p.param_row_stride + group) * p.param_stride;
      const float scale = vector_param<T>(p.scale, param, p.params_in_output_dtype, p.round_params);
      const float zero = p.zero_point != nullptr
                             ? vector_param<T>(p.zero_point, param, p.params_in_output_dtype, p.round_params)
                             : neutral_zero;
      std::uint32_t word[2];
      piece_words<Bits>(loads[j], word);
      std::uint32_t packed[4];
#pragma unroll
      for (int i = 0; i < vector_piece_codes; i += 2) {
        float value[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int c = i + h;
          const std::uint32_t code = (word[c / codes_per_word] >> ((c % codes_per_word) * Bits)) & mask;
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
      *reinterpret_cast<uint4*>(out + row * p.out_row_stride + column) =
          make_uint4(packed[0], packed[1], packed[2], packed[3]);
    }
  }
}

// Grid: one warp per 128-piece tile, at most 8 blocks of 256 threads per SM (full occupancy),
// warp-stride loop beyond.
template <int Bits, class T, bool Lookup>
void launch_dequantize_vector(const DequantizeVectorParams& params, int multiprocessors, cudaStream_t stream) {
  constexpr int threads = 256;
  const std::int64_t pieces = params.rows * (params.in_features / vector_piece_codes);
  if (pieces == 0) return;
  const std::int64_t tiles = (pieces + 32 * vector_pieces_per_lane - 1) / (32 * vector_pieces_per_lane);
  const std::int64_t wanted = (tiles + threads / 32 - 1) / (threads / 32);
  const std::int64_t most = std::int64_t{8} * multiprocessors;
  const unsigned grid = static_cast<unsigned>(wanted < most ? wanted : most);
  dequantize_vector_kernel<Bits, T, Lookup><<<grid, threads, 0, stream>>>(params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// True when the vector kernel handles this width, K, group size and these pointers (output rows of
// `out_row_stride` elements).
inline bool dequantize_vector_supported(int bits, std::int64_t in_features, std::int64_t group_size, const void* codes,
                                        const void* out, std::int64_t out_row_stride) {
  if (bits != 2 && bits != 4 && bits != 8) return false;
  const auto code_alignment = static_cast<std::uintptr_t>(bits);  // bytes of one piece
  return in_features % vector_piece_codes == 0 && group_size % vector_piece_codes == 0 &&
         out_row_stride % vector_piece_codes == 0 && reinterpret_cast<std::uintptr_t>(codes) % code_alignment == 0 &&
         reinterpret_cast<std::uintptr_t>(out) % 16 == 0;
}

template <int Bits, class T>
void dispatch_dequantize_vector_lookup(bool lookup, const DequantizeVectorParams& params, int multiprocessors,
                                       cudaStream_t stream) {
  if (lookup)
    launch_dequantize_vector<Bits, T, true>(params, multiprocessors, stream);
  else
    launch_dequantize_vector<Bits, T, false>(params, multiprocessors, stream);
}

template <class T>
void dispatch_dequantize_vector(int bits, bool lookup, const DequantizeVectorParams& params, int multiprocessors,
                                cudaStream_t stream) {
  switch (bits) {
    case 2:
      return dispatch_dequantize_vector_lookup<2, T>(lookup, params, multiprocessors, stream);
    case 4:
      return dispatch_dequantize_vector_lookup<4, T>(lookup, params, multiprocessors, stream);
    default:
      return dispatch_dequantize_vector_lookup<8, T>(lookup, params, multiprocessors, stream);
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
