#pragma once
// Attention and feed-forward of the diffusion transformers: per-head q/k/v projections with optional
// RMS QK-norm (eps 1e-6, over head_dim), joint attention over the concatenation of the image and the
// text stream (FLUX: [text; image] with RoPE, SD3: [image; text]), plain self-attention (FLUX single
// blocks, SD3.5's attn2) and the GELU-tanh FeedForward (net.0.proj -> gelu_tanh -> net.2).
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/models/detail/dit_ops.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/modules/norms.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::detail {

inline constexpr float qk_norm_eps = 1e-6f;

struct AttentionShape {
  std::int64_t dim = 0;  // model width D = heads * head_dim
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;
};

// Tensor names of one stream's projections inside an attention module.
struct QkvNames {
  const char* q;
  const char* k;
  const char* v;
  const char* norm_q;
  const char* norm_k;
};
inline constexpr QkvNames image_stream_names{"to_q", "to_k", "to_v", "norm_q", "norm_k"};
inline constexpr QkvNames context_stream_names{"add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q",
                                               "norm_added_k"};

// q, k, v of one stream, each [B, L, heads, head_dim], q and k RMS-normed per head when configured.
struct HeadsQkv {
  Tensor q, k, v;
};

struct QkvProjection {
  Linear q, k, v;
  std::optional<RMSNorm> norm_q, norm_k;
  AttentionShape shape;

  static QkvProjection load(WeightLoader& weights, const std::string& prefix, const QkvNames& names,
                            const AttentionShape& shape, bool qk_norm) {
    QkvProjection projection{Linear::load(weights, prefix + "." + names.q, shape.dim, shape.dim),
                             Linear::load(weights, prefix + "." + names.k, shape.dim, shape.dim),
                             Linear::load(weights, prefix + "." + names.v, shape.dim, shape.dim),
                             std::nullopt,
                             std::nullopt,
                             shape};
    if (qk_norm) {
      projection.norm_q = RMSNorm::load(weights, prefix + "." + names.norm_q, shape.head_dim, qk_norm_eps);
      projection.norm_k = RMSNorm::load(weights, prefix + "." + names.norm_k, shape.head_dim, qk_norm_eps);
    }
    return projection;
  }

  HeadsQkv forward(const TensorView& x /*[B, L, D]*/) const {
    const Shape heads_shape{x.size(0), x.size(1), shape.heads, shape.head_dim};
    HeadsQkv out{q.forward(x), k.forward(x), v.forward(x)};
    out.q.reshape(heads_shape);
    out.k.reshape(heads_shape);
    out.v.reshape(heads_shape);
    if (norm_q) out.q = norm_q->forward(out.q);
    if (norm_k) out.k = norm_k->forward(out.k);
    return out;
  }
};

// softmax(q kᵀ / sqrt(head_dim)) v over q, k, v [B, S, heads, head_dim] -> [B, S, heads·head_dim].
inline Tensor multi_head_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int to_heads_first[] = {0, 2, 1, 3};
  AttentionOptions options;
  options.scale = 1.0f / std::sqrt(static_cast<float>(q.size(3)));
  const Tensor out = attention(permute(q, to_heads_first), permute(k, to_heads_first), permute(v, to_heads_first),
                               options);  // [B, heads, S, head_dim]
  Tensor tokens = permute(out, to_heads_first);
  tokens.reshape({q.size(0), q.size(1), q.size(2) * q.size(3)});
  return tokens;
}

inline Tensor concat_tokens(const TensorView& first, const TensorView& second) {
  const TensorView parts[] = {first, second};
  return concat(parts, 1);
}

// Which stream comes first in the joint sequence.
enum class JointOrder { text_first /*FLUX*/, image_first /*SD3*/ };

// Attention over both streams at once; each stream keeps its own projections and output layer.
struct JointAttention {
  QkvProjection image;               // to_q, to_k, to_v (+ norm_q, norm_k)
  QkvProjection context;             // add_q_proj, add_k_proj, add_v_proj (+ norm_added_q, norm_added_k)
  Linear to_out;                     // to_out.0
  std::optional<Linear> to_add_out;  // absent where the text output is dropped (SD3's last block)
  JointOrder order = JointOrder::text_first;

