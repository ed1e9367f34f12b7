#include "sdnq_catch.hpp"

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "sdnq/core/arena.hpp"

using namespace sdnq;

namespace {
struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t bytes) : data(std::aligned_alloc(Arena::alignment, bytes), &std::free) {}
  std::unique_ptr<void, decltype(&std::free)> data;
};
std::uintptr_t address(const TensorView& view) { return reinterpret_cast<std::uintptr_t>(view.data()); }
}  // namespace

TEST_CASE("Arena: tensors are carved in order on 256-byte boundaries and given back last in, first out",
          "[core][arena]") {
  AlignedBuffer buffer(4096);
  Arena arena(buffer.data.get(), 4096, Device::cpu(), "test arena");
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.data.get());

  TensorView first = arena.take({3, 5}, DType::f32, "first");  // 60 bytes -> one 256-byte slot
  CHECK(address(first) == base);
  CHECK(first.shape() == Shape{3, 5});
  CHECK(first.dtype() == DType::f32);
  CHECK(arena.used() == 256);

  const Arena::Mark after_first = arena.mark();
  TensorView second = arena.take({300}, DType::bf16, "second");  // 600 bytes -> 768
  CHECK(address(second) == base + 256);
  CHECK(arena.used() == 256 + 768);
  arena.release(after_first);
  CHECK(arena.used() == 256);
  CHECK(arena.peak() == 256 + 768);

  // The released space is handed out again.
  TensorView third = arena.take({10}, DType::u8, "third");
  CHECK(address(third) == base + 256);
  CHECK(Arena::footprint({300}, DType::bf16) == 768);
  CHECK(Arena::footprint({0}, DType::f32) == 0);
}

TEST_CASE("Arena: scopes give back what was taken inside them", "[core][arena]") {
  AlignedBuffer buffer(2048);
  Arena arena(buffer.data.get(), 2048, Device::cpu(), "scoped");
  (void)arena.take({64}, DType::f32, "outer");
  {
    ArenaScope scope(arena);
    (void)arena.take({64}, DType::f32, "inner a");
    {
      ArenaScope inner(arena);
      (void)arena.take({128}, DType::f32, "inner b");
      CHECK(arena.used() == 256 + 256 + 512);
    }
    CHECK(arena.used() == 512);
  }
  CHECK(arena.used() == 256);
  CHECK(arena.peak() == 1024);
  arena.reset_peak();
  CHECK(arena.peak() == 256);
  {
    ArenaScope scope(arena);
    arena.reset();  // the scope's mark now lies above `used`: leaving it must not throw
  }
  CHECK(arena.used() == 0);
}

TEST_CASE("Arena: running out names the arena, the activation and the size needed", "[core][arena]") {
  AlignedBuffer buffer(1024);
  Arena arena(buffer.data.get(), 1024, Device::cpu(), "unet workspace");
  (void)arena.take({128}, DType::f32, "hidden");  // 512 bytes
  CHECK_THROWS_AS(arena.take({256}, DType::f32, "down_blocks.0 residual"), ResourceError);
  CHECK_THROWS_WITH(arena.take({256}, DType::f32, "down_blocks.0 residual"),
                    Catch::Matchers::Contains("unet workspace") && Catch::Matchers::Contains("down_blocks.0 residual") &&
                        Catch::Matchers::Contains("at least 1536 bytes"));
  CHECK(arena.used() == 512);  // a failed take changes nothing
  CHECK_THROWS_AS(arena.take({-1, 4}, DType::f32, "negative"), ShapeError);
  const Arena::Mark beyond{4096};
  CHECK_THROWS_AS(arena.release(beyond), ShapeError);
}

TEST_CASE("Arena: a misaligned or missing buffer is refused", "[core][arena]") {
  AlignedBuffer buffer(1024);
  auto* misaligned = static_cast<std::byte*>(buffer.data.get()) + 16;
  CHECK_THROWS_AS(Arena(misaligned, 512, Device::cpu(), "misaligned"), ShapeError);
  CHECK_THROWS_AS(Arena(nullptr, 512, Device::cpu(), "missing"), ShapeError);
  Arena empty_arena(nullptr, 0, Device::cpu(), "empty");
  CHECK_THROWS_AS(empty_arena.take({1}, DType::u8, "anything"), ResourceError);
  CHECK(empty_arena.take({0}, DType::u8, "nothing").numel() == 0);
}
