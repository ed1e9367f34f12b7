#pragma once
// FluxTransformer2DModel on the GPU in bf16: the CPU model's computation (nn/models/flux.hpp, whose
// header comment gives the data flow), its config parsing (FluxTransformerConfig) and tensor names,
// with every weight uploaded to the device tensor by tensor while loading.
//
// Joint attention runs on one [B, Lt + Li, H·D] q/k/v buffer (text first, as FLUX concatenates). The
// RoPE tables come from the CPU helper (nn::detail::rotary_embedding) and stay on the device for the
// last token layout: a denoising loop passes the same img_ids / txt_ids every step, so they are
// computed and uploaded once, and again only when the ids change. Memory follows nn/gpu/clip.cuh:
// weights on the device, activations from the caller's cuda::Workspace sized by
// workspace_bytes(batch, image_tokens, text_tokens); forward() takes its output first and leaves it in
// use (a view valid until the caller releases it), then takes and gives back its temporaries. Nothing
// is allocated during forward except the RoPE tables when the layout changes; for that cache, one
// model runs one forward at a time.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "sdnq/cuda/device_pool.hpp"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/cuda/ops/positional.cuh"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/attention.cuh"
#include "sdnq/nn/gpu/detail/flux_blocks.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/models/flux.hpp"

namespace sdnq::nn::gpu {

class FluxTransformer2DModel {
 public:
  static constexpr std::string_view class_name = "FluxTransformer2DModel (GPU)";

  static FluxTransformer2DModel load(const std::filesystem::path& folder, int device = 0) {
    WeightLoader weights = WeightLoader::open(folder);
    return load(weights, device);
  }

  // From any weight source, e.g. WeightLoader::from_memory for a published config with random weights.
  static FluxTransformer2DModel load(WeightLoader& weights, int device = 0) {
    FluxTransformer2DModel model;
    model.device_ = device;
    model.config_ = FluxTransformerConfig::from_json(weights.config());
    const FluxTransformerConfig& c = model.config_;
    const std::int64_t d = c.inner_dim();
    const nn::detail::AttentionShape shape{d, c.num_attention_heads, c.attention_head_dim};
    (void)detail::padded_head_dim(c.attention_head_dim);  // refuse unsupported head sizes at load
    cuda::DeviceGuard guard(device);
    cuda::PooledLoad pooled(device, "FluxTransformer2DModel weights");  // no 2 MiB rounding per tensor
    // The state-dict names of nn::FluxTransformer2DModel::load (flux.hpp and its detail headers).
    model.x_embedder_ = Linear::load(weights, "x_embedder", c.in_channels, d, true, device);
    model.context_embedder_ = Linear::load(weights, "context_embedder", c.joint_attention_dim, d, true, device);
    const std::string embed = "time_text_embed";
    const std::int64_t sinusoid = nn::detail::timestep_sinusoid_dim;
    model.timestep_embedder_ = detail::DitTwoLayerMlp::load(weights, embed + ".timestep_embedder", sinusoid, d, device);
    if (c.guidance_embeds)
      model.guidance_embedder_ =
          detail::DitTwoLayerMlp::load(weights, embed + ".guidance_embedder", sinusoid, d, device);
    model.text_embedder_ =
        detail::DitTwoLayerMlp::load(weights, embed + ".text_embedder", c.pooled_projection_dim, d, device);
    for (int i = 0; i < c.num_layers; ++i)
      model.double_blocks_.push_back(detail::FluxDoubleBlockWeights::load(weights, i, shape, device));
    for (int i = 0; i < c.num_single_layers; ++i)
      model.single_blocks_.push_back(detail::FluxSingleBlockWeights::load(weights, i, shape, device));
    model.norm_out_ = Linear::load(weights, "norm_out.linear", d, 2 * d, true, device);
    model.proj_out_ = Linear::load(weights, "proj_out", d, model.output_channels(), true, device);
    weights.require_all_used(nn::FluxTransformer2DModel::class_name);
    return model;
  }

