#pragma once
// The `quantization_config` of an SDNQ checkpoint (format doc §6.3): parsed strictly, written back
// with the keys and JSON types the reference writes. Missing keys take the reference constructor's
// defaults; keys this library does not interpret are kept in `extra` and written back unchanged.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/quant/detail/read_json.hpp"

namespace sdnq::quant {

// The layer classes SDNQ quantizes (§2.1). Kind, not class name: SDNQLinear and Linear are both `linear`.
enum class LayerKind { linear, conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, embedding };

constexpr bool is_conv(LayerKind kind) {
  return kind == LayerKind::conv1d || kind == LayerKind::conv2d || kind == LayerKind::conv3d;
}
constexpr bool is_conv_transpose(LayerKind kind) {
  return kind == LayerKind::conv_transpose1d || kind == LayerKind::conv_transpose2d ||
         kind == LayerKind::conv_transpose3d;
}
// Number of spatial kernel axes of a (transposed) convolution, 0 for Linear / Embedding.
constexpr int kernel_rank(LayerKind kind) {
  switch (kind) {
    case LayerKind::conv1d: case LayerKind::conv_transpose1d: return 1;
    case LayerKind::conv2d: case LayerKind::conv_transpose2d: return 2;
    case LayerKind::conv3d: case LayerKind::conv_transpose3d: return 3;
    default: return 0;
  }
}
constexpr std::string_view layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::linear: return "Linear";
    case LayerKind::conv1d: return "Conv1d";
    case LayerKind::conv2d: return "Conv2d";
    case LayerKind::conv3d: return "Conv3d";
    case LayerKind::conv_transpose1d: return "ConvTranspose1d";
    case LayerKind::conv_transpose2d: return "ConvTranspose2d";
    case LayerKind::conv_transpose3d: return "ConvTranspose3d";
    case LayerKind::embedding: return "Embedding";
  }
  return "?";
}

struct SdnqConfig {
  std::string quant_method = "sdnq";
  std::string weights_dtype = "int8";  // as written (may be an alias); resolve with format::storage_type
  std::int64_t group_size = 0;
  bool use_svd = false;
  std::int64_t svd_rank = 32, svd_steps = 8;
  bool use_hadamard = false;
  std::int64_t hadamard_group_size = 256;
  bool use_codebook = false;
  std::int64_t codebook_steps = 24;
  bool quant_conv = false, quant_embedding = false;
  bool use_quantized_matmul = false, use_quantized_matmul_conv = false;
  std::optional<std::string> quantized_matmul_dtype;
  bool dequantize_fp32 = true, use_dynamic_quantization = false, use_stochastic_rounding = false, add_skip_keys = true;
  std::optional<double> dynamic_loss_threshold;
  std::int64_t minimum_allowed_channel_size = 32, minimum_allowed_numel = 16384;
  std::vector<std::string> modules_to_not_convert, modules_to_not_use_matmul;
  std::vector<std::pair<std::string, std::vector<std::string>>> modules_dtype_dict;  // insertion order matters
  std::vector<std::pair<std::string, nlohmann::json>> modules_quant_config;
  bool is_training = false;
  std::string sdnq_version = "0.2.5";
  nlohmann::json extra = nlohmann::json::object();  // every other key, written back unchanged

  // `source_label` names where the JSON came from (a file path) in error messages. Throws ConfigError
  // for a key of the wrong JSON type or an unknown weights_dtype, UnsupportedError for a quant_method
  // that is not SDNQ. The ordered_json overload keeps the file's key order of modules_dtype_dict,
  // which decides the first matching rule (§2.4); plain nlohmann::json sorts keys.
  static SdnqConfig from_json(const nlohmann::json& quantization_config, std::string_view source_label);
  static SdnqConfig from_json(const nlohmann::ordered_json& quantization_config, std::string_view source_label);

  nlohmann::json to_json() const;                  // the keys/types the reference writes
  nlohmann::ordered_json to_ordered_json() const;  // same, modules_dtype_dict in insertion order

  // Applies one key (a top-level key, or a modules_quant_config override) with strict type checks.
  template <class Json>
  void assign(const std::string& key, const Json& value, std::string_view source_label);
};

