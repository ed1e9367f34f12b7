#pragma once
// A component folder (config.json + single or sharded safetensors), dense or SDNQ-quantized, as the
// source of modules' weights. Modules take their tensors through it by name; every tensor taken is
// marked used, so a model can refuse a checkpoint with tensors it does not know (unused_tensors()).
//
// The mapping stays open for as long as any module loaded from it lives (shared ownership): quantized
// layers keep views into it for the quantized-matmul path.
//
// A component can also live in memory (InMemoryComponent: a config and named host tensors, dense or
// quantized by the library's quantizer), so benchmarks build full-size models from a published
// config with random weights and no files. Several names may share one tensor; every module still
// uploads its own copy, so device memory is the real per-layer size.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/packing.hpp"  // quant/layout.hpp uses it without including it
#include "sdnq/io/sharded.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq/quant/checkpoint.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/quantize.hpp"  // QuantizedTensors of in-memory components

namespace sdnq::nn {

namespace detail {

inline nlohmann::json read_component_config(const std::filesystem::path& folder) {
  const std::filesystem::path path = folder / "config.json";
  std::ifstream file(path, std::ios::binary);
  SDNQ_REQUIRE(file.good(), IoError, "cannot read {}: a component folder needs its config.json", path.string());
  std::stringstream text;
  text << file.rdbuf();
  try {
    nlohmann::json config = nlohmann::json::parse(text.str());
    SDNQ_REQUIRE(config.is_object(), FormatError, "{}: expected a JSON object, got {}", path.string(),
                 config.type_name());
    return config;
  } catch (const nlohmann::json::exception& error) {
    throw FormatError(fmt::format("{}: invalid JSON: {}", path.string(), error.what()));
  }
}

}  // namespace detail

// A component held in memory. `dense` maps a tensor name to a host tensor (any float dtype);
// `quantized` maps a layer prefix to its quantizer output, which provides <prefix>.weight, .scale and
// the optional .zero_point / .svd_up / .svd_down. Entries may share one tensor between names.
struct InMemoryComponent {
  nlohmann::json config = nlohmann::json::object();
  std::string label = "in-memory component";  // stands where a folder path would in messages
  std::map<std::string, std::shared_ptr<const Tensor>, std::less<>> dense;
  std::map<std::string, std::shared_ptr<const quant::QuantizedTensors>, std::less<>> quantized;
};

namespace detail {

// The tensor names a quantized layer provides, in the order a checkpoint stores them.
inline std::vector<std::string> quantized_tensor_names(const std::string& prefix,
                                                       const quant::QuantizedTensors& layer) {
  std::vector<std::string> names{prefix + ".weight", prefix + ".scale"};
  if (layer.zero_point) names.push_back(prefix + ".zero_point");
  if (layer.svd_up) names.push_back(prefix + ".svd_up");
  if (layer.svd_down) names.push_back(prefix + ".svd_down");
  return names;
}

}  // namespace detail

// How GPU modules run layers saved for SDNQ's quantized matmul whose stored codes the 8-bit GEMM cannot
// read as they are: grouped or packed signed integer weights (uint4 g64 + SVD with use_quantized_matmul
// and friends), which the reference re-quantizes to int8 per output channel on every call (§5.1 step 1).
enum class RequantizedMatmul : std::uint8_t {
  // Keep the stored codes (4 bits a weight stay 4 bits) and run the weight-only kernels: the
  // dequantized product, closer to the exact one than the reference's int8 product.
  stored_codes,
  // Re-quantize once at load, exactly as the reference does per call, and run the int8 GEMM (W4A8):
  // the reference's numerics from 32 tokens and faster at large M, but 8 bits a weight on the device.
  // Layers saved with an fp8 product (quantized_matmul_dtype float8_e4m3fn, no SVD) likewise get their
  // e4m3 operand once and run the e4m3 GEMM: re-quantized ones, and custom floats of at most 7 bits
  // whose values the reference multiplies directly (float4_e2m1fn, float6_e3m2fn, ...).
  int8_at_load,
  // As int8_at_load, with the int8 operand held as code tables where the stored codes are 4-bit or
  // narrower and grouped by more than 32 inputs (quant::Int8CodeTables: 5 bits a weight for uint4 g128,
  // 6 for g64), expanded into the workspace before each GEMM: the same results bit for bit, less memory,
  // one memory-speed pass per call more.
  int8_tables_at_load,
};

// What the modules loaded from one component took from it, per storage type (WeightLoader::report):
// SDNQ layers under their storage type ("uint4", "int8", "float8_e4m3fn", ...), dense tensors under their
// dtype ("BF16", "F32", ...). Bytes as stored (file or memory): for an SDNQ layer its weight, scale,
// zero point and SVD factors together.
struct StorageLoad {
  std::int64_t entries = 0;     // SDNQ layers, or dense tensors
  std::int64_t parameters = 0;  // elements they stand for (an SDNQ layer: its original shape's, not the codes')
  std::uint64_t bytes = 0;      // bytes as stored
};

struct LoadReport {
  std::string component;  // the folder, or an in-memory component's label
  std::map<std::string, StorageLoad, std::less<>> quantized, dense;

