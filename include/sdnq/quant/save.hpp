#pragma once
// Writing an SDNQ checkpoint of one component (§2.2, §2.3, §6.1, §6.3): apply the quantization-time
// skip rules, quantize every remaining layer, and write `diffusion_pytorch_model.safetensors`
// (metadata {"format": "pt"}) — or, above max_shard_bytes of tensor data, diffusers' shards
// `diffusion_pytorch_model-0000i-of-0000n.safetensors` plus `diffusion_pytorch_model.safetensors.index.json`
// (io::write_sharded_safetensors; default "10GB" as diffusers) —, then `config.json` (the model config
// with `quantization_config` merged in) and `quantization_config.json`, each atomically. Every layer is
// quantized before the first byte is written, so a failure leaves the folder as it was. Returns the
// final config (with the expanded modules_to_not_convert and any dynamic choices), exactly what was written.
#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/io/atomic_file.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/detail/write_skip_keys.hpp"
#include "sdnq/quant/dynamic.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq::quant {

// A module that SDNQ's class test accepts (Linear, Conv*, ConvTranspose*, Embedding — §2.1), by its
// module path ("blocks.0.attn.to_q"); its weight is the parameter "<prefix>.weight".
struct QuantizableModule {
  std::string prefix;
  LayerKind kind;
};

struct ComponentToSave {
  std::vector<io::NamedTensor> parameters;   // the float state dict, in order (model dtype)
  std::vector<QuantizableModule> modules;    // in traversal order
  nlohmann::ordered_json model_config = nlohmann::ordered_json::object();  // config.json without quantization
  std::string model_class_name;              // for the per-class skip keys (§2.3)
  std::vector<std::string> keep_in_fp32_modules, skip_layerwise_casting_patterns, tied_weight_keys;
  DType model_dtype = DType::bf16;
};

namespace detail {

inline void append_unique(std::vector<std::string>& list, std::string_view key) {
  if (std::find(list.begin(), list.end(), key) == list.end()) list.emplace_back(key);
}

// §2.3 with add_skip_keys: the model's fp32 modules and tied weights, then the class's keys or the
// common keys plus the model's layerwise-casting skip patterns.
inline void add_module_skip_keys(SdnqConfig& config, const ComponentToSave& component) {
  for (const auto& key : component.keep_in_fp32_modules) append_unique(config.modules_to_not_convert, key);
  for (const auto& key : component.tied_weight_keys) append_unique(config.modules_to_not_convert, key);
  const auto class_keys = model_skip_keys(component.model_class_name);
  if (!class_keys.empty()) {
    for (auto key : class_keys) append_unique(config.modules_to_not_convert, key);
    return;
  }
  for (auto key : common_skip_keys) append_unique(config.modules_to_not_convert, key);
  for (const auto& key : component.skip_layerwise_casting_patterns) append_unique(config.modules_to_not_convert, key);
}

// C of the notation: Linear/Embedding the last axis, Conv axis 1, ConvTranspose axis 0.
inline std::int64_t channel_size(const Shape& shape, LayerKind kind) {
  if (is_conv(kind)) return shape[1];
  if (is_conv_transpose(kind)) return shape[0];
  return shape[-1];
}

inline void write_json_atomically(const std::filesystem::path& path, const nlohmann::ordered_json& json) {
  io::AtomicFileWriter writer(path);
  writer.write(json.dump(2) + "\n");
  writer.commit();
}

}  // namespace detail

