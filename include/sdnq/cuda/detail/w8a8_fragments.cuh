#pragma once
// The 8-bit instructions under gemm_w8a8: mma.sync m16n8k32 with int8 operands and int32
// accumulators (sm_80 and later) or e4m3 operands and fp32 accumulators (sm_89 and later), and the
// per-element activation quantization with the reference's rounding (activation_quant.hpp).
// Fragment ownership of m16n8k32 with 8-bit operands (PTX ISA, "mma.m16n8k32"): g = lane/4, t = lane%4;
//   A 16×32: a0 (row g, k 4t..4t+3), a1 (row g+8), a2 (row g, k 16+4t..), a3 (row g+8, k 16+4t..)
//   B 32×8:  b0 (k 4t..4t+3, col g),  b1 (k 16+4t.., col g)
//   C 16×8:  c0 c1 (row g, cols 2t, 2t+1),  c2 c3 (row g+8)
// An 8×8 b16 matrix of ldmatrix is 8 rows × 16 bytes and hands lane l bytes 4(l%4)..4(l%4)+3 of row
// l/4: exactly the 8-bit fragments above, so a tile of 8-bit codes is loaded like a bf16 tile whose
// 16-byte chunks hold 16 codes instead of 8 values.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sdnq/cuda/config.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// The 8-bit GEMM operand kinds. Values are the kernel's template argument.
enum class W8A8Operand : int { int8 = 0, float8_e4m3fn = 1 };

__device__ __forceinline__ void mma_s8_16832(int (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                             std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// e4m3 × e4m3 → fp32. Only sm_89+ has it; the host refuses older GPUs before launching (the sm_80
// build of this function is never executed).
__device__ __forceinline__ void mma_e4m3_16832(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                               std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  (void)c, (void)a, (void)b0, (void)b1;
  __trap();
#endif
}

// One rounding to the dtype the reference computes the quantization in: fp32 (no-op), or the
// activation dtype T when the layer's scales are in the model dtype (dequantize_fp32 = false).
template <class T>
__device__ __forceinline__ float round_to_compute(float value, bool in_activation_dtype) {
  if (!in_activation_dtype) return value;
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(__float2bfloat16_rn(value));
  else
    return __half2float(__float2half_rn(value));
}

// The largest code magnitude of the operand (the scale's divisor): 127 for int8, 448 for e4m3.
template <W8A8Operand Operand>
inline constexpr float code_range = Operand == W8A8Operand::int8 ? 127.0f : 448.0f;

// One activation value → its 8-bit code, given the row's scale:
//   int8  q = clamp(round_half_even(v / s), −128, 127), NaN quotients (0/0, inf/inf) → 0
//   e4m3  q = e4m3(clamp(nan_to_num(v / s), ±448))   (round to nearest even)
// The division is IEEE (the reference's), not a reciprocal multiply.
template <class T, W8A8Operand Operand>
__device__ __forceinline__ std::uint32_t quantize_value(float value, float scale, bool in_activation_dtype) {
  float quotient = round_to_compute<T>(__fdiv_rn(value, scale), in_activation_dtype);
  if (quotient != quotient) quotient = 0.0f;
  if constexpr (Operand == W8A8Operand::int8) {
    const int code = __float2int_rn(fminf(fmaxf(quotient, -128.0f), 127.0f));
    return static_cast<std::uint32_t>(code) & 0xFFu;
  } else {
    quotient = fminf(fmaxf(quotient, -448.0f), 448.0f);
    return static_cast<std::uint32_t>(__nv_cvt_float_to_fp8(quotient, __NV_SATFINITE, __NV_E4M3));
  }
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
