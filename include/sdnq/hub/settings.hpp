#pragma once
// Where the Hub is, where the cache is and who we are, read from the same environment variables
// huggingface_hub reads (constants.py, utils/_auth.py), so both clients share one cache and one token.
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "sdnq/version.hpp"

namespace sdnq::hub {

namespace detail {

inline std::optional<std::string> environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// 1, ON, YES, TRUE in any case.
inline bool environment_flag(const char* name) {
  auto value = environment(name);
  if (!value) return false;
  std::string lower;
  for (char c : *value) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "1" || lower == "on" || lower == "yes" || lower == "true";
}

inline std::chrono::seconds environment_seconds(const char* name, std::chrono::seconds fallback) {
  auto value = environment(name);
  if (!value) return fallback;
  char* end = nullptr;
  long seconds = std::strtol(value->c_str(), &end, 10);
  if (end == value->c_str() || *end != '\0' || seconds <= 0) return fallback;
  return std::chrono::seconds(seconds);
}

// `~` at the start and $NAME / ${NAME} anywhere, like os.path.expanduser(os.path.expandvars(...)).
inline std::string expand_path(std::string_view path) {
  std::string expanded;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '$' || i + 1 >= path.size()) {
      expanded += path[i];
      continue;
    }
    bool braced = path[i + 1] == '{';
    std::size_t start = i + (braced ? 2 : 1), end = start;
    while (end < path.size() && (std::isalnum(static_cast<unsigned char>(path[end])) || path[end] == '_')) ++end;
    if (end == start || (braced && (end >= path.size() || path[end] != '}'))) {
      expanded += path[i];  // not a variable reference: kept as written, as Python does
      continue;
    }
    std::string name(path.substr(start, end - start));
    const char* value = std::getenv(name.c_str());
    if (value != nullptr)
      expanded += value;
    else
      expanded += path.substr(i, end + (braced ? 1 : 0) - i);
    i = end + (braced ? 1 : 0) - 1;
  }
  if (expanded == "~" || expanded.starts_with("~/")) {
    if (const char* home = std::getenv("HOME")) expanded = home + expanded.substr(1);
  }
  return expanded;
}

// The token file holds the raw token; surrounding whitespace and newlines are dropped, empty means none.
inline std::optional<std::string> read_token_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return std::nullopt;
  std::stringstream content;
  content << file.rdbuf();
  std::string token = content.str();
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!token.empty() && is_space(token.back())) token.pop_back();
  std::size_t first = 0;
  while (first < token.size() && is_space(token[first])) ++first;
  token.erase(0, first);
  if (token.empty()) return std::nullopt;
  return token;
}

}  // namespace detail

struct HubSettings {
  std::string endpoint = "https://huggingface.co";    // no trailing '/'
  std::filesystem::path hf_home;                      // ~/.cache/huggingface
  std::filesystem::path cache_dir;                    // $HF_HOME/hub
  std::optional<std::string> token;                   // sent as "authorization: Bearer <token>"
  bool offline = false;                               // HF_HUB_OFFLINE: resolve from the cache only
  std::chrono::seconds metadata_timeout{10};          // HF_HUB_ETAG_TIMEOUT
  std::chrono::seconds download_timeout{10};          // HF_HUB_DOWNLOAD_TIMEOUT: stall time before a read fails
  int max_retries = 5;                                // for 429, 5xx and dropped connections
  std::chrono::milliseconds first_retry_delay{1000};  // doubles per retry up to 8 s, as huggingface_hub
  int max_workers = 8;                                // parallel file downloads in snapshot_download
  std::string user_agent = "sdnq-cpp/" SDNQ_VERSION_STRING "; hf_hub/compatible";

  // The environment, resolved as huggingface_hub does: HF_ENDPOINT, HF_HOME (else
  // $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface), HF_HUB_CACHE (else the legacy
  // HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub), HF_TOKEN (else HUGGING_FACE_HUB_TOKEN, else the file
  // HF_TOKEN_PATH or $HF_HOME/token, unless HF_HUB_DISABLE_IMPLICIT_TOKEN), HF_HUB_OFFLINE (or
  // TRANSFORMERS_OFFLINE), HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT.
  static HubSettings from_environment() {
    HubSettings settings;
    if (auto endpoint = detail::environment("HF_ENDPOINT")) settings.endpoint = *endpoint;
    while (settings.endpoint.ends_with('/')) settings.endpoint.pop_back();

    if (auto home = detail::environment("HF_HOME")) {
      settings.hf_home = detail::expand_path(*home);
    } else if (auto xdg = detail::environment("XDG_CACHE_HOME")) {
      settings.hf_home = std::filesystem::path(detail::expand_path(*xdg)) / "huggingface";
    } else {
      settings.hf_home = std::filesystem::path(detail::expand_path("~/.cache")) / "huggingface";
    }
    if (auto cache = detail::environment("HF_HUB_CACHE")) {
      settings.cache_dir = detail::expand_path(*cache);
    } else if (auto legacy = detail::environment("HUGGINGFACE_HUB_CACHE")) {
      settings.cache_dir = detail::expand_path(*legacy);
    } else {
      settings.cache_dir = settings.hf_home / "hub";
    }

    if (!detail::environment_flag("HF_HUB_DISABLE_IMPLICIT_TOKEN")) {
      if (auto token = detail::environment("HF_TOKEN")) {
        settings.token = token;
      } else if (auto legacy_token = detail::environment("HUGGING_FACE_HUB_TOKEN")) {
        settings.token = legacy_token;
      } else {
        auto token_path = detail::environment("HF_TOKEN_PATH");
        settings.token = detail::read_token_file(token_path ? std::filesystem::path(detail::expand_path(*token_path))
                                                            : settings.hf_home / "token");
      }
    }
    settings.offline = detail::environment_flag("HF_HUB_OFFLINE") || detail::environment_flag("TRANSFORMERS_OFFLINE");
    settings.metadata_timeout = detail::environment_seconds("HF_HUB_ETAG_TIMEOUT", settings.metadata_timeout);
    settings.download_timeout = detail::environment_seconds("HF_HUB_DOWNLOAD_TIMEOUT", settings.download_timeout);
    if (auto origin = detail::environment("HF_HUB_USER_AGENT_ORIGIN")) settings.user_agent += "; origin/" + *origin;
    return settings;
  }
};

}  // namespace sdnq::hub
