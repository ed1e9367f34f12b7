#pragma once
// The one element-wise step of the GPU AutoencoderKL that cuda::ops has no op for: the posterior's
// logvar clamp to [-30, 20] (diffusers' DiagonalGaussianDistribution).
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

template <class T>
__global__ void clamp_kernel(T* __restrict__ x, std::int64_t n, float low, float high) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] = from_float<T>(fminf(fmaxf(to_float(x[i]), low), high));
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END

namespace sdnq::nn::gpu::detail {

// x (contiguous bf16 on the device) clamped to [low, high] in place.
inline void clamp_bf16_(const TensorView& x, float low, float high, cudaStream_t stream) {
  namespace kd = cuda::ops::kernel_detail;
  kd::require_operand(x, "clamp", "x");
  if (x.numel() == 0) return;
  constexpr int threads = 256;
  kd::clamp_kernel<__nv_bfloat16>
      <<<kd::grid_for(x.numel(), threads), threads, 0, stream>>>(static_cast<__nv_bfloat16*>(x.data()), x.numel(), low, high);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sdnq::nn::gpu::detail
