#pragma once
// An exclusive lock on a lock file, taken the way Python's filelock takes it on POSIX
// (src/filelock/_unix.py): open(O_RDWR|O_CREAT|O_TRUNC|O_NOFOLLOW, 0664) then flock(LOCK_EX|LOCK_NB),
// polled. flock, not fcntl record locks: the two kinds do not exclude each other on Linux, and the
// Python client and this one must exclude each other.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "sdnq/core/error.hpp"

namespace sdnq::hub::detail {

class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& path) : path_(path) {
    std::error_code error;
    std::filesystem::create_directories(path.parent_path(), error);
    if (error)
      throw IoError(fmt::format("cannot create the lock folder {}: {}", path.parent_path().string(), error.message()));
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0664);
    if (fd_ < 0) throw IoError(fmt::format("cannot open the lock file {}: {}", path.string(), std::strerror(errno)));
    ::fchmod(fd_, 0664);  // as huggingface_hub: other users of a shared cache can take it too
    auto started = std::chrono::steady_clock::now();
    auto next_notice = started + std::chrono::seconds(10);
    for (;;) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
      int error_code = errno;
      if (error_code == ENOSYS) return;  // no flock here: rely on unique temp files and atomic renames
      if (error_code != EWOULDBLOCK && error_code != EINTR) {
        ::close(fd_);
        throw IoError(fmt::format("cannot lock {}: {}", path.string(), std::strerror(error_code)));
      }
      if (std::chrono::steady_clock::now() >= next_notice) {
        fmt::print(stderr, "still waiting for the lock {} (another download of the same file is running)\n",
                   path.string());
        next_notice += std::chrono::seconds(10);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace sdnq::hub::detail
