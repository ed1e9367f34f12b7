#pragma once
// What the Hopper (sm_90a) wgmma kernels share: shared-memory matrix descriptors of the 128-byte-swizzle
// layout, wgmma's ordering instructions, setmaxnreg, the register-A (RS) bf16/fp16 MMA, the operand
// lists of the m64nN accumulator fragment, and whether this build has sm_90a code for a device.
// Used by w8a8_wgmma.cuh, w8a8_tma.cuh, weight_only_sm90_kernel.cuh and ops/detail/attention_sm90.cuh;
// kept free of the GEMM headers so that attention (parsed by every model translation unit) stays light.
// The instructions exist only with __CUDA_ARCH_FEAT_SM90_ALL; elsewhere the ordering helpers do
// nothing and the MMA traps (the host never launches those kernels there: has_sm90a_code).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/device_memory.hpp"

// Operand lists of the m64nN accumulator fragment `d` (N / 2 registers a thread): the register names
// "%0, ..., %(N/2 − 1)" and their constraints (c: "+f" or "+r"), so that each instruction is written
// once. The operands after d are numbered from N / 2 on.
#define SDNQ_WGMMA_D8(c, i) \
  c(d[i]), c(d[i + 1]), c(d[i + 2]), c(d[i + 3]), c(d[i + 4]), c(d[i + 5]), c(d[i + 6]), c(d[i + 7])
#define SDNQ_WGMMA_D32(c) SDNQ_WGMMA_D8(c, 0), SDNQ_WGMMA_D8(c, 8), SDNQ_WGMMA_D8(c, 16), SDNQ_WGMMA_D8(c, 24)
#define SDNQ_WGMMA_D64(c) \
  SDNQ_WGMMA_D32(c), SDNQ_WGMMA_D8(c, 32), SDNQ_WGMMA_D8(c, 40), SDNQ_WGMMA_D8(c, 48), SDNQ_WGMMA_D8(c, 56)
#define SDNQ_WGMMA_D96(c) \
  SDNQ_WGMMA_D64(c), SDNQ_WGMMA_D8(c, 64), SDNQ_WGMMA_D8(c, 72), SDNQ_WGMMA_D8(c, 80), SDNQ_WGMMA_D8(c, 88)
#define SDNQ_WGMMA_D128(c)                                                                                   \
  SDNQ_WGMMA_D64(c), SDNQ_WGMMA_D8(c, 64), SDNQ_WGMMA_D8(c, 72), SDNQ_WGMMA_D8(c, 80), SDNQ_WGMMA_D8(c, 88), \
      SDNQ_WGMMA_D8(c, 96), SDNQ_WGMMA_D8(c, 104), SDNQ_WGMMA_D8(c, 112), SDNQ_WGMMA_D8(c, 120)
#define SDNQ_WGMMA_R32                                                                                              \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31"
#define SDNQ_WGMMA_R64                                                                                    \
  SDNQ_WGMMA_R32                                                                                          \
      ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, " \
      "%51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define SDNQ_WGMMA_R96                                                                           \
  SDNQ_WGMMA_R64                                                                                 \
  ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, " \
  "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define SDNQ_WGMMA_R128                                                                              \
  SDNQ_WGMMA_R64                                                                                     \
      ", %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, " \
      "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, "   \
      "%100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, "   \
      "%115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// Shared-memory matrix descriptor in the 128-byte-swizzle layout (8-row atoms of 128-byte rows, 1024
// bytes apart: the stride field): start address, leading byte offset, swizzle mode 1 (128 B) in bits
// 62-63. A K-major operand leaves the leading offset unused (16, i.e. 1, by convention); an N-major
// ("transposed") B operand gives the bytes between its 64-column blocks along N.
__device__ __forceinline__ std::uint64_t wgmma_descriptor(std::uint32_t shared_byte_address,
                                                          std::uint32_t leading_byte_offset = 16) {
  return static_cast<std::uint64_t>((shared_byte_address & 0x3FFFF) >> 4) |
         (static_cast<std::uint64_t>(leading_byte_offset >> 4) << 16) | (std::uint64_t{1024 >> 4} << 32) |
         (std::uint64_t{1} << 62);
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most `Pending` committed wgmma groups of this warpgroup are still running.
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
#endif
}
// Generic-proxy writes (cp.async) made visible to the async proxy (wgmma) before the barrier.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Register budgets per thread after a warpgroup role split (all four warps execute it): the producer
// gives its registers to the consumers.
template <int Registers>
__device__ __forceinline__ void shrink_registers() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}
template <int Registers>
__device__ __forceinline__ void grow_registers() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Registers));
#endif
}

