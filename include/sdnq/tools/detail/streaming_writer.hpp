#pragma once
// A safetensors writer that takes one tensor at a time, so a quantizer never holds more than the
// tensor in hand. The header (which must come first) is only known at the end, so data goes to a
// side file as it arrives; commit() writes the header through io::detail::build_safetensors_header
// (the same bytes write_safetensors produces) and copies the data behind it, atomically.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/atomic_file.hpp"
#include "sdnq/io/safetensors.hpp"

namespace sdnq::tools::detail {

class StreamingSafetensorsWriter {
 public:
  explicit StreamingSafetensorsWriter(std::filesystem::path target)
      : target_(std::move(target)), data_path_(target_.string() + ".data.partial") {
    data_ = std::fopen(data_path_.c_str(), "wb");
    SDNQ_REQUIRE(data_ != nullptr, IoError, "cannot write {}: creating {} failed: {}", target_.string(),
                 data_path_.string(), std::strerror(errno));
  }
  StreamingSafetensorsWriter(const StreamingSafetensorsWriter&) = delete;
  StreamingSafetensorsWriter& operator=(const StreamingSafetensorsWriter&) = delete;
  ~StreamingSafetensorsWriter() {
    if (data_ != nullptr) std::fclose(data_);
    std::error_code ignored;
    std::filesystem::remove(data_path_, ignored);
  }

  // Appends `tensor` (a host view, any strides); `safetensors_dtype` as in io::NamedTensor.
  void add(const std::string& name, TensorView tensor, const std::string& safetensors_dtype = {}) {
    if (!tensor.is_contiguous()) {
      Tensor contiguous = Tensor::empty(tensor.shape(), tensor.dtype());
      copy(contiguous, tensor);
      return add(name, contiguous.view(), safetensors_dtype);
    }
    write_data(tensor.data(), tensor.nbytes());
    entries_.push_back({name, tensor.dtype(), tensor.shape(), safetensors_dtype});
  }

  std::uint64_t data_bytes() const { return data_bytes_; }

  void commit(const std::map<std::string, std::string>& metadata) {
    SDNQ_REQUIRE(std::fflush(data_) == 0, IoError, "cannot write {}: flushing {} failed: {}", target_.string(),
                 data_path_.string(), std::strerror(errno));
    // The header builder reads names, dtypes and shapes only; every view points at one placeholder byte.
    static std::byte placeholder{};
    std::vector<io::NamedTensor> described;
    for (const auto& entry : entries_)
      described.push_back({entry.name, TensorView(&placeholder, entry.dtype, entry.shape), entry.safetensors_dtype});
    const std::string header = io::detail::build_safetensors_header(described, metadata, target_.string());

    io::AtomicFileWriter file(target_);
    const std::uint64_t header_length = header.size();
    file.write(&header_length, sizeof header_length);
    file.write(header);
    std::FILE* data = std::fopen(data_path_.c_str(), "rb");
    SDNQ_REQUIRE(data != nullptr, IoError, "cannot read back {}: {}", data_path_.string(), std::strerror(errno));
    std::vector<std::byte> chunk(std::size_t{1} << 22);  // 4 MiB
    std::uint64_t copied = 0;
    while (const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), data)) {
      file.write(chunk.data(), got);
      copied += got;
    }
    std::fclose(data);
    SDNQ_REQUIRE(copied == data_bytes_, IoError, "cannot write {}: read back {} of {} data bytes from {}",
                 target_.string(), copied, data_bytes_, data_path_.string());
    file.commit();
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    std::string safetensors_dtype;
  };

  void write_data(const void* bytes, std::size_t size) {
    SDNQ_REQUIRE(std::fwrite(bytes, 1, size, data_) == size, IoError, "cannot write {}: writing {} failed: {}",
                 target_.string(), data_path_.string(), std::strerror(errno));
    data_bytes_ += size;
  }

  std::filesystem::path target_, data_path_;
  std::FILE* data_ = nullptr;
  std::vector<Entry> entries_;
  std::uint64_t data_bytes_ = 0;
};

}  // namespace sdnq::tools::detail
