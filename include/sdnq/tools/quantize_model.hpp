#pragma once
// sdnq-quantize's logic: quantizes a diffusers pipeline, a component folder or a .safetensors file
// into an SDNQ checkpoint in the reference's layout (per component: weights + config.json with
// quantization_config + quantization_config.json; other pipeline files copied). Tensor by tensor from
// the memory map, so peak memory stays near a few copies of the largest tensor. Weights above
// QuantizeRequest::max_shard_bytes are split into diffusers-style shards with an index. Output is built
// in `<out>.partial` and renamed into place only when every component is written.
//
// Layer kinds come from the tensors, since there is no model definition: a `.weight` of rank 2 is a
// Linear unless its module's name says embedding (see infer_layer_kind), rank 3/4/5 a Conv1d/2d/3d
// (quantized only with quant_conv). ConvTranspose layers cannot be told from convolutions by shape.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/dynamic.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/layout.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq/quant/save.hpp"
#include "sdnq/tools/detail/streaming_writer.hpp"
#include "sdnq/tools/model_folder.hpp"
#include "sdnq/tools/progress.hpp"

namespace sdnq::tools {

struct QuantizeRequest {
  quant::SdnqConfig config;             // weights_dtype, group_size, SVD, ... (skip keys are added per component)
  std::optional<DType> model_dtype;     // default: the dtype of the first float 2-D weight
  std::vector<std::string> components;  // empty: every component with weights
  bool dry_run = false, overwrite = false;
  std::uint64_t seed = 0;               // randomized SVD and stochastic rounding
  std::uint64_t max_shard_bytes = io::default_max_shard_bytes;  // per weights file; larger output is sharded
  std::optional<bool> interactive_progress;  // default: whether stderr is a terminal
};

struct PlannedLayer {
  std::string name;  // parameter prefix
  quant::LayerKind kind;
  std::string weights_type;
  std::int64_t group_size = 0, svd_rank = 0;
  std::uint64_t stored_bytes = 0;  // weight + scale + zero point + SVD factors
};

struct ComponentResult {
  std::string name;
  bool quantized = false;  // false: copied as it was
  std::vector<PlannedLayer> layers;
  std::vector<std::string> skipped;  // .weight tensors of quantizable shape left dense, with the reason
  std::uint64_t input_tensor_bytes = 0, output_tensor_bytes = 0;
  std::optional<quant::SdnqConfig> written_config;
};

struct QuantizeResult {
  std::filesystem::path output;
  std::vector<ComponentResult> components;
};

// The embedding rule: a 2-D weight whose module (the name before ".weight") ends in one of these
// is an Embedding — diffusers/transformers name their nn.Embedding modules this way.
inline std::optional<quant::LayerKind> infer_layer_kind(std::string_view param_name, const Shape& shape) {
  if (!param_name.ends_with(".weight")) return std::nullopt;
  const std::string_view module = param_name.substr(0, param_name.size() - 7);
  const std::string_view leaf = module.substr(module.rfind('.') == std::string_view::npos ? 0 : module.rfind('.') + 1);
  switch (shape.rank()) {
    case 2:
      for (std::string_view embedding : {"embedding", "embeddings", "embed_tokens", "shared", "wte", "wpe",
                                         "relative_attention_bias", "token_embedding", "position_embedding"})
        if (leaf == embedding || leaf.ends_with("_embedding")) return quant::LayerKind::embedding;
      return quant::LayerKind::linear;
    case 3: return quant::LayerKind::conv1d;
    case 4: return quant::LayerKind::conv2d;
    case 5: return quant::LayerKind::conv3d;
    default: return std::nullopt;
  }
}

namespace detail {

// Bytes a layer will take once quantized, from its re-derived layout (dry runs and plans).
inline std::uint64_t planned_bytes(const quant::LayerLayout& layout, const quant::LayerOptions& options,
                                   DType model_dtype) {
  const auto scale_dtype = quant::detail::scale_dtype_for(layout, options.dequantize_fp32, model_dtype, true);
  const std::uint64_t scale_size = dtype_size(scale_dtype.value_or(DType::f32));
  std::uint64_t bytes = static_cast<std::uint64_t>(layout.stored_weight_shape.numel()) *
                        dtype_size(layout.weights_type->stored_dtype);
  bytes += static_cast<std::uint64_t>(layout.scale_shape.numel()) * scale_size * (layout.has_zero_point ? 2 : 1);
  if (layout.svd_rank > 0)
    bytes += static_cast<std::uint64_t>(layout.svd_up_shape.numel() + layout.svd_down_shape.numel()) *
             dtype_size(model_dtype);
  return bytes;
}

inline DType default_model_dtype(const io::Checkpoint& checkpoint) {
  for (const auto& name : checkpoint.names()) {
    const io::TensorInfo& info = checkpoint.info(name);
    if (name.ends_with(".weight") && info.shape.rank() >= 2 &&
        (info.dtype == DType::f32 || info.dtype == DType::bf16 || info.dtype == DType::f16))
      return info.dtype;
  }
  return DType::bf16;
}

// Drops the mapped pages of a tensor that has been consumed: a file-backed mapping is re-read on a
// later access, and without this every page read so far stays resident, so peak RSS would grow
// with the component instead of the largest tensor.
// Only bytes of the mapping itself (SafetensorsFile::bytes), never a realigned heap copy: on
// anonymous memory MADV_DONTNEED would zero the pages.
inline void release_mapped_pages(const io::Checkpoint& checkpoint, const std::string& name) {
  const std::span<const std::byte> bytes = checkpoint.file_of(name).bytes(name);
  if (bytes.empty()) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data()) / page * page;
  const auto end = reinterpret_cast<std::uintptr_t>(bytes.data()) + bytes.size();
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice only: failure is harmless
}

inline bool is_weights_file(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  return name.ends_with(".safetensors") || name.ends_with(".safetensors.index.json") || name == "config.json" ||
         name == "quantization_config.json";
}

inline void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to) {
  // Follows symlinks: a Hugging Face cache snapshot links every file into blobs/.
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

inline void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& json) {
  quant::detail::write_json_atomically(path, json);
}

