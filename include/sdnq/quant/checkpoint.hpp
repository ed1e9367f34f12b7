#pragma once
// An SDNQ-quantized component folder (format doc §6): its quantization config plus its tensors
// (single or sharded safetensors), and per layer the stored tensors as views into the mapping with
// the layout re-derived (§6.4) and validated. The original weight shapes come from the model
// definition, so the caller passes them.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/layout.hpp"

namespace sdnq::quant {

class SdnqCheckpoint {
 public:
  // Throws IoError when the folder has no weights, ConfigError/UnsupportedError for a config that is
  // not SDNQ, and FormatError when the folder has no quantization config at all.
  static SdnqCheckpoint open(const std::filesystem::path& component_folder) {
    std::optional<SdnqConfig> config = read_quantization_config(component_folder);
    SDNQ_REQUIRE(config.has_value(), FormatError,
                 "{}: no quantization config (neither config.json's \"quantization_config\" nor "
                 "quantization_config.json); this component is not SDNQ-quantized",
                 component_folder.string());
    return SdnqCheckpoint(component_folder, std::move(*config), io::open_checkpoint(component_folder));
  }

  const std::filesystem::path& folder() const { return folder_; }
  const SdnqConfig& config() const { return config_; }
  const io::Checkpoint& tensors() const { return tensors_; }
  const std::vector<std::string>& keys() const { return tensors_.names(); }
  bool contains(std::string_view key) const { return tensors_.contains(key); }
  TensorView tensor(std::string_view key) const { return tensors_.tensor(key); }

  // Whether the layer whose parameters start with `param_prefix` (e.g. "blocks.0.attn.to_q") is
  // stored quantized: the config's load-time rules (§6.4), cross-checked against the file.
  bool is_quantized(std::string_view param_prefix, LayerKind kind) const {
    const std::string param_name = std::string(param_prefix) + ".weight";
    const bool by_config = is_layer_quantized(config_, param_name, kind);
    const std::string scale_key = std::string(param_prefix) + ".scale";
    if (by_config && tensors_.contains(param_name))
      SDNQ_REQUIRE(tensors_.contains(scale_key), FormatError,
                   "{}: the config says {} ({}) is quantized, but the checkpoint has no {}", folder_.string(),
                   param_name, layer_kind_name(kind), scale_key);
    return by_config;
  }

  LayerOptions layer_options(std::string_view param_prefix, LayerKind kind) const {
    return resolve_layer_options(config_, std::string(param_prefix) + ".weight", kind);
  }

  // The stored tensors of one quantized layer, as views into the mapping (valid while this object
  // lives), with the layout derived from `original_shape` and every tensor checked against it.
  QuantizedWeight quantized_weight(std::string_view param_prefix, LayerKind kind, const Shape& original_shape) const {
    const std::string prefix(param_prefix);
    SDNQ_REQUIRE(is_quantized(prefix, kind), FormatError,
                 "{}: {} ({}) is not quantized by this checkpoint's config (modules_to_not_convert / quant_conv / "
                 "quant_embedding); load its weight as a dense tensor",
                 folder_.string(), prefix, layer_kind_name(kind));
    QuantizedWeight layer;
    layer.name = prefix;
    try {
      layer.layout = derive_layout(original_shape, kind, layer_options(prefix, kind));
    } catch (const Error& error) {
      throw FormatError(fmt::format("{}: layer {}: {}", folder_.string(), prefix, error.what()));
    }
    const auto required = [&](const char* suffix) {
      const std::string key = prefix + "." + suffix;
      SDNQ_REQUIRE(tensors_.contains(key), FormatError, "{}: tensor {} is missing; {} needs it", folder_.string(),
                   key, describe(layer.layout));
      return tensors_.tensor(key);
    };
    const auto optional = [&](const char* suffix) -> std::optional<TensorView> {
      const std::string key = prefix + "." + suffix;
      if (!tensors_.contains(key)) return std::nullopt;
      return tensors_.tensor(key);
    };
    layer.weight = required("weight");
    layer.scale = required("scale");
    layer.zero_point = optional("zero_point");
    layer.svd_up = optional("svd_up");
    layer.svd_down = optional("svd_down");
    try {
      validate_quantized_weight(layer);
    } catch (const FormatError& error) {
      throw FormatError(fmt::format("{}: {}", folder_.string(), error.what()));
    }
    return layer;
  }

 private:
  SdnqCheckpoint(std::filesystem::path folder, SdnqConfig config, io::Checkpoint tensors)
      : folder_(std::move(folder)), config_(std::move(config)), tensors_(std::move(tensors)) {}

  std::filesystem::path folder_;
  SdnqConfig config_;
  io::Checkpoint tensors_;
};

}  // namespace sdnq::quant
