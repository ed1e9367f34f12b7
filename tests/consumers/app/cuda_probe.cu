// Built by the find_package route when sdnq was installed with SDNQ_CUDA=ON: proves that sdnq::cuda
// carries what a CUDA translation unit needs (C++20 for nvcc, sdnq's headers, cudart, cuBLAS).
// run.sh runs it only where a GPU answers; elsewhere building and linking it is the check.
#include <cstdio>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <sdnq/core/dtype.hpp>
#include <sdnq/version.hpp>

__global__ void fill_index_times(int* out, int count, int factor) {
  int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < count) out[i] = i * factor;
}

int main() {
  constexpr int count = 256;
  constexpr int factor = static_cast<int>(sdnq::dtype_size(sdnq::DType::bf16));  // 2 bytes
  int* device_values = nullptr;
  if (cudaMalloc(&device_values, count * sizeof(int)) != cudaSuccess) {
    std::fprintf(stderr, "cuda_probe: cudaMalloc failed\n");
    return 1;
  }
  fill_index_times<<<(count + 127) / 128, 128>>>(device_values, count, factor);
  int host_values[count] = {};
  cudaError_t status = cudaMemcpy(host_values, device_values, sizeof(host_values), cudaMemcpyDeviceToHost);
  cudaFree(device_values);
  if (status != cudaSuccess) {
    std::fprintf(stderr, "cuda_probe: kernel or copy failed: %s\n", cudaGetErrorString(status));
    return 1;
  }
  for (int i = 0; i < count; ++i) {
    if (host_values[i] != i * 2) {
      std::fprintf(stderr, "cuda_probe: element %d is %d, expected %d\n", i, host_values[i], i * 2);
      return 1;
    }
  }
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuda_probe: cublasCreate failed\n");
    return 1;
  }
  cublasDestroy(handle);
  std::printf("sdnq %s cuda probe: ok\n", sdnq::version_string);
  return 0;
}
