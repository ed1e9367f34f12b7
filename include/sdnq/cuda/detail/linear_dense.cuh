#pragma once
// The large-M route of quantized_linear (linear.cuh): dequantize the weight into the caller's
// workspace N-chunk by N-chunk (bounded size) and multiply each chunk with one cuBLAS bf16/fp16 GEMM
// (fp32 accumulation, one rounding).
//   Without SVD: x goes to the GEMM as is (K unchanged); a bias is first broadcast into y and the GEMM
//   accumulates onto it with beta = 1 (cuBLAS adds C in fp32 before its single rounding, so this equals
//   rounding x·Wᵀ + b once).
//   With SVD: the rank columns (and the bias, when there is one) ride along as extra K columns padded
//   with zeros to a multiple of 64, so K stays tile-friendly and the GEMM writes y once:
//     x_ext [M, E] = [ x | x·svd_downᵀ | 1 | 0… ]            E = K + (r + 1 rounded up to 64)
//     W_ext [rows, E] = [ dequant(W) | svd_up | bias | 0… ]   per chunk of rows of W
//     y[:, chunk] = x_ext · W_extᵀ
//   x·svd_downᵀ is rounded to T before the second product (as the tensor-core kernel does).
// Measured on one H100 (bench_linear, M = 4096): the former bias column at K + 8 cost 80-130 µs (the x
// copy and slower cuBLAS kernels at an odd K). beta = 1 is cheaper where N is small (int8 3072×12288:
// 665 → 521 µs) but still moves 2·M·N elements more than the GEMM alone (int8 12288×3072: 586 → 570 µs,
// 507 without bias); a cuBLASLt bias epilogue would remove that traffic (not done).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/dequantize_vector.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// Columns [K, E) of `rows` rows of a row-major [rows, E] matrix: column K + c (c < rank) is
// low_rank[row, c] (already written, skipped when `low_rank_source` is null) or source[row·rank + c];
// column K + rank is `one_value` (1 for x_ext) or bias[row] (W_ext) when there is a bias; the rest 0.
template <class T>
__global__ void fill_extension_kernel(T* __restrict__ matrix, std::int64_t rows, std::int64_t in_features,
                                      std::int64_t row_elements, const T* __restrict__ source, int rank, bool has_bias,
                                      const T* __restrict__ bias) {
  const std::int64_t width = row_elements - in_features;
  const std::int64_t total = rows * width;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / width, c = i - row * width;
    T* element = matrix + row * row_elements + in_features + c;
    if (c < rank) {
      if (source != nullptr) *element = source[row * rank + c];
    } else if (c == rank && has_bias) {
      *element = bias != nullptr ? bias[row] : from_float<T>(1.0f);
    } else {
      *element = from_float<T>(0.0f);
    }
  }
}

template <class T>
void launch_fill_extension(void* matrix, std::int64_t rows, std::int64_t in_features, std::int64_t row_elements,
                           const void* source, int rank, bool has_bias, const void* bias, cudaStream_t stream) {
  const std::int64_t total = rows * (row_elements - in_features);
  if (total == 0) return;
  const std::int64_t blocks = (total + 255) / 256;
  fill_extension_kernel<T><<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(
      static_cast<T*>(matrix), rows, in_features, row_elements, static_cast<const T*>(source), rank, has_bias,
      static_cast<const T*>(bias));
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// y[m, o] = bias[o] for a row-major [rows, columns] y (the C operand of a beta = 1 GEMM).
template <class T>
__global__ void broadcast_bias_kernel(T* __restrict__ y, std::int64_t rows, std::int64_t columns,
                                      const T* __restrict__ bias) {
  const std::int64_t column = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (column >= columns) return;
  const T value = bias[column];
  for (std::int64_t row = blockIdx.y; row < rows; row += gridDim.y) y[row * columns + column] = value;
}

template <class T>
void launch_broadcast_bias(void* y, std::int64_t rows, std::int64_t columns, const void* bias, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((columns + 255) / 256), static_cast<unsigned>(rows < 1024 ? rows : 1024));
  broadcast_bias_kernel<T><<<grid, 256, 0, stream>>>(static_cast<T*>(y), rows, columns, static_cast<const T*>(bias));
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// Row-major out[M, N] (leading dimensions lda, ldb, ldo) = a[M, K] · b[N, K]ᵀ + beta · out, fp32 accumulation:
// column-major outᵀ = b · aᵀ with b read transposed.
inline void gemm_row_major_abt(cublasHandle_t handle, cudaDataType_t type, std::int64_t m, std::int64_t n,
                               std::int64_t k, const void* a, std::int64_t lda, const void* b, std::int64_t ldb,
                               void* out, std::int64_t ldo, float beta) {
  const float alpha = 1.0f;
  SDNQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                 static_cast<int>(k), &alpha, b, type, static_cast<int>(ldb), a, type,
                                 static_cast<int>(lda), &beta, out, type, static_cast<int>(ldo), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
