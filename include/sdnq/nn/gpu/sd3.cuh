#pragma once
// SD3Transformer2DModel (SD3 and SD3.5) on the GPU in bf16: the CPU model's computation
// (nn/models/sd3.hpp, whose header comment gives the data flow), its config parsing
// (SD3TransformerConfig) and tensor names, every weight uploaded to the device tensor by tensor while
// loading, any SDNQ format through nn::gpu::Linear.
//
// The joint blocks (detail/sd3_blocks.cuh) run attention on one [B, Li + Lt, H·D] q/k/v buffer, image
// first as SD3 concatenates. Memory follows nn/gpu/flux.cuh: weights on the device, activations from
// the caller's cuda::Workspace sized by workspace_bytes(batch, height, width, text_tokens); forward()
// takes its output first and leaves it in use (a view valid until the caller releases it), then takes
// and gives back its temporaries. Nothing is allocated during forward.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_pool.hpp"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/cuda/ops/positional.cuh"
#include "sdnq/cuda/ops/resample.cuh"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/attention.cuh"
#include "sdnq/nn/gpu/detail/dit_common.cuh"
#include "sdnq/nn/gpu/detail/sd3_blocks.cuh"
#include "sdnq/nn/gpu/detail/sd3_patch_embed.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq/nn/models/sd3.hpp"

namespace sdnq::nn::gpu {

class SD3Transformer2DModel {
 public:
  static constexpr std::string_view class_name = "SD3Transformer2DModel (GPU)";

  static SD3Transformer2DModel load(const std::filesystem::path& folder, int device = 0) {
    WeightLoader weights = WeightLoader::open(folder);
    return load(weights, device);
  }
  // From an open component: its loader's options apply (set_requantized_matmul) and weights.report() then
  // tells what the model took.
  static SD3Transformer2DModel load(WeightLoader& weights, int device = 0) {
    SD3Transformer2DModel model;
    model.device_ = device;
    model.config_ = SD3TransformerConfig::from_json(weights.config());
    const SD3TransformerConfig& c = model.config_;
    const std::int64_t d = c.inner_dim();
    const nn::detail::AttentionShape shape{d, c.num_attention_heads, c.attention_head_dim};
    (void)detail::padded_head_dim(c.attention_head_dim);  // refuse unsupported head sizes at load
    cuda::DeviceGuard guard(device);
    cuda::PooledLoad pooled(device, "SD3Transformer2DModel weights");  // no 2 MiB rounding per tensor
    // The state-dict names of nn::SD3Transformer2DModel::load (sd3.hpp and its detail headers).
    model.pos_embed_ =
        detail::SD3PatchEmbed::load(weights, c.in_channels, d, c.patch_size, c.pos_embed_max_size, device);
    const std::string embed = "time_text_embed";
    model.timestep_embedder_ = detail::DitTwoLayerMlp::load(weights, embed + ".timestep_embedder",
                                                            nn::detail::timestep_sinusoid_dim, d, device);
    model.text_embedder_ =
        detail::DitTwoLayerMlp::load(weights, embed + ".text_embedder", c.pooled_projection_dim, d, device);
    model.context_embedder_ =
        Linear::load(weights, "context_embedder", c.joint_attention_dim, c.caption_projection_dim, true, device);
    for (int i = 0; i < c.num_layers; ++i)
      model.blocks_.push_back(detail::SD3JointBlock::load(weights, i, shape, c.qk_norm, i == c.num_layers - 1,
                                                          c.dual_attention(i), device));
    model.norm_out_ = Linear::load(weights, "norm_out.linear", d, 2 * d, true, device);
    model.proj_out_ = Linear::load(weights, "proj_out", d, model.patch_channels(), true, device);
    weights.require_all_used(nn::SD3Transformer2DModel::class_name);
    return model;
  }

  const SD3TransformerConfig& config() const { return config_; }
  int device() const { return device_; }
  // Values per token that proj_out writes: p²·out_channels.
  std::int64_t patch_channels() const { return config_.patch_size * config_.patch_size * config_.out_channels; }