  const FluxTransformerConfig& config() const { return config_; }
  int device() const { return device_; }
  std::int64_t output_channels() const { return config_.patch_size * config_.patch_size * config_.out_channels; }

  // Every Linear with the number of rows it multiplies for one forward (kinds for reports, scratch sizes).
  std::vector<std::pair<const Linear*, std::int64_t>> linears(std::int64_t batch, std::int64_t image_tokens,
                                                              std::int64_t text_tokens) const {
    const std::int64_t image_rows = batch * image_tokens, text_rows = batch * text_tokens;
    const std::int64_t joint_rows = image_rows + text_rows;
    std::vector<std::pair<const Linear*, std::int64_t>> all{{&x_embedder_, image_rows},
                                                            {&context_embedder_, text_rows}};
    for (const detail::DitTwoLayerMlp* mlp : {&timestep_embedder_, &text_embedder_})
      for (const Linear* l : {&mlp->linear_1, &mlp->linear_2}) all.emplace_back(l, batch);
    if (config_.guidance_embeds)
      for (const Linear* l : {&guidance_embedder_.linear_1, &guidance_embedder_.linear_2}) all.emplace_back(l, batch);
    // q, k, v (+ proj_mlp) once each, or the one Linear they were joined into.
    const auto projections = [&](const detail::DitQkv& qkv, const Linear* extra, std::int64_t rows) {
      if (qkv.joined) return all.emplace_back(&*qkv.joined, rows), void();
      for (const Linear* l : {&qkv.q, &qkv.k, &qkv.v, extra})
        if (l != nullptr) all.emplace_back(l, rows);
    };
    for (const auto& b : double_blocks_) {
      for (const Linear* l : {&b.norm1, &b.norm1_context}) all.emplace_back(l, batch);
      projections(b.image, nullptr, image_rows);
      for (const Linear* l : {&b.to_out, &b.ff.project_in, &b.ff.project_out}) all.emplace_back(l, image_rows);
      projections(b.context, nullptr, text_rows);
      for (const Linear* l : {&b.to_add_out, &b.ff_context.project_in, &b.ff_context.project_out})
        all.emplace_back(l, text_rows);
    }
    for (const auto& b : single_blocks_) {
      all.emplace_back(&b.norm, batch);
      projections(b.qkv, &b.proj_mlp, joint_rows);
      all.emplace_back(&b.proj_out, joint_rows);
    }
    all.emplace_back(&norm_out_, batch);
    all.emplace_back(&proj_out_, image_rows);
    return all;
  }

  // Workspace bytes one forward needs, its output included.
  std::size_t workspace_bytes(std::int64_t batch, std::int64_t image_tokens, std::int64_t text_tokens) const {
    const std::int64_t d = config_.inner_dim(), head_dim = config_.attention_head_dim;
    const std::int64_t li = batch * image_tokens, lt = batch * text_tokens, joint = li + lt;
    const auto bf16 = [](std::int64_t rows, std::int64_t columns) {
      return Arena::footprint(Shape{rows, columns}, DType::bf16);
    };
    const std::size_t output = bf16(li, output_channels());
    const std::size_t persistent = bf16(batch, d) + bf16(li, d) + bf16(lt, d) + bf16(joint, d);
    const std::size_t conditioning = Arena::footprint(Shape{batch}, DType::f32) +
                                     bf16(batch, nn::detail::timestep_sinusoid_dim) + 3 * bf16(batch, d);
    const std::size_t double_block = 2 * bf16(batch, 6 * d) + 2 * bf16(li, d) + 2 * bf16(lt, d) + 4 * bf16(joint, d) +
                                     bf16(std::max(li, lt), 4 * d) + bf16(std::max(li, lt), d);
    std::int64_t mlp_width = 4 * d;  // the MLP hidden, or a joined projection's [q | k | v | mlp]
    for (const auto& b : single_blocks_) mlp_width = std::max(mlp_width, b.qkv.joined_width());
    const std::size_t single_block =
        bf16(batch, 3 * d) + 6 * bf16(joint, d) + bf16(joint, mlp_width) + bf16(joint, 5 * d);
    const std::size_t final_norm = bf16(batch, 2 * d) + bf16(li, d);
    std::size_t scratch = attention_workspace_bytes(batch, image_tokens + text_tokens, image_tokens + text_tokens,
                                                    config_.num_attention_heads, head_dim);
    std::size_t shared = 0;  // rows quantized once for the Linears that read them, or the joined GEMM's output
    for (const auto& b : double_blocks_)
      shared = std::max({shared, b.image.share_bytes(li, nullptr), b.context.share_bytes(lt, nullptr),
                         bf16(li, b.image.joined_width()), bf16(lt, b.context.joined_width())});
    for (const auto& b : single_blocks_) shared = std::max(shared, b.qkv.share_bytes(joint, &b.proj_mlp));
    for (const auto& [linear, rows] : linears(batch, image_tokens, text_tokens))
      scratch = std::max(scratch, linear->workspace_bytes(rows));
    scratch += shared;
    return output + persistent + std::max({conditioning, double_block, single_block, final_norm}) + scratch;
  }

