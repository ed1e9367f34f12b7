#pragma once
// The instructions under the tensor-core GEMM: cp.async copies, ldmatrix, mma.sync m16n8k16 (bf16 or
// fp16 operands, fp32 accumulators; sm_80 and later) and the in-register dequantization of packed
// codes into B fragments. Fragment ownership (PTX ISA, "mma.m16n8k16"): g = lane/4, t = lane%4;
//   A 16×16: a0 (row g, k 2t..2t+1), a1 (row g+8), a2 (row g, k 2t+8..), a3 (row g+8, k 2t+8..)
//   B 16×8:  b0 (k 2t..2t+1, col g),  b1 (k 2t+8..2t+9, col g)
//   C 16×8:  c0 c1 (row g, cols 2t, 2t+1),  c2 c3 (row g+8)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte global → shared copy; `valid` false writes zeros (rows past M) without reading.
__device__ __forceinline__ void copy_async_16(void* shared, const void* global, bool valid = true) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending>
__device__ __forceinline__ void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// Four 8×8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void load_matrix_x4(std::uint32_t (&regs)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(shared_address(row_address)));
}

// Lets a grid launched after this one with programmatic stream serialization start now; it must
// wait (wait_for_prior_grid) before reading what this grid writes. No-op before sm_90.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Waits until the grid this one was launched behind has finished and its writes are visible (returns
// at once when the launch was not programmatic).
__device__ __forceinline__ void wait_for_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

template <class T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                          std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// The same with C = 0: starts a fresh accumulator without clearing registers first.
template <class T>
__device__ __forceinline__ void mma_16816_fresh(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                                std::uint32_t b1) {
  const float zero = 0.0f;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %10, %10, %10};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(zero));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %10, %10, %10};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(zero));
  }
}

// (a & b) | c in one LOP3 (ptxas emits an AND and an OR for the plain expression).
__device__ __forceinline__ std::uint32_t and_or(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

template <class T>
using pair_of = std::conditional_t<std::is_same_v<T, __nv_bfloat16>, __nv_bfloat162, __half2>;

template <class T>
__device__ __forceinline__ pair_of<T> as_pair(std::uint32_t word) {
  return *reinterpret_cast<const pair_of<T>*>(&word);
}
template <class T>
__device__ __forceinline__ std::uint32_t as_word(pair_of<T> pair) {
  return *reinterpret_cast<const std::uint32_t*>(&pair);
}

// Two codes sitting in the low bits of each 16-bit half (≤ 7 bits for bf16, ≤ 10 for fp16) become
// exact T values: OR-ing them into the mantissa of 128 (bf16 0x4300: 7 mantissa bits, ulp 1) or 1024
// (fp16 0x6400: 10 mantissa bits, ulp 1) gives 128 + c or 1024 + c, and one subtraction of
// `minus` = (128 or 1024) − code offset gives q exactly. Then w = q·s + z, rounded once, as the
// reference dequantizer does in the model dtype.
template <class T>
__device__ __forceinline__ std::uint32_t dequantize_pair_magic(std::uint32_t codes_in_halves, pair_of<T> minus,
                                                               pair_of<T> scale, pair_of<T> zero) {
  constexpr std::uint32_t magic = std::is_same_v<T, __nv_bfloat16> ? 0x43004300u : 0x64006400u;
  const pair_of<T> q = __hsub2(as_pair<T>(codes_in_halves | magic), minus);
  return as_word<T>(__hfma2(q, scale, zero));
}

// 8-bit codes for bf16 (7 mantissa bits are too few for the trick above): each byte goes into the
// mantissa of 2^23 in fp32, minus_f = 2^23 − code offset, and the exact q pair is rounded to bf16x2.
__device__ __forceinline__ std::uint32_t dequantize_bytes_bf16(std::uint32_t word, int low_byte, float minus_f,
                                                               __nv_bfloat162 scale, __nv_bfloat162 zero) {
  const float low = __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u | low_byte)) - minus_f;
  const float high = __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u | (low_byte + 2))) - minus_f;
  return as_word<__nv_bfloat16>(__hfma2(__floats2bfloat162_rn(low, high), scale, zero));
}

// The constants of one launch: code offset folded into the subtrahends.
template <class T>
struct DequantConstants {
  pair_of<T> minus;  // magic − code offset, both halves
  float minus_f;     // 2^23 − code offset (8-bit bf16 path)
};

// B fragments of one 16-row block (two n8 tiles) for one k-step from the lane's words of that step.
// b[h][r]: n8 tile h, register r (b0/b1). s, z: the tiles' (scale, zero) pairs broadcast to both halves.
template <class T, int Bits>
__device__ __forceinline__ void dequantize_step(const std::uint32_t (&words)[Bits / 4], const pair_of<T> (&s)[2],
                                                const pair_of<T> (&z)[2], const DequantConstants<T>& constants,
                                                std::uint32_t (&b)[2][2]) {
  if constexpr (Bits == 4) {
#pragma unroll
    for (int pair = 0; pair < 4; ++pair)
      b[pair / 2][pair % 2] =
          dequantize_pair_magic<T>((words[0] >> (4 * pair)) & 0x000F000Fu, constants.minus, s[pair / 2], z[pair / 2]);
  } else if constexpr (std::is_same_v<T, __half>) {
#pragma unroll
    for (int pair = 0; pair < 4; ++pair)
      b[pair / 2][pair % 2] = dequantize_pair_magic<T>((words[pair / 2] >> (8 * (pair % 2))) & 0x00FF00FFu,
                                                       constants.minus, s[pair / 2], z[pair / 2]);
  } else {
#pragma unroll
    for (int pair = 0; pair < 4; ++pair)
      b[pair / 2][pair % 2] =
          dequantize_bytes_bf16(words[pair / 2], pair % 2, constants.minus_f, s[pair / 2], z[pair / 2]);
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
