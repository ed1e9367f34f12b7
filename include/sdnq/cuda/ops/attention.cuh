#pragma once
// Fused scaled-dot-product attention on the GPU (flash-style, the score matrix is never stored):
//   out[b, h, i, :] = softmax_j(q[b, h, i, :] · k[b, h, j, :] · scale + bias[b, h, i, j]  (j ≤ i when causal))
//                     · v[b, h, j, :]
// q [B, H, Lq, D], k and v [B, H, Lk, D], out [B, H, Lq, D]: device bf16 or fp16 views with any strides
// whose last one is 1 (so the [B, L, H, D] tensors the models produce pass as split_heads() views),
// D ∈ {64, 128}, any Lq and Lk (cross attention; tails masked). fp32 softmax and accumulation.
// A row with no visible key (Lk = 0, or every bias -inf) is zeros, like the CPU reference nn::attention.
// The optional additive bias is [H, Lq, Lk] (T5's relative position bias, shared over the batch) or
// [B or 1, H or 1, Lq or 1, Lk]: size-1 axes broadcast, so a key padding mask is a [B, 1, 1, Lk] bias
// of 0 / -inf. It has q's dtype and unit stride along Lk.
// No allocation; everything is checked before the launch. Kernels: detail/attention_sm90.cuh (Hopper,
// TMA + wgmma; non-causal without a bias, chosen on an sm_90 GPU when the build has sm_90a code) and
// detail/attention_kernel.cuh (mma.sync; every case).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/attention_kernel.cuh"
#include "sdnq/cuda/ops/detail/attention_sm90.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

struct AttentionOptions {
  float scale = 1.0f;                // usually 1 / sqrt(D); T5 uses 1
  bool causal = false;               // query i attends keys j ≤ i (top-left aligned, as torch's is_causal)
  const TensorView* bias = nullptr;  // additive bias of the scores (see the top of this file), or none
};

// The heads of x [B, L, C] (C ≥ first_column + heads·head_dim, unit stride along C) as a
// [B, heads, L, head_dim] view without a copy: x's columns [first_column + h·head_dim, ... + head_dim)
// are head h. With first_column 0 / D_model / 2·D_model this also picks q, k, v out of a fused QKV.
inline TensorView split_heads(const TensorView& x, std::int64_t heads, std::int64_t head_dim,
                              std::int64_t first_column = 0) {
  SDNQ_REQUIRE(x.rank() == 3 && x.stride(2) == 1 && heads > 0 && head_dim > 0 && first_column >= 0 &&
                   first_column + heads * head_dim <= x.size(2),
               ShapeError,
               "cuda::ops::split_heads: needs x [B, L, C] with unit stride along C and C >= {} + {} heads x {}, got {} "
               "with strides {}",
               first_column, heads, head_dim, x.shape().to_string(), x.strides().to_string());
  auto* base = static_cast<std::byte*>(x.data()) + first_column * static_cast<std::int64_t>(x.element_size());
  return TensorView(base, x.dtype(), Shape{x.size(0), heads, x.size(1), head_dim},
                    Shape{x.stride(0), head_dim, x.stride(1), 1}, x.device());
}