  // hidden_states [B, Li, in_channels], encoder_hidden_states [B, Lt, joint_attention_dim] and
  // pooled_projections [B, pooled_projection_dim]: contiguous bf16 device tensors; timestep and guidance
  // [B]: contiguous f32 device tensors as the pipeline passes them (t / 1000; guidance iff
  // guidance_embeds); img_ids [Li, axes] and txt_ids [Lt, axes] (or with a leading batch axis, whose
  // first entry is used): contiguous f32 host tensors. Returns [B, Li, p²·out_channels] bf16, a view
  // into the workspace. Runs on `stream` without waiting for it.
  TensorView forward(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                     const TensorView& pooled_projections, const TensorView& timestep, const TensorView& img_ids,
                     const TensorView& txt_ids, const TensorView* guidance, cuda::Workspace& workspace,
                     cudaStream_t stream) const {
    const FluxTransformerConfig& c = config_;
    check_arguments(hidden_states, encoder_hidden_states, pooled_projections, timestep, guidance);
    const std::int64_t batch = hidden_states.size(0), li = hidden_states.size(1), lt = encoder_hidden_states.size(1);
    const std::int64_t s = li + lt, d = c.inner_dim();
    const TensorView image_ids = ids_rows(img_ids, "img_ids", li, "hidden_states");
    const TensorView text_ids = ids_rows(txt_ids, "txt_ids", lt, "encoder_hidden_states");
    cuda::DeviceGuard guard(device_);
    Arena& arena = workspace.arena();
    cublasHandle_t cublas = cublas_.get();

    const Rope rope_tables = rope_of(text_ids, image_ids);
    const TensorView output = arena.take(Shape{batch, li, output_channels()}, DType::bf16, "FLUX output");
    ArenaScope scope(arena);

    const TensorView temb_silu = arena.take(Shape{batch, d}, DType::bf16, "FLUX SiLU(temb)");  // [B, D]
    conditioning(timestep, guidance, pooled_projections, temb_silu, arena, stream);

    const TensorView image = arena.take(Shape{batch, li, d}, DType::bf16, "FLUX image stream");    // [B, Li, D]
    const TensorView context = arena.take(Shape{batch, lt, d}, DType::bf16, "FLUX text stream");   // [B, Lt, D]
    const TensorView tokens = arena.take(Shape{batch, s, d}, DType::bf16, "FLUX joint sequence");  // [B, S, D]
    x_embedder_.forward(detail::token_rows(hidden_states), detail::token_rows(image), arena, cublas, stream);
    context_embedder_.forward(detail::token_rows(encoder_hidden_states), detail::token_rows(context), arena, cublas,
                              stream);
    for (const auto& block : double_blocks_) double_block(block, image, context, temb_silu, rope_tables, arena, stream);

    detail::copy_bf16_columns(tokens.data(), s * d, context.data(), lt * d, lt * d, batch, stream);
    detail::copy_bf16_columns(detail::bf16_element(tokens, lt * d), s * d, image.data(), li * d, li * d, batch, stream);
    for (const auto& block : single_blocks_) single_block(block, tokens, temb_silu, rope_tables, arena, stream);

    // norm_out (AdaLayerNormContinuous: chunk 0 is the scale, chunk 1 the shift) and proj_out on the image.
    detail::copy_bf16_columns(image.data(), li * d, detail::bf16_element(tokens, lt * d), s * d, li * d, batch, stream);
    ArenaScope final_scope(arena);
    const TensorView modulation = arena.take(Shape{batch, 2 * d}, DType::bf16, "FLUX norm_out modulation");
    const TensorView normed = arena.take(Shape{batch, li, d}, DType::bf16, "FLUX norm_out output");
    norm_out_.forward(temb_silu, modulation, arena, cublas, stream);
    cuda::ops::layer_norm_modulate(image, cuda::ops::modulation_chunk(modulation, 2, nn::detail::continuous_shift),
                                   cuda::ops::modulation_chunk(modulation, 2, nn::detail::continuous_scale),
                                   nn::detail::adaptive_norm_eps, normed, stream);
    proj_out_.forward(detail::token_rows(normed), detail::token_rows(output), arena, cublas, stream);
    return output;
  }

