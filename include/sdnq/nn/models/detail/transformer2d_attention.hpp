#pragma once
// diffusers' Attention with the default processor, as the UNet's transformer blocks and the VAE's
// mid-block use it: q = to_q(x), k = to_k(context), v = to_v(context), split into heads, softmax
// attention with scale 1/sqrt(head_dim), heads merged, then to_out.0. Self-attention when there is no
// context. The VAE uses one head over all channels and biased projections; the UNet unbiased q/k/v.
#include <array>
#include <cstdint>
#include <cmath>
#include <optional>
#include <string>

#include "sdnq/nn/models/detail/resnet_ops.hpp"

namespace sdnq::nn::detail {

struct AttentionSettings {
  std::int64_t query_dim = 0;
  std::int64_t context_dim = 0;  // = query_dim for self-attention
  std::int64_t heads = 1;
  std::int64_t head_dim = 0;
  bool qkv_bias = false;
};

class MultiHeadAttention {
 public:
  static MultiHeadAttention load(WeightLoader& weights, const std::string& prefix, const AttentionSettings& settings) {
    MultiHeadAttention attention;
    attention.heads_ = settings.heads;
    attention.head_dim_ = settings.head_dim;
    attention.prefix_ = prefix;
    const std::int64_t inner = settings.heads * settings.head_dim;
    attention.to_q_ = Linear::load(weights, prefix + ".to_q", settings.query_dim, inner, settings.qkv_bias);
    attention.to_k_ = Linear::load(weights, prefix + ".to_k", settings.context_dim, inner, settings.qkv_bias);
    attention.to_v_ = Linear::load(weights, prefix + ".to_v", settings.context_dim, inner, settings.qkv_bias);
    attention.to_out_ = Linear::load(weights, prefix + ".to_out.0", inner, settings.query_dim, true);
    return attention;
  }

  // x [B, Lq, query_dim], context [B, Lk, context_dim] (nullptr: self-attention) -> [B, Lq, query_dim]
  Tensor forward(const TensorView& x, const TensorView* context = nullptr) const {
    const TensorView& source = context != nullptr ? *context : x;
    SDNQ_REQUIRE(x.rank() == 3 && source.rank() == 3 && source.size(0) == x.size(0), ShapeError,
                 "{}: needs hidden states [B, L, C] and a context [B, L', C'] of the same batch, got {} and {}",
                 prefix_, x.shape().to_string(), source.shape().to_string());
    const Tensor q = split_heads(to_q_->forward(x));       // [B, H, Lq, D]
    const Tensor k = split_heads(to_k_->forward(source));  // [B, H, Lk, D]
    const Tensor v = split_heads(to_v_->forward(source));  // [B, H, Lk, D]
    const AttentionOptions options{.scale = 1.0f / std::sqrt(static_cast<float>(head_dim_))};
    return to_out_->forward(merge_heads(attention(q, k, v, options)));
  }

 private:
  // [B, L, H*D] -> [B, H, L, D]
  Tensor split_heads(Tensor x) const {
    x.reshape({x.size(0), x.size(1), heads_, head_dim_});
    constexpr std::array<int, 4> axes{0, 2, 1, 3};
    return permute(x, axes);
  }
  // [B, H, L, D] -> [B, L, H*D]
  Tensor merge_heads(const Tensor& x) const {
    constexpr std::array<int, 4> axes{0, 2, 1, 3};
    Tensor merged = permute(x, axes);
    merged.reshape({x.size(0), x.size(2), heads_ * head_dim_});
    return merged;
  }

  std::int64_t heads_ = 1, head_dim_ = 0;
  std::string prefix_;
  std::optional<Linear> to_q_, to_k_, to_v_, to_out_;
};

// FeedForward(activation_fn="geglu"): net.0.proj -> [h, gate] halves -> h * gelu(gate) (erf) -> net.2.
class GegluFeedForward {
 public:
  static GegluFeedForward load(WeightLoader& weights, const std::string& prefix, std::int64_t dim,
                               std::int64_t inner_dim) {
    GegluFeedForward ff;
    ff.proj_ = Linear::load(weights, prefix + ".net.0.proj", dim, 2 * inner_dim);
    ff.out_ = Linear::load(weights, prefix + ".net.2", inner_dim, dim);
    return ff;
  }

  // x [..., dim] -> [..., dim]
  Tensor forward(const TensorView& x) const {
    std::vector<Tensor> halves = chunk(proj_->forward(x), 2, -1);  // 2 x [..., inner]
    activate_(halves[1], Activation::gelu);
    return out_->forward(mul(halves[0], halves[1]));
  }

 private:
  std::optional<Linear> proj_, out_;
};

}  // namespace sdnq::nn::detail
