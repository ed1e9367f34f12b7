#pragma once
// A pool of device memory for many long-lived tensors: a model's weights.
//
// cudaMalloc rounds every large allocation up to whole 2 MiB pages, so a model uploaded tensor by tensor
// (FLUX.1: ~2000 codes, scales and SVD factors) loses about a megabyte per tensor. The pool takes blocks
// of whole pages and places tensors in them best fit (sdnq/core/range_allocator.hpp), so the tail a
// large tensor leaves holds the small ones that follow; a block goes back to CUDA when its last tensor
// is freed. Tensors keep the pool's bookkeeping alive: they may outlive the DevicePool object.
//
//   cuda::DevicePool pool(device, "FLUX.1 transformer weights");
//   {
//     cuda::DevicePoolScope pooled(pool);  // cuda::empty / to_device on this thread now use the pool
//     model = load(...);
//   }
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <cuda_runtime_api.h>

#include "sdnq/core/error.hpp"
#include "sdnq/core/range_allocator.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/device_memory.hpp"

namespace sdnq::cuda {

class DevicePool {
 public:
  static constexpr std::size_t page_bytes = std::size_t{2} << 20;  // the granule cudaMalloc rounds to
  static constexpr std::size_t alignment = 256;                    // as cudaMalloc and Arena

  explicit DevicePool(int device = 0, std::string name = "device pool")
      : state_(std::make_shared<State>(device, std::move(name))) {
    require_device_exists(device);
  }

  int device() const { return state_->device; }
  const std::string& name() const { return state_->name; }

  // Uninitialised memory for a contiguous tensor of `shape` on the pool's device.
  Tensor empty(Shape shape, DType dtype) {
    for (std::int64_t extent : shape)
      SDNQ_REQUIRE(extent >= 0, ShapeError, "{}: negative extent in shape {}", state_->name, shape.to_string());
    const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * dtype_size(dtype);
    void* data = nullptr;
    RangeAllocator::Range range = state_->take(bytes, dtype, shape, data);
    std::shared_ptr<void> owner(data, [state = state_, range](void*) { state->give_back(range); });
    return Tensor::adopt(data, std::move(owner), dtype, std::move(shape), Device::cuda(state_->device));
  }

  // Device memory the pool holds (whole pages), and the part of it live tensors use.
  std::size_t reserved_bytes() const {
    std::lock_guard lock(state_->mutex);
    return state_->ranges.block_bytes();
  }
  std::size_t used_bytes() const {
    std::lock_guard lock(state_->mutex);
    return state_->ranges.used_bytes();
  }

 private:
  struct State {
    State(int device_index, std::string pool_name) : device(device_index), name(std::move(pool_name)) {}
    ~State() {
      for (const auto& [block, base] : bases) (void)cudaFree(base);  // only reached with every tensor gone
    }

    RangeAllocator::Range take(std::size_t bytes, DType dtype, const Shape& shape, void*& data) {
      std::lock_guard lock(mutex);
      std::optional<RangeAllocator::Range> range = ranges.take(bytes);
      if (!range) {
        const std::size_t size = (ranges.round_up(bytes > 0 ? bytes : 1) + page_bytes - 1) / page_bytes * page_bytes;
        DeviceGuard guard(device);
        void* base = nullptr;
        const cudaError_t status = cudaMalloc(&base, size);
        if (status != cudaSuccess) {
          (void)cudaGetLastError();
          throw CudaError(sdnq::detail::format_message(
              "{}: cannot allocate a block of {} bytes on cuda:{} for a {} tensor {} ({} bytes held already): {}", name,
              size, device, dtype_name(dtype), shape.to_string(), ranges.block_bytes(), cudaGetErrorString(status)));
        }
        const std::uint64_t block = next_block++;
        bases[block] = base;
        ranges.add_block(block, size);
        range = ranges.take(bytes);
      }
      data = static_cast<std::byte*>(bases.at(range->block)) + range->offset;
      return *range;
    }

    // Runs from a tensor's destructor: reports nothing, throws nothing.
    void give_back(const RangeAllocator::Range& range) noexcept {
      try {
        std::lock_guard lock(mutex);
        if (!ranges.give_back(range)) return;
        ranges.remove_block(range.block);
        const auto base = bases.find(range.block);
        if (cudaFree(base->second) != cudaSuccess) (void)cudaGetLastError();
        bases.erase(base);
      } catch (...) {
      }
    }

    const int device;
    const std::string name;
    mutable std::mutex mutex;
    RangeAllocator ranges{alignment};
    std::map<std::uint64_t, void*> bases;
    std::uint64_t next_block = 0;
  };

  std::shared_ptr<State> state_;
};

// While alive, cuda::empty (and so to_device, zeros, clone) on this thread takes memory for the pool's
// device from `pool`; the previous choice comes back at scope exit. Scopes nest.
class DevicePoolScope {
 public:
  explicit DevicePoolScope(DevicePool& pool) : previous_(detail::pool_hook()) {
    detail::pool_hook() = detail::PoolHook{&pool, pool.device(), &allocate};
  }
  ~DevicePoolScope() { detail::pool_hook() = previous_; }
  DevicePoolScope(const DevicePoolScope&) = delete;
  DevicePoolScope& operator=(const DevicePoolScope&) = delete;

  // Whether a scope routes `device`'s allocations on this thread.
  static bool active(int device) { return detail::pool_hook().pool != nullptr && detail::pool_hook().device == device; }

 private:
  static Tensor allocate(void* pool, Shape shape, DType dtype) {
    return static_cast<DevicePool*>(pool)->empty(std::move(shape), dtype);
  }
  detail::PoolHook previous_;
};

// For a model's load(): pools its weights in a pool of their own, unless the caller already opened a
// DevicePoolScope for `device` (e.g. to keep several components in one pool).
class PooledLoad {
 public:
  PooledLoad(int device, std::string name) {
    if (DevicePoolScope::active(device)) return;
    pool_.emplace(device, std::move(name));
    scope_.emplace(*pool_);
  }

 private:
  std::optional<DevicePool> pool_;
  std::optional<DevicePoolScope> scope_;
};

}  // namespace sdnq::cuda
