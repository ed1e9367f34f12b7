#pragma once
// Conversions between float and the 16-bit activation types inside kernels. Kernels compute with
// CUDA's __nv_bfloat16 / __half (their intrinsics are single instructions); the library's sdnq::bf16
// and sdnq::fp16 have the same 16-bit layout, so public pointers are reinterpreted at the launch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

template <class T>
__device__ __forceinline__ float to_float(T value) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(value);
  else return __half2float(value);
}

template <class T>
__device__ __forceinline__ T from_float(float value) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(value);
  else return __float2half_rn(value);
}

// Both halves of a 32-bit word holding two T values, widened exactly.
template <class T>
__device__ __forceinline__ float2 pair_to_float2(unsigned int word) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return make_float2(__uint_as_float(word << 16), __uint_as_float(word & 0xFFFF0000u));
  } else {
    return __half22float2(*reinterpret_cast<const __half2*>(&word));
  }
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

// Exact float of a small non-negative integer (< 2^23) without an I2F: place it in the mantissa of
// 2^23 and subtract. `minus` folds in a constant offset (q = code + offset -> minus = 2^23 − offset).
__device__ __forceinline__ float code_to_float(unsigned int code, float minus) {
  return __uint_as_float(0x4B000000u | code) - minus;
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END

