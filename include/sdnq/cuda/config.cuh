#pragma once
// Where kernels live. Every __global__ and arch-dependent __device__ function of sdnq goes between
//   SDNQ_KERNEL_NAMESPACE_BEGIN ... SDNQ_KERNEL_NAMESPACE_END
// which opens `namespace sdnq::cuda { inline namespace v<major>_<minor>_<patch>_sm<arch>... {`, e.g.
// `v0_1_0_sm800_sm900` for a build with CMAKE_CUDA_ARCHITECTURES="90a;80". Callers write plain
// sdnq::cuda::name; the linker sees the version and the architectures in every symbol, so two objects
// built from different sdnq versions or for different GPUs link into one program without ODR clashes
// (the same idea as CUB_NAMESPACE_BEGIN).
//
// The tag comes from nvcc's __CUDA_ARCH_LIST__ (the compute capabilities of the whole compilation,
// ascending, identical in the host and device passes). It does not tell sm_90 from sm_90a. Without it
// (another CUDA compiler) the tag is `_anyarch`.
//
// Host functions that .cpp files built by the host compiler declare and call (launchers) must stay
// OUTSIDE this namespace: a host compiler has no __CUDA_ARCH_LIST__ and would name a different one.
#include "sdnq/version.hpp"

#ifndef SDNQ_HOST_DEVICE
#if defined(__CUDACC__)
#define SDNQ_HOST_DEVICE __host__ __device__
#else
#define SDNQ_HOST_DEVICE
#endif
#endif

#define SDNQ_DETAIL_PP_CAT_(a, b) a##b
#define SDNQ_DETAIL_PP_CAT(a, b) SDNQ_DETAIL_PP_CAT_(a, b)
#define SDNQ_DETAIL_PP_STRING_(...) #__VA_ARGS__
#define SDNQ_DETAIL_PP_STRING(...) SDNQ_DETAIL_PP_STRING_(__VA_ARGS__)
#define SDNQ_DETAIL_PP_COUNT(...) SDNQ_DETAIL_PP_COUNT_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define SDNQ_DETAIL_PP_COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, count, ...) count

// v0_1_0
#define SDNQ_DETAIL_VERSION_TAG_(major, minor, patch) v##major##_##minor##_##patch
#define SDNQ_DETAIL_VERSION_TAG_EXPANDED(major, minor, patch) SDNQ_DETAIL_VERSION_TAG_(major, minor, patch)
#define SDNQ_DETAIL_VERSION_TAG \
  SDNQ_DETAIL_VERSION_TAG_EXPANDED(SDNQ_VERSION_MAJOR, SDNQ_VERSION_MINOR, SDNQ_VERSION_PATCH)

// _sm800_sm900 (up to eight architectures in one build)
#define SDNQ_DETAIL_ARCH_TAG_1(a) _sm##a
#define SDNQ_DETAIL_ARCH_TAG_2(a, b) _sm##a##_sm##b
#define SDNQ_DETAIL_ARCH_TAG_3(a, b, c) _sm##a##_sm##b##_sm##c
#define SDNQ_DETAIL_ARCH_TAG_4(a, b, c, d) _sm##a##_sm##b##_sm##c##_sm##d
#define SDNQ_DETAIL_ARCH_TAG_5(a, b, c, d, e) _sm##a##_sm##b##_sm##c##_sm##d##_sm##e
#define SDNQ_DETAIL_ARCH_TAG_6(a, b, c, d, e, f) _sm##a##_sm##b##_sm##c##_sm##d##_sm##e##_sm##f
#define SDNQ_DETAIL_ARCH_TAG_7(a, b, c, d, e, f, g) _sm##a##_sm##b##_sm##c##_sm##d##_sm##e##_sm##f##_sm##g
#define SDNQ_DETAIL_ARCH_TAG_8(a, b, c, d, e, f, g, h) _sm##a##_sm##b##_sm##c##_sm##d##_sm##e##_sm##f##_sm##g##_sm##h
#define SDNQ_DETAIL_ARCH_TAG_N(count, ...) SDNQ_DETAIL_PP_CAT(SDNQ_DETAIL_ARCH_TAG_, count)(__VA_ARGS__)

#if defined(__CUDA_ARCH_LIST__)
#define SDNQ_DETAIL_ARCH_TAG SDNQ_DETAIL_ARCH_TAG_N(SDNQ_DETAIL_PP_COUNT(__CUDA_ARCH_LIST__), __CUDA_ARCH_LIST__)
#else
#define SDNQ_DETAIL_ARCH_TAG _anyarch
#endif

#define SDNQ_KERNEL_NAMESPACE SDNQ_DETAIL_PP_CAT(SDNQ_DETAIL_VERSION_TAG, SDNQ_DETAIL_ARCH_TAG)
// The inline namespace's name as a string literal, for logs and tests.
#define SDNQ_KERNEL_NAMESPACE_STRING SDNQ_DETAIL_PP_STRING(SDNQ_KERNEL_NAMESPACE)

#define SDNQ_KERNEL_NAMESPACE_BEGIN \
  namespace sdnq::cuda {            \
  inline namespace SDNQ_KERNEL_NAMESPACE {
#define SDNQ_KERNEL_NAMESPACE_END \
  }                               \
  }
