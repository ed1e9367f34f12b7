#pragma once
// The UNet's Transformer2DModel on the GPU in bf16 (the CPU nn/models/detail/transformer2d.hpp and
// transformer2d_attention.hpp give the math and the tensor names):
//   normalized = GroupNorm(x) (eps 1e-6) -> proj_in (Linear on tokens, or a 1×1 conv before them) -> h [N·HW, C]
//   each BasicTransformerBlock: h += attn1(LN1(h)); h += attn2(LN2(h), context); h += GEGLU-FF(LN3(h))
//   x += proj_out(h) back in NCHW
// x comes and goes in VaeBuffers::current; `spare` and `extra` hold the normalized input and the NCHW <->
// token copies (cuda::ops::patchify with patch 1 is that transpose). The token buffers (h, the LayerNorm
// output, q, k, v, the feed-forward's hidden) come from the arena and are given back on return.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/resample.cuh"
#include "sdnq/nn/gpu/attention.cuh"
#include "sdnq/nn/gpu/detail/dit_common.cuh"
#include "sdnq/nn/gpu/detail/vae_blocks.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/gpu/norms.cuh"

namespace sdnq::nn::gpu::detail {

// Transformer2DModel settings of one UNet block (heads: attention_head_dim, see unet_config.hpp).
struct UNetTransformerSettings {
  std::int64_t channels = 0;
  std::int64_t heads = 1;
  std::int64_t layers = 1;
  std::int64_t cross_attention_dim = 0;
  int groups = 32;
  bool linear_projection = true;
};

// The token buffers one transformer forward takes from the arena, [rows, columns] views.
struct UNetTokenBuffers {
  TensorView h, normed, q, k, v, ff_hidden, ff_gated;
};

class UNetTransformerBlock {
 public:
  static UNetTransformerBlock load(WeightLoader& weights, const std::string& prefix, const UNetTransformerSettings& s,
                                   int device) {
    constexpr float layer_norm_eps = 1e-5f;
    const std::int64_t dim = s.channels, context = s.cross_attention_dim;
    UNetTransformerBlock b;
    b.heads_ = s.heads;
    b.norm1_ = LayerNorm::load(weights, prefix + ".norm1", dim, layer_norm_eps, true, device);
    b.norm2_ = LayerNorm::load(weights, prefix + ".norm2", dim, layer_norm_eps, true, device);
    b.norm3_ = LayerNorm::load(weights, prefix + ".norm3", dim, layer_norm_eps, true, device);
    for (int i = 0; i < 2; ++i) {
      const std::string attn = prefix + (i == 0 ? ".attn1" : ".attn2");
      const std::int64_t source = i == 0 ? dim : context;
      b.attn_[i].q = Linear::load(weights, attn + ".to_q", dim, dim, false, device);
      b.attn_[i].k = Linear::load(weights, attn + ".to_k", source, dim, false, device);
      b.attn_[i].v = Linear::load(weights, attn + ".to_v", source, dim, false, device);
      b.attn_[i].out = Linear::load(weights, attn + ".to_out.0", dim, dim, true, device);
    }
    b.ff_in_ = Linear::load(weights, prefix + ".ff.net.0.proj", dim, 8 * dim, true, device);
    b.ff_out_ = Linear::load(weights, prefix + ".ff.net.2", 4 * dim, dim, true, device);
    return b;
  }

  // Every Linear with its row count for `tokens` image rows and `context_rows` text rows.
  template <class Visit>
  void visit_linears(std::int64_t tokens, std::int64_t context_rows, Visit&& visit) const {
    for (int i = 0; i < 2; ++i) {
      visit(*attn_[i].q, tokens);
      visit(*attn_[i].k, i == 0 ? tokens : context_rows);
      visit(*attn_[i].v, i == 0 ? tokens : context_rows);
      visit(*attn_[i].out, tokens);
    }
    visit(*ff_in_, tokens);
    visit(*ff_out_, tokens);
  }

  // Arena bytes forward() takes for attn1's q, k, v rows quantized once (quantized-matmul layers).
  std::size_t shared_input_bytes(std::int64_t rows) const {
    return gpu::shared_input_bytes({&*attn_[0].q, &*attn_[0].k, &*attn_[0].v}, rows);
  }

  // The cross-attention's to_k and to_v, which read the context rows (shared by the whole UNet).
  void context_readers(std::vector<const Linear*>& readers) const {
    readers.push_back(&*attn_[1].k);
    readers.push_back(&*attn_[1].v);
  }