 private:
  struct Rope {
    TensorView cos, sin;  // [S, head_dim] f32 on the device
  };
  // The RoPE tables of the last joint ids, kept on the device.
  struct RopeCache {
    Tensor ids;       // [S, axes] f32 host: [text; image] ids the tables were computed from
    Tensor cos, sin;  // [S, head_dim] f32 on the device
  };

  // RoPE tables of the joint sequence [text; image]: computed on the host and uploaded only when the
  // ids differ from the last call's (the upload is synchronous; freeing the old tables waits for the
  // device, so a forward still reading them finishes first).
  Rope rope_of(const TensorView& text_ids, const TensorView& image_ids) const {
    const TensorView id_parts[] = {text_ids, image_ids};
    Tensor ids = concat(id_parts, 0);
    RopeCache& cache = rope_cache_;
    const bool unchanged = cache.ids.defined() && cache.ids.shape() == ids.shape() &&
                           std::memcmp(cache.ids.data(), ids.data(), ids.nbytes()) == 0;
    if (!unchanged) {
      const nn::detail::RotaryEmbedding rope = nn::detail::rotary_embedding(ids, config_.axes_dims_rope);
      cache.cos = Tensor();
      cache.sin = Tensor();
      cache.ids = Tensor();  // a failed upload leaves no stale entry behind
      Tensor cos = cuda::to_device(rope.cos, device_), sin = cuda::to_device(rope.sin, device_);
      cache.cos = std::move(cos);
      cache.sin = std::move(sin);
      cache.ids = std::move(ids);
    }
    return {cache.cos.view(), cache.sin.view()};
  }

