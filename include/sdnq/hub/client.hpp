#pragma once
// The Hub client: hf_hub_download and snapshot_download of huggingface_hub on libcurl, writing the
// same cache (see cache.hpp), so a model downloaded by either client is found by the other.
//
//   sdnq::hub::HubClient client;  // HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE
//   auto snapshot = client.snapshot_download({"Disty0/Z-Image-Turbo-SDNQ-int8"},
//                                            {.allow_patterns = {"model_index.json", "vae/*"}});
//   // snapshot.folder = $HF_HUB_CACHE/models--Disty0--Z-Image-Turbo-SDNQ-int8/snapshots/<commit>
//
// One file: HEAD the resolve URL (relative redirects followed on the same host) for commit, etag, size
// and the download location; GET the location into blobs/<etag>.incomplete under the flock of
// .locks/<repo>/<etag>.lock, resuming with Range after dropped connections (and across runs), check the
// size and, for LFS files, the sha256 against the etag; rename into blobs/<etag>; link the snapshot.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "sdnq/hub/cache.hpp"
#include "sdnq/hub/detail/file_lock.hpp"
#include "sdnq/hub/detail/http.hpp"
#include "sdnq/hub/detail/partial_file.hpp"
#include "sdnq/hub/detail/status_errors.hpp"
#include "sdnq/hub/detail/tree_cache.hpp"
#include "sdnq/hub/errors.hpp"
#include "sdnq/hub/listing.hpp"
#include "sdnq/hub/patterns.hpp"
#include "sdnq/hub/progress.hpp"
#include "sdnq/hub/repo.hpp"
#include "sdnq/hub/settings.hpp"
#include "sdnq/hub/sha256.hpp"

namespace sdnq::hub {

// What the HEAD of a resolve URL says about one file.
struct FileMetadata {
  std::string commit;      // X-Repo-Commit: the 40-hex commit the revision resolved to
  std::string etag;        // X-Linked-Etag or ETag: sha256 for LFS files, git blob sha1 otherwise
  std::uint64_t size = 0;  // X-Linked-Size, else Content-Length
  std::string location;    // where to GET the bytes: a CDN URL after an absolute redirect
};

struct SnapshotOptions {
  std::string revision = "main";
  std::vector<std::string> allow_patterns{};  // fnmatch; empty keeps everything
  std::vector<std::string> ignore_patterns{};
  DownloadProgress* progress = nullptr;
};

struct Snapshot {
  std::filesystem::path folder;  // snapshots/<commit>
  std::string commit;
  std::vector<std::string> files;  // paths in the repo that are now in `folder`
};

class HubClient {
 public:
  explicit HubClient(HubSettings settings = HubSettings::from_environment())
      : settings_(std::move(settings)), cache_(settings_.cache_dir) {
    while (settings_.endpoint.ends_with('/')) settings_.endpoint.pop_back();
  }

  const HubSettings& settings() const { return settings_; }
  const HubCache& cache() const { return cache_; }
  // HTTP requests sent so far (offline resolution must send none).
  std::size_t request_count() const { return request_count_.load(); }

  FileMetadata file_metadata(const Repo& repo, std::string_view path_in_repo, std::string_view revision = "main") {
    validate_repo_id(repo.id);
    detail::check_relative_path(path_in_repo, "file path");
    require_online(repo, path_in_repo, revision);
    return parse_metadata(head_resolve(repo, path_in_repo, revision, settings_.max_retries),
                          context(repo, revision, path_in_repo));
  }

