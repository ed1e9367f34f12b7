#pragma once
// UNet2DConditionModel on the GPU in bf16: the CPU model's computation (nn/models/unet.hpp; SD 1.x / 2.x
// and SDXL settings incl. text_time conditioning, per-block transformer depth, linear or 1×1-conv
// proj_in/out), its config parsing (read_unet_config) and tensor names, every weight uploaded to the
// device while loading, every Linear through nn::gpu::Linear (any SDNQ weight), every conv through
// nn::gpu::Conv2d (SDNQ convs dequantized once at load: gpu::Conv2d says why).
//
//   auto unet = sdnq::nn::gpu::UNet2DConditionModel::load("models/sdxl/unet", 0);
//   cuda::Workspace workspace(unet.workspace_bytes(2, 128, 128, 77), 0, "unet");
//   TensorView eps = unet.forward(sample, timestep, context, &text_embeds, &time_ids, workspace, stream);
//
// Memory follows nn/gpu/vae.cuh: the resnets, samplers and transformers cycle through three activation
// buffers as large as the pass's largest activation (detail::UNetPlan finds it), the skip connections
// are tensors of their own, and the output is taken first and left in use (a view valid until the
// caller releases it); everything else is given back before returning. Nothing is allocated during a
// pass, which runs on `stream` without waiting for it.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/device_pool.hpp"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/positional.cuh"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/detail/dit_common.cuh"
#include "sdnq/nn/gpu/detail/unet_blocks.cuh"
#include "sdnq/nn/models/detail/unet_config.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu {

class UNet2DConditionModel {
 public:
  static constexpr std::string_view class_name = "UNet2DConditionModel (GPU)";

  static UNet2DConditionModel load(const std::filesystem::path& component_folder, int device = 0) {
    WeightLoader weights = WeightLoader::open(component_folder);
    return load(weights, device);
  }

  static UNet2DConditionModel load(WeightLoader& weights, int device = 0) {
    UNet2DConditionModel unet;
    unet.label_ = std::string(class_name) + " at " + weights.folder().string();
    const nn::detail::DiffusersConfigReader reader(weights.config(), unet.label_);
    const std::string config_class = reader.string("_class_name", "");
    SDNQ_REQUIRE(config_class == "UNet2DConditionModel", UnsupportedError,
                 "{}: config.json has _class_name \"{}\"; this loader reads UNet2DConditionModel",
                 weights.folder().string(), config_class);
    unet.device_ = device;
    unet.config_ = nn::detail::read_unet_config(reader);
    const UNet2DConditionConfig& c = unet.config_;
    SDNQ_REQUIRE(!c.center_input_sample, UnsupportedError, "{}: center_input_sample true is not supported on the GPU",
                 unet.label_);
    SDNQ_REQUIRE(c.mid_block_scale_factor == 1.0, UnsupportedError,
                 "{}: mid_block_scale_factor {} is not supported on the GPU (only 1)", unet.label_,
                 c.mid_block_scale_factor);
    for (std::int64_t width : c.cross_attention_dim)
      SDNQ_REQUIRE(width == c.cross_attention_dim[0], UnsupportedError,
                   "{}: per-block cross_attention_dim values differ; one encoder_hidden_states width is supported",
                   unet.label_);
    cuda::DeviceGuard guard(device);
    cuda::PooledLoad pooled(device, "UNet2DConditionModel weights");  // no 2 MiB rounding per tensor
    unet.load_weights(weights);
    weights.require_all_used("UNet2DConditionModel");
    return unet;
  }

  const UNet2DConditionConfig& config() const { return config_; }
  int device() const { return device_; }

