#pragma once
// write_safetensors: the header (with "__metadata__" first, tensors in the caller's order, padded
// with spaces so the data section starts 8-byte aligned, as the reference writer pads it), then the
// tensors' bytes in the same order. Written through AtomicFileWriter: no half-written file remains.
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/atomic_file.hpp"
#include "sdnq/io/detail/safetensors_entries.hpp"
#include "sdnq/io/detail/utf8.hpp"

namespace sdnq::io {

// One tensor to write: its name in the file and a host view (any strides). `safetensors_dtype`
// overrides the dtype written in the header for U8/I8 bytes of a type DType lacks ("F8_E4M3FNUZ").
struct NamedTensor {
  std::string name;
  TensorView tensor;
  std::string safetensors_dtype = {};
};

namespace detail {

inline void check_tensor_to_write(const NamedTensor& named, std::string_view file_label) {
  const TensorView& view = named.tensor;
  SDNQ_REQUIRE(is_valid_utf8(named.name), FormatError, "{}: tensor name '{}' is not valid UTF-8", file_label,
               named.name);
  SDNQ_REQUIRE(named.name != "__metadata__", FormatError,
               "{}: '__metadata__' is reserved by safetensors and cannot name a tensor", file_label);
  SDNQ_REQUIRE(view.device().is_cpu(), ShapeError,
               "{}: tensor '{}' is on {}; write_safetensors needs host tensors (copy it to the host first)", file_label,
               named.name, view.device().to_string());
  for (auto extent : view.shape())
    SDNQ_REQUIRE(extent >= 0, ShapeError, "{}: tensor '{}' has a negative extent in shape {}", file_label, named.name,
                 view.shape().to_string());
  SDNQ_REQUIRE(view.data() != nullptr || view.numel() == 0, ShapeError,
               "{}: tensor '{}' ({} elements) has no data pointer", file_label, named.name, view.numel());
  SDNQ_REQUIRE(named.safetensors_dtype.empty() ||
                   (is_byte_safetensors_dtype(named.safetensors_dtype) && view.element_size() == 1),
               FormatError,
               "{}: tensor '{}': dtype override \"{}\" needs 1-byte elements of F8_E4M3FNUZ or F8_E5M2FNUZ", file_label,
               named.name, named.safetensors_dtype);
}

// The padded JSON header for `tensors` laid out back to back in the given order.
inline std::string build_safetensors_header(std::span<const NamedTensor> tensors,
                                            const std::map<std::string, std::string>& metadata,
                                            std::string_view file_label) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& entries = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) {
      SDNQ_REQUIRE(is_valid_utf8(key) && is_valid_utf8(value), FormatError,
                   "{}: metadata entry '{}' is not valid UTF-8", file_label, key);
      entries[key] = value;
    }
  }
  std::set<std::string_view> seen;
  std::uint64_t offset = 0;
  for (const auto& named : tensors) {
    check_tensor_to_write(named, file_label);
    SDNQ_REQUIRE(seen.insert(named.name).second, FormatError, "{}: tensor name '{}' appears twice", file_label,
                 named.name);
    const std::uint64_t bytes = named.tensor.nbytes();
    const auto dims = named.tensor.shape().dims();
    const std::string_view dtype =
        named.safetensors_dtype.empty() ? dtype_name(named.tensor.dtype()) : named.safetensors_dtype;
    header[named.name] = {{"dtype", dtype},
                          {"shape", std::vector<std::int64_t>(dims.begin(), dims.end())},
                          {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace detail

// Writes `tensors` (host views, contiguous or not) and string `metadata` to a safetensors file.
// Tensors are stored in the given order; when their sizes are not multiples of the next one's element
// size, readers find those tensors unaligned (SafetensorsFile copies them), so put wide dtypes first.
inline void write_safetensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  const std::string label = path.string();
  const std::string header = detail::build_safetensors_header(tensors, metadata, label);
  AtomicFileWriter file(path);
  const std::uint64_t header_length = header.size();
  file.write(&header_length, sizeof header_length);  // little-endian host (checked in safetensors.hpp)
  file.write(header);
  for (const auto& named : tensors) {
    if (named.tensor.is_contiguous()) {
      file.write(named.tensor.data(), named.tensor.nbytes());
    } else {
      Tensor contiguous = Tensor::empty(named.tensor.shape(), named.tensor.dtype());
      copy(contiguous, named.tensor);
      file.write(contiguous.data(), contiguous.nbytes());
    }
  }
  file.commit();
}

inline void write_safetensors(const std::filesystem::path& path, std::initializer_list<NamedTensor> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  write_safetensors(path, std::span<const NamedTensor>(tensors.begin(), tensors.size()), metadata);
}

}  // namespace sdnq::io