namespace detail {

// The quant_method strings that name SDNQ; everything else (quanto, bitsandbytes, gguf, ...) is not.
inline bool is_sdnq_method(std::string_view method) { return method == "sdnq" || method == "sdnq_training"; }

inline void require_sdnq_method(std::string_view method, std::string_view source_label) {
  if (is_sdnq_method(method)) return;
  throw UnsupportedError(fmt::format(
      "{}: quant_method \"{}\" is not SDNQ; these weights are not SDNQ-quantized and cannot be loaded by "
      "sdnq (expected quant_method \"sdnq\" or \"sdnq_training\")",
      source_label, method));
}

template <class Json>
std::vector<std::string> string_list(const Json& value, std::string_view key, std::string_view source_label) {
  std::vector<std::string> list;
  if (value.is_null()) return list;  // the reference constructor turns None into []
  SDNQ_REQUIRE(value.is_array(), ConfigError, "{}: quantization_config key \"{}\" must be a list of strings, got {}",
               source_label, key, value.type_name());
  for (const auto& item : value) {
    SDNQ_REQUIRE(item.is_string(), ConfigError,
                 "{}: quantization_config key \"{}\" must be a list of strings, found an element of type {}",
                 source_label, key, item.type_name());
    list.push_back(item.template get<std::string>());
  }
  return list;
}

}  // namespace detail