  // Every Linear with the number of rows it multiplies for one forward on latents [batch, C, height,
  // width] with text_tokens tokens of context (reports, tests).
  std::vector<std::pair<const Linear*, std::int64_t>> linears(std::int64_t batch, std::int64_t height,
                                                              std::int64_t width, std::int64_t text_tokens) const {
    std::vector<std::pair<const Linear*, std::int64_t>> all;
    const auto visit = [&](const Linear& l, std::int64_t rows) { all.emplace_back(&l, rows); };
    for (const Linear* l : {&time_mlp_.linear_1, &time_mlp_.linear_2}) visit(*l, batch);
    if (add_mlp_)
      for (const Linear* l : {&add_mlp_->linear_1, &add_mlp_->linear_2}) visit(*l, batch);
    const std::size_t blocks = down_blocks_.size();
    const auto at_level = [&](std::size_t level) {
      return Shape{batch, 1, height >> level, width >> level};  // channels unused
    };
    for (std::size_t i = 0; i < blocks; ++i) down_blocks_[i].visit_linears(at_level(i), text_tokens, visit);
    if (mid_block_) mid_block_->visit_linears(at_level(blocks - 1), text_tokens, visit);
    for (std::size_t i = 0; i < blocks; ++i) up_blocks_[i].visit_linears(at_level(blocks - 1 - i), text_tokens, visit);
    return all;
  }

  // Workspace bytes one forward on latents [batch, in_channels, height, width] with text_tokens tokens
  // of encoder_hidden_states needs, its output included.
  std::size_t workspace_bytes(std::int64_t batch, std::int64_t height, std::int64_t width,
                              std::int64_t text_tokens) const {
    const detail::UNetPlan plan = make_plan(Shape{batch, config_.in_channels, height, width}, text_tokens);
    // Byte counts, not temporary Shapes (g++ -O3 warns maybe-uninitialized once inlined).
    std::size_t bytes = detail::bf16_footprint(batch * config_.out_channels, height * width);
    for (const Shape& skip : plan.skips) bytes += detail::bf16_footprint(skip.numel(), 1);
    bytes += 3 * Arena::footprint(static_cast<std::size_t>(plan.sizes.activation_elements) * 2);
    bytes += detail::bf16_footprint(batch, config_.time_embedding_dim);
    bytes += shared_input_bytes(context_readers(), batch * text_tokens);
    return bytes + std::max(plan.sizes.scratch_bytes, conditioning_bytes(batch));
  }

  // sample [B, in_channels, H, W] (H, W positive multiples of the downsampling factor),
  // encoder_hidden_states [B, L, cross_attention_dim] and, with text_time conditioning (SDXL), text_embeds
  // [B, T]: contiguous bf16 device tensors; timestep [B] and time_ids [B, K] (T + K · addition_time_embed_dim
  // = projection_class_embeddings_input_dim): contiguous f32 device tensors. Without text_time conditioning
  // text_embeds and time_ids are nullptr. Returns [B, out_channels, H, W] bf16, a view into the workspace.
  TensorView forward(const TensorView& sample, const TensorView& timestep, const TensorView& encoder_hidden_states,
                     const TensorView* text_embeds, const TensorView* time_ids, cuda::Workspace& workspace,
                     cudaStream_t stream) const {
    check_arguments(sample, timestep, encoder_hidden_states, text_embeds, time_ids);
    const std::int64_t batch = sample.size(0), text_tokens = encoder_hidden_states.size(1);
    cuda::DeviceGuard guard(device_);
    Arena& arena = workspace.arena();
    const detail::UNetPlan plan = make_plan(sample.shape(), text_tokens);
    const TensorView output = arena.take(Shape{batch, config_.out_channels, sample.size(2), sample.size(3)},
                                         DType::bf16, "UNet output");
    ArenaScope scope(arena);
    std::vector<TensorView> skips;
    for (const Shape& shape : plan.skips) skips.push_back(arena.take(shape, DType::bf16, "UNet skip connection"));
    detail::VaeBuffers b;
    b.device = device_;
    const Shape flat{plan.sizes.activation_elements};
    b.current = arena.take(flat, DType::bf16, "UNet activations (current)").data();
    b.spare = arena.take(flat, DType::bf16, "UNet activations (spare)").data();
    b.extra = arena.take(flat, DType::bf16, "UNet activations (extra)").data();
    const TensorView temb_silu = arena.take(Shape{batch, config_.time_embedding_dim}, DType::bf16, "UNet SiLU(temb)");
    conditioning(timestep, text_embeds, time_ids, temb_silu, arena, stream);

    // The text rows every cross-attention's to_k / to_v reads, quantized once for the whole pass where
    // those are quantized-matmul layers.
    const LinearInput context = share_input(detail::token_rows(encoder_hidden_states), context_readers(), arena, stream);
    detail::UNetRun run{{arena, cublas_.get(), stream, device_}, temb_silu, context, skips};
    Shape h = conv_in_->output_shape(sample.shape());
    conv_in_->forward(sample, b.at(b.current, h), arena, run.base.cublas, stream);
    detail::push_skip(b, h, run);
    for (const auto& block : down_blocks_) h = block.forward(b, h, run);
    if (mid_block_) mid_block_->forward(b, h, run);
    for (const auto& block : up_blocks_) h = block.forward(b, h, run);
    norm_out_->forward(b.at(b.current, h), b.at(b.spare, h), true, arena, stream);
    conv_out_->forward(b.at(b.spare, h), output, arena, run.base.cublas, stream);
    return output;
  }

