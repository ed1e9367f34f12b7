#pragma once
// Typed errors of the Hub client. Each message says what failed (repo, file, revision, URL) and what
// the user can do about it; the class tells a program how to react without parsing the text.
#include <string>
#include <utility>

#include "sdnq/core/error.hpp"

namespace sdnq::hub {

// Anything that went wrong talking to the Hub or resolving a file from the cache.
class HubError : public Error {
 public:
  using Error::Error;
};

// The server answered with an HTTP error status that no more specific class covers.
class HttpError : public HubError {
 public:
  HttpError(std::string message, long status, std::string url)
      : HubError(std::move(message)), status_(status), url_(std::move(url)) {}
  long status() const { return status_; }
  const std::string& url() const { return url_; }

 private:
  long status_;
  std::string url_;
};

// 404 RepoNotFound, or the 401 the Hub sends alike for missing, private and gated repos.
class RepositoryNotFoundError : public HttpError {
 public:
  using HttpError::HttpError;
};

// X-Error-Code: GatedRepo. 401 when no token was sent, 403 when the token's user is not approved.
class GatedRepoError : public RepositoryNotFoundError {
 public:
  using RepositoryNotFoundError::RepositoryNotFoundError;
};

// The branch, tag or commit does not exist in the repo.
class RevisionNotFoundError : public HttpError {
 public:
  using HttpError::HttpError;
};

// The repo and revision exist but the file does not.
class EntryNotFoundError : public HttpError {
 public:
  using HttpError::HttpError;
};

// A connection that could not be made or kept, after the retries.
class NetworkError : public HubError {
 public:
  explicit NetworkError(std::string message, bool connected = true)
      : HubError(std::move(message)), connected_(connected) {}
  // False when no connection was made at all (refused, unknown host): nothing listens there, so
  // retrying only delays the fallback to the cache.
  bool connected() const { return connected_; }

 private:
  bool connected_;
};

// Offline mode (HF_HUB_OFFLINE or a failed connection) and the cache does not hold what was asked for.
class LocalEntryNotFoundError : public HubError {
 public:
  using HubError::HubError;
};

// Downloaded bytes do not match the size or the sha256 the Hub announced.
class IntegrityError : public HubError {
 public:
  using HubError::HubError;
};

// The server named a path, etag or revision that would leave the cache folder (`..`, absolute paths).
class UnsafePathError : public HubError {
 public:
  using HubError::HubError;
};

// The response does not look like the Hub's (no X-Repo-Commit, no ETag): usually a proxy in between.
class FileMetadataError : public HubError {
 public:
  using HubError::HubError;
};

}  // namespace sdnq::hub