  // Every Linear with the number of rows it multiplies for one forward on latents of height × width
  // (kinds for reports, scratch sizes).
  std::vector<std::pair<const Linear*, std::int64_t>> linears(std::int64_t batch, std::int64_t height,
                                                              std::int64_t width, std::int64_t text_tokens) const {
    const std::int64_t image_rows = batch * image_tokens(height, width), text_rows = batch * text_tokens;
    std::vector<std::pair<const Linear*, std::int64_t>> all{{&context_embedder_, text_rows}};
    for (const detail::DitTwoLayerMlp* mlp : {&timestep_embedder_, &text_embedder_})
      for (const Linear* l : {&mlp->linear_1, &mlp->linear_2}) all.emplace_back(l, batch);
    for (const auto& block : blocks_)
      block.visit_linears(batch, image_rows, text_rows,
                          [&](const Linear& l, std::int64_t rows) { all.emplace_back(&l, rows); });
    all.emplace_back(&norm_out_, batch);
    all.emplace_back(&proj_out_, image_rows);
    return all;
  }

  // Workspace bytes one forward on latents [batch, C, height, width] and text_tokens tokens needs, its
  // output included.
  std::size_t workspace_bytes(std::int64_t batch, std::int64_t height, std::int64_t width,
                              std::int64_t text_tokens) const {
    const std::int64_t d = config_.inner_dim(), p = config_.patch_size;
    const std::int64_t li = image_tokens(height, width), lt = text_tokens;
    const auto bf16 = detail::bf16_footprint;
    const std::size_t output = bf16(batch * config_.out_channels, height * width);
    const std::size_t persistent = bf16(batch, d) + bf16(batch * li, d) + bf16(batch * lt, d);
    const std::size_t conditioning = bf16(batch, nn::detail::timestep_sinusoid_dim) + 3 * bf16(batch, d);
    const std::size_t patch_embed = pos_embed_.workspace_bytes(batch, height / p, width / p);
    std::size_t block = 0;
    for (const auto& b : blocks_) block = std::max(block, b.activation_bytes(batch, li, lt));
    const std::size_t final_norm = bf16(batch, 2 * d) + bf16(batch * li, d) + bf16(batch * li, patch_channels());
    std::size_t scratch =
        attention_workspace_bytes(batch, li + lt, li + lt, config_.num_attention_heads, config_.attention_head_dim);
    for (const auto& [linear, rows] : linears(batch, height, width, text_tokens))
      scratch = std::max(scratch, linear->workspace_bytes(rows));
    std::size_t shared = 0;  // rows quantized once for q, k, v (held while they run)
    for (const auto& b : blocks_) shared = std::max(shared, b.shared_input_bytes(batch, li, lt));
    return output + persistent + std::max({conditioning, patch_embed, block, final_norm}) + scratch + shared;
  }

