#pragma once
// Device memory for sdnq::Tensor: allocation on a GPU, copies in every direction, and checks that a
// view's pointer really lives where the view says. Plain C++ over the CUDA runtime API (no nvcc).
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <cuda_runtime_api.h>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"

namespace sdnq::cuda {

inline int device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();  // not sticky: clear it so later checks do not report it again
    return 0;
  }
  SDNQ_CUDA_CHECK(status);
  return count;
}

inline void require_device_exists(int device) {
  const int count = device_count();
  SDNQ_REQUIRE(device >= 0 && device < count, UnsupportedError,
               "cuda:{} does not exist: this machine has {} CUDA device(s)", device, count);
}

// Makes `device` the current CUDA device for a scope; the previous one is current again after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    SDNQ_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) {
      require_device_exists(device);
      SDNQ_CUDA_CHECK(cudaSetDevice(device));
    }
    current_ = device;
  }
  ~DeviceGuard() {
    if (current_ != previous_) (void)cudaSetDevice(previous_);  // destructors cannot throw; best effort
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  int current_ = 0;
};

namespace detail {

// Tensor's deleter for cudaMalloc'd memory. A failure here (e.g. at process exit, once the runtime
// is unloading) cannot be reported from a destructor; it is cleared so that it is not blamed on the
// next unrelated call.
inline void free_device_memory(void* data) {
  if (cudaFree(data) != cudaSuccess) (void)cudaGetLastError();
}

inline std::string describe_memory(const cudaPointerAttributes& attributes) {
  switch (attributes.type) {
    case cudaMemoryTypeDevice:
      return sdnq::detail::format_message("device memory on cuda:{}", attributes.device);
    case cudaMemoryTypeManaged:
      return "managed memory";
    case cudaMemoryTypeHost:
      return "pinned host memory";
    default:
      return "host memory (not registered with CUDA)";
  }
}

}  // namespace detail

// Throws ShapeError unless the memory behind `view` is where its device says: device (or managed)
// memory of that GPU for a cuda view, host (pageable, pinned or managed) memory for a cpu view.
// `role` names the tensor in the message, e.g. "copy source".
inline void check_pointer_location(const TensorView& view, std::string_view role = "tensor") {
  if (view.data() == nullptr) {
    SDNQ_REQUIRE(view.nbytes() == 0, ShapeError, "{} claims to live on {} but has no memory (null pointer)", role,
                 view.device().to_string());
    return;
  }
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, view.data());
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    throw CudaError(sdnq::detail::format_message("cannot tell where {} (pointer {}, claimed {}) lives: {}", role,
                                                 view.data(), view.device().to_string(), cudaGetErrorString(status)));
  }
  const bool on_claimed_device =
      view.device().is_cuda() ? attributes.type == cudaMemoryTypeManaged || (attributes.type == cudaMemoryTypeDevice &&
                                                                             attributes.device == view.device().index)
                              : attributes.type != cudaMemoryTypeDevice;
  SDNQ_REQUIRE(on_claimed_device, ShapeError, "{} claims to live on {} but its pointer {} is {}", role,
               view.device().to_string(), view.data(), detail::describe_memory(attributes));
}

namespace detail {

// Where cuda::empty takes memory on this thread: its own cudaMalloc, or the pool of an active
// DevicePoolScope (sdnq/cuda/device_pool.hpp) for that pool's device.
struct PoolHook {
  void* pool = nullptr;
  int device = -1;
  Tensor (*allocate)(void* pool, Shape shape, DType dtype) = nullptr;
};
inline PoolHook& pool_hook() {
  thread_local PoolHook hook;
  return hook;
}

}  // namespace detail

// Uninitialised device memory on cuda:`device` for a contiguous tensor of `shape` (from the active
// DevicePoolScope's pool when there is one for `device`).
inline Tensor empty(Shape shape, DType dtype, int device = 0) {
  for (std::int64_t extent : shape)
    SDNQ_REQUIRE(extent >= 0, ShapeError, "negative extent in shape {}", shape.to_string());
  if (const detail::PoolHook& hook = detail::pool_hook(); hook.pool != nullptr && hook.device == device)
    return hook.allocate(hook.pool, std::move(shape), dtype);
  const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
  DeviceGuard guard(device);
  void* data = nullptr;
  // At least one byte, so that an empty tensor is still a defined one, as on the host.
  const cudaError_t status = cudaMalloc(&data, bytes > 0 ? bytes : 1);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    throw CudaError(sdnq::detail::format_message("cannot allocate {} bytes for a {} tensor {} on cuda:{}: {}", bytes,
                                                 dtype_name(dtype), shape.to_string(), device,
                                                 cudaGetErrorString(status)));
  }
  return Tensor::adopt(data, &detail::free_device_memory, dtype, shape, Device::cuda(device));
}

