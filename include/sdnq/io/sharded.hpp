#pragma once
// Sharded safetensors checkpoints (`*.safetensors.index.json` + shards), and one entry point for any
// checkpoint: open_checkpoint() takes a .safetensors file, an index or a model folder and answers
// the same queries (names, contains, info, tensor) whichever it was.
//
// Index: {"metadata": {"total_size": <bytes>, ...}, "weight_map": {"<tensor>": "<shard file name>"}}.
// Shard names must be plain file names in the index's folder (diffusers rejects '/' and '..' too).
// A shard file may itself be a symlink: the Hugging Face cache links every snapshot file into blobs/.
#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/io/detail/json_strict.hpp"
#include "sdnq/io/detail/utf8.hpp"
#include "sdnq/io/mapped_file.hpp"
#include "sdnq/io/safetensors.hpp"

namespace sdnq::io {

namespace detail {

inline void check_shard_file_name(const std::string& shard, const std::string& tensor, std::string_view index_label) {
  const bool plain = !shard.empty() && shard != "." && shard != ".." &&
                     shard.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos;
  SDNQ_REQUIRE(plain, FormatError,
               "{}: weight_map entry '{}' names shard \"{}\", which is not a plain file name in the index's folder",
               index_label, tensor, shard);
}

}  // namespace detail

class ShardedSafetensors {
 public:
  static ShardedSafetensors open(const std::filesystem::path& index_path) {
    const std::string label = index_path.string();
    const MappedFile index_file = MappedFile::open(index_path);
    std::string_view text(reinterpret_cast<const char*>(index_file.data()), index_file.size());
    SDNQ_REQUIRE(detail::is_valid_utf8(text), FormatError, "{}: the index is not valid UTF-8", label);
    const nlohmann::json index = detail::parse_json_strictly(text, label, 64);
    SDNQ_REQUIRE(index.is_object(), FormatError, "{}: the index must be a JSON object, got {}", label,
                 detail::json_type_name(index));
    SDNQ_REQUIRE(index.contains("weight_map") && index["weight_map"].is_object(), FormatError,
                 "{}: the index needs an object \"weight_map\" (tensor name -> shard file name)", label);

    ShardedSafetensors sharded;
    sharded.index_path_ = index_path;
    if (index.contains("metadata")) {
      sharded.index_metadata_ = index["metadata"];
      SDNQ_REQUIRE(sharded.index_metadata_.is_object() || sharded.index_metadata_.is_null(), FormatError,
                   "{}: \"metadata\" must be an object, got {}", label,
                   detail::json_type_name(sharded.index_metadata_));
    }

    std::map<std::string, std::vector<std::string>> tensors_by_shard;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      SDNQ_REQUIRE(shard.is_string(), FormatError, "{}: weight_map entry '{}' must be a shard file name, got {} {}",
                   label, tensor, detail::json_type_name(shard), detail::short_dump(shard));
      const auto& shard_name = shard.get_ref<const std::string&>();
      detail::check_shard_file_name(shard_name, tensor, label);
      tensors_by_shard[shard_name].push_back(tensor);
    }

    const std::filesystem::path folder = index_path.parent_path();
    for (const auto& [shard_name, tensors] : tensors_by_shard) {
      sharded.shards_.push_back(open_shard(folder / shard_name, label, shard_name, tensors.front()));
      const SafetensorsFile& file = sharded.shards_.back();
      for (const auto& tensor : tensors) {
        SDNQ_REQUIRE(file.contains(tensor), FormatError,
                     "{}: weight_map puts tensor '{}' in shard \"{}\", but that file has no such tensor", label, tensor,
                     shard_name);
        sharded.shard_of_.emplace(tensor, sharded.shards_.size() - 1);
      }
    }
    // Shard by shard, each in data-offset order: the order that reads the files front to back.
    for (std::size_t shard = 0; shard < sharded.shards_.size(); ++shard)
      for (const auto& name : sharded.shards_[shard].names()) {
        auto found = sharded.shard_of_.find(name);
        if (found != sharded.shard_of_.end() && found->second == shard) sharded.names_.push_back(name);
      }
    return sharded;
  }

  const std::filesystem::path& path() const { return index_path_; }
  const nlohmann::json& index_metadata() const { return index_metadata_; }  // the index's "metadata"
  // The first shard's "__metadata__" (writers give every shard the same).
  const std::map<std::string, std::string>& metadata() const {
    static const std::map<std::string, std::string> none;
    return shards_.empty() ? none : shards_.front().metadata();
  }
  const std::vector<std::string>& names() const { return names_; }
  std::span<const SafetensorsFile> shards() const { return shards_; }

