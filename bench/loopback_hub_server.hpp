#pragma once
// A Hugging Face Hub stand-in on 127.0.0.1 for the download benchmark: HTTP/1.1 over plain sockets,
// one thread per connection, file bytes sent with sendfile(2) from the page cache so that the server
// costs almost nothing next to the client it measures.
//
// It answers the routes HubClient uses, with the headers the real Hub sends for LFS files:
//   GET  /api/models/{org}/{name}/revision/{rev}   {"id", "sha", "siblings"}
//   GET  /api/models/{org}/{name}/tree/{rev}       [{"type": "file", "path", "size", "lfs": {"oid", "size", ...}}]
//   HEAD /{org}/{name}/resolve/{rev}/{path}        302, X-Repo-Commit, X-Linked-Etag: "<sha256>",
//                                                  X-Linked-Size, Location: <the "CDN" URL>
//   GET  /cdn/{sha256}                             the bytes; Range: bytes=N- / N-M gives 206, past the end 416
// Unknown repos answer 401 RepoNotFound, unknown revisions 404 RevisionNotFound, unknown paths 404
// EntryNotFound with X-Repo-Commit, as the Hub does. Not sent: the git oid of the LFS pointer (the
// redirect's ETag and the listing's "oid"), which the client never reads for LFS files.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"