  // hidden_states [B, in_channels, H, W] (H, W positive multiples of patch_size, at most
  // pos_embed_max_size patches each way), encoder_hidden_states [B, Lt, joint_attention_dim] and
  // pooled_projections [B, pooled_projection_dim]: contiguous bf16 device tensors; timestep [B]: a
  // contiguous f32 device tensor on the scheduler's 0..1000 scale, as the SD3 pipeline passes it.
  // Returns [B, out_channels, H, W] bf16, a view into the workspace. Runs on `stream` without waiting.
  TensorView forward(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                     const TensorView& pooled_projections, const TensorView& timestep, cuda::Workspace& workspace,
                     cudaStream_t stream) const {
    check_arguments(hidden_states, encoder_hidden_states, pooled_projections, timestep);
    const std::int64_t batch = hidden_states.size(0), height = hidden_states.size(2), width = hidden_states.size(3);
    const std::int64_t li = image_tokens(height, width), lt = encoder_hidden_states.size(1), d = config_.inner_dim();
    cuda::DeviceGuard guard(device_);
    Arena& arena = workspace.arena();
    cublasHandle_t cublas = cublas_.get();

    const TensorView output = arena.take(Shape{batch, config_.out_channels, height, width}, DType::bf16, "SD3 output");
    ArenaScope scope(arena);
    const TensorView temb_silu = arena.take(Shape{batch, d}, DType::bf16, "SD3 SiLU(temb)");     // [B, D]
    const TensorView image = arena.take(Shape{batch, li, d}, DType::bf16, "SD3 image stream");   // [B, Li, D]
    const TensorView context = arena.take(Shape{batch, lt, d}, DType::bf16, "SD3 text stream");  // [B, Lt, D]
    conditioning(timestep, pooled_projections, temb_silu, arena, stream);
    pos_embed_.forward(hidden_states, image, arena, cublas, stream);
    context_embedder_.forward(detail::token_rows(encoder_hidden_states), detail::token_rows(context), arena, cublas,
                              stream);
    for (const auto& block : blocks_) block.forward(image, context, temb_silu, arena, cublas, stream);

    // norm_out (AdaLayerNormContinuous: chunk 0 is the scale, chunk 1 the shift), proj_out, unpatchify.
    ArenaScope final_scope(arena);
    const TensorView modulation = arena.take(Shape{batch, 2 * d}, DType::bf16, "SD3 norm_out modulation");
    const TensorView normed = arena.take(Shape{batch, li, d}, DType::bf16, "SD3 norm_out output");
    const TensorView patches =
        arena.take(Shape{batch, li, patch_channels()}, DType::bf16, "SD3 output patches");  // [B, Li, p·p·C]
    norm_out_.forward(temb_silu, modulation, arena, cublas, stream);
    cuda::ops::layer_norm_modulate(image, cuda::ops::modulation_chunk(modulation, 2, nn::detail::continuous_shift),
                                   cuda::ops::modulation_chunk(modulation, 2, nn::detail::continuous_scale),
                                   nn::detail::adaptive_norm_eps, normed, stream);
    proj_out_.forward(detail::token_rows(normed), detail::token_rows(patches), arena, cublas, stream);
    cuda::ops::unpatchify(patches, static_cast<int>(config_.patch_size), cuda::ops::PatchOrder::channel_minor, output,
                          stream);
    return output;
  }

 private:
  std::int64_t image_tokens(std::int64_t height, std::int64_t width) const {
    return (height / config_.patch_size) * (width / config_.patch_size);
  }

  // SiLU(timestep_embedder(sinusoid(t)) + text_embedder(pooled)); t on the 0..1000 scale, unrounded
  // (diffusers computes the sinusoid in f32 from the f32 timestep, then casts it to bf16).
  void conditioning(const TensorView& timestep, const TensorView& pooled, const TensorView& temb_silu, Arena& arena,
                    cudaStream_t stream) const {
    ArenaScope scope(arena);
    const std::int64_t batch = temb_silu.size(0), d = temb_silu.size(1);
    const int sinusoid_dim = nn::detail::timestep_sinusoid_dim;
    const TensorView sinusoid = arena.take(Shape{batch, sinusoid_dim}, DType::bf16, "SD3 timestep sinusoid");
    const TensorView hidden = arena.take(Shape{batch, d}, DType::bf16, "SD3 embedder hidden");
    const TensorView temb = arena.take(Shape{batch, d}, DType::bf16, "SD3 temb");
    const TensorView text = arena.take(Shape{batch, d}, DType::bf16, "SD3 pooled text embedding");
    constexpr int max_period = 10000;
    cuda::ops::timestep_embedding(timestep, sinusoid_dim, true, 0.0f, 1.0f, max_period, sinusoid, stream);
    timestep_embedder_.forward(sinusoid, hidden, temb, arena, cublas_.get(), stream);
    text_embedder_.forward(pooled, hidden, text, arena, cublas_.get(), stream);
    cuda::ops::add(temb, text, temb, stream);
    cuda::ops::activation(temb, temb_silu, cuda::ops::Activation::silu, stream);
  }

