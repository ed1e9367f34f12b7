// Launcher of the Hopper weight-only GEMM for the Catch cases in test_gemm_weight_only_sm90.cpp.

#include <cuda_runtime.h>

#include "cuda/test_gemm_weight_only_sm90_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_weight_only_sm90.cuh"

namespace sdnq::test {

bool weight_only_sm90_runs() { return cuda::weight_only_sm90_supported(0); }

Tensor run_gemm_weight_only_sm90(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                                 int tokens_per_block) {
  const cuda::GemmTcWeightsDevice device_weights = cuda::upload_gemm_tc_weights(weights);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));  // NaN in bf16 and fp16
  const std::size_t workspace_bytes = cuda::gemm_weight_only_sm90_workspace_bytes(device_weights.view(), tokens);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  cuda::gemm_weight_only_sm90(device_weights.view(), device_x,
                              device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y, workspace, nullptr,
                              tokens_per_block);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

}  // namespace sdnq::test
