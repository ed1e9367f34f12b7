#pragma once
// Kernels with more than 48 KB of dynamic shared memory must raise their limit with
// cudaFuncSetAttribute before the launch. The attribute belongs to the kernel and the device, so it
// is set once per kernel and device (devices 0..63); later launches cost one atomic load.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// `Kernel`: the __global__ function (one flag set per kernel); `bytes`: the limit to set, the same on
// every call for a given kernel.
template <auto Kernel>
void opt_in_shared_memory(int bytes) {
  static std::atomic<std::uint64_t> opted_in{0};
  int device = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  const std::uint64_t bit = std::uint64_t{1} << (device & 63);
  if ((opted_in.load(std::memory_order_relaxed) & bit) != 0) return;
  SDNQ_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  opted_in.fetch_or(bit, std::memory_order_relaxed);
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
