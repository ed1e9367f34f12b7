#pragma once
// Whole-matrix dequantization of one quantized Linear weight, checkpoint layout in, dense bf16/fp16
// [out_features, in_features] out, with the reference's precision (sdnq-format.md §4, fixture README):
//   q   = code (unsigned) | code − 2^(bits−1) (packed signed) | int8 | table[code] (floats ≤ 8 bits)
//   v   = fma(q, s, z) or q·s in fp32, s and z first rounded to the output dtype (ScaleRounding)
//   v  += Σ_r svd_up[o,r]·svd_down[r,c] in fp32 (optional), then one rounding to the output dtype.
// Without SVD this is bit-exact with the reference loader.
//
// Fast path (detail/dequantize_vector.cuh): widths 2, 4 and 8 without SVD, not transposed, K and the
// group size multiples of 8, aligned pointers: coalesced loads, 16-byte stores, one parameter read per
// 8 codes; the same arithmetic, so still bit-exact.
// Generic path, everything else: one thread per "unit" (4 packed bytes for 2/4/8 bits, one packer block for 3/5/6/7
// bits, one int64 word for 1 bit), grid-stride; per unit one 32-bit division finds (row, column), then the codes walk
// the row. Moves N·K·bits/8 bytes in and 2·N·K out; the SVD add-back costs r FMAs per element through L1/L2 (a separate
// tiled pass would be faster for large r; not done yet). Transposed int8 (direct-matmul layout) reads with stride N:
// correct, not at memory speed.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/dequantize_vector.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"
#include "sdnq/cuda/detail/kernel_packed_codes.hpp"
#include "sdnq/cuda/repack.hpp"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {
using sdnq::cuda::detail::ReferencePacking;

struct DequantizeParams {
  const std::uint8_t* codes;
  int word_bytes;          // bytes per stored packer word (8 for int64 1-bit words)
  const void* scale;       // [params] F32 or output dtype
  const void* zero_point;  // same, or null
  bool params_in_output_dtype;
  bool round_params;          // ScaleRounding::to_output_dtype
  const float* lookup_table;  // [2^bits] or null
  const void* svd_up;         // [N, r] output dtype, or null
  const void* svd_down;       // [r, K]
  int svd_rank;
  void* out;  // [N, K]
  std::int64_t out_features, in_features;
  std::int64_t group_size;        // elements per group (K when row- or tensor-wise)
  std::int64_t param_row_stride;  // groups per row, 0 when tensor-wise
  std::uint32_t code_xor;         // 0x80 for native int8 (two's complement -> offset binary)
  float code_minus;               // 2^23 − code offset, see code_to_float
  bool transposed;                // 8-bit codes stored [K, N]
  std::int64_t units;
};

template <int Bits>
struct DequantizeUnit {
  using Packing = ReferencePacking<Bits>;
  // Bytes (= packer words) and codes one thread handles.
  static constexpr int words = (Bits == 2 || Bits == 4 || Bits == 8) ? 4 : Packing::block_words;
  static constexpr int codes = (Bits == 2 || Bits == 4 || Bits == 8) ? 4 * 8 / Bits : Packing::block_codes;
};

template <class T>
__device__ __forceinline__ float load_param(const void* base, std::int64_t index, bool in_output_dtype, bool round) {
  if (in_output_dtype) return to_float(static_cast<const T*>(base)[index]);
  const float value = static_cast<const float*>(base)[index];
  return round ? to_float(from_float<T>(value)) : value;
}

