#pragma once
// SD3's JointTransformerBlock on the GPU in bf16 (the CPU block: nn/models/detail/dit_sd3_blocks.hpp):
// AdaLN-Zero on both streams, joint attention over [image; text] without RoPE (q and k RMS-normed per
// head when the config names qk_norm), SD3.5's dual attention (attn2 on the image stream with the
// second modulation of SD35AdaLayerNormZeroX) and, in the last block (context_pre_only), a text
// stream that only feeds attention: AdaLayerNormContinuous on it, no to_add_out, no ff_context.
// Activations come from the caller's arena (workspace_bytes below); nothing is allocated.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/ops/attention.cuh"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/nn/gpu/attention.cuh"
#include "sdnq/nn/gpu/detail/dit_common.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/dit_attention.hpp"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu::detail {

struct SD3SelfAttention {
  DitQkv qkv;  // to_q, to_k, to_v (+ norm_q, norm_k)
  Linear to_out;
};

class SD3JointBlock {
 public:
  static SD3JointBlock load(WeightLoader& weights, int index, const nn::detail::AttentionShape& shape, bool qk_norm,
                            bool context_pre_only, bool dual_attention, int device) {
    const std::string p = fmt::format("transformer_blocks.{}", index);
    const std::int64_t d = shape.dim;
    SD3JointBlock b;
    b.shape_ = shape;
    b.image_chunks_ = dual_attention ? 9 : 6;
    b.context_chunks_ = context_pre_only ? 2 : 6;
    b.norm1_ = Linear::load(weights, p + ".norm1.linear", d, b.image_chunks_ * d, true, device);
    b.norm1_context_ = Linear::load(weights, p + ".norm1_context.linear", d, b.context_chunks_ * d, true, device);
    b.image_ = DitQkv::load(weights, p + ".attn", nn::detail::image_stream_names, shape, qk_norm, device);
    b.context_ = DitQkv::load(weights, p + ".attn", nn::detail::context_stream_names, shape, qk_norm, device);
    b.to_out_ = Linear::load(weights, p + ".attn.to_out.0", d, d, true, device);
    if (!context_pre_only) b.to_add_out_ = Linear::load(weights, p + ".attn.to_add_out", d, d, true, device);
    if (dual_attention)
      b.attn2_ =
          SD3SelfAttention{DitQkv::load(weights, p + ".attn2", nn::detail::image_stream_names, shape, qk_norm, device),
                           Linear::load(weights, p + ".attn2.to_out.0", d, d, true, device)};
    b.ff_ = DitFeedForward::load(weights, p + ".ff", d, device);
    if (!context_pre_only) b.ff_context_ = DitFeedForward::load(weights, p + ".ff_context", d, device);
    return b;
  }

  bool context_pre_only() const { return !ff_context_.has_value(); }
  bool dual_attention() const { return attn2_.has_value(); }

  // Every Linear with the rows it multiplies for B samples of Li image and Lt text tokens.
  template <class Visit>
  void visit_linears(std::int64_t batch, std::int64_t image_rows, std::int64_t text_rows, Visit&& visit) const {
    visit(norm1_, batch);
    visit(norm1_context_, batch);
    for (const Linear* l : {&image_.q, &image_.k, &image_.v, &to_out_, &ff_.project_in, &ff_.project_out})
      visit(*l, image_rows);
    for (const Linear* l : {&context_.q, &context_.k, &context_.v}) visit(*l, text_rows);
    if (to_add_out_) visit(*to_add_out_, text_rows);
    if (ff_context_)
      for (const Linear* l : {&ff_context_->project_in, &ff_context_->project_out}) visit(*l, text_rows);
    if (attn2_)
      for (const Linear* l : {&attn2_->qkv.q, &attn2_->qkv.k, &attn2_->qkv.v, &attn2_->to_out}) visit(*l, image_rows);
  }

  // Arena bytes of the rows forward() quantizes once for q, k, v (held while those Linears run).
  std::size_t shared_input_bytes(std::int64_t batch, std::int64_t li, std::int64_t lt) const {
    std::size_t bytes = std::max(image_.share_bytes(batch * li, nullptr), context_.share_bytes(batch * lt, nullptr));
    if (attn2_) bytes = std::max(bytes, attn2_->qkv.share_bytes(batch * li, nullptr));
    return bytes;
  }