  // hf_hub_download into the cache: the path of snapshots/<commit>/<path_in_repo>.
  std::filesystem::path download_file(const Repo& repo, std::string_view path_in_repo,
                                      std::string_view revision = "main", DownloadProgress* progress = nullptr) {
    validate_repo_id(repo.id);
    detail::check_relative_path(path_in_repo, "file path");
    if (is_commit_hash(revision)) {
      std::filesystem::path pointer = cache_.snapshot_path(repo, revision, path_in_repo);
      std::error_code error;
      if (std::filesystem::is_regular_file(pointer, error)) {
        report_cached(progress, path_in_repo, pointer);
        return pointer;
      }
    }
    CacheLookup cached = cache_.lookup(repo, revision, path_in_repo);
    const bool have_cached = cached.status == CacheLookup::Status::found;
    if (settings_.offline) {
      if (have_cached) {
        report_cached(progress, path_in_repo, cached.path);
        return cached.path;
      }
      throw_cache_miss(repo, path_in_repo, revision, cached, "HF_HUB_OFFLINE is set");
    }
    detail::HttpResponse head;
    try {
      // With a cached copy to fall back on, a failing HEAD is not worth retrying.
      head = head_resolve(repo, path_in_repo, revision, have_cached ? 0 : settings_.max_retries);
    } catch (const NetworkError& error) {
      if (have_cached) {
        report_cached(progress, path_in_repo, cached.path);
        return cached.path;
      }
      throw_cache_miss(repo, path_in_repo, revision, cached,
                       fmt::format("the Hub could not be reached ({})", error.what()));
    }
    if (head.status == 404 && head.header("x-error-code") == "EntryNotFound") {
      std::string commit = head.header("x-repo-commit");
      if (is_commit_hash(commit)) {
        cache_.mark_missing(repo, commit, path_in_repo);
        cache_.write_ref(repo, revision, commit);
      }
    }
    const long status = head.status;
    if (have_cached && (status == 401 || status == 403 || status == 429 || status >= 500)) {
      report_cached(progress, path_in_repo, cached.path);
      return cached.path;
    }
    FileMetadata metadata = parse_metadata(head, context(repo, revision, path_in_repo));
    return fetch_into_cache(repo, path_in_repo, revision, metadata, progress);
  }

  // The commit a revision points to now (repo info endpoint); a commit hash is returned as is.
  std::string resolve_commit(const Repo& repo, std::string_view revision) {
    if (is_commit_hash(revision)) return std::string(revision);
    require_online(repo, "", revision);
    detail::HttpResponse response =
        get_json(revision_info_url(settings_.endpoint, repo, revision), context(repo, revision, ""));
    auto info = nlohmann::json::parse(response.body, nullptr, false);
    if (info.is_discarded() || !info.is_object() || !info.contains("sha") || !info["sha"].is_string())
      throw FileMetadataError(
          fmt::format("{} did not answer with repo info JSON holding a 'sha': is HF_ENDPOINT ({}) "
                      "the Hub?",
                      response.url, settings_.endpoint));
    std::string commit = info["sha"].get<std::string>();
    check_commit(commit);
    return commit;
  }

  // Every file of the repo at a revision (the tree API, recursive, paginated), cached per commit in
  // trees/<commit>.json as huggingface_hub >= 1.22 caches it.
  RepoListing list_files(const Repo& repo, std::string_view revision = "main") {
    validate_repo_id(repo.id);
    RepoListing listing;
    listing.commit = resolve_commit(repo, revision);
    if (auto cached = detail::read_tree_cache(cache_, repo, listing.commit)) {
      listing.files = std::move(*cached);
      return listing;
    }
    std::string url = tree_url(settings_.endpoint, repo, listing.commit);
    while (!url.empty()) {
      detail::HttpResponse response = get_json(url, context(repo, revision, ""));
      auto entries = nlohmann::json::parse(response.body, nullptr, false);
      if (entries.is_discarded() || !entries.is_array())
        throw FileMetadataError(fmt::format("{} did not answer with a JSON array of files", response.url));
      for (const auto& entry : entries) {
        if (!entry.is_object() || entry.value("type", "") != "file") continue;
        RepoFileEntry file;
        file.path = entry.value("path", "");
        detail::check_relative_path(file.path, "file path listed by the server");
        file.size = entry.value("size", std::uint64_t{0});
        file.blob_id = entry.value("oid", "");
        if (auto lfs = entry.find("lfs"); lfs != entry.end() && lfs->is_object()) {
          file.lfs_sha256 = lfs->value("oid", "");
          file.size = lfs->value("size", file.size);
        }
        listing.files.push_back(std::move(file));
      }
      url = next_page_url(response.header("link"));
    }
    detail::write_tree_cache(cache_, repo, listing);
    return listing;
  }

