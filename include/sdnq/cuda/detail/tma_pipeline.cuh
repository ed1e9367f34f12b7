#pragma once
// Hopper's bulk tensor copy (TMA, cp.async.bulk.tensor: loads into and stores from shared memory) and
// the shared-memory mbarriers that a producer/consumer pipeline runs on, plus the host-side tensor map
// of a row-major byte matrix.
// Device wrappers are emitted only for sm_90 and later (elsewhere they are empty and never launched).
//   full barrier:  the producer arms it with the bytes it expects; the copy engine completes it.
//   empty barrier: each consumer warpgroup arrives once it no longer reads the stage.
// Waiting uses phase parity: the n-th completion of a barrier (n = 0, 1, ...) has parity n & 1.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/error.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SDNQ_TMA_DEVICE 1
#endif

__device__ __forceinline__ void barrier_init(std::uint64_t* barrier, int arrivals) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(
                   barrier))),
               "r"(arrivals)
               : "memory");
#else
  (void)barrier, (void)arrivals;
#endif
}

// Makes initialized barriers visible to the copy engine (before the block-wide barrier that follows).
__device__ __forceinline__ void barrier_init_fence() {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void barrier_arrive(std::uint64_t* barrier) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(
                   static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier)))
               : "memory");
#else
  (void)barrier;
#endif
}

// One arrival that also announces `bytes` of copies the barrier must see complete.
__device__ __forceinline__ void barrier_arrive_expect_bytes(std::uint64_t* barrier, std::uint32_t bytes) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier))),
               "r"(bytes)
               : "memory");
#else
  (void)barrier, (void)bytes;
#endif
}

// Blocks until the barrier's phase with this parity has completed.
__device__ __forceinline__ void barrier_wait(std::uint64_t* barrier, int parity) {
#ifdef SDNQ_TMA_DEVICE
  const auto address = static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier));
  std::uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred ready;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 ready, [%1], %2;\n"
        "selp.u32 %0, 1, 0, ready;\n"
        "}\n"
        : "=r"(done)
        : "r"(address), "r"(parity)
        : "memory");
  } while (done == 0);
#else
  (void)barrier, (void)parity;
#endif
}

// Copies the box at (inner, outer) of a 2-D tensor map into shared memory (`destination` aligned as
// the map's swizzle needs: 1024 bytes for 128-byte swizzle), completing `bytes` on `barrier`.
// Parts of the box outside the tensor arrive as zeros and still count toward the bytes.
__device__ __forceinline__ void tma_load_2d(void* destination, const CUtensorMap* map, int inner, int outer,
                                            std::uint64_t* barrier) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          static_cast<std::uint32_t>(__cvta_generic_to_shared(destination))),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(inner), "r"(outer),
      "r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier)))
      : "memory");
#else
  (void)destination, (void)map, (void)inner, (void)outer, (void)barrier;
#endif
}

// As tma_load_2d, into the same shared-memory offset of every block of this block's cluster named in
// `cta_mask`, completing the bytes on the barrier at the same offset in each of them (the weight tile
// that both blocks of a pair read, half loaded by each).
__device__ __forceinline__ void tma_load_2d_multicast(void* destination, const CUtensorMap* map, int inner, int outer,
                                                      std::uint64_t* barrier, std::uint16_t cta_mask) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(destination))),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(inner), "r"(outer),
      "r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier))), "h"(cta_mask)
      : "memory");
#else
  (void)destination, (void)map, (void)inner, (void)outer, (void)barrier, (void)cta_mask;
#endif
}

// This block's rank in its cluster (0 outside a cluster launch).
__device__ __forceinline__ int cluster_rank() {
#ifdef SDNQ_TMA_DEVICE
  std::uint32_t rank = 0;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return static_cast<int>(rank);
#else
  return 0;
#endif
}

// Every thread of every block of the cluster: what each wrote to shared memory (initialized barriers
// included) is visible to the others after it; no block proceeds before all arrived.
__device__ __forceinline__ void cluster_sync() {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}

// One arrival on the barrier at `barrier`'s offset in block `rank` of this cluster. The arrival's default
// release semantics at CTA scope suffice for a consumer freeing a ring stage (its reads are wgmma's,
// complete by wait_group); release at cluster scope would fence this thread's memory operations first.
__device__ __forceinline__ void barrier_arrive_in_block(std::uint64_t* barrier, int rank) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile(
      "{\n"
      ".reg .b32 remote;\n"
      "mapa.shared::cluster.u32 remote, %0, %1;\n"
      "mbarrier.arrive.shared::cluster.b64 _, [remote];\n"
      "}\n" ::"r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(barrier))),
      "r"(rank)
      : "memory");
#else
  (void)barrier, (void)rank;
#endif
}

// Copies the box at (inner, outer) of shared memory (`source`, laid out as the map's swizzle says) to
// the 2-D tensor in global memory; parts of the box outside the tensor are not written. The copy joins
// this thread's current bulk group (tma_store_commit).
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, int inner, int outer, const void* source) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                   reinterpret_cast<std::uint64_t>(map)),
               "r"(inner), "r"(outer), "r"(static_cast<std::uint32_t>(__cvta_generic_to_shared(source)))
               : "memory");
#else
  (void)map, (void)inner, (void)outer, (void)source;
#endif
}

__device__ __forceinline__ void tma_store_commit() {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}

// Waits until this thread's committed stores have read their shared memory (it may be overwritten).
__device__ __forceinline__ void tma_store_wait_read() {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
#endif
}

// Waits until this thread's committed stores have completed their writes to global memory.
__device__ __forceinline__ void tma_store_wait_all() {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
#else
  (void)map;
#endif
}

// Orders this thread's ordinary global writes (or, on the reading side, what it acquired) with later
// copy-engine accesses: the codes a block quantized are read by other blocks' TMA loads.
__device__ __forceinline__ void fence_proxy_async_global() {
#ifdef SDNQ_TMA_DEVICE
  asm volatile("fence.proxy.async.global;\n" ::: "memory");
#endif
}

#undef SDNQ_TMA_DEVICE

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link against libcuda).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found{};
    SDNQ_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault,
                                                     &found));
    SDNQ_REQUIRE(found == cudaDriverEntryPointSuccess && function != nullptr, UnsupportedError,
                 "the CUDA driver has no cuTensorMapEncodeTiled (TMA needs a CUDA 12 driver)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
  }();
  return encode;
}

// Tensor map of a row-major [rows, row_bytes] byte matrix (row_bytes % 16 == 0, base 16-byte
// aligned), read in boxes of box_rows × 128 bytes with the 128-byte swizzle (the layout of
// w8a8_wgmma.cuh's descriptors). `what` names the matrix in errors.
inline CUtensorMap byte_matrix_tensor_map(const void* base, std::int64_t rows, std::int64_t row_bytes, int box_rows,
                                          const char* what) {
  SDNQ_REQUIRE(row_bytes % 16 == 0 && reinterpret_cast<std::uintptr_t>(base) % 16 == 0 && box_rows >= 1 &&
                   box_rows <= 256,
               UnsupportedError, "TMA map of {}: needs 16-byte aligned rows (got {} bytes) and 1..256 box rows",
               what, row_bytes);
  CUtensorMap map{};
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(row_bytes), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(row_bytes)};
  const cuuint32_t box[2] = {128, static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult result = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  SDNQ_REQUIRE(result == CUDA_SUCCESS, CudaError, "cuTensorMapEncodeTiled failed ({}) for {} [{}, {}] bytes",
               static_cast<int>(result), what, rows, row_bytes);
  return map;
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
