#pragma once
// gemm_w8a8 weights held as code tables (quant::Int8CodeTables: 4-bit indices and a 16-entry int8 table
// per row group, 5-6 bits a weight) instead of int8 codes: before each call, expand_w8a8_codes writes the
// int8 operand into the caller's scratch and returns a W8A8Weights reading it. The expansion is exact
// (table lookups), so every GEMM result equals the one on the int8 codes bit for bit.
// Cost: one pass reading K/2 + 16·K/group bytes and writing K bytes a row, at memory speed; the GEMM then
// reads the int8 operand as it would from the weights (from L2 where it fits).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sdnq/core/error.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/gemm_w8a8.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// Four outputs from the four index nibbles in the low 16 bits of `nibbles`: entries 0-7 of the table come
// from t0:t1 and 8-15 from t2:t3 (byte permutes on the low 3 bits), then bit 3 of each index picks the
// byte of the high half (selector nibble i: byte i of the first word, or i + 4 of the second).
__device__ __forceinline__ std::uint32_t lookup_four(std::uint32_t nibbles, const uint4& table) {
  const std::uint32_t low_bits = nibbles & 0x7777u;
  const std::uint32_t low = __byte_perm(table.x, table.y, low_bits);
  const std::uint32_t high = __byte_perm(table.z, table.w, low_bits);
  return __byte_perm(low, high, 0x3210u | ((nibbles >> 1) & 0x4444u));
}

// One thread a chunk of 16 inputs of one row (in one group: the group is a multiple of 16): 8 index bytes
// and the group's 16-byte table in, 16 int8 codes out. (A template so that each translation unit's copy
// is a weak symbol.)
inline constexpr int expand_chunk_inputs = 16;
template <int ChunkInputs = expand_chunk_inputs>
__global__ void expand_w8a8_codes_kernel(const std::uint8_t* __restrict__ indices,
                                         const std::int8_t* __restrict__ tables, std::int8_t* __restrict__ codes,
                                         std::int64_t chunks, std::int64_t chunks_per_row,
                                         std::int64_t chunks_per_group) {
  static_assert(ChunkInputs == 16, "a chunk is one uint2 of indices in and one uint4 of codes out");
  for (std::int64_t chunk = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; chunk < chunks;
       chunk += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = chunk / chunks_per_row, in_row = chunk - row * chunks_per_row;
    const std::int64_t groups_per_row = chunks_per_row / chunks_per_group;
    const uint2 packed = __ldg(reinterpret_cast<const uint2*>(indices) + chunk);
    const uint4 table =
        __ldg(reinterpret_cast<const uint4*>(tables) + row * groups_per_row + in_row / chunks_per_group);
    uint4 out;
    out.x = lookup_four(packed.x, table);
    out.y = lookup_four(packed.x >> 16, table);
    out.z = lookup_four(packed.y, table);
    out.w = lookup_four(packed.y >> 16, table);
    reinterpret_cast<uint4*>(codes)[chunk] = out;
  }
}

}  // namespace kernel_detail

// Whether `w` holds code tables (codes then null until expand_w8a8_codes).
inline bool w8a8_has_code_tables(const W8A8Weights& w) { return w.code_indices != nullptr; }

// Scratch bytes expand_w8a8_codes needs for `w`: N·K, 0 for weights with int8/e4m3 codes.
inline std::size_t w8a8_expanded_codes_bytes(const W8A8Weights& w) {
  return w8a8_has_code_tables(w) ? static_cast<std::size_t>(w.out_features * w.in_features) : 0;
}

// `w` itself when it holds codes; else its int8 operand written into `scratch` (≥ w8a8_expanded_codes_bytes,
// 16-byte aligned, device) on `stream`, and `w` reading it. The result is valid while `scratch` is.
inline W8A8Weights expand_w8a8_codes(const W8A8Weights& w, void* scratch, std::size_t scratch_bytes,
                                     cudaStream_t stream, std::string_view layer = "gemm_w8a8") {
  if (!w8a8_has_code_tables(w)) return w;
  const std::int64_t n = w.out_features, k = w.in_features, group = w.code_table_group;
  SDNQ_REQUIRE(w.kind == W8A8Kind::int8 && w.code_tables != nullptr && group > 0 && group % 16 == 0 && k % group == 0,
               UnsupportedError,
               "{}: code tables need int8 weights and a table group that is a multiple of 16 dividing K = {}, got "
               "group {}",
               layer, k, group);
  SDNQ_REQUIRE(scratch != nullptr && scratch_bytes >= w8a8_expanded_codes_bytes(w) &&
                   reinterpret_cast<std::uintptr_t>(scratch) % 16 == 0,
               ShapeError, "{}: expanding its code tables needs {} bytes of 16-byte aligned scratch, got {}", layer,
               w8a8_expanded_codes_bytes(w), scratch_bytes);
  const std::int64_t chunks = n * k / 16;
  constexpr int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(kernel_detail::ceil_div(chunks, threads), 1 << 20));
  kernel_detail::expand_w8a8_codes_kernel<><<<blocks, threads, 0, stream>>>(
      w.code_indices, w.code_tables, static_cast<std::int8_t*>(scratch), chunks, k / 16, group / 16);
  SDNQ_CUDA_CHECK(cudaGetLastError());
  W8A8Weights expanded = w;
  expanded.codes = scratch;
  expanded.code_indices = nullptr;
  expanded.code_tables = nullptr;
  return expanded;
}

SDNQ_KERNEL_NAMESPACE_END
