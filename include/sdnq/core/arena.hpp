#pragma once
// A stack-like bump allocator over one buffer that someone else owns (host memory, or device memory from
// sdnq/cuda/workspace.hpp). Models take their activations from an arena that is sized once and reused every
// forward pass, so memory stays bounded and predictable: no allocation, no fragmentation, and the high-water
// mark says exactly how large the buffer must be.
//
//   Arena arena(buffer, bytes, Device::cuda(0), "unet workspace");
//   {
//     ArenaScope scope(arena);                       // everything taken inside is given back at scope exit
//     TensorView hidden = arena.take({2, 4096, 1280}, DType::bf16, "down_blocks.0 hidden states");
//   }
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"

namespace sdnq {

class Arena {
 public:
  // Every tensor starts on this boundary: enough for 16-byte vector loads, cp.async and TMA (128 B).
  static constexpr std::size_t alignment = 256;

  Arena(void* base, std::size_t capacity, Device device, std::string name)
      : base_(static_cast<std::byte*>(base)), capacity_(capacity), device_(device), name_(std::move(name)) {
    SDNQ_REQUIRE(base != nullptr || capacity == 0, ShapeError, "arena '{}' has {} bytes but no buffer", name_,
                 capacity);
    SDNQ_REQUIRE(reinterpret_cast<std::uintptr_t>(base) % alignment == 0, ShapeError,
                 "arena '{}' buffer {} is not {}-byte aligned", name_, base, alignment);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Bytes `count` elements of `dtype` occupy once rounded up to the alignment: what a model adds up
  // when it computes the workspace size it needs.
  static std::size_t footprint(const Shape& shape, DType dtype) {
    return footprint(static_cast<std::size_t>(shape.numel()) * dtype_size(dtype));
  }
  static std::size_t footprint(std::size_t bytes) { return round_up(bytes); }

  // A contiguous tensor of `shape` carved from the buffer. Its contents are whatever was there before.
  // `purpose` names the activation in the error when the arena is too small.
  TensorView take(const Shape& shape, DType dtype, std::string_view purpose) {
    for (std::int64_t extent : shape)
      SDNQ_REQUIRE(extent >= 0, ShapeError, "arena '{}': negative extent in shape {} for {}", name_,
                   shape.to_string(), purpose);
    const std::size_t bytes = footprint(shape, dtype);
    SDNQ_REQUIRE(bytes <= capacity_ - used_, ResourceError,
                 "arena '{}' is too small for {} ({} {} = {} bytes): {} of {} bytes are in use; size the workspace "
                 "for at least {} bytes",
                 name_, purpose, dtype_name(dtype), shape.to_string(), bytes, used_, capacity_, used_ + bytes);
    TensorView view(base_ + used_, dtype, shape, device_);
    used_ += bytes;
    if (used_ > peak_) peak_ = used_;
    return view;
  }

  // Position to return to; `release` gives back everything taken after it (last in, first out).
  struct Mark {
    std::size_t offset;
  };
  Mark mark() const { return {used_}; }
  void release(Mark mark) {
    SDNQ_REQUIRE(mark.offset <= used_, ShapeError,
                 "arena '{}': release to offset {} which is above the {} bytes in use (marks released out of order)",
                 name_, mark.offset, used_);
    used_ = mark.offset;
  }
  void reset() { used_ = 0; }

  std::size_t capacity() const { return capacity_; }
  std::size_t used() const { return used_; }
  // The most bytes ever in use since construction or `reset_peak`: the size this workload needs.
  std::size_t peak() const { return peak_; }
  void reset_peak() { peak_ = used_; }
  Device device() const { return device_; }
  const std::string& name() const { return name_; }

 private:
  static std::size_t round_up(std::size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }

  std::byte* base_;
  std::size_t capacity_;
  Device device_;
  std::string name_;
  std::size_t used_ = 0;
  std::size_t peak_ = 0;
};

// Gives back, at scope exit, everything taken from `arena` inside the scope.
class ArenaScope {
 public:
  explicit ArenaScope(Arena& arena) : arena_(arena), mark_(arena.mark()) {}
  ~ArenaScope() {
    // After a reset() inside the scope the mark lies above `used`: nothing is left to give back.
    if (mark_.offset <= arena_.used()) arena_.release(mark_);
  }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  Arena& arena_;
  Arena::Mark mark_;
};

}  // namespace sdnq
