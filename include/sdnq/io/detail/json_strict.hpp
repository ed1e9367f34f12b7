#pragma once
// JSON parsing for files we validate: every nlohmann exception becomes a FormatError naming the
// file, duplicate keys are rejected (nlohmann would keep the last one silently), and nesting is
// bounded (a safetensors header is three levels deep; anything deeper is malformed).
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"

namespace sdnq::io::detail {

inline nlohmann::json parse_json_strictly(std::string_view text, std::string_view file_label, int max_depth) {
  std::vector<std::set<std::string, std::less<>>> open_objects;  // the keys seen in each enclosing object
  auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start || event == Event::array_start) {
      SDNQ_REQUIRE(depth < max_depth, FormatError, "{}: JSON nested deeper than the {} levels this file allows",
                   file_label, max_depth);
    }
    if (event == Event::object_start) open_objects.emplace_back();
    if (event == Event::object_end) open_objects.pop_back();
    if (event == Event::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      SDNQ_REQUIRE(open_objects.back().insert(key).second, FormatError, "{}: duplicate JSON key \"{}\"", file_label,
                   key);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& error) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", file_label, error.what()));
  }
}

// A JSON value's type for error messages ("string", "array", ...).
inline std::string_view json_type_name(const nlohmann::json& value) {
  if (value.is_number_float()) return "floating-point number";
  if (value.is_number_integer()) return "integer";
  return value.type_name();
}

// A value as JSON text for error messages, cut short so a huge array cannot flood the message.
inline std::string short_dump(const nlohmann::json& value) {
  std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  constexpr std::size_t limit = 80;
  if (text.size() > limit) text = text.substr(0, limit) + "...";
  return text;
}

}  // namespace sdnq::io::detail
