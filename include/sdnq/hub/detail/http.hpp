#pragma once
// A thin libcurl wrapper: one request, headers collected case-insensitively from the final response,
// the body either kept (JSON, error pages) or streamed to a sink (downloads). Transport failures become
// NetworkError; an exception thrown by the sink aborts the transfer and is rethrown as is.
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "sdnq/hub/errors.hpp"

namespace sdnq::hub::detail {

inline void ensure_curl_initialized() {
  // curl_global_init is not thread-safe on old libcurl: run it once, before any worker thread.
  static const bool initialized = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  if (!initialized) throw NetworkError("libcurl could not be initialised (curl_global_init failed)");
}

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names; repeated headers joined with ", "
  std::string body;                            // kept when no sink is given, and for error statuses
  std::string url;                             // the URL that produced this response

  std::string header(std::string_view lowercase_name) const {
    auto found = headers.find(std::string(lowercase_name));
    return found == headers.end() ? std::string() : found->second;
  }
  bool has_header(std::string_view lowercase_name) const { return headers.contains(std::string(lowercase_name)); }
  bool is_redirect() const { return status >= 300 && status < 400; }
};

struct HttpRequest {
  bool head = false;
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  bool follow_redirects = false;
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds stall_timeout{10};  // fail when less than 1 byte/s arrives for this long
  std::optional<std::uint64_t> range_start;
  bool accept_any_encoding = false;  // "" (gzip etc.) for JSON; identity for files and HEAD
};

// Called with each piece of a successful (2xx) body; may throw to abort.
using BodySink = std::function<void(const HttpResponse&, std::string_view)>;

namespace http_callbacks {

struct TransferState {
  HttpResponse response;
  const BodySink* sink = nullptr;
  std::exception_ptr sink_error;
};

inline std::string trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return std::string(text);
}

inline std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    // A new response (after a redirect or a 100-continue): forget the previous one's headers.
    state->response.headers.clear();
    std::size_t space = line.find(' ');
    state->response.status = space == std::string_view::npos ? 0 : std::strtol(line.data() + space + 1, nullptr, 10);
    return line.size();
  }
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  std::string name;
  for (char c : line.substr(0, colon)) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string value = trim(line.substr(colon + 1));
  auto [entry, inserted] = state->response.headers.emplace(name, value);
  if (!inserted) entry->second += ", " + value;
  return line.size();
}

inline std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* state = static_cast<TransferState*>(user);
  std::string_view piece(data, size * count);
  long status = state->response.status;
  if (status >= 300 && status < 400) return piece.size();  // the body of a redirect being followed
  if (state->sink == nullptr || status >= 400) {
    if (state->response.body.size() < (1u << 20)) state->response.body.append(piece);
    return piece.size();
  }
  try {
    (*state->sink)(state->response, piece);
  } catch (...) {
    state->sink_error = std::current_exception();
    return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
  }
  return piece.size();
}

}  // namespace http_callbacks

// Performs one request. Throws NetworkError when no complete response arrived (refused, reset,
// timed out, cut short); HTTP error statuses are returned, not thrown.
inline HttpResponse perform(const HttpRequest& request, const BodySink* sink = nullptr) {
  ensure_curl_initialized();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) throw NetworkError("libcurl could not create a request handle");
  http_callbacks::TransferState state;
  state.sink = sink;
  state.response.url = request.url;

  curl_slist* header_list = nullptr;
  for (const std::string& header : request.headers) header_list = curl_slist_append(header_list, header.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers_owner(header_list, &curl_slist_free_all);

  CURL* handle = curl.get();
  curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list);
  curl_easy_setopt(handle, CURLOPT_NOBODY, request.head ? 1L : 0L);
  curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 10L);
  // Never resend the token to another host a redirect leads to (signed CDN URLs must not get it).
  curl_easy_setopt(handle, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, static_cast<long>(request.connect_timeout.count()));
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, static_cast<long>(request.stall_timeout.count()));
  curl_easy_setopt(handle, CURLOPT_ACCEPT_ENCODING, request.accept_any_encoding ? "" : "identity");
  curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, &http_callbacks::on_header);
  curl_easy_setopt(handle, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &http_callbacks::on_body);
  curl_easy_setopt(handle, CURLOPT_WRITEDATA, &state);
  std::string range;
  if (request.range_start) {
    range = fmt::format("{}-", *request.range_start);
    curl_easy_setopt(handle, CURLOPT_RANGE, range.c_str());
  }

  CURLcode result = curl_easy_perform(handle);
  if (state.sink_error) std::rethrow_exception(state.sink_error);
  char* effective_url = nullptr;
  if (curl_easy_getinfo(handle, CURLINFO_EFFECTIVE_URL, &effective_url) == CURLE_OK && effective_url != nullptr)
    state.response.url = effective_url;
  if (result != CURLE_OK) {
    const bool connected = result != CURLE_COULDNT_CONNECT && result != CURLE_COULDNT_RESOLVE_HOST &&
                           result != CURLE_COULDNT_RESOLVE_PROXY;
    throw NetworkError(
        fmt::format("{} {} failed: {}", request.head ? "HEAD" : "GET", request.url, curl_easy_strerror(result)),
        connected);
  }
  return std::move(state.response);
}

// "scheme://host:port" of an absolute URL, or "" when the URL has no host (a relative redirect).
inline std::string url_origin(std::string_view url) {
  std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::size_t host_end = url.find_first_of("/?#", scheme_end + 3);
  std::string origin(url.substr(0, host_end));
  for (char& c : origin) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return origin;
}

}  // namespace sdnq::hub::detail