// The quantization-time skip rules (§2.2): nullopt when the layer `param_name` (its weight of `dtype`
// and `shape`) is quantized, else why not. modules_to_not_convert matches are reported as
// "modules_to_not_convert"; every other reason means the name must be appended to that list.
inline std::optional<std::string> quantization_skip_reason(const SdnqConfig& config, std::string_view param_name,
                                                           LayerKind kind, DType dtype, const Shape& shape) {
  if (matches_any_pattern(param_name, config.modules_to_not_convert)) return "modules_to_not_convert";
  if (kind == LayerKind::embedding && !config.quant_embedding) return "Embedding (quant_embedding off)";
  if ((is_conv(kind) || is_conv_transpose(kind)) && !config.quant_conv)
    return fmt::format("{} (quant_conv off)", layer_kind_name(kind));
  if (dtype != DType::f32 && dtype != DType::f64 && dtype != DType::f16 && dtype != DType::bf16)
    return fmt::format("{} weight", dtype_name(dtype));
  if (shape.rank() < 2) return fmt::format("rank-{} weight", shape.rank());
  if (detail::channel_size(shape, kind) < config.minimum_allowed_channel_size)
    return fmt::format("channels below minimum_allowed_channel_size {}", config.minimum_allowed_channel_size);
  if (shape.numel() < config.minimum_allowed_numel)
    return fmt::format("numel below minimum_allowed_numel {}", config.minimum_allowed_numel);
  return std::nullopt;
}

// Quantizes `component` with `config` and writes the checkpoint into `folder` (created if missing).
inline SdnqConfig save_sdnq_checkpoint(const std::filesystem::path& folder, const ComponentToSave& component,
                                       SdnqConfig config, const QuantizeControls& controls = {},
                                       std::uint64_t max_shard_bytes = io::default_max_shard_bytes) {
  SDNQ_REQUIRE(max_shard_bytes > 0, ConfigError, "{}: max_shard_bytes must be positive", folder.string());
  if (config.add_skip_keys) detail::add_module_skip_keys(config, component);

  std::map<std::string, const io::NamedTensor*, std::less<>> by_name;
  for (const auto& parameter : component.parameters) by_name[parameter.name] = &parameter;

  std::map<std::string, QuantizedTensors, std::less<>> quantized;  // by parameter name
  for (const auto& module : component.modules) {
    const std::string param_name = module.prefix + ".weight";
    const auto found = by_name.find(param_name);
    SDNQ_REQUIRE(found != by_name.end(), ShapeError, "{}: module {} has no parameter {} in the state dict",
                 folder.string(), module.prefix, param_name);
    const TensorView weight = found->second->tensor;
    if (const auto reason = quantization_skip_reason(config, param_name, module.kind, weight.dtype(), weight.shape())) {
      if (*reason != "modules_to_not_convert") config.modules_to_not_convert.push_back(param_name);
      continue;
    }
    if (is_conv_transpose(module.kind) && config.use_quantized_matmul_conv)
      detail::append_unique(config.modules_to_not_use_matmul, param_name);
    QuantizeControls layer_controls = controls;
    layer_controls.layer_name = module.prefix;
    const LayerOptions options = resolve_layer_options(config, param_name, module.kind);
    if (auto tensors =
            quantize_layer(config, param_name, weight, module.kind, options, component.model_dtype, layer_controls))
      quantized.emplace(param_name, std::move(*tensors));
  }

  std::vector<io::NamedTensor> tensors;
  for (const auto& parameter : component.parameters) {
    const auto layer = quantized.find(parameter.name);
    if (layer == quantized.end()) {
      tensors.push_back(parameter);
      continue;
    }
    const std::string prefix = parameter.name.substr(0, parameter.name.size() - std::string_view(".weight").size());
    const QuantizedTensors& q = layer->second;
    tensors.push_back({prefix + ".weight", q.weight.view(), stored_safetensors_dtype(*q.layout.weights_type)});
    tensors.push_back({prefix + ".scale", q.scale.view()});
    if (q.zero_point) tensors.push_back({prefix + ".zero_point", q.zero_point->view()});
    if (q.svd_up) tensors.push_back({prefix + ".svd_up", q.svd_up->view()});
    if (q.svd_down) tensors.push_back({prefix + ".svd_down", q.svd_down->view()});
  }
  io::write_sharded_safetensors(folder, "diffusion_pytorch_model", tensors, max_shard_bytes, {{"format", "pt"}});

  const nlohmann::ordered_json quantization_config = config.to_ordered_json();
  nlohmann::ordered_json model_config = component.model_config;
  model_config["quantization_config"] = quantization_config;
  detail::write_json_atomically(folder / "config.json", model_config);
  detail::write_json_atomically(folder / "quantization_config.json", quantization_config);
  return config;
}

}  // namespace sdnq::quant
