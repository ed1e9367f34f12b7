#pragma once
// Read-only memory map of a whole file (POSIX). Tensor views handed out by the safetensors reader
// point straight into it, so it must outlive them. The pages are mapped PROT_READ: writing through
// a view of a mapping faults instead of silently changing a checkpoint.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <utility>

#include "sdnq/core/error.hpp"

namespace sdnq::io {

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept { swap(other); }
  MappedFile& operator=(MappedFile&& other) noexcept {
    MappedFile(std::move(other)).swap(*this);
    return *this;
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }

  // Maps `path` whole. An empty file gives an empty mapping (data() == nullptr, size() == 0).
  static MappedFile open(const std::filesystem::path& path) {
    MappedFile mapped;
    mapped.path_ = path;
    // O_NONBLOCK: opening a FIFO must not hang; regular files ignore the flag.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw IoError(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
    // The descriptor is closed on every path; the mapping keeps the file alive on its own.
    struct CloseOnExit {
      int fd;
      ~CloseOnExit() { ::close(fd); }
    } closer{fd};

    struct stat status {};
    if (::fstat(fd, &status) != 0)
      throw IoError(fmt::format("cannot stat {}: {}", path.string(), std::strerror(errno)));
    if (!S_ISREG(status.st_mode)) throw IoError(fmt::format("cannot map {}: not a regular file", path.string()));
    mapped.size_ = static_cast<std::size_t>(status.st_size);
    if (mapped.size_ == 0) return mapped;

    void* address = ::mmap(nullptr, mapped.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED)
      throw IoError(fmt::format("cannot mmap {} ({} bytes): {}", path.string(), mapped.size_, std::strerror(errno)));
    mapped.data_ = address;
    return mapped;
  }

  const std::filesystem::path& path() const { return path_; }
  const std::byte* data() const { return static_cast<const std::byte*>(data_); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const std::byte> bytes() const { return {data(), size_}; }

  // Whether `address` lies inside the mapping (one past the end counts, for empty tensors).
  bool contains(const void* address) const {
    auto* byte = static_cast<const std::byte*>(address);
    return data_ != nullptr && byte >= data() && byte <= data() + size_;
  }

 private:
  void swap(MappedFile& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }

  std::filesystem::path path_;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace sdnq::io
