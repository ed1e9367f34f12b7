#pragma once
// SD3's JointTransformerBlock (diffusers attention.py): AdaLN-Zero on both streams, joint attention
// over [image; text], an optional second image self-attention with its own modulation (SD3.5's dual
// attention, SD35AdaLayerNormZeroX), and in the last block (context_pre_only) a text stream that only
// feeds attention: AdaLayerNormContinuous on it, no to_add_out, no ff_context, no text output.
#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/models/detail/dit_attention.hpp"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::detail {

struct SD3JointBlock {
  AdaptiveNorm norm1;          // AdaLayerNormZero (6 chunks) or SD35AdaLayerNormZeroX (9)
  AdaptiveNorm norm1_context;  // AdaLayerNormZero (6), or AdaLayerNormContinuous (2) when context_pre_only
  JointAttention attn;
  std::optional<SelfAttention> attn2;  // dual attention
  FeedForward ff;
  std::optional<FeedForward> ff_context;  // absent when context_pre_only

  bool context_pre_only() const { return !ff_context.has_value(); }

  static SD3JointBlock load(WeightLoader& weights, int index, const AttentionShape& shape, bool qk_norm,
                            bool context_pre_only, bool dual_attention) {
    const std::string prefix = fmt::format("transformer_blocks.{}", index);
    SD3JointBlock block{
        AdaptiveNorm::load(weights, prefix + ".norm1", shape.dim, dual_attention ? 9 : 6),
        AdaptiveNorm::load(weights, prefix + ".norm1_context", shape.dim, context_pre_only ? 2 : 6),
        JointAttention::load(weights, prefix + ".attn", shape, qk_norm, !context_pre_only, JointOrder::image_first),
        std::nullopt,
        FeedForward::load(weights, prefix + ".ff", shape.dim),
        std::nullopt};
    if (dual_attention) block.attn2 = SelfAttention::load(weights, prefix + ".attn2", shape, qk_norm, true);
    if (!context_pre_only) block.ff_context = FeedForward::load(weights, prefix + ".ff_context", shape.dim);
    return block;
  }

  // In place: image [B, Li, D]; context [B, Lt, D] (left unchanged by the last block, whose text
  // output the model drops); temb_silu = SiLU(temb) [B, D].
  void forward(Tensor& image, Tensor& context, const TensorView& temb_silu) const {
    const Modulation m = norm1.modulation(temb_silu);
    const Modulation c = norm1_context.modulation(temb_silu);
    // Both image branches modulate the LayerNorm of the block input (SD35AdaLayerNormZeroX).
    Tensor image_normed = plain_layer_norm(image);
    Tensor image_normed2;
    if (attn2) {
      image_normed2 = image_normed.clone();
      modulate_(image_normed2, m[shift_msa2], m[scale_msa2]);
    }
    modulate_(image_normed, m[shift_msa], m[scale_msa]);
    const Tensor context_normed = context_pre_only() ? modulated_norm(context, c[continuous_shift], c[continuous_scale])
                                                     : modulated_norm(context, c[shift_msa], c[scale_msa]);
    auto [image_attention, context_attention] = attn.forward(image_normed, context_normed, nullptr);

    add_gated_(image, m[gate_msa], image_attention);
    if (attn2) add_gated_(image, m[gate_msa2], attn2->forward(image_normed2, nullptr));
    add_gated_(image, m[gate_mlp], ff.forward(modulated_norm(image, m[shift_mlp], m[scale_mlp])));

    if (context_pre_only()) return;
    add_gated_(context, c[gate_msa], context_attention);
    add_gated_(context, c[gate_mlp], ff_context->forward(modulated_norm(context, c[shift_mlp], c[scale_mlp])));
  }
};

}  // namespace sdnq::nn::detail
