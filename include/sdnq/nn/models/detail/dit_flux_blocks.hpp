#pragma once
// FLUX's two block kinds (diffusers transformer_flux.py): the double-stream block, where image and
// text keep separate weights and meet in joint attention, and the single-stream block over the
// concatenated [text; image] sequence with attention and MLP side by side.
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/models/detail/dit_attention.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::detail {

struct FluxDoubleBlock {
  AdaptiveNorm norm1;          // AdaLayerNormZero on the image stream
  AdaptiveNorm norm1_context;  // AdaLayerNormZero on the text stream
  JointAttention attn;
  FeedForward ff;
  FeedForward ff_context;

  static FluxDoubleBlock load(WeightLoader& weights, int index, const AttentionShape& shape) {
    const std::string prefix = fmt::format("transformer_blocks.{}", index);
    return {AdaptiveNorm::load(weights, prefix + ".norm1", shape.dim, 6),
            AdaptiveNorm::load(weights, prefix + ".norm1_context", shape.dim, 6),
            JointAttention::load(weights, prefix + ".attn", shape, true, true, JointOrder::text_first),
            FeedForward::load(weights, prefix + ".ff", shape.dim),
            FeedForward::load(weights, prefix + ".ff_context", shape.dim)};
  }

  // In place: image [B, Li, D], context [B, Lt, D]; temb_silu = SiLU(temb) [B, D].
  void forward(Tensor& image, Tensor& context, const TensorView& temb_silu, const RotaryEmbedding& rope) const {
    const Modulation m = norm1.modulation(temb_silu);
    const Modulation c = norm1_context.modulation(temb_silu);
    const Tensor image_normed = modulated_norm(image, m[shift_msa], m[scale_msa]);
    const Tensor context_normed = modulated_norm(context, c[shift_msa], c[scale_msa]);
    auto [image_attention, context_attention] = attn.forward(image_normed, context_normed, &rope);

    add_gated_(image, m[gate_msa], image_attention);
    add_gated_(image, m[gate_mlp], ff.forward(modulated_norm(image, m[shift_mlp], m[scale_mlp])));

    add_gated_(context, c[gate_msa], context_attention);
    add_gated_(context, c[gate_mlp], ff_context.forward(modulated_norm(context, c[shift_mlp], c[scale_mlp])));
  }
};

struct FluxSingleBlock {
  AdaptiveNorm norm;   // AdaLayerNormZeroSingle
  Linear proj_mlp;     // D -> 4D
  SelfAttention attn;  // no output projection
  Linear proj_out;     // [attention; mlp] 5D -> D

  static FluxSingleBlock load(WeightLoader& weights, int index, const AttentionShape& shape) {
    const std::string prefix = fmt::format("single_transformer_blocks.{}", index);
    return {AdaptiveNorm::load(weights, prefix + ".norm", shape.dim, 3),
            Linear::load(weights, prefix + ".proj_mlp", shape.dim, 4 * shape.dim),
            SelfAttention::load(weights, prefix + ".attn", shape, true, false),
            Linear::load(weights, prefix + ".proj_out", 5 * shape.dim, shape.dim)};
  }

  // In place: tokens [B, Lt + Li, D] = [text; image].
  void forward(Tensor& tokens, const TensorView& temb_silu, const RotaryEmbedding& rope) const {
    const Modulation m = norm.modulation(temb_silu);
    const Tensor normed = modulated_norm(tokens, m[single_shift], m[single_scale]);
    Tensor mlp = proj_mlp.forward(normed);
    activate_(mlp, Activation::gelu_tanh);
    const Tensor attention_out = attn.forward(normed, &rope);
    const TensorView parts[] = {attention_out, mlp};
    add_gated_(tokens, m[single_gate], proj_out.forward(concat(parts, 2)));
  }
};

}  // namespace sdnq::nn::detail
