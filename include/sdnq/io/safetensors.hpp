#pragma once
// safetensors files: a zero-copy reader over a memory map, and a writer (detail/safetensors_writer.hpp).
//
// Layout: u64 little-endian N | N bytes of UTF-8 JSON header (space-padded) | data section.
// The header is validated exactly as the reference reader (huggingface/safetensors, tensor.rs) does:
// tensors sorted by data_offsets must tile the data section with no gap, overlap or trailing byte,
// and each must span numel * dtype size bytes. Every violation is a FormatError naming the file,
// the tensor and what was expected.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/detail/json_strict.hpp"
#include "sdnq/io/detail/safetensors_entries.hpp"
#include "sdnq/io/detail/utf8.hpp"
#include "sdnq/io/mapped_file.hpp"

namespace sdnq::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; so is every host sdnq targets");

// The reference reader's MAX_HEADER_SIZE.
inline constexpr std::uint64_t max_safetensors_header_length = 100'000'000;

struct SafetensorsHeader {
  std::uint64_t header_length = 0;              // N: the JSON header's size in bytes, padding included
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<TensorInfo> tensors;              // sorted by data offset
  std::uint64_t data_start() const { return 8 + header_length; }  // file offset of the data section
};

// Parses and validates a whole safetensors file held in memory. `file_label` names it in errors.
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file_bytes, std::string_view file_label) {
  SDNQ_REQUIRE(file_bytes.size() >= 8, FormatError,
               "{}: {} bytes is too short for a safetensors file (it starts with an 8-byte header length)", file_label,
               file_bytes.size());
  SafetensorsHeader header;
  std::memcpy(&header.header_length, file_bytes.data(), 8);
  SDNQ_REQUIRE(header.header_length <= max_safetensors_header_length, FormatError,
               "{}: header length {} exceeds the safetensors limit of {} bytes", file_label, header.header_length,
               max_safetensors_header_length);
  SDNQ_REQUIRE(header.header_length <= file_bytes.size() - 8, FormatError,
               "{}: header length {} runs past the end of the file ({} bytes after the 8-byte length)", file_label,
               header.header_length, file_bytes.size() - 8);

  std::string_view text(reinterpret_cast<const char*>(file_bytes.data()) + 8, header.header_length);
  if (auto bad = detail::find_invalid_utf8(text))
    throw FormatError(fmt::format("{}: header is not valid UTF-8 (byte 0x{:02x} at header offset {})", file_label,
                                  static_cast<unsigned char>(text[*bad]), *bad));
  SDNQ_REQUIRE(!text.empty() && text.front() == '{', FormatError, "{}: header must be a JSON object starting with '{{'",
               file_label);
  const nlohmann::json json = detail::parse_json_strictly(text, file_label, 3);
  SDNQ_REQUIRE(json.is_object(), FormatError, "{}: header must be a JSON object, got {}", file_label,
               detail::json_type_name(json));

  for (const auto& [key, value] : json.items()) {
    if (key == "__metadata__")
      header.metadata = detail::parse_header_metadata(value, file_label);
    else
      header.tensors.push_back(detail::parse_tensor_entry(key, value, file_label));
  }
  std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.data_begin, a.data_end, a.name) < std::tie(b.data_begin, b.data_end, b.name);
  });

  // In offset order each tensor must begin where the previous one ended.
  const std::uint64_t data_size = file_bytes.size() - header.data_start();
  std::uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const auto& info : header.tensors) {
    const auto begin = info.data_begin, end = info.data_end;
    SDNQ_REQUIRE(end >= begin, FormatError, "{}: tensor '{}': data_offsets [{}, {}] end before they begin", file_label,
                 info.name, begin, end);
    SDNQ_REQUIRE(begin >= covered, FormatError,
                 "{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' ending at {}", file_label, info.name,
                 begin, end, previous ? previous->name : "", covered);
    SDNQ_REQUIRE(begin == covered, FormatError,
                 "{}: tensor '{}': data_offsets [{}, {}] leave a gap: data bytes [{}, {}) belong to no tensor",
                 file_label, info.name, begin, end, covered, begin);
    const std::uint64_t expected = detail::checked_tensor_bytes(info, file_label);
    SDNQ_REQUIRE(end - begin == expected, FormatError,
                 "{}: tensor '{}': data_offsets [{}, {}] span {} bytes but {} {} needs {}", file_label, info.name,
                 begin, end, end - begin, dtype_name(info.dtype), info.shape.to_string(), expected);
    SDNQ_REQUIRE(end <= data_size, FormatError,
                 "{}: tensor '{}': data_offsets [{}, {}] run past the end of the {}-byte data section", file_label,
                 info.name, begin, end, data_size);
    covered = end;
    previous = &info;
  }
  SDNQ_REQUIRE(covered == data_size, FormatError,
               "{}: the data section has {} bytes but the tensors cover only the first {} (trailing bytes)", file_label,
               data_size, covered);
  return header;
}

