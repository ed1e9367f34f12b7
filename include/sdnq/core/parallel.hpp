#pragma once
// A small fork-join helper for the CPU reference code: sdnq::parallel_for(begin, end, grain, fn)
// calls fn(chunk_begin, chunk_end) on disjoint chunks covering [begin, end), on a lazily created
// static pool of std::threads. The pool has SDNQ_NUM_THREADS threads if that environment variable is
// set (a positive integer), otherwise std::thread::hardware_concurrency(); the calling thread is one
// of them. The first exception thrown by any chunk is rethrown in the caller once every running chunk
// has finished; chunks not yet started are skipped. A parallel_for inside a chunk runs serially on the
// thread that calls it, so nesting never deadlocks.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sdnq/core/error.hpp"

namespace sdnq {

namespace detail {

// SDNQ_NUM_THREADS if set, else the hardware concurrency (at least 1).
inline int configured_thread_count() {
  if (const char* text = std::getenv("SDNQ_NUM_THREADS"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    SDNQ_REQUIRE(end != text && *end == '\0' && value > 0 && value <= 4096, ConfigError,
                 "environment variable SDNQ_NUM_THREADS='{}' must be a positive integer (at most 4096)", text);
    return static_cast<int>(value);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

inline thread_local bool inside_parallel_chunk = false;

class ThreadPool {
 public:
  explicit ThreadPool(int thread_count) {
    workers_.reserve(static_cast<std::size_t>(thread_count - 1));
    for (int i = 1; i < thread_count; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs chunk(i) for i in [0, chunk_count) on all threads; rethrows the first exception.
  void run(std::int64_t chunk_count, const std::function<void(std::int64_t)>& chunk) {
    std::lock_guard one_job_at_a_time(submit_mutex_);
    {
      std::lock_guard lock(mutex_);
      job_ = &chunk;
      job_chunks_ = chunk_count;
      next_chunk_.store(0);
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    work_on(chunk);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return active_workers_ == 0; });
    job_ = nullptr;  // a worker waking late must not pick up a finished job
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void work_on(const std::function<void(std::int64_t)>& chunk) {
    inside_parallel_chunk = true;
    for (;;) {
      const std::int64_t index = next_chunk_.fetch_add(1);
      if (index >= job_chunks_) break;
      try {
        chunk(index);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_chunk_.store(job_chunks_);  // skip the chunks nobody started yet
      }
    }
    inside_parallel_chunk = false;
  }

  void worker_loop() {
    std::uint64_t seen_generation = 0;
    for (;;) {
      const std::function<void(std::int64_t)>* job = nullptr;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (generation_ != seen_generation && job_ != nullptr); });
        if (stopping_) return;
        seen_generation = generation_;
        job = job_;
        ++active_workers_;
      }
      work_on(*job);
      std::lock_guard lock(mutex_);
      if (--active_workers_ == 0) done_.notify_all();
    }
  }

  std::mutex submit_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(std::int64_t)>* job_ = nullptr;
  std::int64_t job_chunks_ = 0;
  std::atomic<std::int64_t> next_chunk_{0};
  int active_workers_ = 0;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

inline ThreadPool& thread_pool() {
  static ThreadPool pool(configured_thread_count());
  return pool;
}

}  // namespace detail

// Threads parallel_for uses (the caller included).
inline int parallel_thread_count() { return detail::thread_pool().size(); }

// Calls fn(chunk_begin, chunk_end) over disjoint chunks of [begin, end), each at least `grain` long
// (except the last), possibly concurrently. Returns when all chunks are done.
template <class Fn>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, Fn&& fn) {
  if (end <= begin) return;
  const std::int64_t length = end - begin;
  grain = std::max<std::int64_t>(grain, 1);
  if (length <= grain || detail::inside_parallel_chunk) {
    fn(begin, end);
    return;
  }
  auto& pool = detail::thread_pool();
  // About four chunks per thread balances uneven chunks without much scheduling overhead.
  const std::int64_t balanced = (length + 4 * pool.size() - 1) / (4 * pool.size());
  const std::int64_t chunk_length = std::max(grain, balanced);
  const std::int64_t chunk_count = (length + chunk_length - 1) / chunk_length;
  if (chunk_count == 1 || pool.size() == 1) {
    fn(begin, end);
    return;
  }
  const std::function<void(std::int64_t)> chunk = [&](std::int64_t index) {
    const std::int64_t chunk_begin = begin + index * chunk_length;
    fn(chunk_begin, std::min(end, chunk_begin + chunk_length));
  };
  pool.run(chunk_count, chunk);
}

// memcpy of `bytes` over the host threads in 1 MiB pieces: a load copies weights of hundreds of MB, and
// one thread (first touch of fresh pages included) is far from the memory bandwidth.
inline void parallel_copy(void* target, const void* source, std::size_t bytes) {
  constexpr std::int64_t piece = 1 << 20;
  const auto count = static_cast<std::int64_t>((bytes + piece - 1) / piece);
  parallel_for(0, count, 1, [&](std::int64_t first, std::int64_t last) {
    const auto begin = static_cast<std::size_t>(first * piece);
    const std::size_t end = std::min(bytes, static_cast<std::size_t>(last * piece));
    std::memcpy(static_cast<std::byte*>(target) + begin, static_cast<const std::byte*>(source) + begin, end - begin);
  });
}

}  // namespace sdnq