  // snapshot_download: the selected files of the repo at a revision, downloaded in parallel.
  // Offline (HF_HUB_OFFLINE, or the Hub unreachable) the snapshot is served from the cache if complete.
  Snapshot snapshot_download(const Repo& repo, const SnapshotOptions& options = {}) {
    validate_repo_id(repo.id);
    if (settings_.offline) return snapshot_from_cache(repo, options, "HF_HUB_OFFLINE is set");
    RepoListing listing;
    try {
      listing = list_files(repo, options.revision);
    } catch (const NetworkError& error) {
      return snapshot_from_cache(repo, options, fmt::format("the Hub could not be reached ({})", error.what()));
    }
    std::vector<const RepoFileEntry*> selected;
    std::uint64_t total_bytes = 0;
    for (const RepoFileEntry& file : listing.files) {
      if (!path_is_selected(file.path, options.allow_patterns, options.ignore_patterns)) continue;
      selected.push_back(&file);
      total_bytes += file.size;
    }
    if (selected.empty() && !options.allow_patterns.empty())
      throw EntryNotFoundError(
          fmt::format("no file of {} at revision '{}' matches {}; the repo has {} files", repo.id, options.revision,
                      fmt::join(options.allow_patterns, ", "), listing.files.size()),
          404, tree_url(settings_.endpoint, repo, listing.commit));
    cache_.write_ref(repo, options.revision, listing.commit);
    if (options.progress) options.progress->begin(selected.size(), total_bytes);
    run_parallel(selected.size(), [&](std::size_t index) {
      download_file(repo, selected[index]->path, listing.commit, options.progress);
    });
    if (options.progress) options.progress->end();
    Snapshot snapshot{cache_.snapshot_folder(repo, listing.commit), listing.commit, {}};
    for (const RepoFileEntry* file : selected) snapshot.files.push_back(file->path);
    return snapshot;
  }

 private:
  detail::RequestContext context(const Repo& repo, std::string_view revision, std::string_view path) const {
    return {settings_.endpoint, repo, std::string(revision), std::string(path), settings_.token.has_value()};
  }

  void require_online(const Repo& repo, std::string_view path, std::string_view revision) const {
    if (settings_.offline)
      throw LocalEntryNotFoundError(
          fmt::format("HF_HUB_OFFLINE is set, so no request for {}{} at revision '{}' is sent", repo.id,
                      path.empty() ? "" : fmt::format(" file '{}'", path), revision));
  }

  [[noreturn]] void throw_cache_miss(const Repo& repo, std::string_view path, std::string_view revision,
                                     const CacheLookup& cached, std::string_view reason) const {
    std::string what;
    if (cached.status == CacheLookup::Status::known_missing)
      what = fmt::format("the cache records that '{}' does not exist in {} at commit {}", path, repo.id, cached.commit);
    else if (cached.commit.empty())
      what = fmt::format("the cache {} has no {} for revision '{}' of {}", cache_.root().string(),
                         is_commit_hash(revision) ? "snapshot" : "ref", revision, repo.id);
    else
      what = fmt::format("the cache {} does not hold '{}' of {} at commit {} (revision '{}')", cache_.root().string(),
                         path, repo.id, cached.commit, revision);
    throw LocalEntryNotFoundError(fmt::format("{} and {}: download it once with network access{}", reason, what,
                                              settings_.offline ? " (unset HF_HUB_OFFLINE)" : ""));
  }

  std::vector<std::string> request_headers(bool with_token) const {
    static thread_local std::mt19937_64 random{std::random_device{}()};
    std::vector<std::string> headers = {
        "User-Agent: " + settings_.user_agent,
        fmt::format("X-Amzn-Trace-Id: {:016x}{:016x}", random(), random()),
    };
    if (with_token && settings_.token) headers.push_back("Authorization: Bearer " + *settings_.token);
    return headers;
  }

  detail::HttpResponse send(const detail::HttpRequest& request, const detail::BodySink* sink = nullptr) {
    if (settings_.offline)
      throw LocalEntryNotFoundError(fmt::format("HF_HUB_OFFLINE is set: not sending {}", request.url));
    ++request_count_;
    return detail::perform(request, sink);
  }

  void sleep_before_retry(int attempt, std::optional<int> server_wait_seconds) const {
    std::chrono::milliseconds delay = settings_.first_retry_delay * (1 << std::min(attempt, 3));
    delay = std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(8));
    if (server_wait_seconds) delay = std::chrono::seconds(std::clamp(*server_wait_seconds, 0, 300));
    std::this_thread::sleep_for(delay);
  }

  // Retries 408/429/5xx (honouring Retry-After) and dropped or timed-out connections, with backoff.
  detail::HttpResponse send_with_retries(const detail::HttpRequest& request, int max_retries) {
    for (int attempt = 0;; ++attempt) {
      try {
        detail::HttpResponse response = send(request);
        if (!detail::is_retryable_status(response.status) || attempt >= max_retries) return response;
        sleep_before_retry(attempt, detail::retry_after_seconds(response));
      } catch (const NetworkError& error) {
        // Refused or unresolvable: fail fast, as huggingface_hub does, so the cache can answer instead.
        if (attempt >= max_retries || !error.connected()) throw;
        sleep_before_retry(attempt, std::nullopt);
      }
    }
  }

