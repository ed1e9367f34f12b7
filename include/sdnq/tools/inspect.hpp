#pragma once
// sdnq-inspect's logic: per component of a model, its class, whether and how it is quantized, how
// many layers use each storage type (re-derived per layer from the config, §2.4), the SVD ranks, the
// skipped modules, and its sizes: bytes on disk, bytes once loaded (quantized tensors stay as stored),
// and the dense bf16 equivalent.
//
// A quantized layer is a `<prefix>.weight` with a `<prefix>.scale` sibling. Its dense element count
// is the weight's element count, or for bit-packed types (stored bytes × 8 / bits), so no model
// definition is needed.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/tools/model_folder.hpp"
#include "sdnq/tools/progress.hpp"

namespace sdnq::tools {

struct ComponentReport {
  std::string name, class_name;
  bool has_weights = false;
  // "sdnq", "none" (dense), or the foreign method ("quanto", "bitsandbytes", ...).
  std::string quantization = "none";
  std::optional<quant::SdnqConfig> config;          // when SDNQ
  std::map<std::string, std::int64_t> layers_by_type;  // storage type name -> quantized layers
  std::map<std::int64_t, std::int64_t> layers_by_svd_rank;
  std::vector<std::string> skipped_modules;         // modules_to_not_convert
  std::int64_t tensor_count = 0, quantized_layer_count = 0;
  std::uint64_t bytes_on_disk = 0;      // the weights files (shards and index included)
  std::uint64_t bytes_loaded = 0;       // every tensor as stored
  std::uint64_t dense_bf16_bytes = 0;   // the same parameters dense, float tensors as bf16

