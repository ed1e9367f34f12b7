#pragma once
// The huggingface_hub cache, laid out byte for byte as the Python client lays it out
// (file_download.py, docs/hub-and-formats.md §1.6), so both clients read each other's downloads:
//
//   $HF_HUB_CACHE/CACHEDIR.TAG
//   $HF_HUB_CACHE/.locks/models--org--name/<etag>.lock
//   $HF_HUB_CACHE/models--org--name/refs/<revision>                 the 40-hex commit, no newline
//   $HF_HUB_CACHE/models--org--name/blobs/<etag>                     the file content
//   $HF_HUB_CACHE/models--org--name/snapshots/<commit>/<path>        relative symlink to ../../blobs/<etag>
//   $HF_HUB_CACHE/models--org--name/.no_exist/<commit>/<path>        empty: the path is absent at that commit
//
// Every name that comes from a server (paths in the repo, etags, revisions) is checked before it is
// joined to the cache folder, so that `..` or an absolute path cannot write outside it.
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "sdnq/hub/errors.hpp"
#include "sdnq/hub/repo.hpp"

namespace sdnq::hub {

namespace detail {

// Splits on '/' and rejects what could leave the folder it is joined to: absolute paths, empty,
// `.` and `..` components, NUL bytes and backslashes (a separator on Windows).
inline void check_relative_path(std::string_view path, std::string_view what) {
  auto fail = [&](std::string_view why) {
    throw UnsafePathError(
        fmt::format("refusing {} '{}': {}; it must be a relative path inside the repo", what, path, why));
  };
  if (path.empty()) fail("it is empty");
  if (path.front() == '/') fail("it is absolute");
  if (path.find('\0') != std::string_view::npos) fail("it contains a NUL byte");
  if (path.find('\\') != std::string_view::npos) fail("it contains a backslash");
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view component = path.substr(start, end - start);
    if (component.empty() || component == "." || component == "..")
      fail(component.empty() ? "it has an empty component" : "it has a '.' or '..' component");
    start = end + 1;
  }
}

inline std::string random_hex8() {
  std::random_device entropy;
  return fmt::format("{:08x}", entropy());
}

}  // namespace detail

// An etag names a blob file: only hex digits (a sha256 or a git sha1), nothing that is a path.
inline void check_etag(std::string_view etag) {
  bool hex = !etag.empty() && etag.size() <= 128;
  for (char c : etag) hex = hex && std::isxdigit(static_cast<unsigned char>(c));
  if (!hex)
    throw UnsafePathError(
        fmt::format("refusing etag '{}' from the server: a blob name must be hex digits (a sha256 or git sha1)", etag));
}

inline void check_commit(std::string_view commit) {
  if (!is_commit_hash(commit))
    throw UnsafePathError(
        fmt::format("refusing commit '{}' from the server: expected 40 lowercase hex digits", commit));
}

// What a cache lookup found (try_to_load_from_cache).
struct CacheLookup {
  enum class Status { found, known_missing, not_cached };
  Status status = Status::not_cached;
  std::filesystem::path path;  // the snapshot path when found
  std::string commit;          // the commit the revision mapped to, when known
};

class HubCache {
 public:
  explicit HubCache(std::filesystem::path root) : root_(std::move(root)) {}

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path repo_folder(const Repo& repo) const { return root_ / repo.folder_name(); }
  std::filesystem::path blob_path(const Repo& repo, std::string_view etag) const {
    check_etag(etag);
    return repo_folder(repo) / "blobs" / std::string(etag);
  }
  // The resumable partial download, the name huggingface_hub used up to v1.17 (taken only under the lock).
  std::filesystem::path incomplete_path(const Repo& repo, std::string_view etag) const {
    return blob_path(repo, etag).concat(".incomplete");
  }
  std::filesystem::path lock_path(const Repo& repo, std::string_view etag) const {
    check_etag(etag);
    return root_ / ".locks" / repo.folder_name() / fmt::format("{}.lock", etag);
  }
  std::filesystem::path snapshot_folder(const Repo& repo, std::string_view commit) const {
    check_commit(commit);
    return repo_folder(repo) / "snapshots" / std::string(commit);
  }
  std::filesystem::path snapshot_path(const Repo& repo, std::string_view commit, std::string_view path_in_repo) const {
    detail::check_relative_path(path_in_repo, "file path");
    return snapshot_folder(repo, commit) / std::string(path_in_repo);
  }
  std::filesystem::path no_exist_path(const Repo& repo, std::string_view commit, std::string_view path_in_repo) const {
    check_commit(commit);
    detail::check_relative_path(path_in_repo, "file path");
    return repo_folder(repo) / ".no_exist" / std::string(commit) / std::string(path_in_repo);
  }
  // "refs/pr/1" nests: refs/refs/pr/1.
  std::filesystem::path ref_path(const Repo& repo, std::string_view revision) const {
    detail::check_relative_path(revision, "revision");
    return repo_folder(repo) / "refs" / std::string(revision);
  }
  std::filesystem::path tree_listing_path(const Repo& repo, std::string_view commit) const {
    check_commit(commit);
    return repo_folder(repo) / "trees" / fmt::format("{}.json", commit);
  }

