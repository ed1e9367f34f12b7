// Launcher of the small-M weight-only GEMM for the Catch cases in test_gemv.cpp.

#include <cuda_runtime.h>

#include "cuda/test_gemv_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemv.cuh"

namespace sdnq::test {

Tensor run_gemv_kernel(const cuda::GemvWeightsHost& weights, TensorView x, std::optional<TensorView> bias) {
  const cuda::GemvWeightsDevice device_weights = cuda::upload_gemv_weights(weights);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));  // NaN in bf16 and fp16
  const std::size_t workspace_bytes = cuda::gemv_workspace_bytes(device_weights.view(), tokens);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes)}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  cuda::gemv(device_weights.view(), device_x, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y,
             workspace);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

}  // namespace sdnq::test
