#pragma once
// Strict JSON reading for the quantization config: the file keeps its key order (ordered_json, so
// modules_dtype_dict's first matching rule is the file's first), and every typed read names the key,
// the source and the expected JSON type when the value has another one.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"

namespace sdnq::quant::detail {

inline nlohmann::ordered_json read_json_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  SDNQ_REQUIRE(file.good(), IoError, "{}: cannot open the file for reading", path.string());
  std::stringstream text;
  text << file.rdbuf();
  SDNQ_REQUIRE(!file.bad(), IoError, "{}: read failed", path.string());
  try {
    return nlohmann::ordered_json::parse(text.str());
  } catch (const nlohmann::json::exception& error) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", path.string(), error.what()));
  }
}

template <class Json>
bool read_bool(const Json& value, std::string_view key, std::string_view source_label) {
  SDNQ_REQUIRE(value.is_boolean(), ConfigError, "{}: quantization_config key \"{}\" must be a boolean, got {} {}",
               source_label, key, value.type_name(), value.dump());
  return value.template get<bool>();
}

template <class Json>
std::int64_t read_integer(const Json& value, std::string_view key, std::string_view source_label) {
  SDNQ_REQUIRE(value.is_number_integer(), ConfigError,
               "{}: quantization_config key \"{}\" must be an integer, got {} {}", source_label, key,
               value.type_name(), value.dump());
  SDNQ_REQUIRE(!value.is_number_unsigned() || value.template get<std::uint64_t>() <= INT64_MAX, ConfigError,
               "{}: quantization_config key \"{}\" = {} is out of range", source_label, key, value.dump());
  return value.template get<std::int64_t>();
}

template <class Json>
std::string read_string(const Json& value, std::string_view key, std::string_view source_label) {
  SDNQ_REQUIRE(value.is_string(), ConfigError, "{}: quantization_config key \"{}\" must be a string, got {} {}",
               source_label, key, value.type_name(), value.dump());
  return value.template get<std::string>();
}

}  // namespace sdnq::quant::detail