template <class Json>
void SdnqConfig::assign(const std::string& key, const Json& value, std::string_view source_label) {
  using detail::read_bool;
  using detail::read_integer;
  const auto read_string = [&] { return detail::read_string(value, key, source_label); };
  if (key == "quant_method") {
    quant_method = read_string();
    detail::require_sdnq_method(quant_method, source_label);
  } else if (key == "weights_dtype") {
    weights_dtype = read_string();
    SDNQ_REQUIRE(format::find_storage_type(weights_dtype) != nullptr, ConfigError,
                 "{}: weights_dtype \"{}\" is not an SDNQ storage type (e.g. int8, uint4, float8_e4m3fn)",
                 source_label, weights_dtype);
  } else if (key == "group_size") {
    group_size = read_integer(value, key, source_label);
  } else if (key == "use_svd") {
    use_svd = read_bool(value, key, source_label);
  } else if (key == "svd_rank") {
    svd_rank = read_integer(value, key, source_label);
  } else if (key == "svd_steps") {
    svd_steps = read_integer(value, key, source_label);
  } else if (key == "use_hadamard") {
    use_hadamard = read_bool(value, key, source_label);
  } else if (key == "hadamard_group_size") {
    hadamard_group_size = read_integer(value, key, source_label);
  } else if (key == "use_codebook") {
    use_codebook = read_bool(value, key, source_label);
  } else if (key == "codebook_steps") {
    codebook_steps = read_integer(value, key, source_label);
  } else if (key == "quant_conv") {
    quant_conv = read_bool(value, key, source_label);
  } else if (key == "quant_embedding") {
    quant_embedding = read_bool(value, key, source_label);
  } else if (key == "use_quantized_matmul") {
    use_quantized_matmul = read_bool(value, key, source_label);
  } else if (key == "use_quantized_matmul_conv") {
    use_quantized_matmul_conv = read_bool(value, key, source_label);
  } else if (key == "quantized_matmul_dtype") {
    if (value.is_null()) {
      quantized_matmul_dtype.reset();
    } else {
      quantized_matmul_dtype = read_string();
      const std::string_view name = *quantized_matmul_dtype;
      SDNQ_REQUIRE(name == "int8" || name == "uint8" || name == "fp8" || name == "float8_e4m3fn" || name == "fp16" ||
                       name == "float16",
                   ConfigError,
                   "{}: quantized_matmul_dtype \"{}\" is not one of int8, uint8, fp8, float8_e4m3fn, fp16, float16",
                   source_label, *quantized_matmul_dtype);
    }
  } else if (key == "dequantize_fp32") {
    dequantize_fp32 = read_bool(value, key, source_label);
  } else if (key == "use_dynamic_quantization") {
    use_dynamic_quantization = read_bool(value, key, source_label);
  } else if (key == "use_stochastic_rounding") {
    use_stochastic_rounding = read_bool(value, key, source_label);
  } else if (key == "add_skip_keys") {
    add_skip_keys = read_bool(value, key, source_label);
  } else if (key == "dynamic_loss_threshold") {
    if (value.is_null()) {
      dynamic_loss_threshold.reset();
    } else {
      SDNQ_REQUIRE(value.is_number(), ConfigError, "{}: quantization_config key \"{}\" must be a number or null, got {}",
                   source_label, key, value.type_name());
      dynamic_loss_threshold = value.template get<double>();
    }
  } else if (key == "minimum_allowed_channel_size") {
    minimum_allowed_channel_size = read_integer(value, key, source_label);
  } else if (key == "minimum_allowed_numel") {
    minimum_allowed_numel = read_integer(value, key, source_label);
  } else if (key == "modules_to_not_convert") {
    modules_to_not_convert = detail::string_list(value, key, source_label);
  } else if (key == "modules_to_not_use_matmul") {
    modules_to_not_use_matmul = detail::string_list(value, key, source_label);
  } else if (key == "modules_dtype_dict") {
    modules_dtype_dict.clear();
    if (value.is_null()) return;
    SDNQ_REQUIRE(value.is_object(), ConfigError,
                 "{}: quantization_config key \"modules_dtype_dict\" must be an object of lists, got {}",
                 source_label, value.type_name());
    for (auto it = value.begin(); it != value.end(); ++it)
      modules_dtype_dict.emplace_back(it.key(),
                                      detail::string_list(it.value(), "modules_dtype_dict." + it.key(), source_label));
  } else if (key == "modules_quant_config") {
    modules_quant_config.clear();
    if (value.is_null()) return;
    SDNQ_REQUIRE(value.is_object(), ConfigError,
                 "{}: quantization_config key \"modules_quant_config\" must be an object of objects, got {}",
                 source_label, value.type_name());
    for (auto it = value.begin(); it != value.end(); ++it) {
      SDNQ_REQUIRE(it.value().is_object(), ConfigError,
                   "{}: quantization_config key \"modules_quant_config.{}\" must be an object, got {}", source_label,
                   it.key(), it.value().type_name());
      // Validate the override now, so a bad type is reported at load time and not at the first layer.
      SdnqConfig probe;
      for (auto entry = it.value().begin(); entry != it.value().end(); ++entry)
        probe.assign(entry.key(), entry.value(), fmt::format("{} (modules_quant_config.{})", source_label, it.key()));
      modules_quant_config.emplace_back(it.key(), nlohmann::json::parse(it.value().dump()));
    }
  } else if (key == "is_training") {
    is_training = read_bool(value, key, source_label);
  } else if (key == "sdnq_version") {
    sdnq_version = read_string();
  } else {
    extra[key] = nlohmann::json::parse(value.dump());
  }
}

