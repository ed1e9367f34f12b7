// Launcher of the dequantize kernel for the Catch cases in test_dequantize_kernel.cpp.

#include <cuda_runtime.h>

#include "cuda/test_gemv_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/dequantize.cuh"
#include "sdnq/cuda/device_memory.hpp"

namespace sdnq::test {

Tensor run_dequantize_kernel(const cuda::LinearCodes& host_weight, DType output, cuda::ScaleRounding rounding) {
  std::vector<Tensor> keep;
  auto upload = [&](TensorView view) {
    keep.push_back(cuda::to_device(view));
    return TensorView(keep.back());
  };
  cuda::LinearCodes weight = host_weight;
  weight.codes = upload(host_weight.codes);
  weight.scale = upload(host_weight.scale);
  if (host_weight.zero_point) weight.zero_point = upload(*host_weight.zero_point);
  if (host_weight.lookup_table) weight.lookup_table = upload(*host_weight.lookup_table);
  if (host_weight.svd_up) {
    weight.svd_up = upload(*host_weight.svd_up);
    weight.svd_down = upload(*host_weight.svd_down);
  }
  Tensor out = cuda::empty(Shape{host_weight.out_features, host_weight.in_features}, output);
  SDNQ_CUDA_CHECK(cudaMemset(out.data(), 0xFF, out.nbytes()));  // NaN in bf16 and fp16
  cuda::dequantize(weight, out, rounding);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(out);
}

}  // namespace sdnq::test