 private:
  void load_weights(WeightLoader& weights) {
    const UNet2DConditionConfig& c = config_;
    const std::int64_t first = c.block_out_channels[0];
    const int device = device_;
    const auto same = [](std::int64_t kernel) { return cuda::ops::Conv2dOptions::symmetric(1, static_cast<int>(kernel / 2)); };
    conv_in_ = Conv2d::load(weights, "conv_in", c.in_channels, first, static_cast<int>(c.conv_in_kernel),
                            same(c.conv_in_kernel), device);
    time_mlp_ = detail::DitTwoLayerMlp::load(weights, "time_embedding", first, c.time_embedding_dim, device);
    if (c.text_time_embedding)
      add_mlp_ = detail::DitTwoLayerMlp::load(weights, "add_embedding", c.projection_class_embeddings_input_dim,
                                              c.time_embedding_dim, device);
    // The blocks of the CPU model (nn/models/unet.hpp), from the same settings.
    const nn::detail::UNetBlockLayout layout = nn::detail::unet_block_layout(c);
    for (const auto& block : layout.down)
      down_blocks_.push_back(detail::UNetDownBlock::load(weights, block, layout.common, device));
    if (layout.mid) mid_block_ = detail::UNetMidBlock::load(weights, *layout.mid, layout.common, device);
    for (const auto& block : layout.up) up_blocks_.push_back(detail::UNetUpBlock::load(weights, block, layout.common, device));
    norm_out_ = detail::VaeGroupNorm::load(weights, "conv_norm_out", c.norm_num_groups, first, device,
                                           static_cast<float>(c.norm_eps));
    conv_out_ = Conv2d::load(weights, "conv_out", first, c.out_channels, static_cast<int>(c.conv_out_kernel),
                             same(c.conv_out_kernel), device);
  }

  // Every cross-attention's to_k and to_v (they read the same encoder_hidden_states rows).
  std::vector<const Linear*> context_readers() const {
    std::vector<const Linear*> readers;
    for (const auto& block : down_blocks_) block.context_readers(readers);
    if (mid_block_) mid_block_->context_readers(readers);
    for (const auto& block : up_blocks_) block.context_readers(readers);
    return readers;
  }

  detail::UNetPlan make_plan(const Shape& sample, std::int64_t text_tokens) const {
    detail::UNetPlan plan;
    plan.sizes.scratch(conv_in_->workspace_bytes(sample));
    Shape h = conv_in_->output_shape(sample);
    plan.sizes.activation(h);
    plan.skips.push_back(h);
    for (const auto& block : down_blocks_) h = block.plan(h, text_tokens, plan);
    if (mid_block_) h = mid_block_->plan(h, text_tokens, plan);
    std::vector<Shape> pending = plan.skips;
    for (const auto& block : up_blocks_) h = block.plan(h, text_tokens, pending, plan);
    plan.sizes.scratch(norm_out_->workspace_bytes(h));
    plan.sizes.scratch(conv_out_->workspace_bytes(h));
    return plan;
  }

