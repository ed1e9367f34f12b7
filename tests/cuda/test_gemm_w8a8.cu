// Launchers of the 8-bit GEMM for the Catch cases in test_gemm_w8a8.cpp.

#include <cuda_runtime.h>

#include "cuda/test_gemm_w8a8_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_w8a8.cuh"

namespace sdnq::test {

Tensor run_gemm_w8a8_kernel(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                            int tile) {
  const cuda::W8A8WeightsDevice device_weights = cuda::upload_w8a8_weights(weights);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));  // NaN in bf16 and fp16
  const std::size_t workspace_bytes = cuda::gemm_w8a8_workspace_bytes(device_weights.view(), tokens);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes)}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  std::optional<cuda::W8A8TileChoice> forced;
  if (tile >= 0) forced = static_cast<cuda::W8A8TileChoice>(tile);
  cuda::gemm_w8a8(device_weights.view(), device_x, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt,
                  y, workspace, nullptr, forced);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

bool gpu_has_fp8_tensor_cores() {
  int device = 0, major = 0, minor = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor >= 89;
}

bool gpu_has_wgmma() {
  int device = 0, major = 0, minor = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor == 90 && cuda::kernel_detail::has_wgmma_code(device);
}

}  // namespace sdnq::test
