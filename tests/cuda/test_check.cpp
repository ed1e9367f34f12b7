// SDNQ_CUDA_CHECK and SDNQ_CUBLAS_CHECK turn failures into sdnq::CudaError naming the call and the site.
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "cuda/cuda_test_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq_catch.hpp"

using sdnq::test::contains;
using sdnq::test::message_of;

TEST_CASE("SDNQ_CUDA_CHECK passes success through and throws CudaError on failure", "[cuda][check]") {
  int device_count = 0;
  CHECK_NOTHROW(SDNQ_CUDA_CHECK(cudaGetDeviceCount(&device_count)));
  CHECK(device_count >= 1);

  const std::string message = message_of<sdnq::CudaError>([] { SDNQ_CUDA_CHECK(cudaSetDevice(-1)); });
  INFO(message);
  CHECK(contains(message, "cudaSetDevice(-1)"));
  CHECK(contains(message, "cudaErrorInvalidDevice"));
  CHECK(contains(message, "test_check.cpp:"));
  (void)cudaGetLastError();  // the failed call above is recorded as the last error
}

TEST_CASE("SDNQ_CUBLAS_CHECK throws CudaError with the cuBLAS status name", "[cuda][check]") {
  cublasHandle_t handle = nullptr;
  SDNQ_CUBLAS_CHECK(cublasCreate(&handle));
  float alpha = 1.0f, beta = 0.0f;
  // A negative matrix extent is rejected before any memory is touched.
  const std::string message = message_of<sdnq::CudaError>([&] {
    SDNQ_CUBLAS_CHECK(
        cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, -1, 1, 1, &alpha, nullptr, 1, nullptr, 1, &beta, nullptr, 1));
  });
  SDNQ_CUBLAS_CHECK(cublasDestroy(handle));
  INFO(message);
  CHECK(contains(message, "cublasSgemm"));
  CHECK(contains(message, "CUBLAS_STATUS_INVALID_VALUE"));
  CHECK(contains(message, "test_check.cpp:"));

  const std::string from_status = message_of<sdnq::CudaError>([] { SDNQ_CUBLAS_CHECK(CUBLAS_STATUS_NOT_SUPPORTED); });
  CHECK(contains(from_status, "CUBLAS_STATUS_NOT_SUPPORTED"));
}
