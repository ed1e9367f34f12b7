#pragma once
// sdnq-quantize's command line: the options, the usage text and the QuantizeRequest they make. A
// quantization_config JSON (--config) can give every SDNQConfig key, per-module overrides included;
// the options given on the command line then replace its values, and the list options add to its lists.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/tools/arguments.hpp"
#include "sdnq/tools/quantize_model.hpp"

namespace sdnq::tools {

inline constexpr std::string_view quantize_usage_text =
    "usage: sdnq-quantize <pipeline folder | component folder | file.safetensors | org/repo> --type T -o OUT\n"
    "         [--svd-rank R] [--svd-steps N] [--group-size G] [--quantized-matmul] [--quantized-matmul-conv]\n"
    "         [--quantized-matmul-dtype T] [--hadamard] [--hadamard-group-size G] [--codebook] [--codebook-steps N]\n"
    "         [--quant-conv] [--quant-embedding] [--scales-in-model-dtype] [--dynamic] [--dynamic-loss-threshold L]\n"
    "         [--skip a,b] [--no-matmul a,b] [--module-types 'T=a,b;U=c'] [--config quantization_config.json]\n"
    "         [--components a,b] [--model-dtype bf16|fp16|fp32] [--no-skip-keys] [--stochastic-rounding]\n"
    "         [--seed S] [--max-shard-size 10GB] [--dry-run] [--overwrite]\n"
    "T is an SDNQ storage type: int8, uint4, float8_e4m3fn, ... --svd-rank turns SVD on. --dynamic climbs from T\n"
    "to the first dtype whose normalized loss is at most L (default 10^(-bits/2)) per layer; a dry run then\n"
    "quantizes too, to plan what is written. Module patterns (--skip: left dense, --no-matmul: no quantized\n"
    "matmul, --module-types: a dtype for the layers matching its patterns) match as SDNQ matches them: a\n"
    "dot-separated part of the parameter name, '.prefix' anchored at the model root, or a glob with '*'.\n"
    "--config reads an SDNQ quantization_config (or a config.json holding one); the other options override it\n"
    "and --type is then optional. Weights larger than --max-shard-size (default 10GB, as diffusers; KB/MB/GB\n"
    "decimal, KiB/MiB/GiB binary) are sharded with an index. OUT is written as OUT.partial and renamed when\n"
    "complete; an existing OUT is refused unless --overwrite.\n";

inline OptionSpec quantize_option_spec() {
  return {{"--quantized-matmul", "--quantized-matmul-conv", "--hadamard", "--codebook", "--quant-conv",
           "--quant-embedding", "--scales-in-model-dtype", "--dynamic", "--no-skip-keys", "--stochastic-rounding",
           "--dry-run", "--overwrite", "--help"},
          {"--type", "--svd-rank", "--svd-steps", "--group-size", "--quantized-matmul-dtype", "--hadamard-group-size",
           "--codebook-steps", "--dynamic-loss-threshold", "--skip", "--no-matmul", "--module-types", "--config",
           "--components", "--model-dtype", "--seed", "--max-shard-size", "-o", "--output"}};
}

namespace detail {

inline DType parse_model_dtype(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "fp16" || name == "float16") return DType::f16;
  if (name == "fp32" || name == "float32") return DType::f32;
  throw UsageError(fmt::format("--model-dtype must be bf16, fp16 or fp32, got \"{}\"", name));
}

inline void require_storage_type(std::string_view option, const std::string& name) {
  SDNQ_REQUIRE(format::find_storage_type(name) != nullptr, UsageError,
               "{} \"{}\" is not an SDNQ storage type (e.g. int8, uint4, float8_e4m3fn)", option, name);
}

// The base config of --config: a quantization_config object, or a model config.json holding one under
// "quantization_config". Key order is kept (modules_dtype_dict's first match wins).
inline quant::SdnqConfig config_from_file(const std::filesystem::path& path) {
  std::ifstream file(path);
  SDNQ_REQUIRE(file.good(), IoError, "--config {}: cannot read the file", path.string());
  nlohmann::ordered_json json;
  try {
    json = nlohmann::ordered_json::parse(file);
  } catch (const nlohmann::json::exception& error) {
    throw ConfigError(fmt::format("--config {}: not valid JSON ({})", path.string(), error.what()));
  }
  SDNQ_REQUIRE(json.is_object(), ConfigError, "--config {}: expected a JSON object, got {}", path.string(),
               json.type_name());
  if (json.contains("quantization_config")) json = json["quantization_config"];
  SDNQ_REQUIRE(json.is_object(), ConfigError, "--config {}: quantization_config must be an object, got {}",
               path.string(), json.type_name());
  if (json.contains("quant_method") && json["quant_method"].is_string()) {
    const std::string method = json["quant_method"].get<std::string>();
    SDNQ_REQUIRE(quant::detail::is_sdnq_method(method), UnsupportedError,
                 "--config {}: quant_method \"{}\" is not SDNQ; sdnq-quantize writes SDNQ checkpoints only "
                 "(quant_method \"sdnq\")",
                 path.string(), method);
  }
  return quant::SdnqConfig::from_json(json, "--config " + path.string());
}

inline double parse_loss_threshold(const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SDNQ_REQUIRE(used == text.size() && !text.empty() && std::isfinite(value) && value >= 0, UsageError,
               "--dynamic-loss-threshold needs a number >= 0, got \"{}\"", text);
  return value;
}

// "T=a,b;U=c" → {T: [a, b]}, {U: [c]}, each T a storage type, appended after the config's own rules.
inline void add_module_types(quant::SdnqConfig& config, std::string_view text) {
  while (!text.empty()) {
    const std::size_t semicolon = text.find(';');
    const std::string_view group = text.substr(0, semicolon);
    text = semicolon == std::string_view::npos ? std::string_view() : text.substr(semicolon + 1);
    if (group.empty()) continue;
    const std::size_t equals = group.find('=');
    SDNQ_REQUIRE(equals != std::string_view::npos && equals > 0, UsageError,
                 "--module-types: expected TYPE=pattern,pattern;... , got \"{}\"", group);
    const std::string type(group.substr(0, equals));
    require_storage_type("--module-types", type);
    const std::vector<std::string> patterns = split_list(group.substr(equals + 1));
    SDNQ_REQUIRE(!patterns.empty(), UsageError, "--module-types: {} names no module pattern", type);
    auto entry = std::find_if(config.modules_dtype_dict.begin(), config.modules_dtype_dict.end(),
                              [&](const auto& item) { return item.first == type; });
    if (entry == config.modules_dtype_dict.end())
      config.modules_dtype_dict.emplace_back(type, patterns);
    else
      entry->second.insert(entry->second.end(), patterns.begin(), patterns.end());
  }
}

}  // namespace detail