// Quantizes one component; writes into `out_folder` unless `dry_run`.
inline ComponentResult quantize_component(const ModelComponent& component, const QuantizeRequest& request,
                                          const std::filesystem::path& out_folder, bool single_file_input) {
  ComponentResult result;
  result.name = component.name;
  result.quantized = true;
  const nlohmann::ordered_json model_config =
      single_file_input ? nlohmann::ordered_json::object() : read_component_config(component.folder);
  const std::string class_name = component_class_name(model_config);
  const bool has_quantization_config =
      (model_config.contains("quantization_config") && !model_config["quantization_config"].is_null()) ||
      std::filesystem::exists(component.folder / "quantization_config.json");
  SDNQ_REQUIRE(single_file_input || !has_quantization_config, FormatError,
               "{}: component {} is already quantized (it has a quantization config); sdnq-quantize needs dense "
               "float weights",
               component.folder.string(), component.name);

  const io::Checkpoint checkpoint = io::open_checkpoint(*component.weights);
  const DType model_dtype = request.model_dtype.value_or(default_model_dtype(checkpoint));

  quant::SdnqConfig config = request.config;
  if (config.add_skip_keys) {
    quant::ComponentToSave described;  // the skip keys need the class name only
    described.model_class_name = class_name;
    quant::detail::add_module_skip_keys(config, described);
  }

  const std::string base_name =
      component.weights->filename().string().starts_with("model") ? "model" : "diffusion_pytorch_model";
  std::optional<ShardedStreamingWriter> writer;
  if (!request.dry_run)
    writer.emplace(out_folder, base_name, request.max_shard_bytes, std::map<std::string, std::string>{{"format", "pt"}});

  ProgressBar progress(component.name, static_cast<std::int64_t>(checkpoint.names().size()),
                       request.interactive_progress.value_or(::isatty(STDERR_FILENO) != 0));
  for (const auto& name : checkpoint.names()) {
    const io::TensorInfo& info = checkpoint.info(name);
    result.input_tensor_bytes += info.nbytes();
    const auto kind = infer_layer_kind(name, info.shape);
    std::optional<std::string> reason;
    if (kind) reason = quant::quantization_skip_reason(config, name, *kind, info.dtype, info.shape);
    if (kind && reason) {
      result.skipped.push_back(fmt::format("{} ({})", name, *reason));
      if (*reason != "modules_to_not_convert") config.modules_to_not_convert.push_back(name);
    }
    // A tensor written as it is: not a weight, skipped, or (dynamic quantization) no dtype passed.
    const auto write_dense = [&] {
      result.output_tensor_bytes += info.nbytes();
      if (writer)
        writer->add(name, checkpoint.tensor(name),
                    info.safetensors_dtype == dtype_name(info.dtype) ? std::string() : info.safetensors_dtype);
      release_mapped_pages(checkpoint, name);
      progress.advance();
    };
    if (!kind || reason) {
      write_dense();
      continue;
    }
    const std::string prefix = name.substr(0, name.size() - 7);
    const quant::LayerOptions options = quant::resolve_layer_options(config, name, *kind);
    quant::LayerLayout layout;
    try {
      layout = quant::derive_layout(info.shape, *kind, options);
    } catch (const Error& error) {
      throw ConfigError(fmt::format("{}: layer {} ({} {}): {}", component.folder.string(), prefix,
                                    quant::layer_kind_name(*kind), info.shape.to_string(), error.what()));
    }
    // Dynamic quantization picks the dtype by quantizing, so a dry run quantizes too (and plans exactly
    // what a real run writes); otherwise the layout alone gives the sizes.
    std::optional<quant::QuantizedTensors> q;
    if (writer || config.use_dynamic_quantization) {
      quant::QuantizeControls controls;
      controls.layer_name = prefix;
      controls.seed = request.seed;
      q = quant::quantize_layer(config, name, checkpoint.tensor(name), *kind, options, model_dtype, controls);
      if (!q) {
        result.skipped.push_back(fmt::format("{} (dynamic quantization: no dtype within the loss threshold)", name));
        write_dense();
        continue;
      }
      layout = q->layout;
    }
    PlannedLayer planned{prefix, *kind, std::string(layout.weights_type->name), layout.group_size, layout.svd_rank,
                         planned_bytes(layout, options, model_dtype)};
    result.output_tensor_bytes += planned.stored_bytes;
    result.layers.push_back(planned);
    if (writer) {
      writer->add(prefix + ".weight", q->weight.view(), quant::stored_safetensors_dtype(*q->layout.weights_type));
      writer->add(prefix + ".scale", q->scale.view());
      if (q->zero_point) writer->add(prefix + ".zero_point", q->zero_point->view());
      if (q->svd_up) writer->add(prefix + ".svd_up", q->svd_up->view());
      if (q->svd_down) writer->add(prefix + ".svd_down", q->svd_down->view());
    }
    release_mapped_pages(checkpoint, name);
    progress.advance();
  }
  result.written_config = config;
  if (!writer) {
    progress.finish(fmt::format("{} layers would be quantized, {} -> {}", result.layers.size(),
                                format_bytes(result.input_tensor_bytes), format_bytes(result.output_tensor_bytes)));
    return result;
  }
  writer->commit();
  const nlohmann::ordered_json quantization_config = config.to_ordered_json();
  nlohmann::ordered_json written_model_config = model_config;
  written_model_config["quantization_config"] = quantization_config;
  write_json(out_folder / "config.json", written_model_config);
  write_json(out_folder / "quantization_config.json", quantization_config);
  if (!single_file_input)
    for (const auto& entry : std::filesystem::directory_iterator(component.folder))
      if (!is_weights_file(entry.path())) copy_tree(entry.path(), out_folder / entry.path().filename());
  progress.finish(fmt::format("{} layers quantized, {} -> {}", result.layers.size(),
                              format_bytes(result.input_tensor_bytes), format_bytes(result.output_tensor_bytes)));
  return result;
}

}  // namespace detail