  std::uint64_t bytes() const { return sum(quantized).bytes + sum(dense).bytes; }
  std::int64_t parameters() const { return sum(quantized).parameters + sum(dense).parameters; }

  // The total, then one line per storage type, largest first, e.g.
  //   transformer: 6.43 GiB for 11.90 G parameters (4.64 bits each)
  //     SDNQ  uint4              493 layers     11.81 G parameters    6.01 GiB   4.37 bits each
  //     dense BF16               101 tensors    90.4 M parameters     0.42 GiB  16.00 bits each
  std::string to_string() const {
    const auto line = [](std::string_view kind, std::string_view name, const char* unit, const StorageLoad& load) {
      return fmt::format("  {:<5} {:<16} {:>7} {:<7} {:>9} parameters {:>10} {:>6.2f} bits each\n", kind, name,
                         load.entries, unit, count_text(load.parameters), bytes_text(load.bytes), bits_each(load));
    };
    std::vector<std::pair<std::uint64_t, std::string>> lines;
    for (const auto& [name, load] : quantized) lines.emplace_back(load.bytes, line("SDNQ", name, "layers", load));
    for (const auto& [name, load] : dense) lines.emplace_back(load.bytes, line("dense", name, "tensors", load));
    std::stable_sort(lines.begin(), lines.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    StorageLoad total = sum(quantized);
    const StorageLoad dense_total = sum(dense);
    total.parameters += dense_total.parameters;
    total.bytes += dense_total.bytes;
    std::string text = fmt::format("{}: {} for {} parameters ({:.2f} bits each)\n", component, bytes_text(total.bytes),
                                   count_text(total.parameters), bits_each(total));
    for (const auto& entry : lines) text += entry.second;
    return text;
  }

 private:
  static StorageLoad sum(const std::map<std::string, StorageLoad, std::less<>>& by_type) {
    StorageLoad total;
    for (const auto& entry : by_type) {
      total.entries += entry.second.entries;
      total.parameters += entry.second.parameters;
      total.bytes += entry.second.bytes;
    }
    return total;
  }
  static std::string bytes_text(std::uint64_t bytes) {
    const double value = static_cast<double>(bytes);
    if (value >= 1024.0 * 1024.0 * 1024.0) return fmt::format("{:.2f} GiB", value / (1024.0 * 1024.0 * 1024.0));
    if (value >= 1024.0 * 1024.0) return fmt::format("{:.2f} MiB", value / (1024.0 * 1024.0));
    return fmt::format("{:.1f} KiB", value / 1024.0);
  }
  static std::string count_text(std::int64_t count) {
    const double value = static_cast<double>(count);
    if (value >= 1e9) return fmt::format("{:.2f} G", value * 1e-9);
    if (value >= 1e6) return fmt::format("{:.1f} M", value * 1e-6);
    return fmt::format("{:.1f} k", value * 1e-3);
  }
  static double bits_each(const StorageLoad& load) {
    return load.parameters == 0 ? 0.0 : 8.0 * static_cast<double>(load.bytes) / static_cast<double>(load.parameters);
  }
};

namespace detail {

// What a WeightLoader and the modules loaded from it share: files (SDNQ or dense) or memory.
struct LoadedCheckpoint {
  std::filesystem::path folder;
  nlohmann::json config;
  std::optional<quant::SdnqCheckpoint> sdnq;  // when the folder has a quantization config
  std::optional<io::Checkpoint> dense;        // otherwise
  std::optional<InMemoryComponent> memory;    // instead of files
  std::map<std::string, TensorView, std::less<>> memory_views;  // every in-memory tensor by name
  std::set<std::string, std::less<>> used;
  RequantizedMatmul requantized_matmul = RequantizedMatmul::stored_codes;
  LoadReport report;
  std::set<std::string, std::less<>> reported;  // tensor names already counted in `report`