template <int Bits, class T, bool Lookup>
__global__ void __launch_bounds__(256) dequantize_kernel(const DequantizeParams p) {
  using Unit = DequantizeUnit<Bits>;
  using Packing = ReferencePacking<Bits>;
  __shared__ float table[Lookup ? (1 << Bits) : 1];
  if constexpr (Lookup) {
    for (int i = threadIdx.x; i < (1 << Bits); i += blockDim.x) table[i] = p.lookup_table[i];
    __syncthreads();
  }
  const std::int64_t numel = p.out_features * p.in_features;
  const std::int64_t total_words = numel / Packing::block_codes * Packing::block_words;
  T* out = static_cast<T*>(p.out);

  for (std::int64_t unit = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; unit < p.units;
       unit += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    // Decode the unit's codes (blocks of the packer; width 8 is one byte per code).
    std::uint32_t codes[Unit::codes];
    constexpr int blocks = Unit::codes / Packing::block_codes;
    for (int b = 0; b < blocks; ++b) {
      std::uint32_t words[Packing::block_words];
      std::uint32_t block_codes[Packing::block_codes];
      for (int k = 0; k < Packing::block_words; ++k) {
        const std::int64_t word = unit * Unit::words + b * Packing::block_words + k;
        words[k] = (Bits == 8 || word >= total_words) ? 0u : p.codes[word * p.word_bytes];
      }
      Packing::decode(words, block_codes);
      for (int j = 0; j < Packing::block_codes; ++j) codes[b * Packing::block_codes + j] = block_codes[j];
    }

    // Walk the unit's codes along the row; one division per unit.
    const std::int64_t first = unit * Unit::codes;
    // 32-bit division where the matrix allows it (every realistic Linear): far cheaper than 64-bit.
    std::int64_t row = numel <= 0xFFFFFFFFll
                           ? static_cast<std::uint32_t>(first) / static_cast<std::uint32_t>(p.in_features)
                           : first / p.in_features;
    std::int64_t column = first - row * p.in_features;
    std::int64_t group = static_cast<std::uint32_t>(column) / static_cast<std::uint32_t>(p.group_size);
    std::int64_t in_group = column - group * p.group_size;
    for (int j = 0; j < Unit::codes; ++j) {
      const std::int64_t index = first + j;
      if (index >= numel) break;
      std::uint32_t code;
      if constexpr (Bits == 8) {
        code = p.codes[p.transposed ? column * p.out_features + row : index];
      } else {
        code = codes[j];
      }
      const std::int64_t param = row * p.param_row_stride + group;
      const float scale = load_param<T>(p.scale, param, p.params_in_output_dtype, p.round_params);
      float value;
      if constexpr (Lookup) {
        value = table[code];
      } else {
        value = code_to_float(code ^ p.code_xor, p.code_minus);
      }
      if (p.zero_point != nullptr) {
        value = fmaf(value, scale, load_param<T>(p.zero_point, param, p.params_in_output_dtype, p.round_params));
      } else {
        value = value * scale;
      }
      if (p.svd_rank > 0) {
        const T* up = static_cast<const T*>(p.svd_up) + row * p.svd_rank;
        const T* down = static_cast<const T*>(p.svd_down) + column;
        float low_rank = 0.0f;
        for (int r = 0; r < p.svd_rank; ++r)
          low_rank = fmaf(to_float(up[r]), to_float(down[r * p.in_features]), low_rank);
        value += low_rank;
      }
      out[index] = from_float<T>(value);
      if (++column == p.in_features) {
        column = 0;
        ++row;
        group = 0;
        in_group = 0;
      } else if (++in_group == p.group_size) {
        in_group = 0;
        ++group;
      }
    }
  }
}

