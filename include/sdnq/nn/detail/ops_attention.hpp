#pragma once
// Scaled dot-product attention over [B, H, L, D] tensors, one (batch, head, query) row at a time:
// scores = q·kᵀ·scale (+ additive mask, causal -inf above the diagonal), softmax in fp32, · v.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "sdnq/core/parallel.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq/nn/detail/ops_gemm.hpp"

namespace sdnq::nn {

struct AttentionOptions {
  float scale = 1.0f;
  bool causal = false;                        // query i attends keys j <= i (top-left aligned, as torch's is_causal)
  const TensorView* additive_mask = nullptr;  // broadcastable to [B, H, Lq, Lk]
};

inline Tensor attention(const TensorView& q, const TensorView& k, const TensorView& v,
                        const AttentionOptions& options) {
  Tensor qs, ks, vs, ms;
  const float* pq = detail::contiguous_f32(q, qs, "attention", "q");
  const float* pk = detail::contiguous_f32(k, ks, "attention", "k");
  const float* pv = detail::contiguous_f32(v, vs, "attention", "v");
  SDNQ_REQUIRE(q.rank() == 4 && k.rank() == 4 && v.rank() == 4, ShapeError,
               "nn::attention needs q, k, v of rank 4 [B, H, L, D], got {}, {}, {}", q.shape().to_string(),
               k.shape().to_string(), v.shape().to_string());
  const std::int64_t batch = q.size(0), heads = q.size(1), lq = q.size(2), dim = q.size(3);
  const std::int64_t lk = k.size(2), dv = v.size(3);
  SDNQ_REQUIRE(k.size(0) == batch && k.size(1) == heads && k.size(3) == dim && v.size(0) == batch &&
                   v.size(1) == heads && v.size(2) == lk,
               ShapeError,
               "nn::attention: q {}, k {}, v {} disagree (need [B, H, Lq, D], [B, H, Lk, D], [B, H, Lk, Dv])",
               q.shape().to_string(), k.shape().to_string(), v.shape().to_string());
  const Shape scores_shape{batch, heads, lq, lk};
  const float* mask = nullptr;
  Shape mask_strides;
  if (options.additive_mask != nullptr) {
    mask = detail::contiguous_f32(*options.additive_mask, ms, "attention", "additive_mask");
    SDNQ_REQUIRE(
        options.additive_mask->rank() <= 4 &&
            detail::broadcast_shapes(options.additive_mask->shape(), scores_shape, "attention") == scores_shape,
        ShapeError, "nn::attention: additive_mask {} does not broadcast to the scores [B, H, Lq, Lk] = {}",
        options.additive_mask->shape().to_string(), scores_shape.to_string());
    mask_strides = detail::broadcast_strides(options.additive_mask->shape(), scores_shape);
  }
  Tensor out = Tensor::empty({batch, heads, lq, dv}, DType::f32);
  float* po = out.data_as<float>();
  const float negative_infinity = -std::numeric_limits<float>::infinity();
  parallel_for(0, batch * heads * lq, std::max<std::int64_t>(1, 2048 / std::max<std::int64_t>(1, lk * dim)),
               [&](std::int64_t begin, std::int64_t end) {
                 std::vector<float> scores(static_cast<std::size_t>(lk));
                 for (std::int64_t row = begin; row < end; ++row) {
                   const std::int64_t i = row % lq, bh = row / lq, h = bh % heads, b = bh / heads;
                   const float* query = pq + row * dim;
                   const float* keys = pk + bh * lk * dim;
                   const float* values = pv + bh * lk * dv;
                   float max_score = negative_infinity;
                   for (std::int64_t j = 0; j < lk; ++j) {
                     float s = detail::dot_f32(query, keys + j * dim, dim) * options.scale;
                     if (mask != nullptr)
                       s += mask[b * mask_strides[0] + h * mask_strides[1] + i * mask_strides[2] + j * mask_strides[3]];
                     if (options.causal && j > i) s = negative_infinity;
                     scores[static_cast<std::size_t>(j)] = s;
                     max_score = std::max(max_score, s);
                   }
                   float* o = po + row * dv;
                   for (std::int64_t d = 0; d < dv; ++d) o[d] = 0.0f;
                   if (max_score == negative_infinity) continue;  // fully masked row: zeros, not NaN
                   float sum = 0.0f;
                   for (auto& s : scores) sum += (s = std::exp(s - max_score));
                   const float inv = 1.0f / sum;
                   for (std::int64_t j = 0; j < lk; ++j) {
                     const float p = scores[static_cast<std::size_t>(j)] * inv;
                     const float* value = values + j * dv;
                     for (std::int64_t d = 0; d < dv; ++d) o[d] += p * value[d];
                   }
                 }
               });
  return out;
}

}  // namespace sdnq::nn