  // Arena bytes conditioning() takes besides temb_silu.
  std::size_t conditioning_bytes(std::int64_t batch) const {
    const UNet2DConditionConfig& c = config_;
    const auto bf16 = detail::bf16_footprint;
    std::size_t linear_scratch = 0;
    for (const detail::DitTwoLayerMlp* mlp : {&time_mlp_, add_mlp_ ? &*add_mlp_ : nullptr})
      if (mlp != nullptr)
        for (const Linear* l : {&mlp->linear_1, &mlp->linear_2})
          linear_scratch = std::max(linear_scratch, l->workspace_bytes(batch));
    std::size_t bytes = bf16(batch, c.block_out_channels[0]) + bf16(batch, c.time_embedding_dim);
    if (c.text_time_embedding)
      bytes += bf16(batch, c.projection_class_embeddings_input_dim) * 2 + bf16(batch, c.time_embedding_dim);
    return bytes + linear_scratch;
  }

  // temb_silu = SiLU(time_embedding(sinusoid(t)) [+ add_embedding(concat(text_embeds, sinusoid(time_ids)))]):
  // the sinusoids in f32 from the f32 inputs, rounded to bf16 (diffusers casts them to the model dtype).
  void conditioning(const TensorView& timestep, const TensorView* text_embeds, const TensorView* time_ids,
                    const TensorView& temb_silu, Arena& arena, cudaStream_t stream) const {
    const UNet2DConditionConfig& c = config_;
    constexpr int max_period = 10000;
    ArenaScope scope(arena);
    const std::int64_t batch = temb_silu.size(0), d = c.time_embedding_dim;
    const auto freq_shift = static_cast<float>(c.freq_shift);
    const int sinusoid_dim = static_cast<int>(c.block_out_channels[0]);
    const TensorView sinusoid = arena.take(Shape{batch, sinusoid_dim}, DType::bf16, "UNet timestep sinusoid");
    const TensorView hidden = arena.take(Shape{batch, d}, DType::bf16, "UNet embedding hidden");
    cuda::ops::timestep_embedding(timestep, sinusoid_dim, c.flip_sin_to_cos, freq_shift, 1.0f, max_period, sinusoid,
                                  stream);
    time_mlp_.forward(sinusoid, hidden, temb_silu, arena, cublas_.get(), stream);
    if (add_mlp_) {
      const std::int64_t text = text_embeds->size(1), ids = time_ids->size(1), dim = c.addition_time_embed_dim;
      const std::int64_t joint_width = c.projection_class_embeddings_input_dim;
      // [B, T + K·dim]: text_embeds, then each time id's sinusoid (the sinusoids written in place).
      const TensorView joint = arena.take(Shape{batch, joint_width}, DType::bf16, "UNet added-embedding input");
      const TensorView id_sinusoids = arena.take(Shape{batch * ids, dim}, DType::bf16, "UNet time_ids sinusoids");
      const TensorView flat_ids(time_ids->data(), DType::f32, Shape{batch * ids}, time_ids->device());
      cuda::ops::timestep_embedding(flat_ids, static_cast<int>(dim), c.flip_sin_to_cos, freq_shift, 1.0f, max_period,
                                    id_sinusoids, stream);
      detail::copy_bf16_columns(joint.data(), joint_width, text_embeds->data(), text, text, batch, stream);
      detail::copy_bf16_columns(detail::bf16_element(joint, text), joint_width, id_sinusoids.data(), ids * dim,
                                ids * dim, batch, stream);
      const TensorView added = arena.take(Shape{batch, d}, DType::bf16, "UNet added embedding");
      add_mlp_->forward(joint, hidden, added, arena, cublas_.get(), stream);
      cuda::ops::add(temb_silu, added, temb_silu, stream);
    }
    cuda::ops::activation(temb_silu, temb_silu, cuda::ops::Activation::silu, stream);
  }