template <int Bits, class T, bool Lookup>
void launch_dequantize(const DequantizeParams& params, cudaStream_t stream) {
  constexpr int threads = 256;
  const std::int64_t blocks = (params.units + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < 1048576 ? blocks : 1048576);
  dequantize_kernel<Bits, T, Lookup><<<grid, threads, 0, stream>>>(params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

template <int Bits, class T>
void dispatch_dequantize_lookup(const DequantizeParams& params, bool lookup, cudaStream_t stream) {
  if (lookup)
    launch_dequantize<Bits, T, true>(params, stream);
  else
    launch_dequantize<Bits, T, false>(params, stream);
}

template <class T>
void dispatch_dequantize_bits(int bits, const DequantizeParams& params, bool lookup, cudaStream_t stream) {
  switch (bits) {
    case 1:
      dispatch_dequantize_lookup<1, T>(params, lookup, stream);
      break;
    case 2:
      dispatch_dequantize_lookup<2, T>(params, lookup, stream);
      break;
    case 3:
      dispatch_dequantize_lookup<3, T>(params, lookup, stream);
      break;
    case 4:
      dispatch_dequantize_lookup<4, T>(params, lookup, stream);
      break;
    case 5:
      dispatch_dequantize_lookup<5, T>(params, lookup, stream);
      break;
    case 6:
      dispatch_dequantize_lookup<6, T>(params, lookup, stream);
      break;
    case 7:
      dispatch_dequantize_lookup<7, T>(params, lookup, stream);
      break;
    default:
      dispatch_dequantize_lookup<8, T>(params, lookup, stream);
      break;
  }
}

inline std::int64_t dequantize_units(int bits, std::int64_t numel) {
  const int codes = (bits == 2 || bits == 4 || bits == 8) ? 32 / bits : bits == 6 ? 4 : 8;
  return (numel + codes - 1) / codes;
}

}  // namespace kernel_detail

// Dequantizes `weight` (device tensors, checkpoint layout) into `out` [N, K] (BF16 or F16, device,
// contiguous). SVD factors, when present, must be in the output dtype. Enqueued on `stream`.
inline void dequantize(const LinearCodes& weight, TensorView out, ScaleRounding rounding,
                       cudaStream_t stream = nullptr) {
  sdnq::cuda::detail::require_linear_codes_consistent(weight);
  const std::int64_t n = weight.out_features, k = weight.in_features;
  SDNQ_REQUIRE((out.dtype() == DType::bf16 || out.dtype() == DType::f16) && out.is_contiguous() && out.numel() == n * k,
               ShapeError, "{}: dequantize output must be a contiguous BF16/F16 tensor of [{}, {}], got {} {}",
               weight.name, n, k, dtype_name(out.dtype()), out.shape().to_string());
  SDNQ_REQUIRE(out.device().is_cuda() && weight.codes.device().is_cuda() && weight.scale.device().is_cuda(), ShapeError,
               "{}: dequantize runs on device tensors", weight.name);
  const bool params_in_output_dtype = weight.scale.dtype() == out.dtype();
  SDNQ_REQUIRE(params_in_output_dtype || weight.scale.dtype() == DType::f32, ShapeError,
               "{}: scale dtype {} must be F32 or the output dtype {}", weight.name, dtype_name(weight.scale.dtype()),
               dtype_name(out.dtype()));
  if (weight.svd_up)
    SDNQ_REQUIRE(weight.svd_up->dtype() == out.dtype(), ShapeError,
                 "{}: SVD factors ({}) must be in the output dtype {}", weight.name, dtype_name(weight.svd_up->dtype()),
                 dtype_name(out.dtype()));
  SDNQ_REQUIRE(weight.svd_rank() <= 1024, UnsupportedError, "{}: SVD rank {} exceeds 1024", weight.name,
               weight.svd_rank());

  const std::int64_t group_size = weight.group_size > 0 ? weight.group_size : k;
  const bool lookup = weight.value == CodeValue::lookup;
  const bool native_int8 = weight.bits == 8 && weight.value == CodeValue::signed_integer;
  const float code_offset =
      weight.value == CodeValue::signed_integer ? -static_cast<float>(1 << (weight.bits - 1)) : 0.0f;
  if (!weight.svd_up && !weight.transposed &&
      kernel_detail::dequantize_vector_supported(weight.bits, k, group_size, weight.codes.data(), out.data(), k)) {
    kernel_detail::DequantizeVectorParams vector{};
    vector.codes = weight.codes.data();
    vector.scale = weight.scale.data();
    vector.zero_point = weight.zero_point ? weight.zero_point->data() : nullptr;
    vector.param_stride = 1;
    vector.params_in_output_dtype = params_in_output_dtype;
    vector.round_params = rounding == ScaleRounding::to_output_dtype;
    vector.lookup_table = lookup ? static_cast<const float*>(weight.lookup_table->data()) : nullptr;
    vector.out = out.data();
    vector.rows = n;
    vector.in_features = k;
    vector.out_row_stride = k;
    vector.group_size = group_size;
    vector.param_row_stride = weight.group_size == -2 ? 0 : weight.groups_per_row();
    vector.code_xor = native_int8 ? 0x80u : 0u;
    vector.code_minus = 8388608.0f - code_offset;
    int device = 0, multiprocessors = 0;
    SDNQ_CUDA_CHECK(cudaGetDevice(&device));
    SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    if (out.dtype() == DType::bf16)
      kernel_detail::dispatch_dequantize_vector<__nv_bfloat16>(weight.bits, lookup, vector, multiprocessors, stream);
    else
      kernel_detail::dispatch_dequantize_vector<__half>(weight.bits, lookup, vector, multiprocessors, stream);
    return;
  }

  kernel_detail::DequantizeParams params{};
  params.codes = static_cast<const std::uint8_t*>(weight.codes.data());
  params.word_bytes = weight.bits == 1 ? static_cast<int>(weight.codes.element_size()) : 1;
  params.scale = weight.scale.data();
  params.zero_point = weight.zero_point ? weight.zero_point->data() : nullptr;
  params.params_in_output_dtype = params_in_output_dtype;
  params.round_params = rounding == ScaleRounding::to_output_dtype;
  params.lookup_table = weight.lookup_table ? static_cast<const float*>(weight.lookup_table->data()) : nullptr;
  params.svd_up = weight.svd_up ? weight.svd_up->data() : nullptr;
  params.svd_down = weight.svd_down ? weight.svd_down->data() : nullptr;
  params.svd_rank = static_cast<int>(weight.svd_rank());
  params.out = out.data();
  params.out_features = n;
  params.in_features = k;
  params.group_size = group_size;
  params.param_row_stride = weight.group_size == -2 ? 0 : weight.groups_per_row();
  params.code_xor = native_int8 ? 0x80u : 0u;
  params.code_minus = 8388608.0f - code_offset;
  params.transposed = weight.transposed;
  params.units = kernel_detail::dequantize_units(weight.bits, n * k);

  if (out.dtype() == DType::bf16)
    kernel_detail::dispatch_dequantize_bits<__nv_bfloat16>(weight.bits, params, lookup, stream);
  else
    kernel_detail::dispatch_dequantize_bits<__half>(weight.bits, params, lookup, stream);
}

SDNQ_KERNEL_NAMESPACE_END
