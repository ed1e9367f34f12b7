#pragma once
// Device memory for activations: one allocation made up front, handed out by an Arena (sdnq/core/arena.hpp).
// A model computes the bytes its forward pass needs, allocates a Workspace of that size once, and every
// forward pass takes its activations from it, so peak GPU memory is weights + workspace, known in advance.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/device_memory.hpp"

namespace sdnq::cuda {

class Workspace {
 public:
  // `bytes` of uninitialised memory on cuda:`device`; `name` appears in every error about it.
  Workspace(std::size_t bytes, int device, std::string name)
      : storage_(empty(Shape{static_cast<std::int64_t>(bytes)}, DType::u8, device)),
        arena_(storage_.data(), bytes, Device::cuda(device), std::move(name)) {}

  Arena& arena() { return arena_; }
  std::size_t capacity() const { return arena_.capacity(); }
  std::size_t peak() const { return arena_.peak(); }

 private:
  Tensor storage_;  // [bytes] u8; cudaMalloc returns 256-byte aligned pointers, as Arena requires
  Arena arena_;
};

}  // namespace sdnq::cuda