namespace detail {
template <class Json>
SdnqConfig config_from_json(const Json& quantization_config, std::string_view source_label) {
  SDNQ_REQUIRE(quantization_config.is_object(), ConfigError, "{}: quantization_config must be a JSON object, got {}",
               source_label, quantization_config.type_name());
  SdnqConfig config;
  // quant_method first, so a quanto / bitsandbytes / gguf config is refused before its other keys are judged.
  if (auto method = quantization_config.find("quant_method"); method != quantization_config.end())
    config.assign("quant_method", *method, source_label);
  for (auto it = quantization_config.begin(); it != quantization_config.end(); ++it)
    if (it.key() != "quant_method") config.assign(it.key(), it.value(), source_label);
  return config;
}

template <class Json>
Json config_to_json(const SdnqConfig& config) {
  const format::StorageType& weights_type = format::storage_type(config.weights_dtype);
  Json json = Json::object();
  // Informational and runtime keys the reference writes; `extra` (read from a file) overrides them below.
  json["is_integer"] = weights_type.is_integer;
  json["is_unsigned"] = weights_type.is_unsigned;
  json["non_blocking"] = false;
  json["quantization_device"] = nullptr;
  json["return_device"] = nullptr;
  json["use_grad_ckpt"] = true;
  json["use_static_quantization"] = true;
  for (auto it = config.extra.begin(); it != config.extra.end(); ++it) json[it.key()] = Json::parse(it.value().dump());

  json["add_skip_keys"] = config.add_skip_keys;
  json["codebook_steps"] = config.codebook_steps;
  json["dequantize_fp32"] = config.dequantize_fp32;
  json["dynamic_loss_threshold"] = config.dynamic_loss_threshold ? Json(*config.dynamic_loss_threshold) : Json(nullptr);
  json["group_size"] = config.group_size;
  json["hadamard_group_size"] = config.hadamard_group_size;
  json["is_training"] = config.is_training;
  json["minimum_allowed_channel_size"] = config.minimum_allowed_channel_size;
  json["minimum_allowed_numel"] = config.minimum_allowed_numel;
  Json dtype_dict = Json::object();
  for (const auto& [dtype, names] : config.modules_dtype_dict) dtype_dict[dtype] = names;
  json["modules_dtype_dict"] = dtype_dict;
  Json quant_config = Json::object();
  for (const auto& [pattern, overrides] : config.modules_quant_config) quant_config[pattern] = Json::parse(overrides.dump());
  json["modules_quant_config"] = quant_config;
  json["modules_to_not_convert"] = config.modules_to_not_convert;
  json["modules_to_not_use_matmul"] = config.modules_to_not_use_matmul;
  json["quant_conv"] = config.quant_conv;
  json["quant_embedding"] = config.quant_embedding;
  json["quant_method"] = config.quant_method;
  json["quantized_matmul_dtype"] = config.quantized_matmul_dtype ? Json(*config.quantized_matmul_dtype) : Json(nullptr);
  json["sdnq_version"] = config.sdnq_version;
  json["svd_rank"] = config.svd_rank;
  json["svd_steps"] = config.svd_steps;
  json["use_codebook"] = config.use_codebook;
  json["use_dynamic_quantization"] = config.use_dynamic_quantization;
  json["use_hadamard"] = config.use_hadamard;
  json["use_quantized_matmul"] = config.use_quantized_matmul;
  json["use_quantized_matmul_conv"] = config.use_quantized_matmul_conv;
  json["use_stochastic_rounding"] = config.use_stochastic_rounding;
  json["use_svd"] = config.use_svd;
  json["weights_dtype"] = config.weights_dtype;
  return json;
}
}  // namespace detail

inline SdnqConfig SdnqConfig::from_json(const nlohmann::json& quantization_config, std::string_view source_label) {
  return detail::config_from_json(quantization_config, source_label);
}
inline SdnqConfig SdnqConfig::from_json(const nlohmann::ordered_json& quantization_config,
                                        std::string_view source_label) {
  return detail::config_from_json(quantization_config, source_label);
}
inline nlohmann::json SdnqConfig::to_json() const { return detail::config_to_json<nlohmann::json>(*this); }
inline nlohmann::ordered_json SdnqConfig::to_ordered_json() const {
  return detail::config_to_json<nlohmann::ordered_json>(*this);
}

// The quantization config of a diffusers/transformers component folder: `config.json`'s
// "quantization_config", else `quantization_config.json` beside it. nullopt when the folder holds
// neither (an unquantized component). Throws IoError / FormatError naming the file.
inline std::optional<SdnqConfig> read_quantization_config(const std::filesystem::path& component_folder) {
  const auto config_path = component_folder / "config.json";
  if (std::filesystem::exists(config_path)) {
    const nlohmann::ordered_json config = detail::read_json_file(config_path);
    SDNQ_REQUIRE(config.is_object(), FormatError, "{}: expected a JSON object, got {}", config_path.string(),
                 config.type_name());
    if (auto it = config.find("quantization_config"); it != config.end() && !it->is_null())
      return SdnqConfig::from_json(*it, config_path.string() + " (quantization_config)");
  }
  const auto quantization_path = component_folder / "quantization_config.json";
  if (std::filesystem::exists(quantization_path))
    return SdnqConfig::from_json(detail::read_json_file(quantization_path), quantization_path.string());
  return std::nullopt;
}

}  // namespace sdnq::quant
