#pragma once
// Typed reads of a diffusers config.json for the UNet and the AutoencoderKL (whose encoder and decoder
// are UNet halves). Diffusers semantics: a missing key takes the constructor default, `null` means
// "not set", unknown keys are ignored. A value of the wrong JSON type is a ConfigError; a valid value
// this library does not implement is an UnsupportedError. Both name the model, the key and the value.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"

namespace sdnq::nn::detail {

class DiffusersConfigReader {
 public:
  // `model_label` names the model in messages, e.g. "UNet2DConditionModel at /models/unet".
  DiffusersConfigReader(const nlohmann::json& config, std::string model_label)
      : config_(config), label_(std::move(model_label)) {
    SDNQ_REQUIRE(config_.is_object(), ConfigError, "{}: config.json must hold a JSON object, got {}", label_,
                 config_.type_name());
  }

  const std::string& label() const { return label_; }

  bool has_key(std::string_view key) const { return config_.contains(std::string(key)); }

  bool is_set(std::string_view key) const {
    auto found = config_.find(std::string(key));
    return found != config_.end() && !found->is_null();
  }

  std::int64_t integer(std::string_view key, std::int64_t default_value) const {
    if (!is_set(key)) return default_value;
    return as_integer(value(key), key);
  }

  double number(std::string_view key, double default_value) const {
    if (!is_set(key)) return default_value;
    const auto& found = value(key);
    SDNQ_REQUIRE(found.is_number(), ConfigError, "{}: config key \"{}\" must be a number, got {} {}", label_, key,
                 found.type_name(), found.dump());
    return found.get<double>();
  }

  bool boolean(std::string_view key, bool default_value) const {
    if (!is_set(key)) return default_value;
    const auto& found = value(key);
    SDNQ_REQUIRE(found.is_boolean(), ConfigError, "{}: config key \"{}\" must be a boolean, got {} {}", label_, key,
                 found.type_name(), found.dump());
    return found.get<bool>();
  }

  std::string string(std::string_view key, std::string_view default_value) const {
    if (!is_set(key)) return std::string(default_value);
    return as_string(value(key), key);
  }

  // A list of `count` integers; a single integer is repeated `count` times (diffusers' convention for
  // per-block settings such as attention_head_dim or layers_per_block).
  std::vector<std::int64_t> integer_per_block(std::string_view key, std::int64_t default_value,
                                              std::size_t count) const {
    if (!is_set(key)) return std::vector<std::int64_t>(count, default_value);
    const auto& found = value(key);
    if (found.is_number_integer()) return std::vector<std::int64_t>(count, as_integer(found, key));
    SDNQ_REQUIRE(found.is_array(), ConfigError, "{}: config key \"{}\" must be an integer or a list, got {} {}",
                 label_, key, found.type_name(), found.dump());
    SDNQ_REQUIRE(found.size() == count, ConfigError, "{}: config key \"{}\" = {} must have {} entries (one per block)",
                 label_, key, found.dump(), count);
    std::vector<std::int64_t> values;
    for (const auto& element : found) values.push_back(as_integer(element, key));
    return values;
  }

  std::vector<std::int64_t> integer_list(std::string_view key, std::vector<std::int64_t> default_value) const {
    if (!is_set(key)) return default_value;
    const auto& found = value(key);
    SDNQ_REQUIRE(found.is_array(), ConfigError, "{}: config key \"{}\" must be a list of integers, got {} {}",
                 label_, key, found.type_name(), found.dump());
    std::vector<std::int64_t> values;
    for (const auto& element : found) values.push_back(as_integer(element, key));
    return values;
  }

  std::vector<std::string> string_list(std::string_view key, std::vector<std::string> default_value) const {
    if (!is_set(key)) return default_value;
    const auto& found = value(key);
    SDNQ_REQUIRE(found.is_array(), ConfigError, "{}: config key \"{}\" must be a list of strings, got {} {}", label_,
                 key, found.type_name(), found.dump());
    std::vector<std::string> values;
    for (const auto& element : found) values.push_back(as_string(element, key));
    return values;
  }

  // The raw value (null when missing), for keys with several accepted shapes.
  const nlohmann::json& raw(std::string_view key) const {
    static const nlohmann::json null_value;
    auto found = config_.find(std::string(key));
    return found == config_.end() ? null_value : *found;
  }

  // Features this library does not implement must stay unset (missing or null).
  void require_unset(std::string_view key) const {
    SDNQ_REQUIRE(!is_set(key), UnsupportedError, "{}: config key \"{}\" = {} is not supported (only null)", label_,
                 key, value(key).dump());
  }
  void require_false(std::string_view key) const {
    SDNQ_REQUIRE(!boolean(key, false), UnsupportedError, "{}: config key \"{}\" = true is not supported", label_,
                 key);
  }
  // A string setting must be one of `supported` (its default is `default_value`).
  std::string one_of(std::string_view key, std::string_view default_value,
                     std::initializer_list<std::string_view> supported) const {
    std::string chosen = string(key, default_value);
    for (std::string_view option : supported)
      if (chosen == option) return chosen;
    throw UnsupportedError(fmt::format("{}: config key \"{}\" = \"{}\" is not supported (supported: {})", label_,
                                       key, chosen, fmt::join(supported, ", ")));
  }

  [[noreturn]] void unsupported(std::string_view key, std::string_view value_text, std::string_view why) const {
    throw UnsupportedError(
        fmt::format("{}: config key \"{}\" = {} is not supported: {}", label_, key, value_text, why));
  }
  [[noreturn]] void invalid(std::string_view key, std::string_view value_text, std::string_view why) const {
    throw ConfigError(fmt::format("{}: config key \"{}\" = {} is invalid: {}", label_, key, value_text, why));
  }

 private:
  const nlohmann::json& value(std::string_view key) const { return raw(key); }

  std::int64_t as_integer(const nlohmann::json& element, std::string_view key) const {
    SDNQ_REQUIRE(element.is_number_integer(), ConfigError, "{}: config key \"{}\" must hold integers, got {} {}",
                 label_, key, element.type_name(), element.dump());
    return element.get<std::int64_t>();
  }
  std::string as_string(const nlohmann::json& element, std::string_view key) const {
    SDNQ_REQUIRE(element.is_string(), ConfigError, "{}: config key \"{}\" must hold strings, got {} {}", label_, key,
                 element.type_name(), element.dump());
    return element.get<std::string>();
  }

  const nlohmann::json& config_;
  std::string label_;
};

}  // namespace sdnq::nn::detail
