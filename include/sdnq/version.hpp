#pragma once
// Library version. Kernels live in an inline namespace carrying it (see sdnq/cuda/config.cuh), so
// objects built from different versions or for different GPUs link safely side by side.
#define SDNQ_VERSION_MAJOR 0
#define SDNQ_VERSION_MINOR 1
#define SDNQ_VERSION_PATCH 0
#define SDNQ_VERSION_STRING "0.1.0"

namespace sdnq {
inline constexpr int version_major = SDNQ_VERSION_MAJOR;
inline constexpr int version_minor = SDNQ_VERSION_MINOR;
inline constexpr int version_patch = SDNQ_VERSION_PATCH;
inline constexpr const char* version_string = SDNQ_VERSION_STRING;
}  // namespace sdnq
