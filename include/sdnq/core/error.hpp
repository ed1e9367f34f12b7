#pragma once
// Typed exceptions. Library code never aborts on input a user can give it: it throws one of these,
// with a message that names the file, tensor or layer and what was expected.
#include <stdexcept>
#include <string>
#include <utility>

// nvcc 13 in C++20 mode rejects fmt 9's half-constexpr setup; fully constexpr fmt compiles
// (the sdnq::cuda target defines this too, for files that include fmt before this header).
#if defined(__CUDACC__) && !defined(FMT_USE_CONSTEXPR)
#define FMT_USE_CONSTEXPR 1
#endif
#include <fmt/format.h>

namespace sdnq {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The file system or the OS refused: missing file, unreadable, mmap failed, disk full.
class IoError : public Error {
 public:
  using Error::Error;
};

// A file's content is malformed: safetensors header, JSON, a checkpoint's tensors.
class FormatError : public Error {
 public:
  using Error::Error;
};

// A configuration value is invalid (bad quantization_config, unknown weights_dtype, wrong JSON type).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A tensor's shape, dtype, device or layout is not what the operation needs.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// Valid input this build does not handle: an unknown quant_method, a format without a kernel, an old GPU.
class UnsupportedError : public Error {
 public:
  using Error::Error;
};

// A fixed-size resource ran out: a workspace arena too small for what a forward pass asked of it.
class ResourceError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime or library call failed; the message carries the call site.
class CudaError : public Error {
 public:
  using Error::Error;
};

namespace detail {
// nvcc 13 with g++ 13 rejects fmt 9's compile-time format check inside CUDA translation units,
// so headers shared with device code format at run time there.
template <class... Args>
std::string format_message(const char* format, Args&&... args) {
  return fmt::format(fmt::runtime(format), std::forward<Args>(args)...);
}
}  // namespace detail

}  // namespace sdnq

// Throws `ErrorType` with a fmt-formatted message when `condition` is false.
#define SDNQ_REQUIRE(condition, ErrorType, ...)                                  \
  do {                                                                           \
    if (!(condition)) throw ErrorType(::sdnq::detail::format_message(__VA_ARGS__)); \
  } while (0)
