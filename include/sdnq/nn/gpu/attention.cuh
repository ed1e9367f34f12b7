#pragma once
// Multi-head attention over the [B, L, H·D] activations the projections write, on cuda::ops::attention
// (fused, flash-style). The fused kernel runs head_dim 64 and 128; other head sizes (the tiny fixture
// models have 16) are zero-padded to the next supported size in workspace buffers: zero columns add
// nothing to q·k and give zero output columns, which are dropped when copying back. The scale is
// passed explicitly, so the padding does not change it; an additive bias in the options (T5's [H, L, L]
// position bias) does not depend on head_dim and passes through as it is.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/ops/attention.cuh"

namespace sdnq::nn::gpu {

namespace detail {

inline std::int64_t padded_head_dim(std::int64_t head_dim) {
  SDNQ_REQUIRE(head_dim >= 1 && head_dim <= 128, UnsupportedError,
               "GPU attention: head_dim {} is not supported (the fused kernel runs 64 and 128; smaller heads are "
               "padded)",
               head_dim);
  return head_dim <= 64 ? 64 : 128;
}

// [rows, head_dim] blocks of `source` (row pitch source_dim elements) into [rows, target_dim] of `target`.
inline void copy_head_rows(void* target, std::int64_t target_dim, const void* source, std::int64_t source_dim,
                           std::int64_t head_dim, std::int64_t rows, cudaStream_t stream) {
  SDNQ_CUDA_CHECK(cudaMemcpy2DAsync(target, static_cast<std::size_t>(target_dim) * 2, source,
                                    static_cast<std::size_t>(source_dim) * 2, static_cast<std::size_t>(head_dim) * 2,
                                    static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice, stream));
}

}  // namespace detail

// Workspace bytes attention() takes for these sizes (0 when head_dim is 64 or 128).
inline std::size_t attention_workspace_bytes(std::int64_t batch, std::int64_t query_tokens, std::int64_t key_tokens,
                                             std::int64_t heads, std::int64_t head_dim) {
  const std::int64_t padded = detail::padded_head_dim(head_dim);
  if (padded == head_dim) return 0;
  // From byte counts: a temporary Shape here makes g++ -O3 warn maybe-uninitialized once inlined.
  constexpr std::size_t bf16_bytes = 2;
  const auto bytes = [&](std::int64_t tokens) {
    return Arena::footprint(static_cast<std::size_t>(batch * tokens * heads * padded) * bf16_bytes);
  };
  return 2 * bytes(query_tokens) + 2 * bytes(key_tokens);
}

// q [B, Lq, H·D], k and v [B, Lk, H·D], out [B, Lq, H·D]: contiguous bf16 device tensors.
inline void attention(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                      std::int64_t heads, const cuda::ops::AttentionOptions& options, Arena& arena,
                      cudaStream_t stream) {
  SDNQ_REQUIRE(
      q.rank() == 3 && k.rank() == 3 && v.rank() == 3 && heads >= 1 && q.size(2) % heads == 0 && q.is_contiguous() &&
          k.is_contiguous() && v.is_contiguous() && out.is_contiguous() && out.shape() == q.shape(),
      ShapeError, "GPU attention: q, k, v, out must be contiguous [B, L, H·D] with {} heads, got {}, {}, {}, {}", heads,
      q.shape().to_string(), k.shape().to_string(), v.shape().to_string(), out.shape().to_string());
  const std::int64_t batch = q.size(0), query_tokens = q.size(1);
  const std::int64_t head_dim = q.size(2) / heads, padded = detail::padded_head_dim(head_dim);
  if (padded == head_dim) {
    cuda::ops::attention(cuda::ops::split_heads(q, heads, head_dim), cuda::ops::split_heads(k, heads, head_dim),
                         cuda::ops::split_heads(v, heads, head_dim), cuda::ops::split_heads(out, heads, head_dim),
                         options, stream);
    return;
  }
  ArenaScope scope(arena);
  const auto padded_copy = [&](const TensorView& x, const char* purpose) {
    const TensorView p = arena.take(Shape{x.size(0), x.size(1), heads * padded}, DType::bf16, purpose);
    SDNQ_CUDA_CHECK(cudaMemsetAsync(p.data(), 0, p.nbytes(), stream));
    detail::copy_head_rows(p.data(), padded, x.data(), head_dim, head_dim, x.size(0) * x.size(1) * heads, stream);
    return p;
  };
  const TensorView q_padded = padded_copy(q, "attention q padded to a supported head_dim");
  const TensorView k_padded = padded_copy(k, "attention k padded to a supported head_dim");
  const TensorView v_padded = padded_copy(v, "attention v padded to a supported head_dim");
  const TensorView out_padded =
      arena.take(Shape{batch, query_tokens, heads * padded}, DType::bf16, "attention output padded head_dim");
  cuda::ops::attention(cuda::ops::split_heads(q_padded, heads, padded), cuda::ops::split_heads(k_padded, heads, padded),
                       cuda::ops::split_heads(v_padded, heads, padded),
                       cuda::ops::split_heads(out_padded, heads, padded), options, stream);
  detail::copy_head_rows(out.data(), head_dim, out_padded.data(), padded, head_dim, batch * query_tokens * heads,
                         stream);
}

}  // namespace sdnq::nn::gpu
