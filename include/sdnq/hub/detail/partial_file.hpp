#pragma once
// The blobs/<etag>.incomplete file of a download in progress, and hashing what an earlier run left in it.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "sdnq/core/error.hpp"
#include "sdnq/hub/sha256.hpp"

namespace sdnq::hub::detail {

// The partial download file: appended to, removed on fatal errors, renamed into place when whole.
class PartialFile {
 public:
  explicit PartialFile(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0)
      throw IoError(
          fmt::format("cannot write {}: {}; make the cache writable or set HF_HUB_CACHE to a writable "
                      "folder",
                      path_.string(), std::strerror(errno)));
    size_ = static_cast<std::uint64_t>(::lseek(fd_, 0, SEEK_END));
  }
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;
  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  std::uint64_t size() const { return size_; }
  std::uint64_t truncate() {
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0)
      throw IoError(fmt::format("cannot truncate {}: {}", path_.string(), std::strerror(errno)));
    size_ = 0;
    return 0;
  }
  void write(std::string_view bytes, const std::filesystem::path& /*blob*/) {
    while (!bytes.empty()) {
      ssize_t count = ::write(fd_, bytes.data(), bytes.size());
      if (count < 0 && errno == EINTR) continue;
      if (count <= 0) {
        int error = count < 0 ? errno : ENOSPC;
        throw IoError(fmt::format("cannot write {} after {} bytes: {}{}", path_.string(), size_, std::strerror(error),
                                  error == ENOSPC || error == EDQUOT
                                      ? "; free disk space or set HF_HUB_CACHE to a folder on a larger disk"
                                      : ""));
      }
      bytes.remove_prefix(static_cast<std::size_t>(count));
      size_ += static_cast<std::uint64_t>(count);
    }
  }
  void remove() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }
  void commit(const std::filesystem::path& target) {
    if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
      int error = errno;
      fd_ = -1;
      ::unlink(path_.c_str());
      throw IoError(fmt::format("cannot write {}: {}", path_.string(), std::strerror(error)));
    }
    fd_ = -1;
    if (::rename(path_.c_str(), target.c_str()) != 0) {
      int error = errno;
      ::unlink(path_.c_str());
      throw IoError(fmt::format("cannot move {} to {}: {}", path_.string(), target.string(), std::strerror(error)));
    }
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

inline void hash_file_prefix(const std::filesystem::path& path, std::uint64_t length, Sha256& hash) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (length > 0 && in) {
    in.read(buffer.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(length, buffer.size())));
    auto got = static_cast<std::size_t>(in.gcount());
    hash.update(std::as_bytes(std::span(buffer.data(), got)));
    length -= got;
    if (got == 0) break;
  }
}

}  // namespace sdnq::hub::detail