  // SiLU(timestep_embedder(sinusoid(1000 t)) [+ guidance_embedder(sinusoid(1000 g))] + text_embedder(pooled)),
  // with 1000 t and 1000 g rounded as a bf16 model computes them (detail::bf16_scaled_values).
  void conditioning(const TensorView& timestep, const TensorView* guidance, const TensorView& pooled,
                    const TensorView& temb_silu, Arena& arena, cudaStream_t stream) const {
    ArenaScope scope(arena);
    const std::int64_t batch = temb_silu.size(0), d = temb_silu.size(1);
    const int sinusoid_dim = nn::detail::timestep_sinusoid_dim;
    const TensorView sinusoid = arena.take(Shape{batch, sinusoid_dim}, DType::bf16, "FLUX timestep sinusoid");
    const TensorView hidden = arena.take(Shape{batch, d}, DType::bf16, "FLUX embedder hidden");
    const TensorView part = arena.take(Shape{batch, d}, DType::bf16, "FLUX embedder output");
    const TensorView temb = arena.take(Shape{batch, d}, DType::bf16, "FLUX temb");
    const TensorView scaled = arena.take(Shape{batch}, DType::f32, "FLUX timestep or guidance times 1000");
    const auto mlp = [&](const detail::DitTwoLayerMlp& m, const TensorView& x, const TensorView& out) {
      m.forward(x, hidden, out, arena, cublas_.get(), stream);
    };
    constexpr float pipeline_scale = 1000.0f;  // the model multiplies t / 1000 back, in bf16
    constexpr int max_period = 10000;
    detail::bf16_scaled_values(timestep, scaled, pipeline_scale, stream);
    cuda::ops::timestep_embedding(scaled, sinusoid_dim, true, 0.0f, 1.0f, max_period, sinusoid, stream);
    mlp(timestep_embedder_, sinusoid, temb);
    if (guidance != nullptr) {
      detail::bf16_scaled_values(*guidance, scaled, pipeline_scale, stream);
      cuda::ops::timestep_embedding(scaled, sinusoid_dim, true, 0.0f, 1.0f, max_period, sinusoid, stream);
      mlp(guidance_embedder_, sinusoid, part);
      cuda::ops::add(temb, part, temb, stream);
    }
    mlp(text_embedder_, pooled, part);
    cuda::ops::add(temb, part, temb, stream);
    cuda::ops::activation(temb, temb_silu, cuda::ops::Activation::silu, stream);
  }

  // RoPE on q and k, then attention: joint q, k, v [B, S, D] -> attended [B, S, D].
  void joint_attention(const TensorView* joint, const TensorView& attended, const Rope& rope, Arena& arena,
                       cudaStream_t stream) const {
    const std::int64_t heads = config_.num_attention_heads, hd = config_.attention_head_dim;
    for (int i = 0; i < 2; ++i) {
      const TensorView split = cuda::ops::split_heads(joint[i], heads, hd);
      cuda::ops::apply_rope(split, rope.cos, rope.sin, split, stream);
    }
    cuda::ops::AttentionOptions options;
    options.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    gpu::attention(joint[0], joint[1], joint[2], attended, heads, options, arena, stream);
  }