  detail::HttpResponse get_json(const std::string& url, const detail::RequestContext& request_context) {
    detail::HttpRequest request;
    request.url = url;
    request.headers = request_headers(true);
    request.follow_redirects = true;
    request.accept_any_encoding = true;
    request.connect_timeout = settings_.metadata_timeout;
    request.stall_timeout = settings_.download_timeout;
    detail::HttpResponse response = send_with_retries(request, settings_.max_retries);
    if (response.status >= 400) detail::throw_for_status(response, request_context);
    return response;
  }

  // HEAD of the resolve URL; relative redirects (renamed repos) are followed on the same host with the
  // token, an absolute one (the CDN) ends the chain and becomes the download location.
  detail::HttpResponse head_resolve(const Repo& repo, std::string_view path, std::string_view revision,
                                    int max_retries) {
    std::string url = resolve_url(settings_.endpoint, repo, revision, path);
    const std::string origin = detail::url_origin(url);
    for (int hop = 0; hop < 10; ++hop) {
      detail::HttpRequest request;
      request.head = true;
      request.url = url;
      request.headers = request_headers(true);
      request.connect_timeout = settings_.metadata_timeout;
      request.stall_timeout = settings_.metadata_timeout;
      detail::HttpResponse response = send_with_retries(request, max_retries);
      std::string location = response.header("location");
      if (response.is_redirect() && !location.empty() && detail::url_origin(location).empty()) {
        url = origin + (location.starts_with('/') ? location : "/" + location);
        continue;
      }
      return response;
    }
    throw HubError(fmt::format("more than 10 redirects for {}", resolve_url(settings_.endpoint, repo, revision, path)));
  }

  FileMetadata parse_metadata(const detail::HttpResponse& response,
                              const detail::RequestContext& request_context) const {
    if (response.status >= 400) detail::throw_for_status(response, request_context);
    auto not_the_hub = [&](std::string_view missing) {
      throw FileMetadataError(
          fmt::format("{} answered without {}: the response does not come from the Hub. Check "
                      "HF_ENDPOINT ({}) and any proxy or firewall in between",
                      response.url, missing, settings_.endpoint));
    };
    FileMetadata metadata;
    metadata.commit = response.header("x-repo-commit");
    if (metadata.commit.empty()) not_the_hub("X-Repo-Commit");
    std::string etag =
        response.has_header("x-linked-etag") ? response.header("x-linked-etag") : response.header("etag");
    if (etag.starts_with("W/")) etag.erase(0, 2);
    if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
    if (etag.empty()) not_the_hub("an ETag");
    metadata.etag = etag;
    std::string size = response.header("x-linked-size");
    if (size.empty() && !response.is_redirect()) size = response.header("content-length");
    if (size.empty()) not_the_hub("a file size (X-Linked-Size or Content-Length)");
    metadata.size = std::strtoull(size.c_str(), nullptr, 10);
    std::string location = response.header("location");
    metadata.location = location.empty() ? response.url : location;
    check_commit(metadata.commit);
    check_etag(metadata.etag);
    return metadata;
  }

  void report_cached(DownloadProgress* progress, std::string_view path, const std::filesystem::path& file) const {
    if (!progress) return;
    std::error_code error;
    auto size = std::filesystem::file_size(file, error);
    progress->file_finished(path, error ? 0 : size, true);
  }

  std::filesystem::path fetch_into_cache(const Repo& repo, std::string_view path, std::string_view revision,
                                         const FileMetadata& metadata, DownloadProgress* progress) {
    HubCache::create_folder(cache_.root());
    cache_.write_cachedir_tag();
    cache_.write_ref(repo, revision, metadata.commit);
    std::filesystem::path pointer = cache_.snapshot_path(repo, metadata.commit, path);
    std::error_code error;
    if (std::filesystem::is_regular_file(pointer, error)) {
      report_cached(progress, path, pointer);
      return pointer;
    }
    std::filesystem::path blob = cache_.blob_path(repo, metadata.etag);
    detail::FileLock lock(cache_.lock_path(repo, metadata.etag));
    // Checked again under the lock: another process may have finished the same blob meanwhile.
    if (std::filesystem::exists(blob, error)) {
      report_cached(progress, path, blob);
    } else {
      download_blob(repo, path, revision, metadata, progress);
    }
    return cache_.link_snapshot(repo, metadata.commit, path, metadata.etag);
  }

