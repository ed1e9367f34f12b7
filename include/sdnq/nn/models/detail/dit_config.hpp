#pragma once
// Reading a diffusers config.json for the transformers: every key has the constructor default when
// absent (diffusers' ConfigMixin semantics), a present key of the wrong JSON type is a ConfigError
// naming the model and the key, and the class name must be the expected one.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"

namespace sdnq::nn::detail {

inline void require_class_name(const nlohmann::json& config, std::string_view expected) {
  SDNQ_REQUIRE(config.is_object(), ConfigError, "{}: config.json must be a JSON object", expected);
  const auto found = config.find("_class_name");
  SDNQ_REQUIRE(found != config.end() && found->is_string(), UnsupportedError,
               "{}: config.json has no string \"_class_name\"; expected \"{}\"", expected, expected);
  const std::string name = found->get<std::string>();
  SDNQ_REQUIRE(name == expected, UnsupportedError,
               "config.json: _class_name \"{}\" is not supported here (expected \"{}\")", name, expected);
}

// An integer key (absent or null: `fallback`), which must be at least `minimum`.
inline std::int64_t config_int(const nlohmann::json& config, std::string_view model, const char* key,
                               std::int64_t fallback, std::int64_t minimum = 1) {
  const auto found = config.find(key);
  if (found == config.end() || found->is_null()) return fallback;
  SDNQ_REQUIRE(found->is_number_integer(), ConfigError, "{}: config key \"{}\" must be an integer, got {}", model, key,
               found->dump());
  const auto value = found->get<std::int64_t>();
  SDNQ_REQUIRE(value >= minimum, UnsupportedError, "{}: config key \"{}\" = {} is not supported (must be >= {})", model,
               key, value, minimum);
  return value;
}

inline bool config_bool(const nlohmann::json& config, std::string_view model, const char* key, bool fallback) {
  const auto found = config.find(key);
  if (found == config.end() || found->is_null()) return fallback;
  SDNQ_REQUIRE(found->is_boolean(), ConfigError, "{}: config key \"{}\" must be true or false, got {}", model, key,
               found->dump());
  return found->get<bool>();
}

// A list of integers (absent: `fallback`).
inline std::vector<std::int64_t> config_int_list(const nlohmann::json& config, std::string_view model, const char* key,
                                                 std::vector<std::int64_t> fallback) {
  const auto found = config.find(key);
  if (found == config.end() || found->is_null()) return fallback;
  SDNQ_REQUIRE(found->is_array(), ConfigError, "{}: config key \"{}\" must be a list of integers, got {}", model, key,
               found->dump());
  std::vector<std::int64_t> values;
  for (const auto& item : *found) {
    SDNQ_REQUIRE(item.is_number_integer(), ConfigError, "{}: config key \"{}\" must be a list of integers, got {}",
                 model, key, found->dump());
    values.push_back(item.get<std::int64_t>());
  }
  return values;
}

// Runs `load` and prefixes any library error with the model and folder, keeping the error's type,
// so "missing tensor transformer_blocks.3.attn.to_q.weight" says which model was being loaded.
template <class Load>
auto with_load_context(std::string_view model, const std::filesystem::path& folder, Load&& load) {
  const auto context = [&](const Error& error) {
    return fmt::format("loading {} from {}: {}", model, folder.string(), error.what());
  };
  try {
    return load();
  } catch (const IoError& error) {
    throw IoError(context(error));
  } catch (const FormatError& error) {
    throw FormatError(context(error));
  } catch (const ConfigError& error) {
    throw ConfigError(context(error));
  } catch (const ShapeError& error) {
    throw ShapeError(context(error));
  } catch (const UnsupportedError& error) {
    throw UnsupportedError(context(error));
  }
}

}  // namespace sdnq::nn::detail
