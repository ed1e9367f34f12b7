#pragma once
// write_sharded_safetensors: splits tensors into shards of at most max_shard_bytes of tensor data
// (a larger tensor gets a shard of its own), named as huggingface_hub / diffusers name them:
//   <base>-00001-of-0000N.safetensors ... + <base>.safetensors.index.json
// and a single <base>.safetensors without index when everything fits in one shard.
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/io/atomic_file.hpp"
#include "sdnq/io/detail/safetensors_writer.hpp"

namespace sdnq::io {

namespace detail {

inline std::string shard_file_name(std::string_view base_name, std::size_t shard, std::size_t shard_count) {
  return fmt::format("{}-{:05d}-of-{:05d}.safetensors", base_name, shard + 1, shard_count);
}

// Whether `file_name` is <base>-ddddd-of-ddddd.safetensors (a shard of some earlier save).
inline bool is_shard_file_name(std::string_view file_name, std::string_view base_name) {
  const std::string prefix = std::string(base_name) + "-";
  constexpr std::string_view suffix = ".safetensors";
  constexpr std::string_view counter = "ddddd-of-ddddd";
  if (file_name.size() != prefix.size() + counter.size() + suffix.size()) return false;
  if (!file_name.starts_with(prefix) || !file_name.ends_with(suffix)) return false;
  const std::string_view middle = file_name.substr(prefix.size(), counter.size());
  for (std::size_t i = 0; i < counter.size(); ++i) {
    const bool digit = std::isdigit(static_cast<unsigned char>(middle[i])) != 0;
    if (counter[i] == 'd' ? !digit : middle[i] != counter[i]) return false;
  }
  return true;
}

// Removes what an earlier save of `base_name` left that the new one does not use, so a stale index
// or single file can never be picked up instead of the new checkpoint.
inline void remove_stale_checkpoint_files(const std::filesystem::path& folder, std::string_view base_name,
                                          const std::set<std::string>& keep) {
  const std::string single = std::string(base_name) + ".safetensors";
  const std::string index = single + ".index.json";
  std::vector<std::filesystem::path> stale;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (keep.count(name) != 0) continue;
    if (name == single || name == index || is_shard_file_name(name, base_name)) stale.push_back(entry.path());
  }
  for (const auto& path : stale) {
    std::error_code error;
    std::filesystem::remove(path, error);
    SDNQ_REQUIRE(!error, IoError, "cannot remove the stale checkpoint file {}: {}", path.string(), error.message());
  }
}

}  // namespace detail

// Returns the file to open the checkpoint with: the index, or the single file.
inline std::filesystem::path write_sharded_safetensors(const std::filesystem::path& folder, std::string_view base_name,
                                                       std::span<const NamedTensor> tensors,
                                                       std::uint64_t max_shard_bytes,
                                                       const std::map<std::string, std::string>& metadata = {}) {
  SDNQ_REQUIRE(!base_name.empty() && base_name.find('/') == std::string_view::npos, ConfigError,
               "checkpoint base name \"{}\" must be a plain file name", base_name);
  SDNQ_REQUIRE(max_shard_bytes > 0, ConfigError, "max_shard_bytes must be positive");
  const std::string single_name = std::string(base_name) + ".safetensors";
  const std::string label = (folder / single_name).string();

  // Check everything before the first byte is written: no shard set is left half done by bad input.
  std::set<std::string_view> seen;
  std::vector<std::vector<NamedTensor>> shards;
  std::uint64_t shard_bytes = 0, total_bytes = 0;
  for (const auto& named : tensors) {
    detail::check_tensor_to_write(named, label);
    SDNQ_REQUIRE(seen.insert(named.name).second, FormatError, "{}: tensor name '{}' appears twice", label, named.name);
    const std::uint64_t bytes = named.tensor.nbytes();
    if (shards.empty() || (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(named);
    shard_bytes += bytes;
    total_bytes += bytes;
  }

  std::filesystem::create_directories(folder);
  if (shards.size() <= 1) {
    write_safetensors(folder / single_name, shards.empty() ? std::span<const NamedTensor>() : shards.front(), metadata);
    detail::remove_stale_checkpoint_files(folder, base_name, {single_name});
    return folder / single_name;
  }

  nlohmann::json weight_map = nlohmann::json::object();
  std::set<std::string> written;
  for (std::size_t shard = 0; shard < shards.size(); ++shard) {
    const std::string shard_name = detail::shard_file_name(base_name, shard, shards.size());
    write_safetensors(folder / shard_name, shards[shard], metadata);
    for (const auto& named : shards[shard]) weight_map[named.name] = shard_name;
    written.insert(shard_name);
  }
  // The index goes last, so it never names a shard that is not complete on disk.
  const std::string index_name = single_name + ".index.json";
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  AtomicFileWriter index_file(folder / index_name);
  index_file.write(index.dump(2) + "\n");
  index_file.commit();
  written.insert(index_name);
  detail::remove_stale_checkpoint_files(folder, base_name, written);
  return folder / index_name;
}

inline std::filesystem::path write_sharded_safetensors(const std::filesystem::path& folder, std::string_view base_name,
                                                       std::initializer_list<NamedTensor> tensors,
                                                       std::uint64_t max_shard_bytes,
                                                       const std::map<std::string, std::string>& metadata = {}) {
  return write_sharded_safetensors(folder, base_name, std::span<const NamedTensor>(tensors.begin(), tensors.size()),
                                   max_shard_bytes, metadata);
}

}  // namespace sdnq::io
