#include "sdnq_catch.hpp"

#include <cstdint>
#include <random>
#include <vector>

#include "sdnq/core/range_allocator.hpp"

using namespace sdnq;

TEST_CASE("RangeAllocator: best fit fills the tail a large range left, sizes round up to the alignment",
          "[core][range_allocator]") {
  RangeAllocator ranges(256);
  ranges.add_block(7, 4096);
  ranges.add_block(9, 1024);

  // 1000 bytes -> 1024: the 1024-byte block is the best fit, not the first block.
  const auto exact = ranges.take(1000);
  REQUIRE(exact);
  CHECK(exact->block == 9);
  CHECK(exact->offset == 0);
  CHECK(exact->bytes == 1024);

  const auto large = ranges.take(3000);  // -> 3072 of block 7, leaving its last 1024 bytes
  REQUIRE(large);
  CHECK(large->block == 7);
  CHECK(large->offset == 0);
  const auto tail = ranges.take(1);  // 256 bytes from that tail
  REQUIRE(tail);
  CHECK(tail->block == 7);
  CHECK(tail->offset == 3072);
  CHECK(tail->bytes == 256);
  CHECK(ranges.used_bytes() == 1024 + 3072 + 256);
  CHECK_FALSE(ranges.take(1024));  // 768 bytes are left, in one range
  CHECK(ranges.take(768));
}

TEST_CASE("RangeAllocator: ranges given back merge with their neighbours; an empty block can be removed",
          "[core][range_allocator]") {
  RangeAllocator ranges(256);
  ranges.add_block(1, 1024);
  const auto a = ranges.take(256), b = ranges.take(256), c = ranges.take(256), d = ranges.take(256);
  REQUIRE((a && b && c && d));
  CHECK_FALSE(ranges.take(1));
  CHECK_FALSE(ranges.give_back(*b));
  CHECK_FALSE(ranges.give_back(*d));
  CHECK_FALSE(ranges.take(512));  // two free ranges of 256, not adjacent
  CHECK_FALSE(ranges.give_back(*c));  // joins b and d: one range of 768
  const auto joined = ranges.take(768);
  REQUIRE(joined);
  CHECK(joined->offset == 256);
  CHECK_FALSE(ranges.give_back(*joined));
  CHECK(ranges.give_back(*a));  // the block is empty again
  CHECK_THROWS_AS(ranges.give_back(*a), ShapeError);  // not taken any more
  const auto whole = ranges.take(1024);
  REQUIRE(whole);
  CHECK(whole->offset == 0);
  CHECK_THROWS_AS(ranges.remove_block(1), ShapeError);  // still in use
  CHECK(ranges.give_back(*whole));
  ranges.remove_block(1);
  CHECK(ranges.blocks() == 0);
  CHECK_FALSE(ranges.take(1));
}

TEST_CASE("RangeAllocator: bad blocks and alignments are refused", "[core][range_allocator]") {
  CHECK_THROWS_AS(RangeAllocator(48), ShapeError);
  RangeAllocator ranges(256);
  CHECK_THROWS_AS(ranges.add_block(1, 1000), ShapeError);
  ranges.add_block(1, 1024);
  CHECK_THROWS_AS(ranges.add_block(1, 1024), ShapeError);
  CHECK_THROWS_AS(ranges.remove_block(2), ShapeError);
}

TEST_CASE("RangeAllocator: random takes and gives never overlap and account for every byte",
          "[core][range_allocator]") {
  // An independent model: one owner per 256-byte slot of each block.
  constexpr std::size_t slot = 256;
  const std::vector<std::size_t> block_slots{64, 16, 200};
  RangeAllocator ranges(slot);
  std::vector<std::vector<int>> owner(block_slots.size());
  for (std::size_t b = 0; b < block_slots.size(); ++b) {
    ranges.add_block(b, block_slots[b] * slot);
    owner[b].assign(block_slots[b], -1);
  }
  std::mt19937 random(1234);
  std::vector<RangeAllocator::Range> live;
  std::size_t used = 0;
  for (int step = 0; step < 4000; ++step) {
    if (live.empty() || random() % 3 != 0) {
      const std::size_t bytes = 1 + random() % (24 * slot);
      const auto range = ranges.take(bytes);
      if (!range) continue;
      REQUIRE(range->bytes == (bytes + slot - 1) / slot * slot);
      REQUIRE(range->offset % slot == 0);
      REQUIRE(range->offset + range->bytes <= block_slots[range->block] * slot);
      for (std::size_t s = range->offset / slot; s < (range->offset + range->bytes) / slot; ++s) {
        REQUIRE(owner[range->block][s] == -1);
        owner[range->block][s] = step;
      }
      live.push_back(*range);
      used += range->bytes;
    } else {
      const std::size_t pick = random() % live.size();
      const RangeAllocator::Range range = live[pick];
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(pick));
      for (std::size_t s = range.offset / slot; s < (range.offset + range.bytes) / slot; ++s)
        owner[range.block][s] = -1;
      bool block_empty = true;
      for (int o : owner[range.block]) block_empty = block_empty && o == -1;
      REQUIRE(ranges.give_back(range) == block_empty);
      used -= range.bytes;
    }
    REQUIRE(ranges.used_bytes() == used);
  }
  // Everything given back: each block is one free range again.
  for (const auto& range : live) ranges.give_back(range);
  CHECK(ranges.used_bytes() == 0);
  for (std::size_t b = 0; b < block_slots.size(); ++b) {
    const auto whole = ranges.take(block_slots[b] * slot);
    REQUIRE(whole);
    CHECK(whole->offset == 0);
  }
}