  static JointAttention load(WeightLoader& weights, const std::string& prefix, const AttentionShape& shape,
                             bool qk_norm, bool context_output, JointOrder order) {
    JointAttention attention{QkvProjection::load(weights, prefix, image_stream_names, shape, qk_norm),
                             QkvProjection::load(weights, prefix, context_stream_names, shape, qk_norm),
                             Linear::load(weights, prefix + ".to_out.0", shape.dim, shape.dim), std::nullopt, order};
    if (context_output) attention.to_add_out = Linear::load(weights, prefix + ".to_add_out", shape.dim, shape.dim);
    return attention;
  }

  // image [B, Li, D], context [B, Lt, D] -> (image output, context output or an undefined tensor).
  std::pair<Tensor, Tensor> forward(const TensorView& image_tokens, const TensorView& context_tokens,
                                    const RotaryEmbedding* rope) const {
    HeadsQkv from_image = image.forward(image_tokens);
    HeadsQkv from_context = context.forward(context_tokens);
    const bool text_first = order == JointOrder::text_first;
    auto joined = [&](const Tensor& image_part, const Tensor& context_part) {
      return text_first ? concat_tokens(context_part, image_part) : concat_tokens(image_part, context_part);
    };
    Tensor q = joined(from_image.q, from_context.q);
    Tensor k = joined(from_image.k, from_context.k);
    const Tensor v = joined(from_image.v, from_context.v);
    if (rope != nullptr) {
      apply_rotary_embedding_(q, *rope);
      apply_rotary_embedding_(k, *rope);
    }
    const Tensor out = multi_head_attention(q, k, v);  // [B, Li + Lt, D]
    const std::int64_t image_length = image_tokens.size(1), context_length = context_tokens.size(1);
    const std::int64_t image_begin = text_first ? context_length : 0;
    const std::int64_t context_begin = text_first ? 0 : image_length;
    Tensor image_out = to_out.forward(slice_tokens(out, image_begin, image_length));
    Tensor context_out;
    if (to_add_out) context_out = to_add_out->forward(slice_tokens(out, context_begin, context_length));
    return {std::move(image_out), std::move(context_out)};
  }
};

// Self-attention on one sequence; FLUX's single blocks have no output projection (pre_only).
struct SelfAttention {
  QkvProjection qkv;
  std::optional<Linear> to_out;  // to_out.0

  static SelfAttention load(WeightLoader& weights, const std::string& prefix, const AttentionShape& shape, bool qk_norm,
                            bool output_projection) {
    SelfAttention attention{QkvProjection::load(weights, prefix, image_stream_names, shape, qk_norm), std::nullopt};
    if (output_projection) attention.to_out = Linear::load(weights, prefix + ".to_out.0", shape.dim, shape.dim);
    return attention;
  }

  Tensor forward(const TensorView& tokens /*[B, L, D]*/, const RotaryEmbedding* rope) const {
    HeadsQkv heads = qkv.forward(tokens);
    if (rope != nullptr) {
      apply_rotary_embedding_(heads.q, *rope);
      apply_rotary_embedding_(heads.k, *rope);
    }
    Tensor out = multi_head_attention(heads.q, heads.k, heads.v);
    return to_out ? to_out->forward(out) : std::move(out);
  }
};

// FeedForward(dim, mult=4, activation_fn="gelu-approximate").
struct FeedForward {
  Linear project_in;   // net.0.proj: D -> 4D
  Linear project_out;  // net.2: 4D -> D

  static FeedForward load(WeightLoader& weights, const std::string& prefix, std::int64_t dim) {
    return {Linear::load(weights, prefix + ".net.0.proj", dim, 4 * dim),
            Linear::load(weights, prefix + ".net.2", 4 * dim, dim)};
  }
  Tensor forward(const TensorView& x /*[B, L, D]*/) const {
    Tensor hidden = project_in.forward(x);
    activate_(hidden, Activation::gelu_tanh);
    return project_out.forward(hidden);
  }
};

}  // namespace sdnq::nn::detail
