#pragma once
// A safetensors writer that takes one tensor at a time, so a quantizer never holds more than the
// tensor in hand. The header (which must come first) is only known at the end, so data goes to a
// side file as it arrives; commit() writes the header through io::detail::build_safetensors_header
// (the same bytes write_safetensors produces) and copies the data behind it, atomically.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/atomic_file.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/io/sharded.hpp"

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

// Streams tensors into diffusers/transformers-style shards of at most `max_shard_bytes` of tensor
// data (a larger tensor gets a shard of its own): `<base>.safetensors` when everything fits in one,
// else `<base>-0000i-of-0000n.safetensors` + `<base>.safetensors.index.json` ({"metadata":
// {"total_size"}, "weight_map"}), the io::write_sharded_safetensors layout. Shard names need the count,
// known only at the end, so full shards are committed under temporary names and renamed by commit().
// Meant for a staging folder that is renamed into place as a whole (quantize_model's OUT.partial).
class ShardedStreamingWriter {
 public:
  ShardedStreamingWriter(std::filesystem::path folder, std::string base_name, std::uint64_t max_shard_bytes,
                         std::map<std::string, std::string> metadata)
      : folder_(std::move(folder)), base_name_(std::move(base_name)), max_shard_bytes_(max_shard_bytes),
        metadata_(std::move(metadata)) {
    SDNQ_REQUIRE(max_shard_bytes_ > 0, ConfigError, "{}: the maximum shard size must be positive", folder_.string());
  }
  ShardedStreamingWriter(const ShardedStreamingWriter&) = delete;
  ShardedStreamingWriter& operator=(const ShardedStreamingWriter&) = delete;
  ~ShardedStreamingWriter() {
    std::error_code ignored;
    for (const auto& path : finished_) std::filesystem::remove(path, ignored);
  }

  void add(const std::string& name, TensorView tensor, const std::string& safetensors_dtype = {}) {
    const std::uint64_t bytes = tensor.nbytes();
    if (current_ && current_->data_bytes() > 0 && current_->data_bytes() + bytes > max_shard_bytes_) finish_shard();
    if (!current_) current_ = std::make_unique<StreamingSafetensorsWriter>(temporary_shard_path());
    current_->add(name, tensor, safetensors_dtype);
    current_names_.push_back(name);
    total_bytes_ += bytes;
  }

  std::uint64_t data_bytes() const { return total_bytes_; }
  std::size_t shard_count() const { return finished_.size() + (current_ ? 1 : 0); }

  // Writes the last shard and puts every shard (and the index) under its final name; returns the
  // file to open the checkpoint with.
  std::filesystem::path commit() {
    const std::string single_name = base_name_ + ".safetensors";
    if (finished_.empty()) {  // one shard (or none: a tensor-free file) under the single-file name
      if (!current_) current_ = std::make_unique<StreamingSafetensorsWriter>(temporary_shard_path());
      current_->commit(metadata_);
      current_.reset();
      std::filesystem::rename(temporary_shard_path(), folder_ / single_name);
      return folder_ / single_name;
    }
    if (current_) finish_shard();
    nlohmann::json weight_map = nlohmann::json::object();
    for (std::size_t shard = 0; shard < finished_.size(); ++shard) {
      const std::string shard_name = io::detail::shard_file_name(base_name_, shard, finished_.size());
      for (const auto& name : names_by_shard_[shard]) weight_map[name] = shard_name;
      std::filesystem::rename(finished_[shard], folder_ / shard_name);
    }
    finished_.clear();
    const std::string index_name = single_name + ".index.json";
    const nlohmann::json index = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map}};
    io::AtomicFileWriter index_file(folder_ / index_name);
    index_file.write(index.dump(2) + "\n");
    index_file.commit();
    return folder_ / index_name;
  }

 private:
  // Where the shard being written goes until the shard count is known.
  std::filesystem::path temporary_shard_path() const {
    return folder_ / fmt::format(".{}-{:05d}.safetensors.partial", base_name_, finished_.size() + 1);
  }
  void finish_shard() {
    current_->commit(metadata_);
    current_.reset();
    finished_.push_back(temporary_shard_path());
    names_by_shard_.push_back(std::move(current_names_));
    current_names_.clear();
  }

  std::filesystem::path folder_;
  std::string base_name_;
  std::uint64_t max_shard_bytes_;
  std::map<std::string, std::string> metadata_;
  std::unique_ptr<StreamingSafetensorsWriter> current_;
  std::vector<std::string> current_names_;
  std::vector<std::filesystem::path> finished_;  // committed shards under their temporary names, in order
  std::vector<std::vector<std::string>> names_by_shard_;
  std::uint64_t total_bytes_ = 0;
};

}  // namespace sdnq::tools::detail
