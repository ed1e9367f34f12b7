#pragma once
// Checks one header entry of a safetensors file ({"dtype", "shape", "data_offsets"} or
// "__metadata__") the way the reference reader does, with messages naming the file and tensor.
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/detail/json_strict.hpp"

namespace sdnq::io {

// One tensor of a safetensors file, as its header describes it.
struct TensorInfo {
  std::string name;
  DType dtype = DType::u8;        // how tensor() presents the bytes
  std::string safetensors_dtype;  // as written in the header; "F8_E4M3FNUZ" / "F8_E5M2FNUZ" are read as U8
  Shape shape;
  std::uint64_t data_begin = 0;  // byte offsets into the data section (the header's data_offsets)
  std::uint64_t data_end = 0;    // exclusive
  std::uint64_t nbytes() const { return data_end - data_begin; }
};

}  // namespace sdnq::io

namespace sdnq::io::detail {

// Valid safetensors dtypes without a sdnq::DType row that are still one byte per element: their
// bytes are presented as U8 (the storage the SDNQ format table uses for the fnuz floats).
inline constexpr std::array<std::string_view, 2> byte_safetensors_dtypes = {"F8_E4M3FNUZ", "F8_E5M2FNUZ"};
// Valid safetensors dtypes sdnq cannot present at all.
inline constexpr std::array<std::string_view, 4> unsupported_safetensors_dtypes = {"C64", "F4", "F6_E2M3", "F6_E3M2"};

inline bool is_byte_safetensors_dtype(std::string_view name) {
  for (auto byte_dtype : byte_safetensors_dtypes)
    if (name == byte_dtype) return true;
  return false;
}

inline std::string known_dtype_names() {
  std::string names;
  for (const auto& info : dtype_table) names += fmt::format("{}{}", names.empty() ? "" : ", ", info.safetensors_name);
  return names;
}

// A JSON integer that fits u64 (serde's usize: no sign, no fraction); `what` names it for errors.
inline std::uint64_t header_unsigned(const nlohmann::json& value, std::string_view file_label, std::string_view tensor,
                                     std::string_view what) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer()) {
    const auto signed_value = value.get<std::int64_t>();
    SDNQ_REQUIRE(signed_value >= 0, FormatError, "{}: tensor '{}': {} is {}, must not be negative", file_label, tensor,
                 what, signed_value);
    return static_cast<std::uint64_t>(signed_value);
  }
  throw FormatError(fmt::format("{}: tensor '{}': {} must be a non-negative integer, got {} {}", file_label, tensor,
                                what, json_type_name(value), short_dump(value)));
}

inline DType parse_header_dtype(const nlohmann::json& value, std::string_view file_label, std::string_view tensor) {
  SDNQ_REQUIRE(value.is_string(), FormatError, "{}: tensor '{}': dtype must be a string, got {} {}", file_label, tensor,
               json_type_name(value), short_dump(value));
  const auto& name = value.get_ref<const std::string&>();
  if (auto dtype = dtype_from_name(name)) return *dtype;
  if (is_byte_safetensors_dtype(name)) return DType::u8;
  for (auto unsupported : unsupported_safetensors_dtypes)
    SDNQ_REQUIRE(name != unsupported, UnsupportedError,
                 "{}: tensor '{}': dtype {} is valid safetensors but sdnq does not support it (supported: {})",
                 file_label, tensor, name, known_dtype_names());
  throw FormatError(fmt::format("{}: tensor '{}': unknown dtype \"{}\" (expected one of {})", file_label, tensor, name,
                                known_dtype_names()));
}