  bool contains(std::string_view name) const { return shard_of_.find(name) != shard_of_.end(); }
  const SafetensorsFile& file_of(std::string_view name) const {
    auto found = shard_of_.find(name);
    SDNQ_REQUIRE(found != shard_of_.end(), FormatError, "{}: no tensor named '{}' in the weight_map ({} tensors)",
                 index_path_.string(), name, names_.size());
    return shards_[found->second];
  }
  const TensorInfo& info(std::string_view name) const { return file_of(name).info(name); }
  TensorView tensor(std::string_view name) const { return file_of(name).tensor(name); }

 private:
  static SafetensorsFile open_shard(const std::filesystem::path& path, const std::string& index_label,
                                    const std::string& shard_name, const std::string& first_tensor) {
    try {
      return SafetensorsFile::open(path);
    } catch (const IoError& error) {
      throw IoError(fmt::format("{}: shard \"{}\" (holding '{}') cannot be read: {}", index_label, shard_name,
                                first_tensor, error.what()));
    } catch (const FormatError& error) {
      throw FormatError(fmt::format("{}: shard \"{}\" is malformed: {}", index_label, shard_name, error.what()));
    }
  }

  std::filesystem::path index_path_;
  nlohmann::json index_metadata_ = nlohmann::json::object();
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, std::size_t, std::less<>> shard_of_;  // tensor name -> index into shards_
  std::vector<std::string> names_;
};

// A checkpoint of either kind behind one query API.
class Checkpoint {
  std::variant<SafetensorsFile, ShardedSafetensors> source_;
  template <class Function>
  decltype(auto) visit(Function&& function) const {
    return std::visit(std::forward<Function>(function), source_);
  }

 public:
  explicit Checkpoint(SafetensorsFile file) : source_(std::move(file)) {}
  explicit Checkpoint(ShardedSafetensors sharded) : source_(std::move(sharded)) {}

  bool is_sharded() const { return std::holds_alternative<ShardedSafetensors>(source_); }
  const std::filesystem::path& path() const {
    return visit([](auto& s) -> auto& { return s.path(); });
  }
  const std::map<std::string, std::string>& metadata() const {
    return visit([](auto& s) -> auto& { return s.metadata(); });
  }
  const std::vector<std::string>& names() const {
    return visit([](auto& s) -> auto& { return s.names(); });
  }
  bool contains(std::string_view name) const {
    return visit([&](auto& s) { return s.contains(name); });
  }
  const TensorInfo& info(std::string_view name) const {
    return visit([&](auto& s) -> auto& { return s.info(name); });
  }
  TensorView tensor(std::string_view name) const {
    return visit([&](auto& s) { return s.tensor(name); });
  }
  // The safetensors file holding `name`.
  const SafetensorsFile& file_of(std::string_view name) const {
    if (const auto* file = std::get_if<SafetensorsFile>(&source_)) {
      file->info(name);  // throws, naming the file, when absent
      return *file;
    }
    return std::get<ShardedSafetensors>(source_).file_of(name);
  }
};

// The weights file of a diffusers or transformers component folder: diffusion_pytorch_model or model,
// sharded index first (as diffusers looks), then the single file. A non-empty `variant` ("fp16")
// looks only for the variant names (model.fp16.safetensors, model.safetensors.index.fp16.json).
inline std::filesystem::path find_weights_file(const std::filesystem::path& component_folder,
                                               std::string_view variant = {}) {
  std::error_code error;
  SDNQ_REQUIRE(std::filesystem::is_directory(component_folder, error), IoError,
               "cannot look for weights in {}: not a folder", component_folder.string());
  std::vector<std::string> candidates;
  for (std::string_view base : {"diffusion_pytorch_model", "model"}) {
    if (variant.empty()) {
      candidates.push_back(fmt::format("{}.safetensors.index.json", base));
      candidates.push_back(fmt::format("{}.safetensors", base));
    } else {
      candidates.push_back(fmt::format("{}.safetensors.index.{}.json", base, variant));
      candidates.push_back(fmt::format("{}.{}.safetensors", base, variant));
    }
  }
  for (const auto& candidate : candidates)
    if (std::filesystem::is_regular_file(component_folder / candidate, error)) return component_folder / candidate;
  throw IoError(fmt::format("no safetensors weights in {}: looked for {}", component_folder.string(),
                            fmt::join(candidates, ", ")));
}

// Opens a .safetensors file, a .safetensors.index.json (any name ending in .json is read as an
// index), or a component folder (through find_weights_file).
inline Checkpoint open_checkpoint(const std::filesystem::path& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) return open_checkpoint(find_weights_file(path));
  if (path.extension() == ".json") return Checkpoint(ShardedSafetensors::open(path));
  return Checkpoint(SafetensorsFile::open(path));
}

}  // namespace sdnq::io

#include "sdnq/io/detail/sharded_writer.hpp"