  void check_arguments(const TensorView& hidden_states, const TensorView& encoder_hidden_states,
                       const TensorView& pooled, const TensorView& timestep) const {
    const SD3TransformerConfig& c = config_;
    const std::int64_t patch = c.patch_size;
    const Device device = Device::cuda(device_);
    const auto require_device = [&](const TensorView& x, const char* name, DType dtype) {
      SDNQ_REQUIRE(x.device() == device && x.dtype() == dtype && x.is_contiguous(), ShapeError,
                   "{}.forward: {} must be a contiguous {} tensor on {}, got {} {} on {}", class_name, name,
                   dtype_name(dtype), device.to_string(), dtype_name(x.dtype()), x.shape().to_string(),
                   x.device().to_string());
      cuda::check_pointer_location(x, name);
    };
    SDNQ_REQUIRE(hidden_states.rank() == 4 && hidden_states.size(0) >= 1 && hidden_states.size(1) == c.in_channels,
                 ShapeError, "{}.forward: hidden_states must be [batch, {} (in_channels), height, width], got {}",
                 class_name, c.in_channels, hidden_states.shape().to_string());
    SDNQ_REQUIRE(hidden_states.size(2) > 0 && hidden_states.size(3) > 0 && hidden_states.size(2) % patch == 0 &&
                     hidden_states.size(3) % patch == 0,
                 ShapeError,
                 "{}.forward: hidden_states height and width must be positive multiples of patch_size {}, got {}",
                 class_name, patch, hidden_states.shape().to_string());
    SDNQ_REQUIRE(
        hidden_states.size(2) / patch <= c.pos_embed_max_size && hidden_states.size(3) / patch <= c.pos_embed_max_size,
        ShapeError,
        "{}.forward: hidden_states {} is {} x {} patches, more than the positional table's "
        "pos_embed_max_size {} in a direction",
        class_name, hidden_states.shape().to_string(), hidden_states.size(2) / patch, hidden_states.size(3) / patch,
        c.pos_embed_max_size);
    const std::int64_t batch = hidden_states.size(0);
    SDNQ_REQUIRE(encoder_hidden_states.rank() == 3 && encoder_hidden_states.size(0) == batch &&
                     encoder_hidden_states.size(1) >= 1 && encoder_hidden_states.size(2) == c.joint_attention_dim,
                 ShapeError,
                 "{}.forward: encoder_hidden_states must be [{}, text tokens, {}] (batch of hidden_states, "
                 "joint_attention_dim), got {}",
                 class_name, batch, c.joint_attention_dim, encoder_hidden_states.shape().to_string());
    SDNQ_REQUIRE(pooled.rank() == 2 && pooled.size(0) == batch && pooled.size(1) == c.pooled_projection_dim, ShapeError,
                 "{}.forward: pooled_projections must be [{}, {}] (batch, pooled_projection_dim), got {}", class_name,
                 batch, c.pooled_projection_dim, pooled.shape().to_string());
    SDNQ_REQUIRE(timestep.rank() == 1 && timestep.size(0) == batch, ShapeError,
                 "{}.forward: timestep must be [{}] (one value per sample), got {}", class_name, batch,
                 timestep.shape().to_string());
    require_device(hidden_states, "hidden_states", DType::bf16);
    require_device(encoder_hidden_states, "encoder_hidden_states", DType::bf16);
    require_device(pooled, "pooled_projections", DType::bf16);
    require_device(timestep, "timestep", DType::f32);
  }

  int device_ = 0;
  SD3TransformerConfig config_;
  detail::SD3PatchEmbed pos_embed_;
  detail::DitTwoLayerMlp timestep_embedder_, text_embedder_;
  Linear context_embedder_;  // joint_attention_dim -> D
  std::vector<detail::SD3JointBlock> blocks_;
  Linear norm_out_;  // AdaLayerNormContinuous linear: D -> 2D (scale, shift)
  Linear proj_out_;  // D -> p²·out_channels
  detail::CublasHandle cublas_;
};

}  // namespace sdnq::nn::gpu