  // In place: image [B, Li, D], context [B, Lt, D].
  void double_block(const detail::FluxDoubleBlockWeights& b, const TensorView& image, const TensorView& context,
                    const TensorView& temb_silu, const Rope& rope, Arena& arena, cudaStream_t stream) const {
    using namespace nn::detail;  // chunk names
    ArenaScope scope(arena);
    const std::int64_t batch = image.size(0), li = image.size(1), lt = context.size(1), s = li + lt, d = image.size(2);
    cublasHandle_t cublas = cublas_.get();
    const TensorView m = arena.take(Shape{batch, 6 * d}, DType::bf16, "FLUX norm1 modulation");
    const TensorView c = arena.take(Shape{batch, 6 * d}, DType::bf16, "FLUX norm1_context modulation");
    const TensorView image_normed = arena.take(Shape{batch, li, d}, DType::bf16, "FLUX image normed");
    const TensorView context_normed = arena.take(Shape{batch, lt, d}, DType::bf16, "FLUX text normed");
    const TensorView image_part = arena.take(Shape{batch, li, d}, DType::bf16, "FLUX image projection");
    const TensorView context_part = arena.take(Shape{batch, lt, d}, DType::bf16, "FLUX text projection");
    const TensorView joint[] = {arena.take(Shape{batch, s, d}, DType::bf16, "FLUX joint q"),
                                arena.take(Shape{batch, s, d}, DType::bf16, "FLUX joint k"),
                                arena.take(Shape{batch, s, d}, DType::bf16, "FLUX joint v")};
    const TensorView attended = arena.take(Shape{batch, s, d}, DType::bf16, "FLUX joint attention output");
    const std::int64_t longest = std::max(li, lt);
    const TensorView ff_hidden_rows = arena.take(Shape{batch * longest, 4 * d}, DType::bf16, "FLUX FF hidden");
    const TensorView update_rows = arena.take(Shape{batch * longest, d}, DType::bf16, "FLUX block update");
    const auto chunk = [](const TensorView& emb, int index) { return cuda::ops::modulation_chunk(emb, 6, index); };

    b.norm1.forward(temb_silu, m, arena, cublas, stream);
    b.norm1_context.forward(temb_silu, c, arena, cublas, stream);
    cuda::ops::layer_norm_modulate(image, chunk(m, shift_msa), chunk(m, scale_msa), adaptive_norm_eps, image_normed,
                                   stream);
    cuda::ops::layer_norm_modulate(context, chunk(c, shift_msa), chunk(c, scale_msa), adaptive_norm_eps, context_normed,
                                   stream);
    // q, k, v of each stream: one joined GEMM into a wide buffer, or three on the rows quantized once
    // (quantized-matmul layers) or as they are.
    const auto project = [&](const detail::DitQkv& qkv, const TensorView& normed, const TensorView& part,
                             std::int64_t first) {
      ArenaScope shared(arena);
      const TensorView rows = detail::token_rows(normed);
      const TensorView wide = qkv.joined ? arena.take(Shape{rows.size(0), qkv.joined_width()}, DType::bf16,
                                                      "FLUX joined q/k/v projection")
                                         : TensorView();
      qkv.project_into(qkv.share(rows, nullptr, arena, stream), detail::token_rows(part), first, joint, arena, cublas,
                       stream, wide);
    };
    project(b.context, context_normed, context_part, 0);
    project(b.image, image_normed, image_part, lt);
    joint_attention(joint, attended, rope, arena, stream);

    // One stream's attention output, output projection, gated residual and gated feed-forward.
    const auto finish_stream = [&](const TensorView& x, const TensorView& normed, const TensorView& part,
                                   std::int64_t first, const Linear& out_projection, const detail::DitFeedForward& ff,
                                   const TensorView& emb) {
      const std::int64_t length = x.size(1);
      const TensorView update = detail::view_as(update_rows, Shape{batch, length, d});
      const TensorView hidden = detail::view_as(ff_hidden_rows, Shape{batch * length, 4 * d});
      detail::copy_bf16_columns(part.data(), length * d, detail::bf16_element(attended, first * d), s * d, length * d,
                                batch, stream);
      out_projection.forward(detail::token_rows(part), detail::token_rows(update), arena, cublas, stream);
      cuda::ops::gated_add(x, chunk(emb, gate_msa), update, x, stream);
      cuda::ops::layer_norm_modulate(x, chunk(emb, shift_mlp), chunk(emb, scale_mlp), adaptive_norm_eps, normed,
                                     stream);
      ff.forward(detail::token_rows(normed), hidden, detail::token_rows(update), arena, cublas, stream);
      cuda::ops::gated_add(x, chunk(emb, gate_mlp), update, x, stream);
    };
    finish_stream(image, image_normed, image_part, lt, b.to_out, b.ff, m);
    finish_stream(context, context_normed, context_part, 0, b.to_add_out, b.ff_context, c);
  }

