// Launcher of the tensor-core GEMM for the Catch cases in test_gemm_tc.cpp.

#include <cuda_runtime.h>

#include "cuda/test_gemm_tc_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_tc.cuh"

namespace sdnq::test {

Tensor run_gemm_tc_kernel(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                          bool tiled_small_m) {
  const auto small_m = tiled_small_m ? cuda::GemmTcSmallM::tiled : cuda::GemmTcSmallM::streaming;
  const cuda::GemmTcWeightsDevice device_weights = cuda::upload_gemm_tc_weights(weights);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));  // NaN in bf16 and fp16
  const std::size_t workspace_bytes = cuda::gemm_tc_workspace_bytes(device_weights.view(), tokens, small_m);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  cuda::gemm_tc(device_weights.view(), device_x, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt,
                y, workspace, nullptr, small_m);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

bool gemm_tc_plan_streams(int bits, std::int64_t tokens, std::int64_t out_features, std::int64_t in_features,
                          int multiprocessors, int major, int shared_optin) {
  cuda::GemmTcWeights weights;
  weights.bits = bits;
  weights.out_features = out_features;
  weights.in_features = in_features;
  weights.group_size = 64;
  const cuda::GemmTcDevice device{multiprocessors, major, shared_optin};
  return cuda::plan_gemm_tc(weights, tokens, device).streaming;
}

}  // namespace sdnq::test
