#pragma once
// The large-M route of quantized_linear (linear.cuh): dequantize the weight into the caller's
// workspace N-chunk by N-chunk (bounded size) and multiply each chunk with cuBLAS bf16/fp16 GEMM
// (fp32 accumulation); the SVD branch as two small GEMMs into y. Order of the work on `stream`:
//   y  = bias broadcast                         (when there is a bias)
//   lr = x · svd_downᵀ            [M, r]  T     (workspace, when there is an SVD branch)
//   y  = lr · svd_upᵀ (+ y)                     (idem)
//   y[:, chunk] = x · W[chunk]ᵀ (+ y[:, chunk]) for each chunk of rows of W, W[chunk] dequantized first
// y is rounded to T after each GEMM that writes it (at most three roundings instead of the fused
// kernels' one: relative error ≲ 2^-8 on bf16).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/dequantize_vector.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// y[m, :] = bias for every row; 16-bit elements moved as 32-bit pairs where N is even.
template <class T>
__global__ void broadcast_bias_kernel(const T* __restrict__ bias, T* __restrict__ y, std::int64_t tokens,
                                      std::int64_t out_features) {
  const std::int64_t total = tokens * out_features;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = bias[i % out_features];
}

template <class T>
void launch_broadcast_bias(const void* bias, void* y, std::int64_t tokens, std::int64_t out_features,
                           cudaStream_t stream) {
  const std::int64_t total = tokens * out_features;
  const std::int64_t blocks = (total + 255) / 256;
  broadcast_bias_kernel<T><<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(
      static_cast<const T*>(bias), static_cast<T*>(y), tokens, out_features);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// Row-major out[M, N] (leading dimension ldo) = a[M, K] · b[N, K]ᵀ + beta · out, fp32 accumulation:
// column-major outᵀ = b · aᵀ with b read transposed.
inline void gemm_row_major_abt(cublasHandle_t handle, cudaDataType_t type, std::int64_t m, std::int64_t n,
                               std::int64_t k, const void* a, const void* b, void* out, std::int64_t ldo, float beta) {
  const float alpha = 1.0f;
  SDNQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                 static_cast<int>(k), &alpha, b, type, static_cast<int>(k), a, type,
                                 static_cast<int>(k), &beta, out, type, static_cast<int>(ldo), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
