#pragma once
// Writes a file so that readers only ever see the old content or the complete new content: bytes go
// to a temporary file in the same folder, which is fsync'ed and renamed over the target on commit().
// Destroyed without commit() (an exception, a write error), the temporary is removed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "sdnq/core/error.hpp"

namespace sdnq::io {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path target) : target_(std::move(target)) {
    SDNQ_REQUIRE(!target_.filename().empty(), IoError, "cannot write {}: the path names no file", target_.string());
    const std::filesystem::path folder = target_.parent_path().empty() ? "." : target_.parent_path();
    std::random_device entropy;
    // O_EXCL with a random name: no clash with a concurrent writer, and 0666 & ~umask permissions.
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
      temporary_ = folder / fmt::format(".{}.tmp-{}-{:08x}", target_.filename().string(), ::getpid(), entropy());
      fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ < 0 && errno != EEXIST)
        throw IoError(fmt::format("cannot write {}: creating the temporary file {} failed: {}", target_.string(),
                                  temporary_.string(), std::strerror(errno)));
    }
    SDNQ_REQUIRE(fd_ >= 0, IoError, "cannot write {}: no free temporary file name in {}", target_.string(),
                 folder.string());
  }
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter() { discard(); }

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temporary() const { return temporary_; }
  std::uint64_t bytes_written() const { return bytes_written_; }

  void write(std::span<const std::byte> bytes) {
    SDNQ_REQUIRE(fd_ >= 0, IoError, "cannot write {}: the file was already committed or discarded", target_.string());
    while (!bytes.empty()) {
      ssize_t written = ::write(fd_, bytes.data(), bytes.size());
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) fail("writing", written < 0 ? errno : ENOSPC);
      bytes = bytes.subspan(static_cast<std::size_t>(written));
      bytes_written_ += static_cast<std::uint64_t>(written);
    }
  }
  void write(const void* data, std::size_t size) { write({static_cast<const std::byte*>(data), size}); }
  void write(std::string_view text) { write(text.data(), text.size()); }

  // Flushes the data to disk and puts the file in place of the target.
  void commit() {
    SDNQ_REQUIRE(fd_ >= 0, IoError, "cannot commit {}: the file was already committed or discarded", target_.string());
    if (::fsync(fd_) != 0) fail("flushing", errno);
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      int error = errno;
      remove_temporary();
      throw IoError(fmt::format("cannot write {}: closing failed: {}", target_.string(), std::strerror(error)));
    }
    if (::rename(temporary_.c_str(), target_.c_str()) != 0) {
      int error = errno;
      remove_temporary();
      throw IoError(fmt::format("cannot write {}: renaming {} into place failed: {}", target_.string(),
                                temporary_.string(), std::strerror(error)));
    }
    temporary_.clear();
    sync_folder();
  }

  // Drops everything written so far; the target is left untouched.
  void discard() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    remove_temporary();
  }

 private:
  [[noreturn]] void fail(std::string_view action, int error) {
    discard();
    throw IoError(fmt::format("cannot write {}: {} failed after {} bytes: {}", target_.string(), action, bytes_written_,
                              std::strerror(error)));
  }
  void remove_temporary() noexcept {
    if (!temporary_.empty()) ::unlink(temporary_.c_str());
    temporary_.clear();
  }
  // Makes the rename itself durable. Best effort: some file systems refuse fsync on a folder, and
  // the file is already complete and in place at this point.
  void sync_folder() noexcept {
    const std::filesystem::path folder = target_.parent_path().empty() ? "." : target_.parent_path();
    int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
  }

  std::filesystem::path target_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace sdnq::io
