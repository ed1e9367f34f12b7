#pragma once
// The served bytes of the download benchmark: one temporary folder (removed by its destructor, and by
// a signal-waiting thread on Ctrl-C / SIGTERM) holding a deterministic data file, written once, and
// its SHA-256 digests: of the whole file and of each of its equal slices.
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "sdnq/core/error.hpp"
#include "sdnq/hub/sha256.hpp"

namespace sdnq::bench {

// A fresh folder under `parent`, removed with everything in it when this object goes away.
class TemporaryFolder {
 public:
  TemporaryFolder(const std::filesystem::path& parent, std::string_view prefix) {
    std::string pattern = (parent / fmt::format("{}XXXXXX", prefix)).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw IoError(
          fmt::format("cannot create a temporary folder {}: {}; set TMPDIR or SDNQ_BENCH_DIR to a "
                      "writable folder",
                      pattern, std::strerror(errno)));
    path_ = pattern;
  }
  TemporaryFolder(const TemporaryFolder&) = delete;
  TemporaryFolder& operator=(const TemporaryFolder&) = delete;
  ~TemporaryFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Call before any thread starts, so that every thread inherits the blocked signals: Ctrl-C, SIGTERM
// and SIGHUP then reach only the thread started by remove_on_signal().
inline void block_termination_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, signal);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

// Waits for Ctrl-C / SIGTERM / SIGHUP in a thread of its own (no async-signal-safety limits there),
// removes `folder` and exits with 128 + the signal, as a shell reports a killed program.
inline void remove_on_signal(std::filesystem::path folder) {
  std::thread([folder = std::move(folder)] {
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, signal);
    int received = 0;
    if (sigwait(&signals, &received) != 0) return;
    std::error_code ignored;
    std::filesystem::remove_all(folder, ignored);
    fmt::print(stderr, "\nbench_download: signal {}, removed {}\n", received, folder.string());
    std::_Exit(128 + received);
  }).detach();
}

inline void require_free_space(const std::filesystem::path& folder, std::uint64_t needed_bytes) {
  struct statvfs info {};
  if (::statvfs(folder.c_str(), &info) != 0)
    throw IoError(fmt::format("cannot check the free space of {}: {}", folder.string(), std::strerror(errno)));
  const std::uint64_t available = static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize;
  if (available < needed_bytes)
    throw IoError(
        fmt::format("{} has {:.2f} GiB free but the benchmark needs {:.2f} GiB (the served data plus "
                    "one downloaded copy); free space, point SDNQ_BENCH_DIR / TMPDIR elsewhere or use "
                    "a smaller SDNQ_BENCH_DOWNLOAD_SIZE",
                    folder.string(), available / 1073741824.0, needed_bytes / 1073741824.0));
}

// Deterministic pseudo-random 64-bit words (splitmix64 of the word index): incompressible, and the
// same bytes on every run.
inline std::uint64_t data_word(std::uint64_t index) {
  std::uint64_t z = (index + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline void fill_data(std::span<std::uint64_t> words, std::uint64_t first_index) {
  for (std::size_t i = 0; i < words.size(); ++i) words[i] = data_word(first_index + i);
}

struct ServedData {
  std::filesystem::path file;
  std::uint64_t size = 0;
  std::string sha256;  // of the whole file
  std::vector<std::uint64_t> slice_offsets, slice_sizes;
  std::vector<std::string> slice_sha256;  // of each slice
};

// Writes `size` bytes (a multiple of 8) to `file` and hashes them whole and in `slice_count` equal
// slices (the last takes the remainder).
inline ServedData write_served_data(const std::filesystem::path& file, std::uint64_t size, int slice_count) {
  ServedData data;
  data.file = file;
  data.size = size;
  const std::uint64_t slice_size = size / static_cast<std::uint64_t>(slice_count) / 8 * 8;
  for (int i = 0; i < slice_count; ++i) {
    data.slice_offsets.push_back(static_cast<std::uint64_t>(i) * slice_size);
    data.slice_sizes.push_back(i + 1 == slice_count ? size - data.slice_offsets.back() : slice_size);
  }
  std::FILE* out = std::fopen(file.c_str(), "wb");
  if (out == nullptr) throw IoError(fmt::format("cannot create {}: {}", file.string(), std::strerror(errno)));
  hub::Sha256 whole, slice;
  std::size_t slice_index = 0;
  std::vector<std::uint64_t> words(1u << 19);  // 4 MiB per write
  for (std::uint64_t written = 0; written < size;) {
    const std::uint64_t chunk = std::min<std::uint64_t>(size - written, words.size() * 8);
    fill_data(std::span(words.data(), chunk / 8), written / 8);
    auto bytes = std::as_bytes(std::span(words.data(), chunk / 8));
    if (std::fwrite(bytes.data(), 1, bytes.size(), out) != bytes.size()) {
      int error = errno;
      std::fclose(out);
      throw IoError(fmt::format("cannot write {}: {}", file.string(), std::strerror(error)));
    }
    whole.update(bytes);
    // Feed the slice hashes, finishing each slice where it ends inside this chunk.
    for (std::uint64_t at = written; at < written + chunk;) {
      const std::uint64_t slice_end = data.slice_offsets[slice_index] + data.slice_sizes[slice_index];
      const std::uint64_t take = std::min(slice_end, written + chunk) - at;
      slice.update(bytes.subspan(at - written, take));
      at += take;
      if (at == slice_end) {
        data.slice_sha256.push_back(slice.finish_hex());
        ++slice_index;
      }
    }
    written += chunk;
  }
  if (std::fclose(out) != 0) throw IoError(fmt::format("cannot write {}: {}", file.string(), std::strerror(errno)));
  data.sha256 = whole.finish_hex();
  return data;
}

}  // namespace sdnq::bench