namespace sdnq::bench {

// One LFS file of a served repo: `size` bytes of `source` starting at `offset`.
struct ServedFile {
  std::string path_in_repo;
  std::filesystem::path source;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::string sha256;  // lowercase hex of those bytes: the LFS oid and the etag
};

struct ServedRepo {
  std::string id;      // "org/name"
  std::string commit;  // 40 hex; "main" resolves to it
  std::vector<ServedFile> files;
};

namespace detail {

inline bool send_all(int socket, std::string_view bytes, int flags = 0) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(socket, bytes.data(), bytes.size(), flags | MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

inline std::string percent_decode(std::string_view text) {
  std::string decoded;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      decoded += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      decoded += text[i];
    }
  }
  return decoded;
}

inline std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  while (!path.empty()) {
    std::size_t slash = path.find('/');
    parts.push_back(percent_decode(path.substr(0, slash)));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

struct Request {
  std::string method, path;  // path without the query
  std::string range;         // the Range header's value
  bool close = false;        // Connection: close
};

// Reads one request head from `socket`; `pending` keeps bytes read past it. nullopt: the peer closed.
inline std::optional<Request> read_request(int socket, std::string& pending) {
  std::size_t head_end;
  while ((head_end = pending.find("\r\n\r\n")) == std::string::npos) {
    if (pending.size() > (64u << 10)) return std::nullopt;  // not a request this server sends itself
    char buffer[8192];
    ssize_t got = ::recv(socket, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    pending.append(buffer, static_cast<std::size_t>(got));
  }
  std::string_view head(pending.data(), head_end);
  Request request;
  std::size_t line_end = head.find("\r\n");
  std::string_view request_line = head.substr(0, line_end);
  std::size_t first_space = request_line.find(' '), second_space = request_line.rfind(' ');
  if (first_space == std::string_view::npos || second_space <= first_space) return std::nullopt;
  request.method = request_line.substr(0, first_space);
  std::string_view target = request_line.substr(first_space + 1, second_space - first_space - 1);
  request.path = target.substr(0, target.find('?'));
  for (std::size_t start = line_end; start != std::string_view::npos && start < head.size();) {
    start += 2;
    std::size_t end = head.find("\r\n", start);
    std::string_view line = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    start = end;
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name;
    for (char c : line.substr(0, colon)) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "range") request.range = value;
    if (name == "connection" && (value == "close" || value == "Close")) request.close = true;
    if (name == "content-length" && value != "0") request.close = true;  // bodies are not expected: drop it
  }
  pending.erase(0, head_end + 4);
  return request;
}

}  // namespace detail

class LoopbackHubServer {
 public:
  // Listens on 127.0.0.1:`port` (0: any free port). Throws IoError when the port cannot be bound or a
  // served file cannot be opened.
  explicit LoopbackHubServer(std::vector<ServedRepo> repos, std::uint16_t port = 0) : repos_(std::move(repos)) {
    for (const ServedRepo& repo : repos_)
      for (const ServedFile& file : repo.files) open_source(file.source);
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener_ < 0) throw IoError(fmt::format("cannot create a socket: {}", std::strerror(errno)));
    int yes = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 128) != 0) {
      int error = errno;
      close_all_fds();
      throw IoError(fmt::format("the loopback Hub server cannot listen on 127.0.0.1:{}: {}{}", port,
                                std::strerror(error),
                                port != 0 ? "; choose another port (SDNQ_BENCH_PORT) or 0 for any free one" : ""));
    }
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  LoopbackHubServer(const LoopbackHubServer&) = delete;
  LoopbackHubServer& operator=(const LoopbackHubServer&) = delete;

  ~LoopbackHubServer() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    {
      std::lock_guard lock(connections_mutex_);
      for (int socket : open_sockets_) ::shutdown(socket, SHUT_RDWR);  // wakes recv() / sendfile()
    }
    for (Connection& connection : connections_) connection.thread.join();
    close_all_fds();
  }

  std::uint16_t port() const { return port_; }
  std::string endpoint() const { return fmt::format("http://127.0.0.1:{}", port_); }
  std::string cdn_url(const ServedFile& file) const { return fmt::format("{}/cdn/{}", endpoint(), file.sha256); }

 private:
  struct Connection {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };

  void open_source(const std::filesystem::path& source) {
    for (const auto& [path, fd] : sources_)
      if (path == source) return;
    int fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int error = errno;
      close_all_fds();
      throw IoError(fmt::format("the loopback Hub server cannot open {}: {}", source.string(), std::strerror(error)));
    }
    sources_.emplace_back(source, fd);
  }

  int source_fd(const std::filesystem::path& source) const {
    for (const auto& [path, fd] : sources_)
      if (path == source) return fd;
    return -1;
  }

  void close_all_fds() {
    for (const auto& [path, fd] : sources_) ::close(fd);
    sources_.clear();
    if (listener_ >= 0) ::close(listener_);
    listener_ = -1;
  }

  void accept_loop() {
    while (!stopping_) {
      int socket = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (socket < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // shut down
      }
      int yes = 1;
      ::setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
      std::lock_guard lock(connections_mutex_);
      std::erase_if(connections_, [](Connection& connection) {
        if (!*connection.finished) return false;
        connection.thread.join();
        return true;
      });
      if (stopping_) {
        ::close(socket);
        return;
      }
      open_sockets_.insert(socket);
      auto finished = std::make_shared<std::atomic<bool>>(false);
      connections_.push_back({std::thread([this, socket, finished] {
                                serve_connection(socket);
                                {
                                  std::lock_guard lock(connections_mutex_);
                                  open_sockets_.erase(socket);
                                }
                                ::close(socket);
                                *finished = true;
                              }),
                              finished});
    }
  }

  void serve_connection(int socket) {
    std::string pending;
    while (!stopping_) {
      std::optional<detail::Request> request = detail::read_request(socket, pending);
      if (!request) return;
      if (!answer(socket, *request) || request->close) return;
    }
  }

  // Sends the status line and headers; Content-Length is always given, the body only for GET.
  static bool send_head(int socket, int status, std::string_view reason, const std::vector<std::string>& headers,
                        std::uint64_t content_length, bool more_follows) {
    std::string head = fmt::format("HTTP/1.1 {} {}\r\n", status, reason);
    for (const std::string& header : headers) head += header + "\r\n";
    head += fmt::format("Content-Length: {}\r\n\r\n", content_length);
    return detail::send_all(socket, head, more_follows ? MSG_MORE : 0);
  }

  static bool send_text(int socket, const detail::Request& request, int status, std::string_view reason,
                        std::vector<std::string> headers, std::string_view body) {
    const bool with_body = request.method == "GET" && !body.empty();
    return send_head(socket, status, reason, headers, body.size(), with_body) &&
           (!with_body || detail::send_all(socket, body));
  }

  static bool send_error(int socket, const detail::Request& request, int status, std::string_view reason,
                         std::string_view code, std::string_view message, std::vector<std::string> headers = {}) {
    headers.push_back(fmt::format("X-Error-Code: {}", code));
    headers.push_back(fmt::format("X-Error-Message: {}", message));
    headers.push_back("Content-Type: application/json");
    return send_text(socket, request, status, reason, headers, nlohmann::json{{"error", message}}.dump());
  }

  const ServedRepo* find_repo(std::string_view id) const {
    for (const ServedRepo& repo : repos_)
      if (repo.id == id) return &repo;
    return nullptr;
  }

  bool answer(int socket, const detail::Request& request) {
    if (request.method != "GET" && request.method != "HEAD")
      return send_text(socket, request, 405, "Method Not Allowed", {}, "");
    std::vector<std::string> parts = detail::split_path(request.path);  // parts[0] is "" (leading '/')
    if (parts.size() == 3 && parts[1] == "cdn") return answer_cdn(socket, request, parts[2]);
    if (parts.size() >= 7 && parts[1] == "api" && parts[2] == "models")
      return answer_api(socket, request, parts[3] + "/" + parts[4], parts[5], parts[6]);
    if (parts.size() >= 6 && parts[3] == "resolve") {
      std::string path_in_repo = parts[5];
      for (std::size_t i = 6; i < parts.size(); ++i) path_in_repo += "/" + parts[i];
      return answer_resolve(socket, request, parts[1] + "/" + parts[2], parts[4], path_in_repo);
    }
    return send_text(socket, request, 404, "Not Found", {"Content-Type: text/plain"}, "no such route");
  }

  // The repo and its commit, or nullptr after sending the Hub's error.
  const ServedRepo* resolve_repo(int socket, const detail::Request& request, std::string_view repo_id,
                                 std::string_view revision, bool& sent_ok) const {
    const ServedRepo* repo = find_repo(repo_id);
    if (repo == nullptr) {
      sent_ok = send_error(socket, request, 401, "Unauthorized", "RepoNotFound", "Repository not found");
      return nullptr;
    }
    if (revision != "main" && revision != repo->commit) {
      sent_ok = send_error(socket, request, 404, "Not Found", "RevisionNotFound",
                           fmt::format("Invalid rev id: {}", revision));
      return nullptr;
    }
    return repo;
  }

  bool answer_api(int socket, const detail::Request& request, const std::string& repo_id, std::string_view kind,
                  std::string_view revision) {
    bool sent_ok = true;
    const ServedRepo* repo = resolve_repo(socket, request, repo_id, revision, sent_ok);
    if (repo == nullptr) return sent_ok;
    nlohmann::json body;
    if (kind == "revision") {
      body = {{"id", repo->id}, {"sha", repo->commit}, {"private", false}, {"gated", false}};
      body["siblings"] = nlohmann::json::array();
      for (const ServedFile& file : repo->files) body["siblings"].push_back({{"rfilename", file.path_in_repo}});
    } else if (kind == "tree") {
      body = nlohmann::json::array();
      for (const ServedFile& file : repo->files)
        body.push_back({{"type", "file"},
                        {"path", file.path_in_repo},
                        {"size", file.size},
                        {"lfs", {{"oid", file.sha256}, {"size", file.size}, {"pointerSize", 134}}}});
    } else {
      return send_text(socket, request, 404, "Not Found", {"Content-Type: text/plain"}, "no such route");
    }
    return send_text(socket, request, 200, "OK", {"Content-Type: application/json"}, body.dump());
  }

  bool answer_resolve(int socket, const detail::Request& request, const std::string& repo_id, std::string_view revision,
                      std::string_view path_in_repo) {
    bool sent_ok = true;
    const ServedRepo* repo = resolve_repo(socket, request, repo_id, revision, sent_ok);
    if (repo == nullptr) return sent_ok;
    for (const ServedFile& file : repo->files) {
      if (file.path_in_repo != path_in_repo) continue;
      std::string location = cdn_url(file);
      return send_text(socket, request, 302, "Found",
                       {fmt::format("X-Repo-Commit: {}", repo->commit),
                        fmt::format("X-Linked-Etag: \"{}\"", file.sha256), fmt::format("X-Linked-Size: {}", file.size),
                        fmt::format("Location: {}", location), "Content-Type: text/plain; charset=utf-8"},
                       fmt::format("Found. Redirecting to {}", location));
    }
    return send_error(socket, request, 404, "Not Found", "EntryNotFound",
                      fmt::format("{} does not exist on \"{}\"", path_in_repo, revision),
                      {fmt::format("X-Repo-Commit: {}", repo->commit)});
  }

  bool answer_cdn(int socket, const detail::Request& request, std::string_view sha256) {
    const ServedFile* served = nullptr;
    for (const ServedRepo& repo : repos_)
      for (const ServedFile& file : repo.files)
        if (file.sha256 == sha256) served = &file;
    if (served == nullptr)
      return send_text(socket, request, 404, "Not Found", {"Content-Type: text/plain"}, "no such blob");
    std::uint64_t start = 0, end = served->size;  // [start, end)
    std::vector<std::string> headers = {"Content-Type: application/octet-stream", "Accept-Ranges: bytes",
                                        fmt::format("ETag: \"{}\"", served->sha256)};
    int status = 200;
    if (request.range.starts_with("bytes=")) {
      std::string_view spec = std::string_view(request.range).substr(6);
      std::size_t dash = spec.find('-');
      start = std::strtoull(std::string(spec.substr(0, dash)).c_str(), nullptr, 10);
      if (dash != std::string_view::npos && dash + 1 < spec.size())
        end = std::min<std::uint64_t>(end, std::strtoull(std::string(spec.substr(dash + 1)).c_str(), nullptr, 10) + 1);
      if (start >= served->size || start >= end)
        return send_text(socket, request, 416, "Range Not Satisfiable",
                         {fmt::format("Content-Range: bytes */{}", served->size)}, "");
      status = 206;
      headers.push_back(fmt::format("Content-Range: bytes {}-{}/{}", start, end - 1, served->size));
    }
    const bool with_body = request.method == "GET";
    if (!send_head(socket, status, status == 200 ? "OK" : "Partial Content", headers, end - start, with_body))
      return false;
    if (!with_body) return true;
    auto offset = static_cast<off_t>(served->offset + start);
    std::uint64_t left = end - start;
    const int fd = source_fd(served->source);
    while (left > 0) {
      ssize_t sent = ::sendfile(socket, fd, &offset, std::min<std::uint64_t>(left, 1u << 30));
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return false;  // the client went away
      left -= static_cast<std::uint64_t>(sent);
    }
    return true;
  }

  std::vector<ServedRepo> repos_;
  std::vector<std::pair<std::filesystem::path, int>> sources_;  // opened once; sendfile takes explicit offsets
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex connections_mutex_;
  std::vector<Connection> connections_;
  std::set<int> open_sockets_;
};

}  // namespace sdnq::bench