  // h [N, L, C] (in place); context_rows [N·Lc, cross_attention_dim] (with its 8-bit codes when the UNet
  // quantized them once for every to_k / to_v); t: the token buffers.
  void forward(const TensorView& h, const LinearInput& context_rows, const UNetTokenBuffers& t, Arena& arena,
               cublasHandle_t cublas, cudaStream_t stream) const {
    const std::int64_t batch = h.size(0), tokens = h.size(1), dim = h.size(2);
    const std::int64_t context_tokens = context_rows.rows.size(0) / batch;
    const TensorView rows = token_rows(h);
    const auto as_tokens = [&](const TensorView& buffer, std::int64_t length) {
      return view_as(buffer, Shape{batch, length, dim});
    };
    const cuda::ops::AttentionOptions options{.scale = 1.0f / std::sqrt(static_cast<float>(dim / heads_))};
    for (int i = 0; i < 2; ++i) {
      const Projections& a = attn_[i];
      const std::int64_t source_tokens = i == 0 ? tokens : context_tokens;
      (i == 0 ? norm1_ : norm2_)->forward(rows, t.normed, stream);
      const TensorView k = view_as(t.k, Shape{batch * source_tokens, dim});
      const TensorView v = view_as(t.v, Shape{batch * source_tokens, dim});
      {
        ArenaScope shared(arena);  // attn1: q, k, v on the normed rows quantized once
        const LinearInput normed = i == 0 ? share_input(t.normed, {&*a.q, &*a.k, &*a.v}, arena, stream)
                                          : LinearInput(t.normed);
        const LinearInput& source = i == 0 ? normed : context_rows;
        a.q->forward(normed, t.q, arena, cublas, stream);
        a.k->forward(source, k, arena, cublas, stream);
        a.v->forward(source, v, arena, cublas, stream);
      }
      // The attention output goes to `normed` (read by the projections above), to_out's to `q`.
      nn::gpu::attention(as_tokens(t.q, tokens), as_tokens(k, source_tokens), as_tokens(v, source_tokens),
                as_tokens(t.normed, tokens), heads_, options, arena, stream);
      a.out->forward(t.normed, t.q, arena, cublas, stream);
      cuda::ops::add(rows, t.q, rows, stream);
    }
    norm3_->forward(rows, t.normed, stream);
    ff_in_->forward(t.normed, t.ff_hidden, arena, cublas, stream);
    cuda::ops::geglu(t.ff_hidden, t.ff_gated, stream);
    ff_out_->forward(t.ff_gated, t.normed, arena, cublas, stream);
    cuda::ops::add(rows, t.normed, rows, stream);
  }

 private:
  struct Projections {
    std::optional<Linear> q, k, v, out;
  };
  std::int64_t heads_ = 1;
  std::optional<LayerNorm> norm1_, norm2_, norm3_;
  Projections attn_[2];  // attn1 (self), attn2 (cross)
  std::optional<Linear> ff_in_, ff_out_;
};

class UNetTransformer {
 public:
  static UNetTransformer load(WeightLoader& weights, const std::string& prefix, const UNetTransformerSettings& s,
                              int device) {
    SDNQ_REQUIRE(s.heads >= 1 && s.channels % s.heads == 0, UnsupportedError,
                 "{}: {} heads (attention_head_dim) must divide the block's {} channels", prefix, s.heads, s.channels);
    (void)padded_head_dim(s.channels / s.heads);  // refuse head sizes the fused attention cannot run at load
    UNetTransformer t;
    t.settings_ = s;
    t.prefix_ = prefix;
    constexpr float group_norm_eps = 1e-6f;
    t.norm_ = VaeGroupNorm::load(weights, prefix + ".norm", s.groups, s.channels, device, group_norm_eps);
    if (s.linear_projection) {
      t.proj_in_linear_ = Linear::load(weights, prefix + ".proj_in", s.channels, s.channels, true, device);
      t.proj_out_linear_ = Linear::load(weights, prefix + ".proj_out", s.channels, s.channels, true, device);
    } else {
      t.proj_in_conv_ = Conv2d::load(weights, prefix + ".proj_in", s.channels, s.channels, 1, {}, device);
      t.proj_out_conv_ = Conv2d::load(weights, prefix + ".proj_out", s.channels, s.channels, 1, {}, device);
    }
    for (std::int64_t i = 0; i < s.layers; ++i)
      t.blocks_.push_back(
          UNetTransformerBlock::load(weights, prefix + ".transformer_blocks." + std::to_string(i), s, device));
    return t;
  }

  template <class Visit>
  void visit_linears(std::int64_t tokens, std::int64_t context_rows, Visit&& visit) const {
    if (proj_in_linear_) visit(*proj_in_linear_, tokens);
    for (const auto& block : blocks_) block.visit_linears(tokens, context_rows, visit);
    if (proj_out_linear_) visit(*proj_out_linear_, tokens);
  }

  // x [N, C, H, W] with context_tokens text tokens: activation and arena needs.
  Shape plan(const Shape& x, std::int64_t context_tokens, VaePlan& plan) const {
    const std::int64_t batch = x[0], tokens = x[2] * x[3], c = settings_.channels;
    plan.activation(x);
    std::size_t inner = norm_->workspace_bytes(x);
    visit_linears(batch * tokens, batch * context_tokens,
                  [&](const Linear& l, std::int64_t rows) { inner = std::max(inner, l.workspace_bytes(rows)); });
    std::size_t shared = 0;
    for (const auto& block : blocks_) shared = std::max(shared, block.shared_input_bytes(batch * tokens));
    inner += shared;
    if (proj_in_conv_) inner = std::max({inner, proj_in_conv_->workspace_bytes(x), proj_out_conv_->workspace_bytes(x)});
    inner = std::max(inner, attention_workspace_bytes(batch, tokens, std::max(tokens, context_tokens), settings_.heads,
                                                      c / settings_.heads));
    plan.scratch(token_buffers_bytes(batch, tokens, context_tokens) + inner);
    return x;
  }