inline Shape parse_header_shape(const nlohmann::json& value, std::string_view file_label, std::string_view tensor) {
  SDNQ_REQUIRE(value.is_array(), FormatError, "{}: tensor '{}': shape must be an array of integers, got {} {}",
               file_label, tensor, json_type_name(value), short_dump(value));
  SDNQ_REQUIRE(value.size() <= static_cast<std::size_t>(max_rank), FormatError,
               "{}: tensor '{}': shape {} has rank {}, sdnq supports at most {}", file_label, tensor, short_dump(value),
               value.size(), max_rank);
  Shape shape;
  for (const auto& extent : value) {
    const std::uint64_t dim = header_unsigned(extent, file_label, tensor, "a shape dimension");
    SDNQ_REQUIRE(dim <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()), FormatError,
                 "{}: tensor '{}': shape dimension {} is too large", file_label, tensor, dim);
    shape.push_back(static_cast<std::int64_t>(dim));
  }
  return shape;
}

// Byte size of a tensor, or a FormatError when numel * element size overflows (ValidationOverflow).
inline std::uint64_t checked_tensor_bytes(const TensorInfo& info, std::string_view file_label) {
  constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t count = 1;
  for (auto dim : info.shape) {
    const auto extent = static_cast<std::uint64_t>(dim);
    SDNQ_REQUIRE(extent == 0 || count <= limit / extent, FormatError,
                 "{}: tensor '{}': the element count of shape {} overflows", file_label, info.name,
                 info.shape.to_string());
    count *= extent;
  }
  const std::uint64_t element = dtype_size(info.dtype);
  SDNQ_REQUIRE(count <= limit / element, FormatError, "{}: tensor '{}': the byte size of {} {} overflows", file_label,
               info.name, dtype_name(info.dtype), info.shape.to_string());
  return count * element;
}

inline TensorInfo parse_tensor_entry(const std::string& name, const nlohmann::json& entry,
                                     std::string_view file_label) {
  SDNQ_REQUIRE(entry.is_object(), FormatError,
               "{}: tensor '{}': entry must be an object with dtype, shape and data_offsets, got {}", file_label, name,
               json_type_name(entry));
  for (const auto& [key, value] : entry.items())
    SDNQ_REQUIRE(key == "dtype" || key == "shape" || key == "data_offsets", FormatError,
                 "{}: tensor '{}': unexpected field \"{}\" (an entry has exactly dtype, shape and data_offsets)",
                 file_label, name, key);
  for (const char* field : {"dtype", "shape", "data_offsets"})
    SDNQ_REQUIRE(entry.contains(field), FormatError, "{}: tensor '{}': missing field \"{}\"", file_label, name, field);

  TensorInfo info;
  info.name = name;
  info.dtype = parse_header_dtype(entry["dtype"], file_label, name);
  info.safetensors_dtype = entry["dtype"].get<std::string>();
  info.shape = parse_header_shape(entry["shape"], file_label, name);
  const auto& offsets = entry["data_offsets"];
  SDNQ_REQUIRE(offsets.is_array() && offsets.size() == 2, FormatError,
               "{}: tensor '{}': data_offsets must be an array [begin, end], got {}", file_label, name,
               short_dump(offsets));
  info.data_begin = header_unsigned(offsets[0], file_label, name, "data_offsets[0]");
  info.data_end = header_unsigned(offsets[1], file_label, name, "data_offsets[1]");
  return info;
}

// "__metadata__": string -> string (null counts as absent, as serde's Option does).
inline std::map<std::string, std::string> parse_header_metadata(const nlohmann::json& value,
                                                                std::string_view file_label) {
  std::map<std::string, std::string> metadata;
  if (value.is_null()) return metadata;
  SDNQ_REQUIRE(value.is_object(), FormatError, "{}: __metadata__ must be an object of strings, got {}", file_label,
               json_type_name(value));
  for (const auto& [key, text] : value.items()) {
    SDNQ_REQUIRE(text.is_string(), FormatError, "{}: __metadata__ value of \"{}\" must be a string, got {} {}",
                 file_label, key, json_type_name(text), short_dump(text));
    metadata.emplace(key, text.get<std::string>());
  }
  return metadata;
}

}  // namespace sdnq::io::detail
