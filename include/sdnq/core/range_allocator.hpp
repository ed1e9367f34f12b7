#pragma once
// Bookkeeping of a sub-allocator: which byte ranges of which blocks are free. The blocks are memory
// someone else owns (the device memory pool of sdnq/cuda/device_pool.hpp); this class only hands out
// and takes back ranges, so it is testable without a GPU.
//
// A request takes the smallest free range that holds it (best fit), so the tail of a block that a large
// tensor left is filled by the small tensors that come later; ranges given back merge with their free
// neighbours. Every size is rounded up to `alignment`, so every offset stays a multiple of it.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "sdnq/core/error.hpp"

namespace sdnq {

class RangeAllocator {
 public:
  struct Range {
    std::uint64_t block = 0;
    std::size_t offset = 0;
    std::size_t bytes = 0;  // rounded up to the alignment
  };

  explicit RangeAllocator(std::size_t alignment) : alignment_(alignment) {
    SDNQ_REQUIRE(alignment > 0 && (alignment & (alignment - 1)) == 0, ShapeError,
                 "range allocator: alignment must be a power of two, got {}", alignment);
  }

  std::size_t alignment() const { return alignment_; }
  std::size_t round_up(std::size_t bytes) const { return (bytes + alignment_ - 1) / alignment_ * alignment_; }

  // A new block of `bytes` (a multiple of the alignment), all free.
  void add_block(std::uint64_t block, std::size_t bytes) {
    SDNQ_REQUIRE(bytes > 0 && bytes % alignment_ == 0, ShapeError,
                 "range allocator: block size {} is not a positive multiple of {}", bytes, alignment_);
    SDNQ_REQUIRE(blocks_.count(block) == 0, ShapeError, "range allocator: block {} added twice", block);
    blocks_[block] = BlockUse{bytes, 0};
    insert_free(block, 0, bytes);
  }

  // Removes a block none of whose ranges are taken.
  void remove_block(std::uint64_t block) {
    const auto found = blocks_.find(block);
    SDNQ_REQUIRE(found != blocks_.end() && found->second.used == 0, ShapeError,
                 "range allocator: block {} is unknown or still in use", block);
    erase_free(block, 0, found->second.size);  // a block with nothing taken is one free range
    blocks_.erase(found);
  }

  // The smallest free range of at least `bytes` (rounded up), or nothing when no block has room.
  std::optional<Range> take(std::size_t bytes) {
    const std::size_t size = round_up(bytes > 0 ? bytes : 1);
    const auto fit = by_size_.lower_bound(std::make_tuple(size, std::uint64_t{0}, std::size_t{0}));
    if (fit == by_size_.end()) return std::nullopt;
    const auto [free_size, block, offset] = *fit;
    erase_free(block, offset, free_size);
    if (free_size > size) insert_free(block, offset + size, free_size - size);
    blocks_[block].used += size;
    used_ += size;
    return Range{block, offset, size};
  }

  // Gives a taken range back; true when its block has nothing taken any more.
  bool give_back(const Range& range) {
    const auto found = blocks_.find(range.block);
    SDNQ_REQUIRE(found != blocks_.end() && found->second.used >= range.bytes, ShapeError,
                 "range allocator: range [{}, +{}) of block {} was not taken", range.offset, range.bytes, range.block);
    std::size_t offset = range.offset, size = range.bytes;
    // Merge with the free neighbours on either side.
    auto next = by_position_.lower_bound({range.block, offset});
    if (next != by_position_.end() && next->first.first == range.block && next->first.second == offset + size) {
      const std::size_t next_size = next->second;
      erase_free(range.block, offset + size, next_size);
      size += next_size;
    }
    next = by_position_.lower_bound({range.block, offset});
    if (next != by_position_.begin()) {
      const auto previous = std::prev(next);
      if (previous->first.first == range.block && previous->first.second + previous->second == offset) {
        const std::size_t previous_offset = previous->first.second, previous_size = previous->second;
        erase_free(range.block, previous_offset, previous_size);
        offset = previous_offset;
        size += previous_size;
      }
    }
    insert_free(range.block, offset, size);
    found->second.used -= range.bytes;
    used_ -= range.bytes;
    return found->second.used == 0;
  }

  std::size_t used_bytes() const { return used_; }
  std::size_t block_bytes() const {
    std::size_t total = 0;
    for (const auto& [block, use] : blocks_) total += use.size;
    return total;
  }
  std::size_t blocks() const { return blocks_.size(); }

 private:
  struct BlockUse {
    std::size_t size = 0;
    std::size_t used = 0;
  };

  void insert_free(std::uint64_t block, std::size_t offset, std::size_t size) {
    by_size_.emplace(size, block, offset);
    by_position_.emplace(std::make_pair(block, offset), size);
  }
  void erase_free(std::uint64_t block, std::size_t offset, std::size_t size) {
    by_size_.erase(std::make_tuple(size, block, offset));
    by_position_.erase({block, offset});
  }

  std::size_t alignment_;
  std::size_t used_ = 0;
  std::map<std::uint64_t, BlockUse> blocks_;
  std::set<std::tuple<std::size_t, std::uint64_t, std::size_t>> by_size_;      // (size, block, offset)
  std::map<std::pair<std::uint64_t, std::size_t>, std::size_t> by_position_;  // (block, offset) -> size
};

}  // namespace sdnq
