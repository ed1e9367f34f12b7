#pragma once
// trees/<commit>.json: the repo listing cached per commit, in the format huggingface_hub >= 1.22
// (_tree_cache.py) reads and writes, so either client can skip the tree request for a known commit.
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/hub/cache.hpp"
#include "sdnq/hub/listing.hpp"

namespace sdnq::hub::detail {

inline std::optional<std::vector<RepoFileEntry>> read_tree_cache(const HubCache& cache, const Repo& repo,
                                                                 const std::string& commit) {
  std::ifstream in(cache.tree_listing_path(repo, commit), std::ios::binary);
  if (!in) return std::nullopt;
  auto tree = nlohmann::json::parse(in, nullptr, false);
  if (tree.is_discarded() || !tree.is_object() || tree.value("format_version", 0) != 1 || !tree.contains("files") ||
      !tree["files"].is_object())
    return std::nullopt;  // another format version: ignored, as huggingface_hub ignores it
  std::vector<RepoFileEntry> files;
  for (const auto& [path, entry] : tree["files"].items()) {
    if (!entry.is_object()) return std::nullopt;
    check_relative_path(path, "file path in the cached listing");
    RepoFileEntry file{path, entry.value("size", std::uint64_t{0}), entry.value("blob_id", ""), std::nullopt};
    if (entry.contains("lfs_sha256")) {
      file.lfs_sha256 = entry.value("lfs_sha256", "");
      file.size = entry.value("lfs_size", file.size);
    }
    files.push_back(std::move(file));
  }
  return files;
}

// {"files": {path: {"blob_id", "size", ["lfs_sha256", "lfs_size"]}}, "format_version": 1}, sorted keys,
// indent 1, written to a temp file and renamed, as huggingface_hub's _tree_cache.py writes it.
inline void write_tree_cache(const HubCache& cache, const Repo& repo, const RepoListing& listing) {
  nlohmann::json files = nlohmann::json::object();
  for (const RepoFileEntry& file : listing.files) {
    nlohmann::json entry = {{"size", file.size}, {"blob_id", file.blob_id}};
    if (file.lfs_sha256) {
      entry["lfs_sha256"] = *file.lfs_sha256;
      entry["lfs_size"] = file.size;
    }
    files[file.path] = std::move(entry);
  }
  nlohmann::json tree = {{"format_version", 1}, {"files", std::move(files)}};
  std::filesystem::path path = cache.tree_listing_path(repo, listing.commit);
  try {
    HubCache::create_folder(path.parent_path());
  } catch (const IoError&) {
    return;  // only an optimisation: the downloads report an unwritable cache themselves
  }
  std::filesystem::path temporary = path;
  temporary += fmt::format(".{}.tmp", random_hex8());
  {
    std::ofstream out(temporary, std::ios::binary);
    out << tree.dump(1, ' ', true);
    if (!out.flush()) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      return;
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) std::filesystem::remove(temporary, error);
}

}  // namespace sdnq::hub::detail