  // Counts a dense tensor taken by a module, once per name (a name already counted with its SDNQ layer is not).
  void report_dense(std::string_view name, const TensorView& tensor) {
    if (!reported.emplace(name).second) return;
    StorageLoad& load = report.dense[std::string(dtype_name(tensor.dtype()))];
    load.entries += 1;
    load.parameters += tensor.numel();
    load.bytes += tensor.nbytes();
  }
  // Counts an SDNQ layer taken by a module, once per prefix, with all its stored tensors.
  void report_quantized(std::string_view prefix, const quant::QuantizedWeight& layer) {
    if (!reported.emplace(std::string(prefix) + "/layer").second) return;
    StorageLoad& load = report.quantized[std::string(layer.layout.weights_type->name)];
    load.entries += 1;
    load.parameters += layer.layout.original_shape.numel();
    const std::string base(prefix);
    const auto count = [&](const char* suffix, const TensorView& tensor) {
      reported.emplace(base + "." + suffix);
      load.bytes += tensor.nbytes();
    };
    count("weight", layer.weight);
    count("scale", layer.scale);
    if (layer.zero_point) count("zero_point", *layer.zero_point);
    if (layer.svd_up) count("svd_up", *layer.svd_up);
    if (layer.svd_down) count("svd_down", *layer.svd_down);
  }

  bool contains(std::string_view name) const {
    return memory ? memory_views.find(name) != memory_views.end() : files().contains(name);
  }
  TensorView tensor(std::string_view name) const {
    return memory ? memory_views.find(name)->second : files().tensor(name);
  }
  std::vector<std::string> names() const {
    if (!memory) return files().names();
    std::vector<std::string> all;
    for (const auto& entry : memory_views) all.push_back(entry.first);
    return all;
  }
  // Where a missing tensor was looked for, for messages.
  std::string source_name() const { return memory ? memory->label : files().path().filename().string(); }

 private:
  const io::Checkpoint& files() const { return sdnq ? sdnq->tensors() : *dense; }
};

}  // namespace detail

// Typed reads of a component config's values: a missing key takes the constructor default (the
// diffusers/transformers rule); a value of the wrong type is a ConfigError naming the key.
inline std::int64_t config_int(const nlohmann::json& config, const char* key, std::int64_t fallback,
                               std::string_view source) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  SDNQ_REQUIRE(it->is_number_integer(), ConfigError, "{}: \"{}\" must be an integer, got {}", source, key, it->dump());
  return it->get<std::int64_t>();
}
inline double config_float(const nlohmann::json& config, const char* key, double fallback, std::string_view source) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  SDNQ_REQUIRE(it->is_number(), ConfigError, "{}: \"{}\" must be a number, got {}", source, key, it->dump());
  return it->get<double>();
}
inline bool config_bool(const nlohmann::json& config, const char* key, bool fallback, std::string_view source) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  SDNQ_REQUIRE(it->is_boolean(), ConfigError, "{}: \"{}\" must be true or false, got {}", source, key, it->dump());
  return it->get<bool>();
}
inline std::string config_string(const nlohmann::json& config, const char* key, std::string_view fallback,
                                 std::string_view source) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::string(fallback);
  SDNQ_REQUIRE(it->is_string(), ConfigError, "{}: \"{}\" must be a string, got {}", source, key, it->dump());
  return it->get<std::string>();
}

class WeightLoader {
 public:
  static WeightLoader open(const std::filesystem::path& component_folder) {
    auto state = std::make_shared<detail::LoadedCheckpoint>();
    state->folder = component_folder;
    state->config = detail::read_component_config(component_folder);
    if (quant::read_quantization_config(component_folder))
      state->sdnq.emplace(quant::SdnqCheckpoint::open(component_folder));
    else
      state->dense.emplace(io::open_checkpoint(component_folder));
    return WeightLoader(std::move(state));
  }

