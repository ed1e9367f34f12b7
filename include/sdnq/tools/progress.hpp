#pragma once
// Progress of a long tool run on stderr: a redrawn bar on a terminal, and on anything else (a log
// file, CI) nothing per step and one line when a task finishes, so logs stay readable.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace sdnq::tools {

class ProgressBar {
 public:
  // `total` steps of `label`; `interactive` defaults to whether stderr is a terminal.
  ProgressBar(std::string label, std::int64_t total, bool interactive = ::isatty(STDERR_FILENO) != 0)
      : label_(std::move(label)), total_(total), interactive_(interactive), start_(Clock::now()) {}

  void advance(std::int64_t steps = 1) {
    done_ += steps;
    if (!interactive_) return;
    const auto now = Clock::now();
    if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int width = 30;
    const double fraction = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
    const int filled = static_cast<int>(fraction * width);
    fmt::print(stderr, "\r{} [{}{}] {}/{}", label_, std::string(filled, '#'), std::string(width - filled, '.'), done_,
               total_);
    std::fflush(stderr);
  }

  // Ends the task with a summary ("12.3 MB written").
  void finish(std::string_view summary) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    if (interactive_) fmt::print(stderr, "\r\033[K");
    fmt::print(stderr, "{}: {} ({:.1f} s)\n", label_, summary, seconds);
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  std::int64_t total_ = 0, done_ = 0;
  bool interactive_ = false;
  Clock::time_point start_, last_draw_{};
};

// "1.23 GB" in powers of 1000, as disk sizes are quoted.
inline std::string format_bytes(std::uint64_t bytes) {
  if (bytes < 1000) return fmt::format("{} B", bytes);
  const char* units[] = {"kB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1000 && unit < 3) {
    value /= 1000;
    ++unit;
  }
  return fmt::format("{:.2f} {}", value, units[unit]);
}

}  // namespace sdnq::tools