// Quantizes `input` (pipeline folder, component folder, .safetensors file or cached repo id) into `output`.
// Throws IoError when `output` exists without `overwrite`, UsageError-like ConfigError for unknown
// components, FormatError for inputs that are already quantized.
inline QuantizeResult quantize_model(std::string_view input, const std::filesystem::path& output,
                                     const QuantizeRequest& request) {
  const ModelSource source = open_model_source(input);
  QuantizeResult result;
  result.output = output;
  std::error_code error;
  if (!request.dry_run)
    SDNQ_REQUIRE(request.overwrite || !std::filesystem::exists(output, error), IoError,
                 "{} already exists; pass --overwrite to replace it", output.string());

  std::vector<std::string> available;
  for (const auto& component : source.components)
    if (component.weights) available.push_back(component.name);
  for (const auto& wanted : request.components)
    SDNQ_REQUIRE(std::find(available.begin(), available.end(), wanted) != available.end(), ConfigError,
                 "{}: no component \"{}\" with weights (components with weights: {})", source.path.string(), wanted,
                 fmt::join(available, ", "));
  const auto selected = [&](const ModelComponent& component) {
    if (!component.weights) return false;
    return request.components.empty() ||
           std::find(request.components.begin(), request.components.end(), component.name) != request.components.end();
  };

  const std::filesystem::path partial = output.string() + ".partial";
  if (!request.dry_run) {
    std::filesystem::remove_all(partial);  // left by an interrupted run
    std::filesystem::create_directories(partial);
  }
  try {
    const bool single_file = source.kind == SourceKind::safetensors_file;
    if (source.kind == SourceKind::pipeline) {
      // model_index.json and everything that is not a component (README, assets/) are copied as they are.
      const auto is_component = [&](const std::filesystem::path& entry) {
        return std::any_of(source.components.begin(), source.components.end(),
                           [&](const ModelComponent& component) { return component.folder == entry; });
      };
      if (!request.dry_run)
        for (const auto& entry : std::filesystem::directory_iterator(source.path))
          if (!is_component(entry.path())) detail::copy_tree(entry.path(), partial / entry.path().filename());
      for (const auto& component : source.components) {
        const auto out_folder = partial / component.name;
        if (!selected(component)) {
          if (!request.dry_run) detail::copy_tree(component.folder, out_folder);
          ComponentResult copied;
          copied.name = component.name;
          result.components.push_back(std::move(copied));
          continue;
        }
        if (!request.dry_run) std::filesystem::create_directories(out_folder);
        result.components.push_back(detail::quantize_component(component, request, out_folder, false));
      }
    } else {
      result.components.push_back(detail::quantize_component(source.components.front(), request, partial, single_file));
    }
  } catch (...) {
    if (!request.dry_run) std::filesystem::remove_all(partial, error);
    throw;
  }
  if (request.dry_run) return result;

  // Into place: the old output (with --overwrite) moves aside first, so a failure never loses both.
  const std::filesystem::path previous = output.string() + ".previous";
  const bool replacing = std::filesystem::exists(output, error);
  if (replacing) {
    std::filesystem::remove_all(previous, error);
    std::filesystem::rename(output, previous);
  }
  std::filesystem::rename(partial, output);
  if (replacing) std::filesystem::remove_all(previous, error);
  return result;
}

inline std::string describe_plan(const QuantizeResult& result) {
  std::string text;
  for (const auto& component : result.components) {
    if (!component.quantized) {
      text += fmt::format("{}: copied unchanged\n", component.name);
      continue;
    }
    text += fmt::format("{}: {} layers quantized, {} tensor bytes -> {}\n", component.name, component.layers.size(),
                        format_bytes(component.input_tensor_bytes), format_bytes(component.output_tensor_bytes));
    for (const auto& layer : component.layers)
      text += fmt::format("  {} {} {} group_size {}{} -> {}\n", layer.name, quant::layer_kind_name(layer.kind),
                          layer.weights_type, layer.group_size,
                          layer.svd_rank > 0 ? fmt::format(" svd_rank {}", layer.svd_rank) : "",
                          format_bytes(layer.stored_bytes));
    for (const auto& skipped : component.skipped) text += fmt::format("  skipped {}\n", skipped);
  }
  return text;
}

}  // namespace sdnq::tools