  // A component from memory; the loader and every module loaded from it keep `component` alive.
  // Throws FormatError when a dense name collides with a quantized layer's tensor names.
  static WeightLoader from_memory(InMemoryComponent component) {
    auto state = std::make_shared<detail::LoadedCheckpoint>();
    state->folder = component.label;
    state->config = component.config;
    for (const auto& [name, tensor] : component.dense) {
      SDNQ_REQUIRE(tensor != nullptr && tensor->defined(), FormatError, "{}: dense tensor '{}' is empty",
                   component.label, name);
      state->memory_views.emplace(name, tensor->view());
    }
    for (const auto& [prefix, layer] : component.quantized) {
      SDNQ_REQUIRE(layer != nullptr, FormatError, "{}: quantized layer '{}' is empty", component.label, prefix);
      const quant::QuantizedWeight stored = layer->view();
      const std::optional<TensorView> parts[] = {stored.weight, stored.scale, stored.zero_point, stored.svd_up,
                                                 stored.svd_down};
      std::size_t next = 0;
      for (const std::string& name : detail::quantized_tensor_names(prefix, *layer)) {
        while (!parts[next]) ++next;
        const bool inserted = state->memory_views.emplace(name, *parts[next++]).second;
        SDNQ_REQUIRE(inserted, FormatError, "{}: tensor '{}' is given both dense and as part of quantized layer '{}'",
                     component.label, name, prefix);
      }
    }
    state->memory.emplace(std::move(component));
    return WeightLoader(std::move(state));
  }

  const nlohmann::json& config() const { return state_->config; }
  const std::filesystem::path& folder() const { return state_->folder; }
  bool contains(std::string_view tensor_name) const { return state_->contains(tensor_name); }
  // Whether the component carries an SDNQ quantization config (in memory: has quantized layers).
  bool is_sdnq() const { return state_->sdnq.has_value() || (state_->memory && !state_->memory->quantized.empty()); }
  bool is_in_memory() const { return state_->memory.has_value(); }
  const quant::SdnqCheckpoint* sdnq() const { return state_->sdnq ? &*state_->sdnq : nullptr; }

  // The policy for quantized-matmul layers the reference re-quantizes per call (default: stored_codes).
  // Set it before loading a model; every module loaded from this component reads it.
  RequantizedMatmul requantized_matmul() const { return state_->requantized_matmul; }
  void set_requantized_matmul(RequantizedMatmul policy) { state_->requantized_matmul = policy; }

  // The stored tensor as it is in the file (any dtype), marked used.
  TensorView raw(std::string_view tensor_name) {
    require_present(tensor_name);
    state_->used.emplace(tensor_name);
    const TensorView tensor = state_->tensor(tensor_name);
    state_->report_dense(tensor_name, tensor);
    return tensor;
  }

  // What the modules took so far, per storage type (after a model's load: the whole component).
  LoadReport report() const {
    LoadReport report = state_->report;
    report.component = state_->memory ? state_->memory->label : state_->folder.string();
    return report;
  }

  // A float tensor (norm weights, biases, embeddings...) widened to f32.
  Tensor dense(std::string_view tensor_name) {
    const TensorView stored = raw(tensor_name);
    SDNQ_REQUIRE(dtype_info(stored.dtype()).is_float, FormatError,
                 "{}: tensor '{}' is {} {}, a float tensor was expected", folder().string(), tensor_name,
                 dtype_name(stored.dtype()), stored.shape().to_string());
    return detail::to_f32(stored, fmt::format("{}: tensor '{}'", folder().string(), tensor_name));
  }
  // The same, checked against the shape the model's config implies.
  Tensor dense(std::string_view tensor_name, const Shape& expected_shape) {
    return detail::to_f32(stored_float(tensor_name, expected_shape),
                          fmt::format("{}: tensor '{}'", folder().string(), tensor_name));
  }
  // A float tensor as stored (a view into the checkpoint, valid while keep_alive() is held), checked
  // against the config's shape: for loaders that convert it themselves (the GPU modules upload a bf16
  // tensor as it is; widening every weight to f32 first cost a 12B model most of its load time).
  TensorView stored_float(std::string_view tensor_name, const Shape& expected_shape) {
    const TensorView stored = raw(tensor_name);
    SDNQ_REQUIRE(dtype_info(stored.dtype()).is_float, FormatError,
                 "{}: tensor '{}' is {} {}, a float tensor was expected", folder().string(), tensor_name,
                 dtype_name(stored.dtype()), stored.shape().to_string());
    SDNQ_REQUIRE(stored.shape() == expected_shape, ShapeError,
                 "{}: tensor '{}' has shape {}, but the config implies {}", folder().string(), tensor_name,
                 stored.shape().to_string(), expected_shape.to_string());
    return stored;
  }