  void context_readers(std::vector<const Linear*>& readers) const {
    for (const auto& block : blocks_) block.context_readers(readers);
  }

  // x in b.current (updated in place), context_rows [N·Lc, cross_attention_dim] (see UNetTransformerBlock).
  void forward(const VaeBuffers& b, const Shape& x_shape, const LinearInput& context_rows, const VaeRun& run) const {
    const std::int64_t c = settings_.channels;
    SDNQ_REQUIRE(x_shape[1] == c, ShapeError, "{}: input must have {} channels, got {}", prefix_, c,
                 x_shape.to_string());
    const std::int64_t batch = x_shape[0], tokens = x_shape[2] * x_shape[3];
    const std::int64_t context_tokens = context_rows.rows.size(0) / batch;
    const Shape token_shape{batch, tokens, c};
    const TensorView x = b.at(b.current, x_shape), normalized = b.at(b.spare, x_shape);
    norm_->forward(x, normalized, false, run.arena, run.stream);
    ArenaScope scope(run.arena);
    const UNetTokenBuffers t = take_token_buffers(run.arena, batch, tokens, context_tokens);
    const TensorView h = view_as(t.h, token_shape);
    if (proj_in_linear_) {
      const TensorView nhwc = b.at(b.extra, token_shape);
      cuda::ops::patchify(normalized, 1, cuda::ops::PatchOrder::channel_minor, nhwc, run.stream);
      proj_in_linear_->forward(token_rows(nhwc), t.h, run.arena, run.cublas, run.stream);
    } else {
      const TensorView projected = b.at(b.extra, x_shape);
      proj_in_conv_->forward(normalized, projected, run.arena, run.cublas, run.stream);
      cuda::ops::patchify(projected, 1, cuda::ops::PatchOrder::channel_minor, h, run.stream);
    }
    for (const auto& block : blocks_) block.forward(h, context_rows, t, run.arena, run.cublas, run.stream);
    if (proj_out_linear_) {
      proj_out_linear_->forward(t.h, t.normed, run.arena, run.cublas, run.stream);
      cuda::ops::unpatchify(view_as(t.normed, token_shape), 1, cuda::ops::PatchOrder::channel_minor, normalized,
                            run.stream);
    } else {
      const TensorView nchw = b.at(b.extra, x_shape);
      cuda::ops::unpatchify(h, 1, cuda::ops::PatchOrder::channel_minor, nchw, run.stream);
      proj_out_conv_->forward(nchw, normalized, run.arena, run.cublas, run.stream);
    }
    cuda::ops::add(x, normalized, x, run.stream);
  }

 private:
  std::size_t token_buffers_bytes(std::int64_t batch, std::int64_t tokens, std::int64_t context_tokens) const {
    const std::int64_t rows = batch * tokens, c = settings_.channels;
    const std::int64_t source_rows = batch * std::max(tokens, context_tokens);
    return 3 * bf16_footprint(rows, c) + 2 * bf16_footprint(source_rows, c) + bf16_footprint(rows, 8 * c) +
           bf16_footprint(rows, 4 * c);
  }

  UNetTokenBuffers take_token_buffers(Arena& arena, std::int64_t batch, std::int64_t tokens,
                                      std::int64_t context_tokens) const {
    const std::int64_t rows = batch * tokens, c = settings_.channels;
    const std::int64_t source_rows = batch * std::max(tokens, context_tokens);
    UNetTokenBuffers t;
    t.h = arena.take(Shape{rows, c}, DType::bf16, "UNet transformer hidden states");
    t.normed = arena.take(Shape{rows, c}, DType::bf16, "UNet transformer LayerNorm output");
    t.q = arena.take(Shape{rows, c}, DType::bf16, "UNet transformer q");
    t.k = arena.take(Shape{source_rows, c}, DType::bf16, "UNet transformer k");
    t.v = arena.take(Shape{source_rows, c}, DType::bf16, "UNet transformer v");
    t.ff_hidden = arena.take(Shape{rows, 8 * c}, DType::bf16, "UNet transformer GEGLU input");
    t.ff_gated = arena.take(Shape{rows, 4 * c}, DType::bf16, "UNet transformer GEGLU output");
    return t;
  }

  UNetTransformerSettings settings_;
  std::string prefix_;
  std::optional<VaeGroupNorm> norm_;
  std::optional<Linear> proj_in_linear_, proj_out_linear_;
  std::optional<Conv2d> proj_in_conv_, proj_out_conv_;
  std::vector<UNetTransformerBlock> blocks_;
};

}  // namespace sdnq::nn::gpu::detail