  void check_arguments(const TensorView& sample, const TensorView& timestep, const TensorView& context,
                       const TensorView* text_embeds, const TensorView* time_ids) const {
    const UNet2DConditionConfig& c = config_;
    const Device device = Device::cuda(device_);
    const auto require_device = [&](const TensorView& x, const char* name, DType dtype) {
      SDNQ_REQUIRE(x.device() == device && x.dtype() == dtype && x.is_contiguous(), ShapeError,
                   "{}.forward: {} must be a contiguous {} tensor on {}, got {} {} on {}", class_name, name,
                   dtype_name(dtype), device.to_string(), dtype_name(x.dtype()), x.shape().to_string(),
                   x.device().to_string());
      cuda::check_pointer_location(x, name);
    };
    const std::int64_t factor = c.downsampling_factor();
    SDNQ_REQUIRE(sample.rank() == 4 && sample.size(0) >= 1 && sample.size(1) == c.in_channels, ShapeError,
                 "{}.forward: sample must be [batch, {} (in_channels), height, width], got {}", class_name,
                 c.in_channels, sample.shape().to_string());
    SDNQ_REQUIRE(sample.size(2) > 0 && sample.size(3) > 0 && sample.size(2) % factor == 0 &&
                     sample.size(3) % factor == 0,
                 ShapeError,
                 "{}.forward: sample height and width must be positive multiples of the downsampling factor {}, got {}",
                 class_name, factor, sample.shape().to_string());
    const std::int64_t batch = sample.size(0);
    SDNQ_REQUIRE(timestep.rank() == 1 && timestep.size(0) == batch, ShapeError,
                 "{}.forward: timestep must be [{}] (one value per sample), got {}", class_name, batch,
                 timestep.shape().to_string());
    SDNQ_REQUIRE(context.rank() == 3 && context.size(0) == batch && context.size(1) >= 1 &&
                     context.size(2) == c.cross_attention_dim[0],
                 ShapeError,
                 "{}.forward: encoder_hidden_states must be [{}, tokens, {}] (batch of sample, cross_attention_dim), "
                 "got {}",
                 class_name, batch, c.cross_attention_dim[0], context.shape().to_string());
    require_device(sample, "sample", DType::bf16);
    require_device(timestep, "timestep", DType::f32);
    require_device(context, "encoder_hidden_states", DType::bf16);
    if (!c.text_time_embedding) {
      SDNQ_REQUIRE(text_embeds == nullptr && time_ids == nullptr, ShapeError,
                   "{}.forward: text_embeds / time_ids were given, but the config has no addition_embed_type",
                   class_name);
      return;
    }
    SDNQ_REQUIRE(text_embeds != nullptr && time_ids != nullptr, ShapeError,
                 "{}.forward: addition_embed_type \"text_time\" needs text_embeds and time_ids", class_name);
    SDNQ_REQUIRE(text_embeds->rank() == 2 && text_embeds->size(0) == batch && time_ids->rank() == 2 &&
                     time_ids->size(0) == batch,
                 ShapeError, "{}.forward: text_embeds must be [{}, T] and time_ids [{}, K], got {} and {}", class_name,
                 batch, batch, text_embeds->shape().to_string(), time_ids->shape().to_string());
    const std::int64_t width = text_embeds->size(1) + time_ids->size(1) * c.addition_time_embed_dim;
    SDNQ_REQUIRE(width == c.projection_class_embeddings_input_dim, ShapeError,
                 "{}.forward: text_embeds {} and time_ids {} give {} added-embedding features "
                 "(T + K * addition_time_embed_dim {}), but projection_class_embeddings_input_dim is {}",
                 class_name, text_embeds->shape().to_string(), time_ids->shape().to_string(), width,
                 c.addition_time_embed_dim, c.projection_class_embeddings_input_dim);
    require_device(*text_embeds, "text_embeds", DType::bf16);
    require_device(*time_ids, "time_ids", DType::f32);
  }

  std::string label_;
  int device_ = 0;
  UNet2DConditionConfig config_;
  std::optional<Conv2d> conv_in_, conv_out_;
  detail::DitTwoLayerMlp time_mlp_;
  std::optional<detail::DitTwoLayerMlp> add_mlp_;
  std::vector<detail::UNetDownBlock> down_blocks_;
  std::optional<detail::UNetMidBlock> mid_block_;
  std::vector<detail::UNetUpBlock> up_blocks_;
  std::optional<detail::VaeGroupNorm> norm_out_;
  detail::CublasHandle cublas_;
};

}  // namespace sdnq::nn::gpu