namespace kernel_detail {

// Which block shape a launch uses: warps × m16 tiles per warp of query rows (benchmarks compare them).
// warps4_rows128 rescales O every step; the others skip the rescale when no row maximum of the warp
// moved (on 4 × 32 rows that costs register spills and ~5%: warps4_rows128_lazy, kept for comparison).
// sm90_wgmma is the Hopper kernel (attention_sm90.cuh), whose block shape is fixed.
enum class AttentionBlock { warps4_rows64, warps4_rows128, warps8_rows128, warps4_rows128_lazy, sm90_wgmma };
inline constexpr int attention_block_count = 5;

// Measured on an H100 (bench_attention): D 128 runs best with 4 warps of 2 × 16 rows (fewer K/V
// fragment loads per MMA; 276 TFLOP/s at FLUX's shape against 240 for 8 × 16 and 212 for 4 × 16);
// D 64 with 8 warps of 16 rows, or 4 warps of 16 rows while 128-row blocks would leave fewer than
// four per SM.
inline AttentionBlock default_attention_block(std::int64_t head_dim, std::int64_t rows_128_blocks) {
  if (head_dim == 128) return AttentionBlock::warps4_rows128;
  return rows_128_blocks >= 4 * 132 ? AttentionBlock::warps8_rows128 : AttentionBlock::warps4_rows64;
}

// The one block shape compiled with a bias per head_dim (CI compile time; T5's sequences of ≤ 512
// tokens fill the GPU better with 64-row blocks).
inline AttentionBlock bias_attention_block(std::int64_t head_dim) {
  return head_dim == 128 ? AttentionBlock::warps4_rows128 : AttentionBlock::warps4_rows64;
}

template <class T, class Tile, bool HasBias = false>
void launch_attention(const AttentionParams& params, int batch, cudaStream_t stream) {
  constexpr int shared_bytes = Tile::shared_bytes;
  SDNQ_CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<T, Tile, HasBias>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
  const dim3 grid(static_cast<unsigned>((params.query_length + Tile::rows - 1) / Tile::rows),
                  static_cast<unsigned>(params.heads), static_cast<unsigned>(batch));
  attention_kernel<T, Tile, HasBias><<<grid, Tile::threads, shared_bytes, stream>>>(params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

template <class T, int HeadDim>
void dispatch_attention_block(const AttentionParams& params, int batch, AttentionBlock block, cudaStream_t stream) {
  if (params.bias != nullptr) {  // the block is bias_attention_block(HeadDim), checked by the caller
    if constexpr (HeadDim == 128)
      return launch_attention<T, AttentionTile<HeadDim, 4, 2, false>, true>(params, batch, stream);
    else
      return launch_attention<T, AttentionTile<HeadDim, 4, 1>, true>(params, batch, stream);
  }
  switch (block) {
    case AttentionBlock::warps4_rows64:
      return launch_attention<T, AttentionTile<HeadDim, 4, 1>>(params, batch, stream);
    case AttentionBlock::warps4_rows128:
      return launch_attention<T, AttentionTile<HeadDim, 4, 2, false>>(params, batch, stream);
    case AttentionBlock::warps4_rows128_lazy:
      return launch_attention<T, AttentionTile<HeadDim, 4, 2, true>>(params, batch, stream);
    default:
      return launch_attention<T, AttentionTile<HeadDim, 8, 1>>(params, batch, stream);
  }
}

inline AttentionStrides strides_of(const TensorView& x) { return {x.stride(0), x.stride(1), x.stride(2)}; }

inline void check_attention_operand(const TensorView& x, const char* name, DType dtype, std::int64_t batch,
                                    std::int64_t heads, std::int64_t length, std::int64_t head_dim) {
  SDNQ_REQUIRE(
      x.rank() == 4 && x.size(0) == batch && x.size(1) == heads && x.size(2) == length && x.size(3) == head_dim,
      ShapeError, "cuda::ops::attention: {} must be [B, H, L, D] = [{}, {}, {}, {}], got {}", name, batch, heads,
      length, head_dim, x.shape().to_string());
  SDNQ_REQUIRE(x.dtype() == dtype && x.device().is_cuda(), ShapeError,
               "cuda::ops::attention: {} must be a device {} tensor like q, got {} on {}", name, dtype_name(dtype),
               dtype_name(x.dtype()), x.device().to_string());
  const bool strides_ok = x.stride(3) == 1 && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0 && x.stride(2) % 8 == 0;
  SDNQ_REQUIRE(strides_ok && reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0, ShapeError,
               "cuda::ops::attention: {} needs unit stride along D, the other strides multiples of 8 elements and a "
               "16-byte aligned pointer (16-byte loads); got strides {}",
               name, x.strides().to_string());
}

// Strides of the bias as [B, H, Lq] element strides (0 along broadcast axes); see the top of the file.
inline AttentionStrides bias_strides_of(const TensorView& bias, DType dtype, std::int64_t batch, std::int64_t heads,
                                        std::int64_t query_length, std::int64_t key_length) {
  const bool shared_over_batch = bias.rank() == 3;
  const auto axis = [&](int i) { return shared_over_batch ? i - 1 : i; };  // bias axis of [B, H, Lq, Lk] axis i
  const auto fits = [&](int i, std::int64_t full) {
    return (shared_over_batch && i == 0) || bias.size(axis(i)) == full || bias.size(axis(i)) == 1;
  };
  const bool shape_ok = (bias.rank() == 3 || bias.rank() == 4) && fits(0, batch) && fits(1, heads) &&
                        fits(2, query_length) && bias.size(bias.rank() - 1) == key_length;
  SDNQ_REQUIRE(shape_ok, ShapeError,
               "cuda::ops::attention: bias must be [H, Lq, Lk] = [{}, {}, {}] or [B or 1, H or 1, Lq or 1, Lk] = "
               "[{}, {}, {}, {}], got {}",
               heads, query_length, key_length, batch, heads, query_length, key_length, bias.shape().to_string());
  SDNQ_REQUIRE(bias.dtype() == dtype && bias.device().is_cuda(), ShapeError,
               "cuda::ops::attention: bias must be a device {} tensor like q, got {} on {}", dtype_name(dtype),
               dtype_name(bias.dtype()), bias.device().to_string());
  SDNQ_REQUIRE(bias.stride(bias.rank() - 1) == 1 || key_length <= 1, ShapeError,
               "cuda::ops::attention: bias needs unit stride along Lk, got strides {}", bias.strides().to_string());
  const auto stride = [&](int i) {
    if (shared_over_batch && i == 0) return std::int64_t{0};
    return bias.size(axis(i)) == 1 ? std::int64_t{0} : bias.stride(axis(i));
  };
  return {stride(0), stride(1), stride(2)};
}

template <class T>
void run_attention(const AttentionParams& params, int batch, std::int64_t head_dim, AttentionBlock block,
                   cudaStream_t stream) {
  if (head_dim == 64)
    dispatch_attention_block<T, 64>(params, batch, block, stream);
  else
    dispatch_attention_block<T, 128>(params, batch, block, stream);
}

// attention() with a chosen block shape.
inline void attention_with_block(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                                 const AttentionOptions& options, AttentionBlock block, cudaStream_t stream) {
  SDNQ_REQUIRE(q.rank() == 4, ShapeError, "cuda::ops::attention: q must be [B, H, Lq, D], got {}",
               q.shape().to_string());
  SDNQ_REQUIRE(q.dtype() == DType::bf16 || q.dtype() == DType::f16, UnsupportedError,
               "cuda::ops::attention: q, k, v, out must be BF16 or F16, got {}", dtype_name(q.dtype()));
  const std::int64_t batch = q.size(0), heads = q.size(1), query_length = q.size(2), head_dim = q.size(3);
  SDNQ_REQUIRE(head_dim == 64 || head_dim == 128, UnsupportedError,
               "cuda::ops::attention: head_dim must be 64 or 128, got q {}", q.shape().to_string());
  SDNQ_REQUIRE(k.rank() == 4, ShapeError, "cuda::ops::attention: k must be [B, H, Lk, D], got {}",
               k.shape().to_string());
  const std::int64_t key_length = k.size(2);
  check_attention_operand(q, "q", q.dtype(), batch, heads, query_length, head_dim);
  check_attention_operand(k, "k", q.dtype(), batch, heads, key_length, head_dim);
  check_attention_operand(v, "v", q.dtype(), batch, heads, key_length, head_dim);
  check_attention_operand(out, "out", q.dtype(), batch, heads, query_length, head_dim);
  constexpr std::int64_t max_grid_yz = 65535, max_length = std::numeric_limits<int>::max() - 256;
  SDNQ_REQUIRE(batch <= max_grid_yz && heads <= max_grid_yz && query_length <= max_length && key_length <= max_length,
               UnsupportedError, "cuda::ops::attention: at most {} batches and heads and {} tokens, got q {} and k {}",
               max_grid_yz, max_length, q.shape().to_string(), k.shape().to_string());
  SDNQ_REQUIRE(std::isfinite(options.scale) && options.scale > 0.0f, ShapeError,
               "cuda::ops::attention: scale must be finite and positive, got {}", options.scale);
  if (block == AttentionBlock::sm90_wgmma) {
    const char* reason = attention_sm90_unsupported(q, k, v, options.causal, options.bias != nullptr);
    SDNQ_REQUIRE(reason == nullptr, UnsupportedError,
                 "cuda::ops::attention: the sm_90a kernel (block shape {}) does not take {}; q {}, k {}",
                 static_cast<int>(block), reason == nullptr ? "" : reason, q.shape().to_string(),
                 k.shape().to_string());
  } else if (options.bias != nullptr) {
    SDNQ_REQUIRE(block == bias_attention_block(head_dim), UnsupportedError,
                 "cuda::ops::attention: with a bias only block shape {} is compiled for head_dim {}, got {}",
                 static_cast<int>(bias_attention_block(head_dim)), head_dim, static_cast<int>(block));
  }
  AttentionParams params;
  if (options.bias != nullptr) {
    params.bias_strides = bias_strides_of(*options.bias, q.dtype(), batch, heads, query_length, key_length);
    params.bias = options.bias->data();
    params.bias_factor = 1.0f / options.scale;
  }
  if (batch == 0 || heads == 0 || query_length == 0) return;
  if (block == AttentionBlock::sm90_wgmma) return run_attention_sm90(q, k, v, out, options.scale, stream);

  params.q = q.data();
  params.k = k.data();
  params.v = v.data();
  params.out = out.data();
  params.q_strides = strides_of(q);
  params.k_strides = strides_of(k);
  params.v_strides = strides_of(v);
  params.out_strides = strides_of(out);
  params.heads = static_cast<int>(heads);
  params.query_length = static_cast<int>(query_length);
  params.key_length = static_cast<int>(key_length);
  params.scale_log2 = options.scale * 1.4426950408889634f;
  params.causal = options.causal;
  if (q.dtype() == DType::bf16)
    run_attention<__nv_bfloat16>(params, static_cast<int>(batch), head_dim, block, stream);
  else
    run_attention<__half>(params, static_cast<int>(batch), head_dim, block, stream);
}

}  // namespace kernel_detail

// out = softmax(q·kᵀ·scale [+ bias] [causal]) · v, see the top of this file. `out` must not overlap k or v.
inline void attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                      const AttentionOptions& options, cudaStream_t stream) {
  const std::int64_t head_dim = q.rank() == 4 ? q.size(3) : 0;
  const std::int64_t rows_128_blocks = q.rank() == 4 ? q.size(0) * q.size(1) * ((q.size(2) + 127) / 128) : 0;
  auto block = options.bias != nullptr ? kernel_detail::bias_attention_block(head_dim)
                                       : kernel_detail::default_attention_block(head_dim, rows_128_blocks);
  // The Hopper kernel where it applies (valid dtypes, shapes and strides are checked by attention_with_block).
  const bool dtype_ok = q.dtype() == DType::bf16 || q.dtype() == DType::f16;
  if (dtype_ok && (head_dim == 64 || head_dim == 128) && q.device().is_cuda() &&
      kernel_detail::attention_sm90_unsupported(q, k, v, options.causal, options.bias != nullptr) == nullptr)
    block = kernel_detail::AttentionBlock::sm90_wgmma;
  kernel_detail::attention_with_block(q, k, v, out, options, block, stream);
}

}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