// d (+)= A · B for one k16 step, bf16 or fp16 inputs, fp32 accumulators; d is the m64nN fragment
// (d[4j + i]: row 16·warp + lane/4 (+8 for i ≥ 2), column 8j + 2·(lane%4) + i%2). A from registers
// (the mma.sync m16n8k16 A fragment of the warp's 16 rows), B by descriptor: K-major, or N-major when
// TransposeB (the last immediate).
#define SDNQ_WGMMA_RS(shape, types, registers, inputs, transpose, operands)                                          \
  asm volatile("wgmma.mma_async.sync.aligned." shape ".f32" types " " registers "}, " inputs ", 1, 1, 1, " transpose \
               ";\n"                                                                                                 \
               : operands("+f")                                                                                      \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b))
#define SDNQ_WGMMA_RS_N(types, transpose)                                                                       \
  if constexpr (N == 64)                                                                                        \
    SDNQ_WGMMA_RS("m64n64k16", types, SDNQ_WGMMA_R32, "{%32, %33, %34, %35}, %36", transpose, SDNQ_WGMMA_D32);  \
  else if constexpr (N == 128)                                                                                  \
    SDNQ_WGMMA_RS("m64n128k16", types, SDNQ_WGMMA_R64, "{%64, %65, %66, %67}, %68", transpose, SDNQ_WGMMA_D64); \
  else                                                                                                          \
    SDNQ_WGMMA_RS("m64n256k16", types, SDNQ_WGMMA_R128, "{%128, %129, %130, %131}, %132", transpose, SDNQ_WGMMA_D128)

template <class T, int N, bool TransposeB>
__device__ __forceinline__ void wgmma_rs_k16(float (&d)[N / 2], const std::uint32_t (&a)[4], std::uint64_t b) {
  static_assert(N == 64 || N == 128 || N == 256, "m64nNk16 with N 64, 128 or 256");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if constexpr (TransposeB) {
      SDNQ_WGMMA_RS_N(".bf16.bf16", "1");
    } else {
      SDNQ_WGMMA_RS_N(".bf16.bf16", "0");
    }
  } else {
    if constexpr (TransposeB) {
      SDNQ_WGMMA_RS_N(".f16.f16", "1");
    } else {
      SDNQ_WGMMA_RS_N(".f16.f16", "0");
    }
  }
#else
  (void)d, (void)a, (void)b;
  __trap();
#endif
}

#undef SDNQ_WGMMA_RS_N
#undef SDNQ_WGMMA_RS

// Writes 1 where this build has sm_90a code for the running device, else 0. A template so that every
// translation unit including this header may emit it (a plain __global__ would be defined twice at link).
template <int Unused = 0>
__global__ void sm90a_probe(int* has_sm90a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *has_sm90a = 1;
#else
  *has_sm90a = 0;
#endif
}

// Whether this build has sm_90a code for `device` and it is a compute capability 9.x GPU (asked once
// per device 0..63 with a one-thread probe launch, so not inside a CUDA graph capture on first use).
inline bool has_sm90a_code(int device) {
  static std::atomic<int> known[64] = {};  // 0 not asked yet, 1 yes, 2 no
  std::atomic<int>& entry = known[device & 63];
  if (entry.load(std::memory_order_relaxed) == 0) {
    int major = 0;
    SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    bool yes = false;
    if (major == 9) {
      const DeviceGuard on_device(device);  // the probe must run where the flag lives
      Tensor flag = sdnq::cuda::zeros(Shape{1}, DType::i32, device);
      sm90a_probe<><<<1, 1>>>(static_cast<int*>(flag.data()));
      SDNQ_CUDA_CHECK(cudaGetLastError());
      yes = sdnq::cuda::to_host(flag).data_as<std::int32_t>()[0] == 1;
    }
    entry.store(yes ? 1 : 2, std::memory_order_relaxed);
  }
  return entry.load(std::memory_order_relaxed) == 1;
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
