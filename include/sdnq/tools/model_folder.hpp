#pragma once
// What a tool argument names: a diffusers pipeline folder (model_index.json and one folder per
// component), a single component folder (config.json + weights), a .safetensors file, or a Hub repo
// id ("org/name") already in the local Hugging Face cache — resolved offline, never downloaded.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/hub/cache.hpp"
#include "sdnq/hub/settings.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/detail/read_json.hpp"

namespace sdnq::tools {

enum class SourceKind { pipeline, component, safetensors_file };

struct ModelComponent {
  std::string name;                  // "transformer"; the folder name for a lone component folder
  std::filesystem::path folder;      // the component folder (for a file: the file's folder)
  std::optional<std::filesystem::path> weights;  // the weights file or index; none for tokenizer/, scheduler/
};

struct ModelSource {
  SourceKind kind = SourceKind::component;
  std::filesystem::path path;  // the folder, or the .safetensors file
  std::vector<ModelComponent> components;
};

// The snapshot folder of `repo_id` at `revision` in the cache (HF_HUB_CACHE / HF_HOME), or nullopt.
inline std::optional<std::filesystem::path> find_cached_snapshot(std::string_view repo_id,
                                                                 std::string_view revision = "main") {
  const hub::HubSettings settings = hub::HubSettings::from_environment();
  const hub::HubCache cache(settings.cache_dir);
  const hub::Repo repo{std::string(repo_id)};
  const auto commit = cache.resolve_revision(repo, revision);
  if (!commit) return std::nullopt;
  const auto folder = cache.snapshot_folder(repo, *commit);
  if (!std::filesystem::is_directory(folder)) return std::nullopt;
  return folder;
}

namespace detail {

inline bool looks_like_repo_id(std::string_view text) {
  const auto slash = text.find('/');
  return slash != std::string_view::npos && slash > 0 && slash + 1 < text.size() &&
         text.find('/', slash + 1) == std::string_view::npos && !text.starts_with('.');
}

inline std::optional<std::filesystem::path> weights_in(const std::filesystem::path& folder) {
  try {
    return io::find_weights_file(folder);
  } catch (const IoError&) {
    return std::nullopt;
  }
}

}  // namespace detail

// Classifies `argument`: an existing path first, then a repo id in the cache. Throws IoError naming
// what was looked for when it is neither.
inline ModelSource open_model_source(std::string_view argument) {
  std::filesystem::path path(argument);
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    std::optional<std::filesystem::path> snapshot;
    if (detail::looks_like_repo_id(argument)) snapshot = find_cached_snapshot(argument);
    SDNQ_REQUIRE(snapshot.has_value(), IoError,
                 "{}: no such file or folder{}", argument,
                 detail::looks_like_repo_id(argument)
                     ? fmt::format(", and repo {} is not in the Hugging Face cache ({}); download it with sdnq-download",
                                   argument, hub::HubSettings::from_environment().cache_dir.string())
                     : std::string());
    path = *snapshot;
  }

  ModelSource source;
  source.path = path;
  if (std::filesystem::is_regular_file(path, error)) {
    SDNQ_REQUIRE(path.extension() == ".safetensors", IoError, "{}: expected a folder or a .safetensors file",
                 path.string());
    source.kind = SourceKind::safetensors_file;
    source.components.push_back({path.stem().string(), path.parent_path(), path});
    return source;
  }
  const auto model_index = path / "model_index.json";
  if (std::filesystem::is_regular_file(model_index, error)) {
    source.kind = SourceKind::pipeline;
    const nlohmann::ordered_json index = quant::detail::read_json_file(model_index);
    SDNQ_REQUIRE(index.is_object(), FormatError, "{}: expected a JSON object", model_index.string());
    for (const auto& [name, value] : index.items()) {
      // Components are ["library", "Class"] pairs; [null, null] marks an absent optional one.
      if (name.starts_with('_') || !value.is_array() || value.size() != 2 || value[1].is_null()) continue;
      const auto folder = path / name;
      if (!std::filesystem::is_directory(folder, error)) continue;
      source.components.push_back({name, folder, detail::weights_in(folder)});
    }
    return source;
  }
  source.kind = SourceKind::component;
  const auto weights = detail::weights_in(path);
  SDNQ_REQUIRE(weights.has_value(), IoError,
               "{}: neither a diffusers pipeline (no model_index.json) nor a component folder (no "
               "diffusion_pytorch_model / model .safetensors or .safetensors.index.json)",
               path.string());
  source.components.push_back({path.filename().string(), path, weights});
  return source;
}

// The component's config.json as written (an empty object when there is none).
inline nlohmann::ordered_json read_component_config(const std::filesystem::path& folder) {
  const auto path = folder / "config.json";
  if (!std::filesystem::is_regular_file(path)) return nlohmann::ordered_json::object();
  nlohmann::ordered_json config = quant::detail::read_json_file(path);
  SDNQ_REQUIRE(config.is_object(), FormatError, "{}: expected a JSON object, got {}", path.string(), config.type_name());
  return config;
}

// `_class_name` (diffusers) or `architectures[0]` (transformers); "" when neither is there.
inline std::string component_class_name(const nlohmann::ordered_json& config) {
  if (auto it = config.find("_class_name"); it != config.end() && it->is_string()) return it->get<std::string>();
  if (auto it = config.find("architectures"); it != config.end() && it->is_array() && !it->empty() &&
                                              it->front().is_string())
    return it->front().get<std::string>();
  return {};
}

}  // namespace sdnq::tools
