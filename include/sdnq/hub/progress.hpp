#pragma once
// Download progress. The client reports to a DownloadProgress (from several worker threads at once);
// TerminalProgress prints it for people: on a terminal one line that updates in place with bytes,
// throughput and ETA, elsewhere (logs, CI) one line per finished file.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace sdnq::hub {

class DownloadProgress {
 public:
  virtual ~DownloadProgress() = default;
  // Everything selected for download, before any file starts (sizes as the listing gives them).
  virtual void begin(std::size_t /*file_count*/, std::uint64_t /*total_bytes*/) {}
  // `already_present` bytes are on disk from an earlier attempt (a resumed download).
  virtual void file_started(std::string_view /*path*/, std::uint64_t /*size*/, std::uint64_t /*already_present*/) {}
  virtual void bytes_received(std::string_view /*path*/, std::uint64_t /*count*/) {}
  // `from_cache`: nothing was downloaded, the file was already in the cache.
  virtual void file_finished(std::string_view /*path*/, std::uint64_t /*size*/, bool /*from_cache*/) {}
  virtual void end() {}
};

// "1.50 GiB", "312.0 KiB", "17 B".
inline std::string format_bytes(double bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 4) {
    bytes /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.{}f} {}", bytes, bytes < 10 ? 2 : 1, units[unit]);
}

// "42s", "3m05s", "1h02m".
inline std::string format_duration(double seconds) {
  auto total = static_cast<long long>(seconds + 0.5);
  if (total < 60) return fmt::format("{}s", total);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
}

class TerminalProgress : public DownloadProgress {
 public:
  // `interactive`: redraw one line with '\r' (default: whether `out` is a terminal).
  explicit TerminalProgress(std::FILE* out = stderr) : TerminalProgress(out, ::isatty(::fileno(out)) == 1) {}
  TerminalProgress(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}

  void begin(std::size_t file_count, std::uint64_t total_bytes) override {
    std::lock_guard lock(mutex_);
    file_count_ = file_count;
    total_bytes_ = total_bytes;
    started_ = std::chrono::steady_clock::now();
  }
  void file_started(std::string_view path, std::uint64_t size, std::uint64_t already_present) override {
    std::lock_guard lock(mutex_);
    active_[std::string(path)] = {size, already_present, std::chrono::steady_clock::now()};
    done_bytes_ += already_present;
    skipped_bytes_ += already_present;
  }
  void bytes_received(std::string_view path, std::uint64_t count) override {
    std::lock_guard lock(mutex_);
    done_bytes_ += count;
    auto active = active_.find(std::string(path));
    if (active != active_.end()) active->second.done += count;
    auto now = std::chrono::steady_clock::now();
    if (interactive_ && now - last_draw_ >= std::chrono::milliseconds(100)) {
      last_draw_ = now;
      draw_line(now);
    }
  }
  void file_finished(std::string_view path, std::uint64_t size, bool from_cache) override {
    std::lock_guard lock(mutex_);
    ++finished_files_;
    auto now = std::chrono::steady_clock::now();
    auto active = active_.find(std::string(path));
    double seconds = 0;
    if (active != active_.end()) {
      seconds = std::chrono::duration<double>(now - active->second.started).count();
      active_.erase(active);
    }
    if (from_cache) done_bytes_ += size;
    if (interactive_) {
      draw_line(now);
      return;
    }
    std::string how = from_cache
                          ? "already in the cache"
                          : fmt::format("in {:.1f} s, {}/s", seconds, format_bytes(seconds > 0 ? size / seconds : 0));
    fmt::print(out_, "[{}/{}] {} ({}) {}\n", finished_files_, file_count_, path, format_bytes(double(size)), how);
    std::fflush(out_);
  }
  void end() override {
    std::lock_guard lock(mutex_);
    if (interactive_ && finished_files_ > 0) {
      draw_line(std::chrono::steady_clock::now());
      fmt::print(out_, "\n");
    }
    std::fflush(out_);
  }

 private:
  struct ActiveFile {
    std::uint64_t size = 0;
    std::uint64_t done = 0;
    std::chrono::steady_clock::time_point started;
  };

  void draw_line(std::chrono::steady_clock::time_point now) {
    double seconds = std::chrono::duration<double>(now - started_).count();
    double rate = seconds > 0 ? double(done_bytes_ - skipped_bytes_) / seconds : 0;
    std::string eta = "--";
    if (rate > 0 && total_bytes_ > done_bytes_) eta = format_duration(double(total_bytes_ - done_bytes_) / rate);
    std::string current;
    if (!active_.empty()) {
      const auto& [path, file] = *active_.begin();
      current = fmt::format("  {} {}%", path, file.size ? 100 * file.done / file.size : 100);
      if (current.size() > 50) current = "  ..." + current.substr(current.size() - 46);
    }
    // \x1b[K clears what a longer previous line left behind.
    fmt::print(out_, "\r[{}/{}] {} / {}  {}/s  ETA {}{}\x1b[K", finished_files_, file_count_,
               format_bytes(double(done_bytes_)), format_bytes(double(total_bytes_)), format_bytes(rate), eta, current);
    std::fflush(out_);
  }

  std::mutex mutex_;
  std::FILE* out_;
  bool interactive_;
  std::size_t file_count_ = 0;
  std::size_t finished_files_ = 0;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t done_bytes_ = 0;
  std::uint64_t skipped_bytes_ = 0;  // resumed from disk: not part of the throughput
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw_{};
  std::map<std::string, ActiveFile> active_;
};

}  // namespace sdnq::hub