  // The stored tensors of a quantized layer (views valid while keep_alive() is held), or nullopt when
  // the config leaves this layer unquantized. Marks weight, scale, zero_point and svd_* used.
  std::optional<quant::QuantizedWeight> quantized(std::string_view prefix, quant::LayerKind kind,
                                                  const Shape& original_shape) {
    if (state_->memory) return in_memory_quantized(prefix, kind, original_shape);
    if (!state_->sdnq || !state_->sdnq->is_quantized(prefix, kind)) return std::nullopt;
    require_present(std::string(prefix) + ".weight");
    quant::QuantizedWeight layer = state_->sdnq->quantized_weight(prefix, kind, original_shape);
    for (const char* suffix : {"weight", "scale", "zero_point", "svd_up", "svd_down"}) {
      const std::string key = std::string(prefix) + "." + suffix;
      if (contains(key)) state_->used.insert(key);
    }
    state_->report_quantized(prefix, layer);
    return layer;
  }

  // Shared ownership of the open files, for modules that keep views into them.
  std::shared_ptr<const void> keep_alive() const { return state_; }

  // Every tensor of the file not taken by a module, in file order.
  std::vector<std::string> unused_tensors() const {
    std::vector<std::string> unused;
    for (const auto& name : state_->names())
      if (state_->used.find(name) == state_->used.end()) unused.push_back(name);
    return unused;
  }
  // Throws FormatError naming the unused tensors (after a model took all it needs), except those
  // `ignorable` says may be left over (e.g. a position_ids buffer).
  template <class Ignorable>
  void require_all_used(std::string_view model_name, Ignorable&& ignorable) const {
    std::vector<std::string> extra;
    for (auto& name : unused_tensors())
      if (!ignorable(std::string_view(name))) extra.push_back(std::move(name));
    if (extra.empty()) return;
    const std::size_t shown = std::min<std::size_t>(extra.size(), 8);
    throw FormatError(fmt::format("{}: {} tensor(s) that {} does not use: {}{}", folder().string(), extra.size(),
                                  model_name,
                                  fmt::join(extra.begin(), extra.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                                  extra.size() > shown ? ", ..." : ""));
  }
  void require_all_used(std::string_view model_name) const {
    require_all_used(model_name, [](std::string_view) { return false; });
  }

 private:
  explicit WeightLoader(std::shared_ptr<detail::LoadedCheckpoint> state) : state_(std::move(state)) {}

  void require_present(std::string_view tensor_name) const {
    SDNQ_REQUIRE(contains(tensor_name), FormatError, "{}: tensor '{}' is missing from {}", folder().string(),
                 tensor_name, state_->source_name());
  }

  std::optional<quant::QuantizedWeight> in_memory_quantized(std::string_view prefix, quant::LayerKind kind,
                                                            const Shape& original_shape) {
    const auto found = state_->memory->quantized.find(prefix);
    if (found == state_->memory->quantized.end()) return std::nullopt;
    const quant::QuantizedTensors& layer = *found->second;
    SDNQ_REQUIRE(layer.layout.kind == kind && layer.layout.original_shape == original_shape, ShapeError,
                 "{}: quantized layer '{}' is a {} of shape {}, but the model expects a {} of shape {}", folder().string(),
                 prefix, quant::layer_kind_name(layer.layout.kind), layer.layout.original_shape.to_string(),
                 quant::layer_kind_name(kind), original_shape.to_string());
    for (std::string& name : detail::quantized_tensor_names(found->first, layer)) state_->used.insert(std::move(name));
    quant::QuantizedWeight view = layer.view();
    view.name = found->first;
    state_->report_quantized(prefix, view);
    return view;
  }

  std::shared_ptr<detail::LoadedCheckpoint> state_;
};

}  // namespace sdnq::nn