// The request of a parsed command line (UsageError for a bad value, ConfigError / IoError for a bad
// --config file, each naming the option or the file).
inline QuantizeRequest quantize_request_from(const ParsedArguments& arguments) {
  QuantizeRequest request;
  quant::SdnqConfig& config = request.config;
  const auto config_file = arguments.value("--config");
  if (config_file) config = detail::config_from_file(*config_file);
  const auto type = arguments.value("--type");
  SDNQ_REQUIRE(type.has_value() || config_file.has_value(), UsageError,
               "--type is required (e.g. --type uint4) unless --config gives weights_dtype");
  if (type) {
    detail::require_storage_type("--type", *type);
    config.weights_dtype = *type;
  }
  // Options replace the config's values only when given.
  const auto set_flag = [&](std::string_view option, bool& field) {
    if (arguments.flag(option)) field = true;
  };
  const auto set_integer = [&](std::string_view option, std::int64_t& field, long long minimum, long long maximum) {
    field = arguments.integer(option, field, minimum, maximum);
  };
  set_integer("--group-size", config.group_size, -2, 1 << 20);
  if (arguments.value("--svd-rank")) {
    config.use_svd = true;
    set_integer("--svd-rank", config.svd_rank, 1, 1 << 16);
  }
  set_integer("--svd-steps", config.svd_steps, 1, 1000);
  set_flag("--quantized-matmul", config.use_quantized_matmul);
  set_flag("--quantized-matmul-conv", config.use_quantized_matmul_conv);
  if (const auto matmul = arguments.value("--quantized-matmul-dtype")) {
    detail::require_storage_type("--quantized-matmul-dtype", *matmul);
    config.quantized_matmul_dtype = *matmul;
  }
  set_flag("--hadamard", config.use_hadamard);
  set_integer("--hadamard-group-size", config.hadamard_group_size, 1, 1 << 20);
  set_flag("--codebook", config.use_codebook);
  set_integer("--codebook-steps", config.codebook_steps, 1, 1000);
  set_flag("--quant-conv", config.quant_conv);
  set_flag("--quant-embedding", config.quant_embedding);
  if (arguments.flag("--scales-in-model-dtype")) config.dequantize_fp32 = false;
  set_flag("--dynamic", config.use_dynamic_quantization);
  if (const auto threshold = arguments.value("--dynamic-loss-threshold")) {
    SDNQ_REQUIRE(config.use_dynamic_quantization, UsageError,
                 "--dynamic-loss-threshold needs --dynamic (or use_dynamic_quantization in --config)");
    config.dynamic_loss_threshold = detail::parse_loss_threshold(*threshold);
  }
  if (const auto skip = arguments.value("--skip"))
    for (auto& pattern : split_list(*skip)) config.modules_to_not_convert.push_back(std::move(pattern));
  if (const auto no_matmul = arguments.value("--no-matmul"))
    for (auto& pattern : split_list(*no_matmul)) config.modules_to_not_use_matmul.push_back(std::move(pattern));
  if (const auto module_types = arguments.value("--module-types")) detail::add_module_types(config, *module_types);
  if (arguments.flag("--no-skip-keys")) config.add_skip_keys = false;
  set_flag("--stochastic-rounding", config.use_stochastic_rounding);
  if (const auto size = arguments.value("--max-shard-size")) {
    try {
      request.max_shard_bytes = io::parse_byte_size(*size);
    } catch (const ConfigError& error) {
      throw UsageError(fmt::format("--max-shard-size: {}", error.what()));
    }
  }
  if (const auto components = arguments.value("--components")) request.components = split_list(*components);
  if (const auto dtype = arguments.value("--model-dtype")) request.model_dtype = detail::parse_model_dtype(*dtype);
  request.seed = static_cast<std::uint64_t>(arguments.integer("--seed", 0, 0, std::numeric_limits<long long>::max()));
  request.dry_run = arguments.flag("--dry-run");
  request.overwrite = arguments.flag("--overwrite");
  return request;
}

}  // namespace sdnq::tools
