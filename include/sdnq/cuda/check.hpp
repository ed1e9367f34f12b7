#pragma once
// Turning CUDA runtime and cuBLAS status codes into sdnq::CudaError. Plain C++ over the toolkit's
// headers: usable from .cpp files built by the host compiler and from .cu files alike.
#include <string>

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "sdnq/core/error.hpp"

namespace sdnq::cuda::detail {

// Messages are formatted at run time (format_message): fmt's compile-time check does not build
// under nvcc 13 with g++ 13.
[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  throw CudaError(sdnq::detail::format_message("CUDA call `{}` failed at {}:{}: {} ({})", call, file, line,
                                               cudaGetErrorName(status), cudaGetErrorString(status)));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw CudaError(sdnq::detail::format_message("cuBLAS call `{}` failed at {}:{}: {} ({})", call, file, line,
                                               cublasGetStatusName(status), cublasGetStatusString(status)));
}

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) throw_cuda_error(status, call, file, line);
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

}  // namespace sdnq::cuda::detail

// Evaluates a CUDA runtime call once; throws sdnq::CudaError naming the call, the error and the
// call site when it does not return cudaSuccess. After a kernel launch: SDNQ_CUDA_CHECK(cudaGetLastError()).
#define SDNQ_CUDA_CHECK(call) ::sdnq::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)

// The same for cuBLAS / cuBLASLt calls returning cublasStatus_t.
#define SDNQ_CUBLAS_CHECK(call) ::sdnq::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)