// Device memory set to zero bytes, ordered on `stream`.
inline Tensor zeros(Shape shape, DType dtype, int device = 0, cudaStream_t stream = nullptr) {
  Tensor tensor = empty(shape, dtype, device);
  if (tensor.nbytes() > 0) SDNQ_CUDA_CHECK(cudaMemsetAsync(tensor.data(), 0, tensor.nbytes(), stream));
  return tensor;
}

// Copies `source` into `destination` (same dtype and shape, both contiguous), host or device on
// either side, enqueued on `stream`. CUDA's rules for pageable host memory apply: a copy to it has
// finished when this returns, a copy from it has been staged (the host buffer may be reused).
inline void copy(TensorView destination, TensorView source, cudaStream_t stream = nullptr) {
  SDNQ_REQUIRE(destination.dtype() == source.dtype() && destination.shape() == source.shape(), ShapeError,
               "cuda::copy from {} {} on {} into {} {} on {}: dtype and shape must agree", dtype_name(source.dtype()),
               source.shape().to_string(), source.device().to_string(), dtype_name(destination.dtype()),
               destination.shape().to_string(), destination.device().to_string());
  SDNQ_REQUIRE(source.is_contiguous(), ShapeError,
               "cuda::copy needs a contiguous source; got shape {} with strides {} on {}", source.shape().to_string(),
               source.strides().to_string(), source.device().to_string());
  SDNQ_REQUIRE(destination.is_contiguous(), ShapeError,
               "cuda::copy needs a contiguous destination; got shape {} with strides {} on {}",
               destination.shape().to_string(), destination.strides().to_string(), destination.device().to_string());
  if (source.nbytes() == 0) return;
  check_pointer_location(source, "copy source");
  check_pointer_location(destination, "copy destination");

  const Device from = source.device();
  const Device to = destination.device();
  if (from.is_cuda() && to.is_cuda() && from.index != to.index) {
    SDNQ_CUDA_CHECK(
        cudaMemcpyPeerAsync(destination.data(), to.index, source.data(), from.index, source.nbytes(), stream));
    return;
  }
  const cudaMemcpyKind kind = from.is_cuda() ? (to.is_cuda() ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                                             : (to.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  SDNQ_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), source.nbytes(), kind, stream));
}

// A device copy of a host tensor (any strides), complete when this returns.
inline Tensor to_device(TensorView host, int device = 0, cudaStream_t stream = nullptr) {
  SDNQ_REQUIRE(host.device().is_cpu(), ShapeError, "to_device takes a host tensor; this one is on {}",
               host.device().to_string());
  Tensor contiguous_copy;  // only for a strided source
  if (!host.is_contiguous()) {
    contiguous_copy = Tensor::empty(host.shape(), host.dtype());
    sdnq::copy(contiguous_copy, host);
    host = contiguous_copy;
  }
  Tensor result = empty(host.shape(), host.dtype(), device);
  copy(result, host, stream);
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

// A host copy of a contiguous device tensor, complete when this returns.
inline Tensor to_host(TensorView device_view, cudaStream_t stream = nullptr) {
  SDNQ_REQUIRE(device_view.device().is_cuda(), ShapeError, "to_host takes a device tensor; this one is on {}",
               device_view.device().to_string());
  Tensor result = Tensor::empty(device_view.shape(), device_view.dtype());
  copy(result, device_view, stream);
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  return result;
}

// A new device tensor on the same GPU holding a copy of a contiguous device tensor, ordered on `stream`.
inline Tensor clone(TensorView device_view, cudaStream_t stream = nullptr) {
  SDNQ_REQUIRE(device_view.device().is_cuda(), ShapeError, "cuda::clone takes a device tensor; this one is on {}",
               device_view.device().to_string());
  Tensor result = empty(device_view.shape(), device_view.dtype(), device_view.device().index);
  copy(result, device_view, stream);
  return result;
}

}  // namespace sdnq::cuda