  // Arena bytes forward() takes itself (Linear and attention scratch not included).
  std::size_t activation_bytes(std::int64_t batch, std::int64_t li, std::int64_t lt) const {
    const std::int64_t d = shape_.dim, rows = batch * std::max(li, lt);
    const auto bf16 = bf16_footprint;
    return bf16(batch, image_chunks_ * d) + bf16(batch, context_chunks_ * d) +
           (dual_attention() ? 2 : 1) * bf16(batch * li, d) + 2 * bf16(batch * lt, d) + bf16(batch * li, d) +
           4 * bf16(batch * (li + lt), d) + bf16(rows, 4 * d) + bf16(rows, d);
  }

  // In place: image [B, Li, D]; context [B, Lt, D] (left unchanged by the context_pre_only block,
  // whose text output the model drops); temb_silu = SiLU(temb) [B, D].
  void forward(const TensorView& image, const TensorView& context, const TensorView& temb_silu, Arena& arena,
               cublasHandle_t cublas, cudaStream_t stream) const {
    using namespace nn::detail;  // chunk names
    ArenaScope scope(arena);
    const std::int64_t batch = image.size(0), li = image.size(1), lt = context.size(1), s = li + lt, d = image.size(2);
    const TensorView m = arena.take(Shape{batch, image_chunks_ * d}, DType::bf16, "SD3 norm1 modulation");
    const TensorView c = arena.take(Shape{batch, context_chunks_ * d}, DType::bf16, "SD3 norm1_context modulation");
    const TensorView image_normed = arena.take(Shape{batch, li, d}, DType::bf16, "SD3 image normed");
    const TensorView image_normed2 =
        dual_attention() ? arena.take(Shape{batch, li, d}, DType::bf16, "SD3 image normed for attn2") : TensorView();
    const TensorView context_normed = arena.take(Shape{batch, lt, d}, DType::bf16, "SD3 text normed");
    const TensorView image_part = arena.take(Shape{batch * li, d}, DType::bf16, "SD3 image projection");  // [B·Li, D]
    const TensorView context_part = arena.take(Shape{batch * lt, d}, DType::bf16, "SD3 text projection");
    const TensorView joint[] = {arena.take(Shape{batch, s, d}, DType::bf16, "SD3 joint q"),
                                arena.take(Shape{batch, s, d}, DType::bf16, "SD3 joint k"),
                                arena.take(Shape{batch, s, d}, DType::bf16, "SD3 joint v")};
    const TensorView attended = arena.take(Shape{batch, s, d}, DType::bf16, "SD3 joint attention output");
    const std::int64_t longest = std::max(li, lt);
    const TensorView ff_hidden_rows = arena.take(Shape{batch * longest, 4 * d}, DType::bf16, "SD3 FF hidden");
    const TensorView update_rows = arena.take(Shape{batch * longest, d}, DType::bf16, "SD3 block update");
    const auto image_chunk = [&](int index) { return cuda::ops::modulation_chunk(m, image_chunks_, index); };
    const auto context_chunk = [&](int index) { return cuda::ops::modulation_chunk(c, context_chunks_, index); };

    norm1_.forward(temb_silu, m, arena, cublas, stream);
    norm1_context_.forward(temb_silu, c, arena, cublas, stream);
    cuda::ops::layer_norm_modulate(image, image_chunk(shift_msa), image_chunk(scale_msa), adaptive_norm_eps,
                                   image_normed, stream);
    if (dual_attention())
      cuda::ops::layer_norm_modulate(image, image_chunk(shift_msa2), image_chunk(scale_msa2), adaptive_norm_eps,
                                     image_normed2, stream);
    if (context_pre_only())
      cuda::ops::layer_norm_modulate(context, context_chunk(continuous_shift), context_chunk(continuous_scale),
                                     adaptive_norm_eps, context_normed, stream);
    else
      cuda::ops::layer_norm_modulate(context, context_chunk(shift_msa), context_chunk(scale_msa), adaptive_norm_eps,
                                     context_normed, stream);

    // Joint attention over [image; text], then each stream's share of the output back into its rows.
    {  // q, k, v of each stream on its rows quantized once (quantized-matmul layers)
      ArenaScope shared(arena);
      image_.project_into(image_.share(token_rows(image_normed), nullptr, arena, stream), image_part, 0, joint, arena,
                          cublas, stream);
    }
    {
      ArenaScope shared(arena);
      context_.project_into(context_.share(token_rows(context_normed), nullptr, arena, stream), context_part, li,
                            joint, arena, cublas, stream);
    }
    attention(joint, attended, arena, stream);
    copy_bf16_columns(image_part.data(), li * d, attended.data(), s * d, li * d, batch, stream);
    if (!context_pre_only())
      copy_bf16_columns(context_part.data(), lt * d, bf16_element(attended, li * d), s * d, lt * d, batch, stream);

    const TensorView image_update = view_as(update_rows, Shape{batch, li, d});
    to_out_.forward(image_part, token_rows(image_update), arena, cublas, stream);
    cuda::ops::gated_add(image, image_chunk(gate_msa), image_update, image, stream);
    if (attn2_) {
      // Self-attention on the image tokens alone, in the leading [B, Li, D] of the joint buffers.
      const TensorView own[] = {view_as(joint[0], image.shape()), view_as(joint[1], image.shape()),
                                view_as(joint[2], image.shape())};
      const TensorView own_attended = view_as(attended, image.shape());
      {
        ArenaScope shared(arena);
        attn2_->qkv.project_into(attn2_->qkv.share(token_rows(image_normed2), nullptr, arena, stream), image_part, 0,
                                 own, arena, cublas, stream);
      }
      attention(own, own_attended, arena, stream);
      attn2_->to_out.forward(token_rows(own_attended), token_rows(image_update), arena, cublas, stream);
      cuda::ops::gated_add(image, image_chunk(gate_msa2), image_update, image, stream);
    }
    const auto feed_forward = [&](const TensorView& x, const TensorView& normed, const DitFeedForward& ff,
                                  const auto& chunk) {
      const std::int64_t rows = x.size(0) * x.size(1);
      const TensorView update = view_as(update_rows, x.shape());
      cuda::ops::layer_norm_modulate(x, chunk(shift_mlp), chunk(scale_mlp), adaptive_norm_eps, normed, stream);
      ff.forward(token_rows(normed), view_as(ff_hidden_rows, Shape{rows, 4 * d}), token_rows(update), arena, cublas,
                 stream);
      cuda::ops::gated_add(x, chunk(gate_mlp), update, x, stream);
    };
    feed_forward(image, image_normed, ff_, image_chunk);
    if (context_pre_only()) return;

    const TensorView context_update = view_as(update_rows, Shape{batch, lt, d});
    to_add_out_->forward(context_part, token_rows(context_update), arena, cublas, stream);
    cuda::ops::gated_add(context, context_chunk(gate_msa), context_update, context, stream);
    feed_forward(context, context_normed, *ff_context_, context_chunk);
  }

 private:
  // q, k, v [B, L, D] -> out [B, L, D]; no RoPE in SD3.
  void attention(const TensorView* qkv, const TensorView& out, Arena& arena, cudaStream_t stream) const {
    cuda::ops::AttentionOptions options;
    options.scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
    gpu::attention(qkv[0], qkv[1], qkv[2], out, shape_.heads, options, arena, stream);
  }

  nn::detail::AttentionShape shape_;
  int image_chunks_ = 6;          // AdaLayerNormZero (6) or SD35AdaLayerNormZeroX (9)
  int context_chunks_ = 6;        // AdaLayerNormZero (6) or AdaLayerNormContinuous (2) when context_pre_only
  Linear norm1_, norm1_context_;  // D -> chunks·D
  DitQkv image_, context_;        // to_q/k/v, add_q/k/v_proj
  Linear to_out_;                 // D -> D
  std::optional<Linear> to_add_out_;
  std::optional<SD3SelfAttention> attn2_;
  DitFeedForward ff_;
  std::optional<DitFeedForward> ff_context_;
};

}  // namespace sdnq::nn::gpu::detail
