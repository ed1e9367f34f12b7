#pragma once
// write_sharded_safetensors: splits tensors into shards of at most max_shard_bytes of tensor data
// (a larger tensor gets a shard of its own), named as huggingface_hub / diffusers name them:
//   <base>-00001-of-0000N.safetensors ... + <base>.safetensors.index.json
// and a single <base>.safetensors without index when everything fits in one shard.
//
// Failure safety: every shard is written completely to a temporary file first; only when all of them
// are on disk are they renamed into place (a failed write leaves the folder as it was). The old index
// is removed before the first rename and the new one written after the last, so no index ever names
// a mix of old and new shards, even if the renames themselves are interrupted.
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
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

// diffusers' ModelMixin.save_pretrained default, max_shard_size="10GB" (decimal units, as huggingface_hub parses them).
inline constexpr std::uint64_t default_max_shard_bytes = 10'000'000'000ull;

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

// The bytes of a safetensors file into `file`, which the caller commits (write_safetensors's format).
inline void write_safetensors_to(AtomicFileWriter& file, std::span<const NamedTensor> tensors,
                                 const std::map<std::string, std::string>& metadata) {
  const std::string header = build_safetensors_header(tensors, metadata, file.target().string());
  const std::uint64_t header_length = header.size();
  file.write(&header_length, sizeof header_length);
  file.write(header);
  for (const auto& named : tensors) {
    if (named.tensor.is_contiguous()) {
      file.write(named.tensor.data(), named.tensor.nbytes());
    } else {
      Tensor contiguous = Tensor::empty(named.tensor.shape(), named.tensor.dtype());
      copy(contiguous, named.tensor);
      file.write(contiguous.data(), contiguous.nbytes());
    }
  }
}

}  // namespace detail

// "10GB" -> 10^10, "512MiB" -> 2^29, "1000" -> 1000: huggingface_hub's max_shard_size strings (KB/MB/GB/TB
// decimal, KiB/MiB/GiB/TiB binary, a bare number is bytes). Throws ConfigError naming the text otherwise.
inline std::uint64_t parse_byte_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])) != 0) ++digits;
  const std::string_view number = text.substr(0, digits), unit = text.substr(digits);
  struct Unit {
    std::string_view name;
    std::uint64_t bytes;
  };
  constexpr Unit units[] = {{"", 1},
                            {"B", 1},
                            {"KB", 1'000ull},
                            {"MB", 1'000'000ull},
                            {"GB", 1'000'000'000ull},
                            {"TB", 1'000'000'000'000ull},
                            {"KiB", 1ull << 10},
                            {"MiB", 1ull << 20},
                            {"GiB", 1ull << 30},
                            {"TiB", 1ull << 40}};
  for (const auto& candidate : units) {
    if (number.empty() || number.size() > 15 || unit != candidate.name) continue;
    std::uint64_t value = 0;
    for (char c : number) value = value * 10 + static_cast<std::uint64_t>(c - '0');
    SDNQ_REQUIRE(value > 0 && value <= (std::uint64_t{1} << 62) / candidate.bytes, ConfigError,
                 "shard size \"{}\" must be positive and below 2^62 bytes", text);
    return value * candidate.bytes;
  }
  throw ConfigError(fmt::format("shard size \"{}\" is not a byte count like 10GB, 5GiB, 500MB or 1000000", text));
}

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

  // Every shard complete on disk (as temporaries, discarded on any failure) before anything is renamed.
  std::vector<std::unique_ptr<AtomicFileWriter>> shard_files;
  nlohmann::json weight_map = nlohmann::json::object();
  std::set<std::string> written;
  for (std::size_t shard = 0; shard < shards.size(); ++shard) {
    const std::string shard_name = detail::shard_file_name(base_name, shard, shards.size());
    shard_files.push_back(std::make_unique<AtomicFileWriter>(folder / shard_name));
    detail::write_safetensors_to(*shard_files.back(), shards[shard], metadata);
    for (const auto& named : shards[shard]) weight_map[named.name] = shard_name;
    written.insert(shard_name);
  }
  const std::string index_name = single_name + ".index.json";
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
  AtomicFileWriter index_file(folder / index_name);
  index_file.write(index.dump(2) + "\n");

  std::error_code error;
  std::filesystem::remove(folder / index_name, error);
  SDNQ_REQUIRE(!error, IoError, "cannot replace {}: removing the old index failed: {}", (folder / index_name).string(),
               error.message());
  for (auto& shard_file : shard_files) shard_file->commit();
  index_file.commit();  // last: it never names a shard that is not complete and in place
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
