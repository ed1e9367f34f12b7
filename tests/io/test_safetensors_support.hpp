#pragma once
// Helpers for the io tests: scratch folders, files built byte by byte (independent of the writer),
// and checks that an exception has the right type and a message naming what it should.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>

#include "sdnq_catch.hpp"

namespace sdnq::test {

// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class ScratchFolder {
 public:
  ScratchFolder() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("sdnq-io-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The 8-byte little-endian encoding of `value`, byte by byte.
inline std::string little_endian_u64(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A safetensors file: length prefix (the header's true length unless given), header text, data bytes.
inline std::string safetensors_bytes(std::string_view header, std::string_view data = {},
                                     std::int64_t declared_length = -1) {
  const auto length = declared_length >= 0 ? static_cast<std::uint64_t>(declared_length) : header.size();
  return little_endian_u64(length) + std::string(header) + std::string(data);
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs `action`, requires it to throw exactly ErrorType (or a subclass), and checks that the message
// contains every one of `expected`. Returns the message.
template <class ErrorType, class Action>
std::string require_error(Action&& action, std::initializer_list<std::string_view> expected) {
  std::string message;
  bool thrown = false;
  try {
    action();
  } catch (const ErrorType& error) {
    thrown = true;
    message = error.what();
  } catch (const std::exception& error) {
    FAIL("wrong exception type, message: " << error.what());
  }
  REQUIRE(thrown);
  INFO("message: " << message);
  for (auto part : expected) {
    INFO("expected to contain: " << part);
    CHECK(message.find(part) != std::string::npos);
  }
  return message;
}

}  // namespace sdnq::test
