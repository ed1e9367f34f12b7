#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "sdnq/core/parallel.hpp"
#include "sdnq_catch.hpp"

TEST_CASE("parallel_for visits every index exactly once", "[core][parallel]") {
  for (std::int64_t length : {0, 1, 7, 1000, 100003}) {
    for (std::int64_t grain : {1, 16, 4096}) {
      std::vector<std::atomic<int>> visits(static_cast<std::size_t>(length));
      sdnq::parallel_for(0, length, grain, [&](std::int64_t begin, std::int64_t end) {
        REQUIRE(begin < end);
        for (std::int64_t i = begin; i < end; ++i) visits[static_cast<std::size_t>(i)].fetch_add(1);
      });
      for (auto& count : visits) REQUIRE(count.load() == 1);
    }
  }
}

TEST_CASE("parallel_for honours an offset range and the grain", "[core][parallel]") {
  std::atomic<std::int64_t> sum{0};
  std::atomic<int> short_chunks{0};
  sdnq::parallel_for(100, 10100, 64, [&](std::int64_t begin, std::int64_t end) {
    if (end - begin < 64 && end != 10100) short_chunks.fetch_add(1);
    std::int64_t local = 0;
    for (std::int64_t i = begin; i < end; ++i) local += i;
    sum.fetch_add(local);
  });
  std::int64_t expected = 0;
  for (std::int64_t i = 100; i < 10100; ++i) expected += i;
  REQUIRE(sum.load() == expected);
  REQUIRE(short_chunks.load() == 0);
}

TEST_CASE("parallel_for rethrows a worker's exception in the caller", "[core][parallel]") {
  REQUIRE(sdnq::parallel_thread_count() >= 1);
  const auto throwing = [] {
    sdnq::parallel_for(0, 100000, 1, [](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i)
        if (i == 77777) throw std::runtime_error("chunk failed at 77777");
    });
  };
  REQUIRE_THROWS_WITH(throwing(), "chunk failed at 77777");
  // The pool stays usable after a failed job.
  std::atomic<std::int64_t> count{0};
  sdnq::parallel_for(0, 5000, 1, [&](std::int64_t begin, std::int64_t end) { count.fetch_add(end - begin); });
  REQUIRE(count.load() == 5000);
}

TEST_CASE("nested parallel_for runs serially inside a chunk", "[core][parallel]") {
  std::atomic<std::int64_t> count{0};
  sdnq::parallel_for(0, 64, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const auto outer_thread = std::this_thread::get_id();
      sdnq::parallel_for(0, 1000, 1, [&](std::int64_t inner_begin, std::int64_t inner_end) {
        REQUIRE(std::this_thread::get_id() == outer_thread);
        count.fetch_add(inner_end - inner_begin);
      });
    }
  });
  REQUIRE(count.load() == 64 * 1000);
}

TEST_CASE("parallel_for may be called from several threads at once", "[core][parallel]") {
  std::atomic<std::int64_t> count{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int repeat = 0; repeat < 20; ++repeat)
        sdnq::parallel_for(0, 1000, 8, [&](std::int64_t begin, std::int64_t end) { count.fetch_add(end - begin); });
    });
  for (auto& caller : callers) caller.join();
  REQUIRE(count.load() == 4 * 20 * 1000);
}

TEST_CASE("parallel_copy copies every byte, across its 1 MiB pieces and their remainder", "[core][parallel]") {
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{1} << 20, (std::size_t{3} << 20) + 5}) {
    std::vector<std::uint8_t> source(bytes), target(bytes + 1, 0xAB);
    for (std::size_t i = 0; i < bytes; ++i) source[i] = static_cast<std::uint8_t>(i * 131 + (i >> 20));
    sdnq::parallel_copy(target.data(), source.data(), bytes);
    CHECK(std::equal(source.begin(), source.end(), target.begin()));
    CHECK(target[bytes] == 0xAB);  // nothing past the end
  }
}
