#pragma once
// Which layers of a loaded SDNQ checkpoint are quantized, and with which per-layer settings
// (format doc §2.2 name matching, §2.4 option resolution, §6.4 load-time skip rules).
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/quant/config.hpp"

namespace sdnq::quant {

namespace detail {

// One element of the regex the reference builds from a glob: a literal character or `.` (any), with
// an optional `*`. Those are the only constructs module names and the reference's conversion produce.
struct RegexAtom {
  char literal;
  bool any, repeated;
};

inline std::vector<RegexAtom> parse_glob_regex(std::string_view regex, std::string_view pattern) {
  std::vector<RegexAtom> atoms;
  for (std::size_t i = 0; i < regex.size(); ++i) {
    const char c = regex[i];
    if (c == '*') {
      SDNQ_REQUIRE(!atoms.empty() && !atoms.back().repeated, ConfigError,
                   "module pattern \"{}\": '*' follows nothing repeatable in its regex \"{}\"", pattern, regex);
      atoms.back().repeated = true;
    } else if (c == '\\') {
      SDNQ_REQUIRE(i + 1 < regex.size(), ConfigError, "module pattern \"{}\" ends with a backslash", pattern);
      atoms.push_back({regex[++i], false, false});
    } else {
      SDNQ_REQUIRE(std::string_view("+?()[]{}|^$").find(c) == std::string_view::npos, ConfigError,
                   "module pattern \"{}\" uses regex syntax '{}' that sdnq does not support (only '.', '*' and "
                   "literal characters)",
                   pattern, c);
      atoms.push_back({c, c == '.', false});
    }
  }
  return atoms;
}

// Python's re.match: does some prefix of `text` (from position `at`) match atoms[first..]?
inline bool match_prefix(std::span<const RegexAtom> atoms, std::string_view text, std::size_t at) {
  if (atoms.empty()) return true;
  const RegexAtom& atom = atoms.front();
  const auto accepts = [&](std::size_t position) {
    return position < text.size() && (atom.any || text[position] == atom.literal);
  };
  if (!atom.repeated) return accepts(at) && match_prefix(atoms.subspan(1), text, at + 1);
  std::size_t end = at;
  while (accepts(end)) ++end;
  for (std::size_t stop = end + 1; stop-- > at;)  // greedy, then backtrack
    if (match_prefix(atoms.subspan(1), text, stop)) return true;
  return false;
}

}  // namespace detail

// §2.2 `check_param_name_in` for one pattern: ".x" = prefix anchored at the model root; otherwise the
// whole name, one dot-separated component, or (with `*`) a start-anchored glob turned into a regex
// exactly as the reference does (so `.` in such a pattern is a regex wildcard).
inline bool matches_module_pattern(std::string_view param_name, std::string_view pattern) {
  if (pattern.starts_with('.')) return param_name.starts_with(pattern.substr(1));
  if (param_name == pattern) return true;
  for (std::size_t begin = 0;;) {
    const std::size_t end = std::min(param_name.find('.', begin), param_name.size());
    if (param_name.substr(begin, end - begin) == pattern) return true;
    if (end == param_name.size()) break;
    begin = end + 1;
  }
  if (pattern.find('*') == std::string_view::npos) return false;
  // Python: pattern.replace(".*", "\\.*").replace("*", ".*"), then re.match (anchored at the start only).
  std::string escaped;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '.' && i + 1 < pattern.size() && pattern[i + 1] == '*') {
      escaped += "\\.*";
      ++i;
    } else {
      escaped += pattern[i];
    }
  }
  std::string regex;
  for (char c : escaped) regex += c == '*' ? std::string(".*") : std::string(1, c);
  const std::vector<detail::RegexAtom> atoms = detail::parse_glob_regex(regex, pattern);
  return detail::match_prefix(atoms, param_name, 0);
}

// The first pattern of `patterns` that matches, or nullptr.
inline const std::string* first_matching_pattern(std::string_view param_name, std::span<const std::string> patterns) {
  for (const auto& pattern : patterns)
    if (matches_module_pattern(param_name, pattern)) return &pattern;
  return nullptr;
}

inline bool matches_any_pattern(std::string_view param_name, std::span<const std::string> patterns) {
  return first_matching_pattern(param_name, patterns) != nullptr;
}

// The per-layer quantization kwargs after §2.4.
struct LayerOptions {
  const format::StorageType* weights_type = nullptr;  // resolved
  std::optional<std::string> quantized_matmul_dtype;
  std::int64_t group_size = 0, svd_rank = 32, svd_steps = 8, hadamard_group_size = 256, codebook_steps = 24;
  bool use_svd = false, use_hadamard = false, use_codebook = false, use_quantized_matmul = false;
  bool dequantize_fp32 = true, use_stochastic_rounding = false;
};

