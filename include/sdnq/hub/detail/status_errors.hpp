#pragma once
// Turns an HTTP error response into the typed error that says what to do, classified as
// huggingface_hub classifies it (utils/_http.py::hf_raise_for_status): X-Error-Code first, then status.
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/hub/detail/http.hpp"
#include "sdnq/hub/errors.hpp"
#include "sdnq/hub/repo.hpp"

namespace sdnq::hub::detail {

// What was being asked for, to name it in the message.
struct RequestContext {
  std::string endpoint;
  Repo repo;
  std::string revision;
  std::string path_in_repo;  // empty for repo-level requests
  bool token_sent = false;
};

// X-Error-Message, else the JSON body's "error" / "error_description" / "errors[].message".
inline std::string server_message(const HttpResponse& response) {
  std::string message = response.header("x-error-message");
  if (!message.empty()) return message;
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return {};
  if (auto error = body.find("error"); error != body.end()) {
    if (error->is_string()) return error->get<std::string>();
    if (error->is_array() && !error->empty() && error->front().is_string()) return error->front().get<std::string>();
  }
  if (auto description = body.find("error_description"); description != body.end() && description->is_string())
    return description->get<std::string>();
  return {};
}

// Seconds to wait before retrying: RateLimit "r=0;t=N" (then N + 1), else Retry-After.
inline std::optional<int> retry_after_seconds(const HttpResponse& response) {
  std::string rate_limit = response.header("ratelimit");
  if (rate_limit.find("r=0") != std::string::npos) {
    if (std::size_t t = rate_limit.find("t="); t != std::string::npos) return std::atoi(rate_limit.c_str() + t + 2) + 1;
  }
  std::string retry_after = response.header("retry-after");
  if (!retry_after.empty() && std::isdigit(static_cast<unsigned char>(retry_after.front())))
    return std::atoi(retry_after.c_str());
  return std::nullopt;
}

inline bool is_retryable_status(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

[[noreturn]] inline void throw_for_status(const HttpResponse& response, const RequestContext& context) {
  const long status = response.status;
  const std::string& url = response.url;
  const std::string code = response.header("x-error-code");
  std::string detail = server_message(response);
  std::string request_id = response.header("x-request-id");
  std::string suffix = detail.empty() ? "" : fmt::format(" Server message: {}", detail);
  if (!request_id.empty()) suffix += fmt::format(" (request id {})", request_id);
  const std::string page = repo_page_url(context.endpoint, context.repo);
  const std::string& repo = context.repo.id;

  if (code == "RevisionNotFound")
    throw RevisionNotFoundError(fmt::format("revision '{}' not found in {} ({} {}): check the branch, tag or commit "
                                            "name.{}",
                                            context.revision, repo, status, url, suffix),
                                status, url);
  if (code == "EntryNotFound")
    throw EntryNotFoundError(fmt::format("file '{}' not found in {} at revision '{}' ({} {}).{}", context.path_in_repo,
                                         repo, context.revision, status, url, suffix),
                             status, url);
  if (code == "GatedRepo") {
    if (status == 403 || context.token_sent)
      throw GatedRepoError(fmt::format("{} is a gated repo and the account of your token has no access yet ({} {}): "
                                       "open {} while logged in as that account, accept the licence and wait for "
                                       "approval.{}",
                                       repo, status, url, page, suffix),
                           status, url);
    throw GatedRepoError(fmt::format("{} is a gated repo and no token was sent ({} {}): accept the licence on {} "
                                     "while logged in, create a read token at https://huggingface.co/settings/tokens "
                                     "and set HF_TOKEN to it (or write it to $HF_HOME/token).{}",
                                     repo, status, url, page, suffix),
                         status, url);
  }
  if (detail == "Access to this resource is disabled.")
    throw HttpError(fmt::format("{} has been disabled on the Hub ({} {}).{}", repo, status, url, suffix), status, url);
  if (code == "RepoNotFound" || (status == 401 && detail != "Invalid credentials in Authorization header"))
    throw RepositoryNotFoundError(
        fmt::format("repository {} not found ({} {}): check the repo id{}. A private or gated repo answers the same "
                    "way when no valid token is sent: set HF_TOKEN (or $HF_HOME/token) to a token with access.{}",
                    repo, status, url, context.repo.type == RepoType::model ? "" : " and the repo type", suffix),
        status, url);
  if (status == 401)
    throw HttpError(fmt::format("the Hub rejected the token ({} {}): HF_TOKEN or $HF_HOME/token holds an invalid or "
                                "expired token; create a new one at https://huggingface.co/settings/tokens.{}",
                                status, url, suffix),
                    status, url);
  if (status == 403)
    throw HttpError(fmt::format("403 Forbidden for {} ({}): make sure your token has read access to {}.{}", url,
                                context.path_in_repo.empty() ? repo : context.path_in_repo, repo, suffix),
                    status, url);
  if (status == 404)
    throw EntryNotFoundError(
        fmt::format("404 Not Found: {}{} at revision '{}' ({}): check the repo id, the file path and the revision.{}",
                    repo, context.path_in_repo.empty() ? "" : fmt::format(" has no file '{}'", context.path_in_repo),
                    context.revision, url, suffix),
        status, url);
  if (status == 429) {
    auto wait = retry_after_seconds(response);
    throw HttpError(fmt::format("429 Too Many Requests from {}: the Hub's rate limit was reached and the retries ran "
                                "out{}; wait and run again, and set HF_TOKEN (authenticated users get higher "
                                "limits).{}",
                                url, wait ? fmt::format(" (it asks to wait {} s)", *wait) : "", suffix),
                    status, url);
  }
  if (status >= 500)
    throw HttpError(fmt::format("the Hub answered {} (server error) for {} after the retries; try again later.{}",
                                status, url, suffix),
                    status, url);
  throw HttpError(fmt::format("unexpected HTTP status {} for {}.{}", status, url, suffix), status, url);
}

}  // namespace sdnq::hub::detail