  bool is_sdnq() const { return quantization == "sdnq"; }
  // "SDNQ", "not quantized" or "quantized with <method>, not SDNQ".
  std::string quantization_summary() const {
    if (is_sdnq()) return "SDNQ";
    if (quantization == "none") return "not quantized";
    return fmt::format("quantized with {}, not SDNQ", quantization);
  }
};

struct ModelReport {
  std::filesystem::path path;
  SourceKind kind = SourceKind::component;
  std::vector<ComponentReport> components;
};

namespace detail {

// The quant_method a folder declares, without judging it: config.json's quantization_config, else
// quantization_config.json, else Optimum-Quanto's quantization_map.json (which has no quant_method).
inline std::optional<std::string> declared_quant_method(const std::filesystem::path& folder,
                                                        const nlohmann::ordered_json& config) {
  const auto method_of = [](const nlohmann::ordered_json& quantization_config) -> std::string {
    if (auto it = quantization_config.find("quant_method"); it != quantization_config.end() && it->is_string())
      return it->get<std::string>();
    return "an unnamed method (no quant_method)";
  };
  if (auto it = config.find("quantization_config"); it != config.end() && it->is_object()) return method_of(*it);
  if (std::filesystem::is_regular_file(folder / "quantization_config.json"))
    return method_of(quant::detail::read_json_file(folder / "quantization_config.json"));
  if (std::filesystem::is_regular_file(folder / "quantization_map.json")) return "quanto";
  return std::nullopt;
}

inline bool is_float(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f64;
}

// The dense element count of a quantized layer's weight from its stored tensor.
inline std::int64_t dense_numel(const io::TensorInfo& weight, const format::StorageType& type) {
  if (!type.uses_bit_packer()) return weight.shape.numel();
  return static_cast<std::int64_t>(weight.nbytes() * 8 / static_cast<std::uint64_t>(type.bits));
}

inline void measure_tensors(ComponentReport& report, const io::Checkpoint& checkpoint) {
  std::set<std::filesystem::path> files{checkpoint.path()};
  const auto& names = checkpoint.names();
  const std::set<std::string, std::less<>> name_set(names.begin(), names.end());
  const auto auxiliary = [&](std::string_view name) {
    for (std::string_view suffix : {".scale", ".zero_point", ".svd_up", ".svd_down"})
      if (name.ends_with(suffix)) {
        const std::string prefix(name.substr(0, name.size() - suffix.size()));
        if (name_set.contains(prefix + ".weight")) return true;
      }
    return false;
  };
  for (const auto& name : names) {
    const io::TensorInfo& info = checkpoint.info(name);
    files.insert(checkpoint.file_of(name).path());
    ++report.tensor_count;
    report.bytes_loaded += info.nbytes();
    if (auxiliary(name)) continue;
    const bool quantized_weight = name.ends_with(".weight") &&
                                  name_set.contains(name.substr(0, name.size() - 7) + ".scale") && report.config;
    if (!quantized_weight) {
      report.dense_bf16_bytes += is_float(info.dtype) ? static_cast<std::uint64_t>(info.shape.numel()) * 2 : info.nbytes();
      continue;
    }
    const std::string prefix = name.substr(0, name.size() - 7);
    const quant::LayerOptions options = quant::resolve_layer_options(*report.config, name, quant::LayerKind::linear);
    const format::StorageType& type = *options.weights_type;
    SDNQ_REQUIRE(info.dtype == type.stored_dtype, FormatError,
                 "{}: {} is stored as {}, but the config makes it {} (stored as {})",
                 checkpoint.file_of(name).path().string(), name, dtype_name(info.dtype), type.name,
                 dtype_name(type.stored_dtype));
    ++report.quantized_layer_count;
    ++report.layers_by_type[std::string(type.name)];
    if (name_set.contains(prefix + ".svd_up")) {
      const Shape& up = checkpoint.info(prefix + ".svd_up").shape;
      const Shape& down = checkpoint.info(prefix + ".svd_down").shape;
      // [out, rank] x [rank, in], or both transposed with quantized matmul: the rank is the shared axis.
      const std::int64_t rank = up[1] == down[0] ? up[1] : up[0];
      ++report.layers_by_svd_rank[rank];
    }
    report.dense_bf16_bytes += static_cast<std::uint64_t>(dense_numel(info, type)) * 2;
  }
  for (const auto& file : files) report.bytes_on_disk += std::filesystem::file_size(file);
}

}  // namespace detail

// One component folder (or .safetensors file with `folder` its parent).
inline ComponentReport inspect_component(const ModelComponent& component) {
  ComponentReport report;
  report.name = component.name;
  const nlohmann::ordered_json config = read_component_config(component.folder);
  report.class_name = component_class_name(config);
  if (const auto method = detail::declared_quant_method(component.folder, config)) {
    report.quantization = *method;
    if (quant::detail::is_sdnq_method(*method)) {
      report.quantization = "sdnq";
      report.config = quant::read_quantization_config(component.folder);
      report.skipped_modules = report.config->modules_to_not_convert;
    }
  }
  if (!component.weights) return report;
  report.has_weights = true;
  detail::measure_tensors(report, io::open_checkpoint(*component.weights));
  return report;
}

inline ModelReport inspect_model(std::string_view argument) {
  ModelSource source = open_model_source(argument);
  ModelReport report;
  report.path = source.path;
  report.kind = source.kind;
  for (const auto& component : source.components) report.components.push_back(inspect_component(component));
  return report;
}

inline nlohmann::ordered_json to_json(const ModelReport& report) {
  nlohmann::ordered_json json;
  json["path"] = report.path.string();
  json["kind"] = report.kind == SourceKind::pipeline    ? "pipeline"
                 : report.kind == SourceKind::component ? "component"
                                                        : "safetensors_file";
  json["components"] = nlohmann::ordered_json::array();
  for (const auto& component : report.components) {
    nlohmann::ordered_json entry;
    entry["name"] = component.name;
    entry["class"] = component.class_name;
    entry["quantization"] = component.quantization;
    entry["sdnq"] = component.is_sdnq();
    entry["summary"] = component.quantization_summary();
    entry["has_weights"] = component.has_weights;
    if (component.config) {
      entry["weights_dtype"] = component.config->weights_dtype;
      entry["group_size"] = component.config->group_size;
      entry["use_svd"] = component.config->use_svd;
    }
    entry["layers_by_type"] = component.layers_by_type;
    nlohmann::ordered_json ranks = nlohmann::ordered_json::object();
    for (const auto& [rank, count] : component.layers_by_svd_rank) ranks[std::to_string(rank)] = count;
    entry["layers_by_svd_rank"] = ranks;
    entry["quantized_layers"] = component.quantized_layer_count;
    entry["tensors"] = component.tensor_count;
    entry["skipped_modules"] = component.skipped_modules;
    entry["bytes_on_disk"] = component.bytes_on_disk;
    entry["bytes_loaded"] = component.bytes_loaded;
    entry["dense_bf16_bytes"] = component.dense_bf16_bytes;
    json["components"].push_back(entry);
  }
  return json;
}

inline std::string to_text(const ModelReport& report) {
  std::string text = fmt::format("{}\n", report.path.string());
  for (const auto& component : report.components) {
    text += fmt::format("{}: {}{}\n", component.name, component.class_name.empty() ? "(no class)" : component.class_name,
                        component.has_weights ? "" : " (no weights)");
    if (!component.has_weights) continue;
    text += fmt::format("  quantization: {}", component.quantization_summary());
    if (component.config)
      text += fmt::format(" (weights_dtype {}, group_size {}{})", component.config->weights_dtype,
                          component.config->group_size,
                          component.config->use_svd ? fmt::format(", svd_rank {}", component.config->svd_rank) : "");
    text += "\n";
    if (component.is_sdnq()) {
      text += fmt::format("  quantized layers: {}\n", component.quantized_layer_count);
      for (const auto& [type, count] : component.layers_by_type) text += fmt::format("    {}: {}\n", type, count);
      for (const auto& [rank, count] : component.layers_by_svd_rank)
        text += fmt::format("  SVD rank {}: {} layers\n", rank, count);
      if (!component.skipped_modules.empty())
        text += fmt::format("  skipped modules ({}): {}\n", component.skipped_modules.size(),
                            fmt::join(component.skipped_modules, ", "));
    }
    text += fmt::format("  size: {} on disk, {} loaded, {} dense bf16\n", format_bytes(component.bytes_on_disk),
                        format_bytes(component.bytes_loaded), format_bytes(component.dense_bf16_bytes));
  }
  return text;
}

}  // namespace sdnq::tools