namespace detail {

// §2.4 step 3 (`get_minimum_dtype`): the first modules_dtype_dict key whose list matches decides.
// "minimum_..."/"...bit(s)" keys raise the bit count to at least N; any other key is a dtype name.
inline std::string minimum_dtype(const std::string& weights_dtype, std::string_view param_name,
                                 const SdnqConfig& config) {
  for (const auto& [key, patterns] : config.modules_dtype_dict) {
    if (!matches_any_pattern(param_name, patterns)) continue;
    std::string lowered = key;
    std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string_view rule = lowered;
    if (!(rule.starts_with("minimum") || rule.ends_with("bit") || rule.ends_with("bits"))) return lowered;
    // Python: removeprefix("minimum"), "-", "_"; removesuffix("bits"), "bit", "-", "_" — each once, in order.
    const auto remove_prefix = [&](std::string_view prefix) {
      if (rule.starts_with(prefix)) rule.remove_prefix(prefix.size());
    };
    const auto remove_suffix = [&](std::string_view suffix) {
      if (rule.ends_with(suffix)) rule.remove_suffix(suffix.size());
    };
    for (std::string_view prefix : {"minimum", "-", "_"}) remove_prefix(prefix);
    for (std::string_view suffix : {"bits", "bit", "-", "_"}) remove_suffix(suffix);
    const bool is_unsigned = rule.starts_with("uint");
    remove_prefix(is_unsigned ? "uint" : "int");
    int minimum_bits = 0;
    const auto [end, error] = std::from_chars(rule.data(), rule.data() + rule.size(), minimum_bits);
    SDNQ_REQUIRE(error == std::errc() && end == rule.data() + rule.size() && !rule.empty(), ConfigError,
                 "modules_dtype_dict key \"{}\" (matching {}) is neither a dtype name nor a minimum-bits rule like "
                 "\"minimum_6bits\" or \"minimum_uint4\"",
                 key, param_name);
    if (format::storage_type(weights_dtype).bits < minimum_bits)
      return (is_unsigned || minimum_bits <= 4 ? "uint" : "int") + std::string(rule);
    return weights_dtype;
  }
  return weights_dtype;
}

}  // namespace detail

// §2.4: global config, then the first matching modules_quant_config override, then convs take
// use_quantized_matmul_conv, then the minimum-dtype rules, then modules_to_not_use_matmul.
inline LayerOptions resolve_layer_options(const SdnqConfig& config, std::string_view param_name, LayerKind kind) {
  SdnqConfig effective = config;  // the overrides act on the same key names as the config
  for (const auto& [pattern, overrides] : config.modules_quant_config) {
    if (!matches_module_pattern(param_name, pattern)) continue;
    const std::string source = fmt::format("modules_quant_config.{} (for {})", pattern, param_name);
    for (auto it = overrides.begin(); it != overrides.end(); ++it) effective.assign(it.key(), it.value(), source);
    break;
  }
  LayerOptions options;
  options.quantized_matmul_dtype = effective.quantized_matmul_dtype;
  options.group_size = effective.group_size;
  options.svd_rank = effective.svd_rank;
  options.svd_steps = effective.svd_steps;
  options.hadamard_group_size = effective.hadamard_group_size;
  options.codebook_steps = effective.codebook_steps;
  options.use_svd = effective.use_svd;
  options.use_hadamard = effective.use_hadamard;
  options.use_codebook = effective.use_codebook;
  options.dequantize_fp32 = effective.dequantize_fp32;
  options.use_stochastic_rounding = effective.use_stochastic_rounding;
  options.use_quantized_matmul =
      is_conv(kind) || is_conv_transpose(kind) ? effective.use_quantized_matmul_conv : effective.use_quantized_matmul;
  const std::string dtype = detail::minimum_dtype(effective.weights_dtype, param_name, config);
  options.weights_type = format::find_storage_type(dtype);
  SDNQ_REQUIRE(options.weights_type != nullptr, ConfigError,
               "layer {}: weights_dtype \"{}\" (after modules_dtype_dict) is not an SDNQ storage type", param_name,
               dtype);
  if (matches_any_pattern(param_name, config.modules_to_not_use_matmul)) options.use_quantized_matmul = false;
  return options;
}

// Load-time skip rules (§2.2 with pre_quantized=True, §6.4): every layer of an allowed class is
// quantized unless modules_to_not_convert names it or its class is switched off. The size rule
// (minimum_allowed_channel_size / numel) is a quantization-time rule and is not applied here.
inline bool is_layer_quantized(const SdnqConfig& config, std::string_view param_name, LayerKind kind) {
  if (kind == LayerKind::embedding && !config.quant_embedding) return false;
  if ((is_conv(kind) || is_conv_transpose(kind)) && !config.quant_conv) return false;
  return !matches_any_pattern(param_name, config.modules_to_not_convert);
}

}  // namespace sdnq::quant