// A safetensors file mapped into memory. Views from tensor() point into the mapping and stay valid
// as long as this object lives; they are read-only memory.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path) {
    SafetensorsFile file;
    file.mapping_ = MappedFile::open(path);
    file.header_ = parse_safetensors_header(file.mapping_.bytes(), path.string());
    for (std::size_t i = 0; i < file.header_.tensors.size(); ++i) {
      file.names_.push_back(file.header_.tensors[i].name);
      file.index_.emplace(file.header_.tensors[i].name, i);
    }
    return file;
  }

  const std::filesystem::path& path() const { return mapping_.path(); }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const std::vector<std::string>& names() const { return names_; }  // in data-offset order
  std::span<const TensorInfo> tensors() const { return header_.tensors; }
  const SafetensorsHeader& header() const { return header_; }
  const MappedFile& mapping() const { return mapping_; }

  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

  const TensorInfo& info(std::string_view name) const {
    auto found = index_.find(name);
    SDNQ_REQUIRE(found != index_.end(), FormatError, "{}: no tensor named '{}' ({} tensors in the file)",
                 path().string(), name, names_.size());
    return header_.tensors[found->second];
  }

  // The tensor's bytes, exactly as stored.
  std::span<const std::byte> bytes(std::string_view name) const {
    const TensorInfo& tensor_info = info(name);
    return mapping_.bytes().subspan(header_.data_start() + tensor_info.data_begin, tensor_info.nbytes());
  }

  // A host view of the tensor inside the mapping. Files from other writers may place a tensor at an
  // offset that is not a multiple of its element size; such a tensor is copied once to aligned memory.
  TensorView tensor(std::string_view name) const {
    const TensorInfo& tensor_info = info(name);
    const std::byte* data = mapping_.data() + header_.data_start() + tensor_info.data_begin;
    if (reinterpret_cast<std::uintptr_t>(data) % dtype_size(tensor_info.dtype) == 0 || tensor_info.nbytes() == 0)
      return TensorView(const_cast<std::byte*>(data), tensor_info.dtype, tensor_info.shape);

    std::lock_guard lock(realigned_->mutex);
    auto [slot, inserted] = realigned_->copies.try_emplace(tensor_info.name);
    if (inserted) {
      slot->second = Tensor::empty(tensor_info.shape, tensor_info.dtype);
      std::memcpy(slot->second.data(), data, tensor_info.nbytes());
    }
    return slot->second.view();
  }

 private:
  struct RealignedCopies {
    std::mutex mutex;
    std::map<std::string, Tensor, std::less<>> copies;
  };

  MappedFile mapping_;
  SafetensorsHeader header_;
  std::vector<std::string> names_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::unique_ptr<RealignedCopies> realigned_ = std::make_unique<RealignedCopies>();
};

}  // namespace sdnq::io

#include "sdnq/io/detail/safetensors_writer.hpp"
