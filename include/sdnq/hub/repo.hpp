#pragma once
// Repo ids, repo types, revisions and the URLs the Hub serves them under (huggingface_hub
// constants.py, file_download.py::hf_hub_url, utils/_validators.py).
#include <cctype>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "sdnq/core/error.hpp"

namespace sdnq::hub {

enum class RepoType { model, dataset, space, kernel };

inline std::string_view to_string(RepoType type) {
  switch (type) {
    case RepoType::model:
      return "model";
    case RepoType::dataset:
      return "dataset";
    case RepoType::space:
      return "space";
    case RepoType::kernel:
      return "kernel";
  }
  return "model";
}

inline RepoType parse_repo_type(std::string_view name) {
  if (name.empty() || name == "model") return RepoType::model;
  if (name == "dataset") return RepoType::dataset;
  if (name == "space") return RepoType::space;
  if (name == "kernel") return RepoType::kernel;
  throw ConfigError(fmt::format("unknown repo type '{}': expected model, dataset, space or kernel", name));
}

// `namespace/name` or `name`, [A-Za-z0-9_.-], 1..96 characters per part, starting and ending on a
// word character, no `--` or `..`, not ending in `.git`. Throws ConfigError naming the rule broken.
inline void validate_repo_id(std::string_view repo_id) {
  auto fail = [&](std::string_view why) {
    throw ConfigError(
        fmt::format("invalid repo id '{}': {} (expected 'namespace/name', e.g. 'Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32')",
                    repo_id, why));
  };
  if (repo_id.empty()) fail("it is empty");
  std::size_t slash = repo_id.find('/');
  if (slash != std::string_view::npos && repo_id.find('/', slash + 1) != std::string_view::npos)
    fail("it has more than one '/'");
  if (repo_id.find("--") != std::string_view::npos || repo_id.find("..") != std::string_view::npos)
    fail("'--' and '..' are not allowed");
  if (repo_id.ends_with(".git")) fail("it must not end in '.git'");
  auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  auto check_part = [&](std::string_view part) {
    if (part.empty() || part.size() > 96) fail("each part must have 1 to 96 characters");
    for (char c : part)
      if (!is_word(c) && c != '-' && c != '.') fail(fmt::format("character '{}' is not allowed", c));
    if (!is_word(part.front()) || !is_word(part.back()))
      fail("each part must start and end with a letter, digit or '_'");
  };
  if (slash == std::string_view::npos) {
    check_part(repo_id);
  } else {
    check_part(repo_id.substr(0, slash));
    check_part(repo_id.substr(slash + 1));
  }
}

struct Repo {
  std::string id;  // "Disty0/FLUX.1-dev-SDNQ-uint4-svd-r32"
  RepoType type = RepoType::model;

  // The folder name in the cache: "models--Disty0--FLUX.1-dev-SDNQ-uint4-svd-r32".
  std::string folder_name() const {
    std::string name = fmt::format("{}s--", to_string(type));
    for (char c : id) {
      if (c == '/')
        name += "--";
      else
        name += c;
    }
    return name;
  }
  // "" for models, "datasets/", "spaces/", "kernels/" in resolve URLs.
  std::string url_prefix() const { return type == RepoType::model ? "" : fmt::format("{}s/", to_string(type)); }
};

// Python's urllib.parse.quote: unreserved characters stay, everything else becomes %XX; `/` stays only
// when `keep_slash` (paths), not in revisions (refs/pr/3 -> refs%2Fpr%2F3).
inline std::string percent_encode(std::string_view text, bool keep_slash) {
  std::string encoded;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/'))
      encoded += c;
    else
      encoded += fmt::format("%{:02X}", byte);
  }
  return encoded;
}

inline bool is_commit_hash(std::string_view revision) {
  if (revision.size() != 40) return false;
  for (char c : revision)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return false;
  return true;
}

// "{subfolder}/{filename}", or the filename alone when the subfolder is empty.
inline std::string repo_file_path(std::string_view subfolder, std::string_view filename) {
  if (subfolder.empty()) return std::string(filename);
  return fmt::format("{}/{}", subfolder, filename);
}

// {endpoint}/{prefix}{repo_id}/resolve/{quote(revision, safe="")}/{quote(path)}
inline std::string resolve_url(std::string_view endpoint, const Repo& repo, std::string_view revision,
                               std::string_view path_in_repo) {
  return fmt::format("{}/{}{}/resolve/{}/{}", endpoint, repo.url_prefix(), repo.id, percent_encode(revision, false),
                     percent_encode(path_in_repo, true));
}

// {endpoint}/api/{type}s/{repo_id}/revision/{quote(revision, safe="")}: repo info with the resolved sha.
inline std::string revision_info_url(std::string_view endpoint, const Repo& repo, std::string_view revision) {
  return fmt::format("{}/api/{}s/{}/revision/{}", endpoint, to_string(repo.type), repo.id,
                     percent_encode(revision, false));
}

// {endpoint}/api/{type}s/{repo_id}/tree/{quote(revision, safe="")}?recursive=true&expand=false
inline std::string tree_url(std::string_view endpoint, const Repo& repo, std::string_view revision) {
  return fmt::format("{}/api/{}s/{}/tree/{}?recursive=true&expand=false", endpoint, to_string(repo.type), repo.id,
                     percent_encode(revision, false));
}

// The page a person opens to accept a gated model's licence.
inline std::string repo_page_url(std::string_view endpoint, const Repo& repo) {
  return fmt::format("{}/{}{}", endpoint, repo.url_prefix(), repo.id);
}

}  // namespace sdnq::hub