  // GET into blobs/<etag>.incomplete (resuming what an interrupted run left), verify, rename to blobs/<etag>.
  // The caller holds the etag's lock.
  void download_blob(const Repo& repo, std::string_view path, std::string_view revision, const FileMetadata& metadata,
                     DownloadProgress* progress) {
    const std::filesystem::path blob = cache_.blob_path(repo, metadata.etag);
    const std::filesystem::path partial = cache_.incomplete_path(repo, metadata.etag);
    HubCache::create_folder(blob.parent_path());
    detail::PartialFile file(partial);
    std::uint64_t written = file.size();
    if (written > metadata.size) written = file.truncate();
    const bool verify_sha256 = metadata.etag.size() == 64;
    Sha256 hash;
    if (verify_sha256 && written > 0) detail::hash_file_prefix(partial, written, hash);
    if (progress) progress->file_started(path, metadata.size, written);

    // The token goes only to the endpoint's own host, never to a CDN that a redirect named.
    const bool same_host = detail::url_origin(metadata.location) == detail::url_origin(settings_.endpoint);
    const auto request_context = context(repo, revision, path);
    int failures = 0;
    bool complete = false;
    while (!complete) {
      detail::HttpRequest request;
      request.url = metadata.location;
      request.headers = request_headers(same_host);
      request.follow_redirects = true;
      request.connect_timeout = settings_.download_timeout;
      request.stall_timeout = settings_.download_timeout;
      if (written > 0) request.range_start = written;
      bool data_arrived = false, first_piece = true;
      detail::BodySink sink = [&](const detail::HttpResponse& response, std::string_view piece) {
        if (first_piece && written > 0 && response.status == 200) {
          written = file.truncate();  // the server ignored the Range: start over
          hash.reset();
        }
        first_piece = false;
        if (written + piece.size() > metadata.size)
          throw IntegrityError(fmt::format("the server sent more than the {} bytes announced for '{}' of {}",
                                           metadata.size, path, repo.id));
        file.write(piece, blob);
        if (verify_sha256) hash.update(std::as_bytes(std::span(piece.data(), piece.size())));
        written += piece.size();
        data_arrived = true;
        if (progress) progress->bytes_received(path, piece.size());
      };
      detail::HttpResponse response;
      try {
        response = send(request, &sink);
      } catch (const NetworkError& error) {
        if (data_arrived) failures = 0;  // progress was made: the retry budget starts again
        if (++failures > settings_.max_retries)
          throw NetworkError(fmt::format(
              "downloading '{}' of {} stopped at {} of {} bytes and {} retries failed ({}); "
              "run again to resume from {}",
              path, repo.id, written, metadata.size, settings_.max_retries, error.what(), partial.string()));
        sleep_before_retry(0, std::nullopt);
        continue;
      } catch (const std::exception&) {
        file.remove();  // disk full, unwritable, corrupt: nothing half-written stays behind
        throw;
      }
      if (response.status == 416 && written == metadata.size) break;  // the partial file was already whole
      if (detail::is_retryable_status(response.status)) {
        if (++failures > settings_.max_retries) detail::throw_for_status(response, request_context);
        sleep_before_retry(failures - 1, detail::retry_after_seconds(response));
        continue;
      }
      if (response.status >= 400) detail::throw_for_status(response, request_context);
      if (written == metadata.size) {
        complete = true;
      } else if (!data_arrived && ++failures > settings_.max_retries) {
        break;  // the size check below reports it
      }
    }
    if (written != metadata.size) {
      file.remove();
      throw IntegrityError(
          fmt::format("consistency check failed for '{}' of {}: it should be {} bytes but {} arrived; "
                      "the partial file was deleted, run again",
                      path, repo.id, metadata.size, written));
    }
    if (verify_sha256) {
      std::string digest = hash.finish_hex();
      std::string expected = metadata.etag;
      for (char& c : expected) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (digest != expected) {
        file.remove();
        throw IntegrityError(
            fmt::format("sha256 mismatch for '{}' of {}: the Hub announced {} (its etag) but the "
                        "downloaded bytes hash to {}; the corrupt file was deleted, run again (a proxy "
                        "that alters downloads gives this too)",
                        path, repo.id, expected, digest));
      }
    }
    file.commit(blob);
    if (progress) progress->file_finished(path, metadata.size, false);
  }