  // In place: tokens [B, S, D] = [text; image].
  void single_block(const detail::FluxSingleBlockWeights& b, const TensorView& tokens, const TensorView& temb_silu,
                    const Rope& rope, Arena& arena, cudaStream_t stream) const {
    using namespace nn::detail;  // chunk names
    ArenaScope scope(arena);
    const std::int64_t batch = tokens.size(0), s = tokens.size(1), d = tokens.size(2), rows = batch * s;
    cublasHandle_t cublas = cublas_.get();
    const TensorView m = arena.take(Shape{batch, 3 * d}, DType::bf16, "FLUX single norm modulation");
    const TensorView normed = arena.take(Shape{batch, s, d}, DType::bf16, "FLUX single normed");
    const TensorView part = arena.take(Shape{rows, d}, DType::bf16, "FLUX single projection");
    const TensorView joint[] = {arena.take(Shape{batch, s, d}, DType::bf16, "FLUX single q"),
                                arena.take(Shape{batch, s, d}, DType::bf16, "FLUX single k"),
                                arena.take(Shape{batch, s, d}, DType::bf16, "FLUX single v")};
    const TensorView attended = arena.take(Shape{batch, s, d}, DType::bf16, "FLUX single attention output");
    // The MLP hidden rows, or with a joined projection its whole [q | k | v | mlp] output.
    const TensorView mlp = arena.take(Shape{rows, b.qkv.joined ? b.qkv.joined_width() : 4 * d}, DType::bf16,
                                      "FLUX single MLP hidden / joined projection");
    const TensorView both = arena.take(Shape{rows, 5 * d}, DType::bf16, "FLUX single [attention; MLP]");
    const auto chunk = [](const TensorView& emb, int index) { return cuda::ops::modulation_chunk(emb, 3, index); };

    b.norm.forward(temb_silu, m, arena, cublas, stream);
    cuda::ops::layer_norm_modulate(tokens, chunk(m, single_shift), chunk(m, single_scale), adaptive_norm_eps, normed,
                                   stream);
    if (b.qkv.joined) {  // [q | k | v | mlp] from one GEMM; GELU(mlp) straight into proj_out's input
      const TensorView wide = detail::view_as(mlp, Shape{rows, b.qkv.joined_width()});
      b.qkv.project_into(detail::token_rows(normed), part, 0, joint, arena, cublas, stream, wide);
      const TensorView mlp_columns(detail::bf16_element(wide, 3 * d), DType::bf16, Shape{rows, 4 * d},
                                   Shape{b.qkv.joined_width(), 1}, wide.device());
      const TensorView mlp_input(detail::bf16_element(both, d), DType::bf16, Shape{rows, 4 * d}, Shape{5 * d, 1},
                                 both.device());
      cuda::ops::activation_rows(mlp_columns, mlp_input, cuda::ops::Activation::gelu_tanh, stream);
    } else {  // proj_mlp, q, k, v on the normed rows quantized once (quantized-matmul layers)
      ArenaScope shared(arena);
      const LinearInput input = b.qkv.share(detail::token_rows(normed), &b.proj_mlp, arena, stream);
      b.proj_mlp.forward(input, mlp, arena, cublas, stream);
      cuda::ops::activation(mlp, mlp, cuda::ops::Activation::gelu_tanh, stream);
      b.qkv.project_into(input, part, 0, joint, arena, cublas, stream);
      detail::copy_bf16_columns(detail::bf16_element(both, d), 5 * d, mlp.data(), 4 * d, 4 * d, rows, stream);
    }
    joint_attention(joint, attended, rope, arena, stream);
    detail::copy_bf16_columns(both.data(), 5 * d, attended.data(), d, d, rows, stream);
    b.proj_out.forward(both, part, arena, cublas, stream);
    cuda::ops::gated_add(tokens, chunk(m, single_gate), detail::view_as(part, tokens.shape()), tokens, stream);
  }

