#pragma once
// Shared machinery of the element-wise and normalization ops: bf16/fp16 <-> f32 on the device,
// 16-byte packs of 8 elements, grid sizing, and the argument checks every op runs before it launches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

template <class T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(x);
  else
    return __half2float(x);
}

template <class T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, float>)
    return x;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else
    return __float2half_rn(x);
}

// 8 consecutive 16-bit elements, one 16-byte access (the pointer must be 16-byte aligned).
template <class T>
__device__ __forceinline__ void load8(const T* source, float (&values)[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(source);
  const T* elements = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) values[i] = to_float(elements[i]);
}
template <class T>
__device__ __forceinline__ void store8(T* destination, const float (&values)[8]) {
  uint4 raw;
  T* elements = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) elements[i] = from_float<T>(values[i]);
  *reinterpret_cast<uint4*>(destination) = raw;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xFFFFFFFFu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, offset));
  return x;
}

// Blocks for a grid-stride loop over `items`: enough to fill the GPU several times, no more.
inline unsigned grid_for(std::int64_t items, int threads) {
  const std::int64_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 132 * 16));
}

inline bool aligned16(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; }

// A contiguous device tensor of a 16-bit float dtype (the op's compute dtype).
inline void require_operand(const TensorView& x, std::string_view op, std::string_view name) {
  SDNQ_REQUIRE(x.dtype() == DType::bf16 || x.dtype() == DType::f16, UnsupportedError,
               "cuda::ops::{}: {} must be BF16 or F16, got {} {}", op, name, dtype_name(x.dtype()),
               x.shape().to_string());
  SDNQ_REQUIRE(x.device().is_cuda() && x.is_contiguous(), ShapeError,
               "cuda::ops::{}: {} must be a contiguous device tensor, got {} with strides {} on {}", op, name,
               x.shape().to_string(), x.strides().to_string(), x.device().to_string());
}

// `x` like `reference`: same dtype, contiguous on the device, and the given shape.
inline void require_like(const TensorView& x, const TensorView& reference, const Shape& shape, std::string_view op,
                         std::string_view name) {
  require_operand(x, op, name);
  SDNQ_REQUIRE(x.dtype() == reference.dtype() && x.shape() == shape, ShapeError,
               "cuda::ops::{}: {} must be {} {}, got {} {}", op, name, dtype_name(reference.dtype()), shape.to_string(),
               dtype_name(x.dtype()), x.shape().to_string());
}

// Dispatches `launch.template operator()<T>()` on the dtype of `x` (BF16 or F16).
template <class Launch>
void dispatch_16bit(DType dtype, Launch&& launch) {
  if (dtype == DType::bf16)
    launch.template operator()<__nv_bfloat16>();
  else
    launch.template operator()<__half>();
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