  // `<url>; rel="next"` in a Link header, GitHub style.
  static std::string next_page_url(const std::string& link) {
    std::size_t rel = link.find("rel=\"next\"");
    if (rel == std::string::npos) return {};
    std::size_t open = link.rfind('<', rel), close = link.rfind('>', rel);
    if (open == std::string::npos || close == std::string::npos || close < open) return {};
    return link.substr(open + 1, close - open - 1);
  }

  Snapshot snapshot_from_cache(const Repo& repo, const SnapshotOptions& options, std::string_view reason) const {
    auto commit = cache_.resolve_revision(repo, options.revision);
    if (!commit)
      throw LocalEntryNotFoundError(fmt::format(
          "{} and the cache {} has no revision '{}' of {} (no {}): download it "
          "once with network access{}",
          reason, cache_.root().string(), options.revision, repo.id, cache_.ref_path(repo, options.revision).string(),
          settings_.offline ? " (unset HF_HUB_OFFLINE)" : ""));
    Snapshot snapshot{cache_.snapshot_folder(repo, *commit), *commit, {}};
    std::error_code error;
    if (!std::filesystem::is_directory(snapshot.folder, error))
      throw LocalEntryNotFoundError(
          fmt::format("{} and the cache has no snapshot {} of {}: download it once with "
                      "network access",
                      reason, snapshot.folder.string(), repo.id));
    std::vector<std::string> missing;
    if (auto listed = detail::read_tree_cache(cache_, repo, *commit)) {
      // The listing says what the snapshot should hold: check that every selected file is there.
      for (const RepoFileEntry& file : *listed) {
        if (!path_is_selected(file.path, options.allow_patterns, options.ignore_patterns)) continue;
        if (std::filesystem::is_regular_file(snapshot.folder / file.path, error))
          snapshot.files.push_back(file.path);
        else
          missing.push_back(file.path);
      }
    } else {
      for (auto it = std::filesystem::recursive_directory_iterator(snapshot.folder, error);
           !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
        if (!it->is_regular_file(error)) continue;  // follows the link: a dangling one is not a file
        std::string path = it->path().lexically_relative(snapshot.folder).generic_string();
        if (path_is_selected(path, options.allow_patterns, options.ignore_patterns)) snapshot.files.push_back(path);
      }
      for (const std::string& pattern : options.allow_patterns) {
        bool matched = false;
        for (const std::string& path : snapshot.files)
          matched = matched || fnmatch_case(normalize_pattern(pattern), path);
        if (!matched) missing.push_back(fmt::format("(nothing matching '{}')", pattern));
      }
    }
    std::sort(snapshot.files.begin(), snapshot.files.end());
    if (!missing.empty()) {
      std::size_t shown = std::min<std::size_t>(missing.size(), 8);
      throw LocalEntryNotFoundError(fmt::format(
          "{} and the cached snapshot {} of {} is incomplete: missing {}{}; "
          "download it once with network access",
          reason, snapshot.folder.string(), repo.id, fmt::join(missing.begin(), missing.begin() + shown, ", "),
          missing.size() > shown ? fmt::format(" and {} more", missing.size() - shown) : ""));
    }
    if (options.progress) {
      options.progress->begin(snapshot.files.size(), 0);
      for (const std::string& path : snapshot.files) report_cached(options.progress, path, snapshot.folder / path);
      options.progress->end();
    }
    return snapshot;
  }

  // Runs task(0..count-1) on up to max_workers threads; the first exception stops new tasks and is rethrown.
  template <class Task>
  void run_parallel(std::size_t count, Task&& task) {
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first_error;
    std::mutex error_mutex;
    auto worker = [&] {
      for (std::size_t index; !failed && (index = next++) < count;) {
        try {
          task(index);
        } catch (...) {
          std::lock_guard lock(error_mutex);
          if (!first_error) first_error = std::current_exception();
          failed = true;
        }
      }
    };
    std::size_t thread_count =
        std::min<std::size_t>(count, static_cast<std::size_t>(std::max(1, settings_.max_workers)));
    detail::ensure_curl_initialized();
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < thread_count; ++i) threads.emplace_back(worker);
    worker();
    for (std::thread& thread : threads) thread.join();
    if (first_error) std::rethrow_exception(first_error);
  }

  HubSettings settings_;
  HubCache cache_;
  std::atomic<std::size_t> request_count_{0};
};

}  // namespace sdnq::hub