  // The commit a revision maps to: the revision itself when it is a commit, else refs/<revision>.
  std::optional<std::string> resolve_revision(const Repo& repo, std::string_view revision) const {
    if (is_commit_hash(revision)) return std::string(revision);
    std::ifstream file(ref_path(repo, revision), std::ios::binary);
    if (!file) return std::nullopt;
    std::stringstream content;
    content << file.rdbuf();
    std::string commit = content.str();
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
    if (!is_commit_hash(commit)) return std::nullopt;
    return commit;
  }

  // Writes refs/<revision> when it differs from `commit` (atomically: a temp file then a rename).
  void write_ref(const Repo& repo, std::string_view revision, std::string_view commit) const {
    check_commit(commit);
    if (revision == commit) return;
    if (resolve_revision(repo, revision) == std::string(commit)) return;
    std::filesystem::path path = ref_path(repo, revision);
    create_folder(path.parent_path());
    std::filesystem::path temporary = path;
    temporary += fmt::format(".{}.tmp", detail::random_hex8());
    {
      std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
      file << commit;  // no trailing newline, as huggingface_hub writes it
      if (!file.flush()) {
        std::filesystem::remove(temporary);
        throw IoError(fmt::format("cannot write the ref {}: the cache folder is not writable or the disk is full",
                                  path.string()));
      }
    }
    std::error_code error;
    std::filesystem::rename(temporary, path, error);
    if (error) {
      std::filesystem::remove(temporary, error);
      throw IoError(fmt::format("cannot write the ref {}: {}", path.string(), error.message()));
    }
  }

  // snapshots/<commit>/<path> -> relative link to blobs/<etag>; an existing entry is replaced atomically.
  std::filesystem::path link_snapshot(const Repo& repo, std::string_view commit, std::string_view path_in_repo,
                                      std::string_view etag) const {
    std::filesystem::path pointer = snapshot_path(repo, commit, path_in_repo);
    std::filesystem::path blob = blob_path(repo, etag);
    create_folder(pointer.parent_path());
    std::filesystem::path target = blob.lexically_relative(pointer.parent_path());
    std::filesystem::path temporary = pointer;
    temporary += fmt::format(".{}.tmp", detail::random_hex8());
    std::error_code error;
    std::filesystem::create_symlink(target, temporary, error);
    if (!error) std::filesystem::rename(temporary, pointer, error);
    if (error) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw IoError(fmt::format("cannot create the snapshot link {} -> {}: {}", pointer.string(), target.string(),
                                error.message()));
    }
    return pointer;
  }

  // The empty marker that tells later lookups this path does not exist at this commit.
  void mark_missing(const Repo& repo, std::string_view commit, std::string_view path_in_repo) const {
    std::filesystem::path marker = no_exist_path(repo, commit, path_in_repo);
    create_folder(marker.parent_path());
    std::ofstream touch(marker, std::ios::binary | std::ios::app);
  }

  // try_to_load_from_cache: never falls back to another commit than the one the revision maps to.
  CacheLookup lookup(const Repo& repo, std::string_view revision, std::string_view path_in_repo) const {
    CacheLookup result;
    detail::check_relative_path(path_in_repo, "file path");
    auto commit = resolve_revision(repo, revision);
    if (!commit) return result;
    result.commit = *commit;
    std::error_code error;
    if (std::filesystem::exists(no_exist_path(repo, *commit, path_in_repo), error)) {
      result.status = CacheLookup::Status::known_missing;
      return result;
    }
    std::filesystem::path pointer = snapshot_path(repo, *commit, path_in_repo);
    if (std::filesystem::is_regular_file(pointer, error)) {  // follows the symlink: the blob must be there
      result.status = CacheLookup::Status::found;
      result.path = pointer;
    }
    return result;
  }

  // CACHEDIR.TAG (huggingface_hub v1.9+), so that backup tools skip the cache.
  void write_cachedir_tag() const {
    std::filesystem::path tag = root_ / "CACHEDIR.TAG";
    std::error_code error;
    if (std::filesystem::exists(tag, error)) return;
    std::ofstream file(tag, std::ios::binary);
    file << "Signature: 8a477f597d28d172789f06886806bc55\n"
            "# This file is a cache directory tag created by huggingface_hub.\n"
            "# For information about cache directory tags, see:\n"
            "#\thttps://bford.info/cachedir/\n";
  }

  static void create_folder(const std::filesystem::path& folder) {
    std::error_code error;
    std::filesystem::create_directories(folder, error);
    if (error)
      throw IoError(fmt::format("cannot create the cache folder {}: {} (set HF_HUB_CACHE to a writable folder)",
                                folder.string(), error.message()));
  }

 private:
  std::filesystem::path root_;
};

}  // namespace sdnq::hub
