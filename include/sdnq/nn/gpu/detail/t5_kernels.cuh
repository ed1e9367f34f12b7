#pragma once
// The kernel of the GPU T5 encoder that no shared op covers: the relative position bias expanded to the
// [H, L, L] bias the fused attention adds (bf16).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"

namespace sdnq::nn::gpu::detail {

// bias[h, i, j] = by_offset[h, clamp(j − i, −max_offset, max_offset) + max_offset]; by_offset [H, 2·max_offset + 1].
// Templates only (a non-template kernel in a header breaks linking two translation units).
template <class T>
__global__ void expand_position_bias_kernel(const T* by_offset, T* bias, std::int64_t heads, std::int64_t tokens,
                                            std::int64_t max_offset) {
  const std::int64_t total = heads * tokens * tokens;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t index = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += step) {
    const std::int64_t j = index % tokens, i = (index / tokens) % tokens, h = index / (tokens * tokens);
    const std::int64_t offset = j - i;
    const std::int64_t clamped = offset < -max_offset ? -max_offset : (offset > max_offset ? max_offset : offset);
    bias[index] = by_offset[h * (2 * max_offset + 1) + clamped + max_offset];
  }
}

inline unsigned position_bias_grid(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

// by_offset [H, 2·max_offset + 1] and bias [H, L, L]: contiguous bf16 device tensors.
inline void expand_position_bias(const TensorView& by_offset, std::int64_t max_offset, const TensorView& bias,
                                 cudaStream_t stream) {
  SDNQ_REQUIRE(by_offset.rank() == 2 && by_offset.size(1) == 2 * max_offset + 1 && bias.rank() == 3 &&
                   bias.size(0) == by_offset.size(0) && bias.size(1) == bias.size(2) &&
                   by_offset.dtype() == DType::bf16 && bias.dtype() == DType::bf16,
               ShapeError, "T5 position bias: needs bf16 [H, {}] offsets and a bf16 [H, L, L] bias, got {} and {}",
               2 * max_offset + 1, by_offset.shape().to_string(), bias.shape().to_string());
  const std::int64_t n = bias.numel();
  if (n == 0) return;
  constexpr int threads = 256;
  expand_position_bias_kernel<__nv_bfloat16><<<position_bias_grid(n, threads), threads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(by_offset.data()), static_cast<__nv_bfloat16*>(bias.data()), bias.size(0),
      bias.size(1), max_offset);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sdnq::nn::gpu::detail
