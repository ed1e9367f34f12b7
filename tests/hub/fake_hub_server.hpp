#pragma once
// Starts tests/hub/server/fake_hub.py on 127.0.0.1 for one test and stops it afterwards. Every wait is
// bounded: the port must arrive within 15 s, the stop escalates from SIGTERM to SIGKILL, and the
// server exits by itself when this process is gone.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "sdnq/hub/detail/http.hpp"
#include "sdnq_catch.hpp"

extern char** environ;

namespace sdnq::test {

inline std::filesystem::path fake_hub_script() { return data_dir() / ".." / "hub" / "server" / "fake_hub.py"; }

// A fresh folder under /tmp, removed with everything in it when the object goes away.
class TemporaryFolder {
 public:
  explicit TemporaryFolder(std::string_view tag) {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() / fmt::format("sdnq-{}-{}-{:08x}", tag, ::getpid(), entropy());
    std::filesystem::create_directories(path_);
  }
  TemporaryFolder(const TemporaryFolder&) = delete;
  TemporaryFolder& operator=(const TemporaryFolder&) = delete;
  ~TemporaryFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class FakeHub {
 public:
  FakeHub(const nlohmann::json& manifest, const std::filesystem::path& folder) {
    std::filesystem::path manifest_path = folder / "manifest.json";
    std::ofstream(manifest_path) << manifest.dump();
    int pipe_ends[2];
    if (::pipe2(pipe_ends, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], STDOUT_FILENO);
    std::string script = fake_hub_script().string(), manifest_arg = manifest_path.string();
    const char* argv[] = {"python3",    script.c_str(), "--manifest", manifest_arg.c_str(), "--port", "0",
                          "--lifetime", "120",          nullptr};
    int spawned = ::posix_spawnp(&pid_, "python3", &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_ends[1]);
    if (spawned != 0) {
      ::close(pipe_ends[0]);
      pid_ = -1;
      throw std::runtime_error(fmt::format("cannot start python3 {}: error {}", script, spawned));
    }
    std::string line = read_line(pipe_ends[0], std::chrono::seconds(15));
    ::close(pipe_ends[0]);
    if (std::sscanf(line.c_str(), "PORTS %d %d", &port_, &cdn_port_) != 2) {
      stop();
      throw std::runtime_error(fmt::format("the fake Hub did not report its ports (got '{}')", line));
    }
  }
  FakeHub(const FakeHub&) = delete;
  FakeHub& operator=(const FakeHub&) = delete;
  ~FakeHub() { stop(); }

  std::string endpoint() const { return fmt::format("http://127.0.0.1:{}", port_); }
  int cdn_port() const { return cdn_port_; }

  // Every request the two servers saw, oldest first.
  nlohmann::json requests() const {
    hub::detail::HttpRequest request;
    request.url = endpoint() + "/_stats";
    request.connect_timeout = std::chrono::seconds(5);
    request.stall_timeout = std::chrono::seconds(5);
    auto response = hub::detail::perform(request);
    auto all = nlohmann::json::parse(response.body)["requests"];
    nlohmann::json without_stats = nlohmann::json::array();
    for (auto& entry : all)
      if (entry["path"] != "/_stats") without_stats.push_back(entry);
    return without_stats;
  }

 private:
  static std::string read_line(int fd, std::chrono::seconds timeout) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (line.find('\n') == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd waiting{fd, POLLIN, 0};
      if (::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) break;
      char buffer[256];
      ssize_t count = ::read(fd, buffer, sizeof buffer);
      if (count <= 0) break;
      line.append(buffer, static_cast<std::size_t>(count));
    }
    return line;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 60; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  pid_t pid_ = -1;
  int port_ = 0;
  int cdn_port_ = 0;
};

}  // namespace sdnq::test