  void check_arguments(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                       const TensorView& pooled, const TensorView& timestep, const TensorView* guidance) const {
    const FluxTransformerConfig& c = config_;
    const Device device = Device::cuda(device_);
    const auto require_device = [&](const TensorView& x, const char* name, DType dtype) {
      SDNQ_REQUIRE(x.device() == device && x.dtype() == dtype && x.is_contiguous(), ShapeError,
                   "{}.forward: {} must be a contiguous {} tensor on {}, got {} {} on {}", class_name, name,
                   dtype_name(dtype), device.to_string(), dtype_name(x.dtype()), x.shape().to_string(),
                   x.device().to_string());
      cuda::check_pointer_location(x, name);
    };
    SDNQ_REQUIRE(hidden_states.rank() == 3 && hidden_states.size(2) == c.in_channels && hidden_states.size(0) >= 1 &&
                     hidden_states.size(1) >= 1,
                 ShapeError, "{}.forward: hidden_states must be [batch, image tokens, {}] (in_channels), got {}",
                 class_name, c.in_channels, hidden_states.shape().to_string());
    const std::int64_t batch = hidden_states.size(0);
    SDNQ_REQUIRE(encoder_hidden_states.rank() == 3 && encoder_hidden_states.size(0) == batch &&
                     encoder_hidden_states.size(2) == c.joint_attention_dim && encoder_hidden_states.size(1) >= 1,
                 ShapeError,
                 "{}.forward: encoder_hidden_states must be [{}, text tokens, {}] (batch of hidden_states, "
                 "joint_attention_dim), got {}",
                 class_name, batch, c.joint_attention_dim, encoder_hidden_states.shape().to_string());
    SDNQ_REQUIRE(pooled.rank() == 2 && pooled.size(0) == batch && pooled.size(1) == c.pooled_projection_dim, ShapeError,
                 "{}.forward: pooled_projections must be [{}, {}] (batch, pooled_projection_dim), got {}", class_name,
                 batch, c.pooled_projection_dim, pooled.shape().to_string());
    SDNQ_REQUIRE(c.guidance_embeds == (guidance != nullptr), ShapeError,
                 "{}.forward: guidance {} (config guidance_embeds = {})", class_name,
                 c.guidance_embeds ? "is required" : "must not be passed", c.guidance_embeds);
    const auto require_per_sample = [&](const TensorView& x, const char* name) {
      SDNQ_REQUIRE(x.rank() == 1 && x.size(0) == batch, ShapeError,
                   "{}.forward: {} must be [{}] (one value per sample), got {}", class_name, name, batch,
                   x.shape().to_string());
      require_device(x, name, DType::f32);
    };
    require_per_sample(timestep, "timestep");
    if (guidance != nullptr) require_per_sample(*guidance, "guidance");
    require_device(hidden_states, "hidden_states", DType::bf16);
    require_device(encoder_hidden_states, "encoder_hidden_states", DType::bf16);
    require_device(pooled, "pooled_projections", DType::bf16);
  }

  // img_ids / txt_ids as host [tokens, axes] rows; `tokens` must match the stream they position.
  TensorView ids_rows(const TensorView& ids, const char* name, std::int64_t tokens, const char* stream_name) const {
    const auto axes = static_cast<std::int64_t>(config_.axes_dims_rope.size());
    SDNQ_REQUIRE((ids.rank() == 2 || (ids.rank() == 3 && ids.size(0) >= 1)) && ids.size(-1) == axes, ShapeError,
                 "{}.forward: {} must be [tokens, {}] (one column per axes_dims_rope entry), got {}", class_name, name,
                 axes, ids.shape().to_string());
    SDNQ_REQUIRE(ids.device().is_cpu() && ids.dtype() == DType::f32 && ids.is_contiguous(), ShapeError,
                 "{}.forward: {} must be a contiguous host F32 tensor (the RoPE tables are computed on the host), got "
                 "{} on {}",
                 class_name, name, dtype_name(ids.dtype()), ids.device().to_string());
    const TensorView rows = ids.rank() == 3 ? ids[0] : ids;
    SDNQ_REQUIRE(rows.size(0) == tokens, ShapeError, "{}.forward: {} has {} rows but {} has {} tokens; they must agree",
                 class_name, name, rows.size(0), stream_name, tokens);
    return rows;
  }

  int device_ = 0;
  FluxTransformerConfig config_;
  Linear x_embedder_, context_embedder_;
  detail::DitTwoLayerMlp timestep_embedder_, guidance_embedder_, text_embedder_;
  std::vector<detail::FluxDoubleBlockWeights> double_blocks_;
  std::vector<detail::FluxSingleBlockWeights> single_blocks_;
  Linear norm_out_;  // AdaLayerNormContinuous linear: D -> 2D (scale, shift)
  Linear proj_out_;  // D -> p²·out_channels
  detail::CublasHandle cublas_;
  mutable RopeCache rope_cache_;
};

}  // namespace sdnq::nn::gpu
