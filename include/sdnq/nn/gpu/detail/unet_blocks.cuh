#pragma once
// The UNet's down, mid and up blocks on the GPU in bf16 (the CPU nn/models/detail/unet_blocks.hpp gives the
// data flow and the tensor names), built from the VAE's GPU blocks (detail/vae_blocks.cuh) and the GPU
// Transformer2DModel (detail/unet_transformer.cuh):
//   UNetResnet     VaeResnetBlock + its time_emb_proj Linear (SiLU(temb) -> per-channel bias after conv1)
//   UNetDownBlock  per layer: resnet [-> transformer], copy to a skip; then [stride-2 conv, copy to a skip]
//   UNetMidBlock   resnet, transformer, resnet
//   UNetUpBlock    per layer: concat(h, last skip) along channels -> resnet [-> transformer]; then [upsample]
// The activation travels in VaeBuffers::current as in the VAE; the skips are tensors of their own (the
// caller takes one per UNetPlan::skips entry, in order) and the channel concat is written into `spare`.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sdnq/nn/gpu/detail/unet_transformer.cuh"
#include "sdnq/nn/gpu/detail/vae_blocks.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/unet_blocks.hpp"

namespace sdnq::nn::gpu::detail {

// The pass's activation and scratch needs plus the shape of every skip, in push order.
struct UNetPlan {
  VaePlan sizes;
  std::vector<Shape> skips;
};

// What a UNet block's forward needs besides the buffers.
struct UNetRun {
  VaeRun base;
  const TensorView& temb_silu;  // SiLU(temb) [N, temb_channels]
  const LinearInput& context;   // encoder_hidden_states as rows [N·Lc, cross_attention_dim] (+ 8-bit codes)
  std::vector<TensorView>& skips;
  std::size_t next_skip = 0;  // down blocks fill skips[next_skip++]; up blocks take skips[--next_skip]
};

class UNetResnet {
 public:
  static UNetResnet load(WeightLoader& weights, const std::string& prefix, std::int64_t in_channels,
                         std::int64_t out_channels, const nn::detail::UNetBlockCommon& common, int device) {
    UNetResnet r;
    r.out_channels_ = out_channels;
    r.block_ = VaeResnetBlock::load(weights, prefix, in_channels, out_channels, common.groups, device, common.eps);
    r.time_emb_proj_ =
        Linear::load(weights, prefix + ".time_emb_proj", common.temb_channels, out_channels, true, device);
    return r;
  }

  template <class Visit>
  void visit_linears(std::int64_t batch, Visit&& visit) const {
    visit(*time_emb_proj_, batch);
  }

  Shape plan(const Shape& x, VaePlan& plan) const {
    VaePlan block;
    const Shape out = block_->plan(x, block);
    const std::size_t bias = bf16_footprint(x[0], out_channels_);  // live through the block
    plan.activation_elements = std::max(plan.activation_elements, block.activation_elements);
    plan.scratch(bias + std::max(block.scratch_bytes, time_emb_proj_->workspace_bytes(x[0])));
    return out;
  }

  void forward(const VaeBuffers& b, const Shape& x_shape, const UNetRun& run) const {
    ArenaScope scope(run.base.arena);
    const TensorView bias =
        run.base.arena.take(Shape{x_shape[0], out_channels_}, DType::bf16, "UNet resnet time embedding projection");
    time_emb_proj_->forward(run.temb_silu, bias, run.base.arena, run.base.cublas, run.base.stream);
    block_->forward(b, x_shape, run.base, &bias);
  }

 private:
  std::int64_t out_channels_ = 0;
  std::optional<VaeResnetBlock> block_;
  std::optional<Linear> time_emb_proj_;
};

// The resnets (+ transformers) of one block; shared by the down, mid and up blocks.
struct UNetLayers {
  std::vector<UNetResnet> resnets;
  std::vector<UNetTransformer> attentions;  // empty, or one per resnet (the mid block: one fewer)

  template <class Visit>
  void visit_linears(std::int64_t batch, std::int64_t tokens, std::int64_t context_rows, Visit&& visit) const {
    for (const auto& r : resnets) r.visit_linears(batch, visit);
    for (const auto& a : attentions) a.visit_linears(tokens, context_rows, visit);
  }

  // The Linears that read the context rows (every cross-attention's to_k and to_v).
  void context_readers(std::vector<const Linear*>& readers) const {
    for (const auto& a : attentions) a.context_readers(readers);
  }
};

inline UNetTransformer load_unet_transformer(WeightLoader& weights, const std::string& prefix,
                                             const nn::detail::UNetBlockSettings& block,
                                             const nn::detail::UNetBlockCommon& common, std::int64_t layers,
                                             int device) {
  return UNetTransformer::load(weights, prefix,
                               {.channels = block.out_channels,
                                .heads = block.heads,
                                .layers = layers,
                                .cross_attention_dim = block.cross_attention_dim,
                                .groups = common.groups,
                                .linear_projection = common.linear_projection},
                               device);
}

// Copies the activation in b.current into the next skip tensor.
inline void push_skip(const VaeBuffers& b, const Shape& shape, UNetRun& run) {
  const TensorView& skip = run.skips.at(run.next_skip++);
  SDNQ_REQUIRE(skip.shape() == shape, ShapeError, "UNet skip {}: planned {}, got {}", run.next_skip - 1,
               skip.shape().to_string(), shape.to_string());
  SDNQ_CUDA_CHECK(cudaMemcpyAsync(skip.data(), b.current, skip.nbytes(), cudaMemcpyDeviceToDevice, run.base.stream));
}

class UNetDownBlock {
 public:
  void context_readers(std::vector<const Linear*>& readers) const { layers_.context_readers(readers); }

  static UNetDownBlock load(WeightLoader& weights, const nn::detail::UNetBlockSettings& block,
                            const nn::detail::UNetBlockCommon& common, int device) {
    UNetDownBlock down;
    for (std::int64_t layer = 0; layer < block.layers; ++layer) {
      const std::string index = std::to_string(layer);
      down.layers_.resnets.push_back(UNetResnet::load(weights, block.prefix + ".resnets." + index,
                                                      layer == 0 ? block.in_channels : block.out_channels,
                                                      block.out_channels, common, device));
      if (block.cross_attention)
        down.layers_.attentions.push_back(load_unet_transformer(weights, block.prefix + ".attentions." + index, block,
                                                                common, block.transformer_layers[layer], device));
    }
    if (block.add_sampler)
      down.downsampler_ = VaeDownsample::load(weights, block.prefix + ".downsamplers.0", block.out_channels,
                                              block.downsample_padding, device);
    return down;
  }

  template <class Visit>
  Shape visit_linears(const Shape& x, std::int64_t context_tokens, Visit&& visit) const {
    const std::int64_t batch = x[0];
    layers_.visit_linears(batch, batch * x[2] * x[3], batch * context_tokens, visit);
    return x;
  }

  Shape plan(Shape h, std::int64_t context_tokens, UNetPlan& plan) const {
    for (std::size_t i = 0; i < layers_.resnets.size(); ++i) {
      h = layers_.resnets[i].plan(h, plan.sizes);
      if (!layers_.attentions.empty()) h = layers_.attentions[i].plan(h, context_tokens, plan.sizes);
      plan.skips.push_back(h);
    }
    if (downsampler_) {
      h = downsampler_->plan(h, plan.sizes);
      plan.skips.push_back(h);
    }
    return h;
  }

  Shape forward(VaeBuffers& b, Shape h, UNetRun& run) const {
    for (std::size_t i = 0; i < layers_.resnets.size(); ++i) {
      VaePlan unused;
      const Shape in = h;
      h = layers_.resnets[i].plan(in, unused);
      layers_.resnets[i].forward(b, in, run);
      if (!layers_.attentions.empty()) layers_.attentions[i].forward(b, h, run.context, run.base);
      push_skip(b, h, run);
    }
    if (downsampler_) {
      VaePlan unused;
      const Shape in = h;
      h = downsampler_->plan(in, unused);
      downsampler_->forward(b, in, run.base);
      std::swap(b.current, b.spare);
      push_skip(b, h, run);
    }
    return h;
  }

 private:
  UNetLayers layers_;
  std::optional<VaeDownsample> downsampler_;
};

class UNetMidBlock {
 public:
  void context_readers(std::vector<const Linear*>& readers) const { layers_.context_readers(readers); }

  static UNetMidBlock load(WeightLoader& weights, const nn::detail::UNetBlockSettings& block,
                           const nn::detail::UNetBlockCommon& common, int device) {
    UNetMidBlock mid;
    for (int i = 0; i < 2; ++i)
      mid.layers_.resnets.push_back(UNetResnet::load(weights, block.prefix + ".resnets." + std::to_string(i),
                                                     block.out_channels, block.out_channels, common, device));
    mid.layers_.attentions.push_back(load_unet_transformer(weights, block.prefix + ".attentions.0", block, common,
                                                           block.transformer_layers[0], device));
    return mid;
  }

  template <class Visit>
  void visit_linears(const Shape& x, std::int64_t context_tokens, Visit&& visit) const {
    layers_.visit_linears(x[0], x[0] * x[2] * x[3], x[0] * context_tokens, visit);
  }

  Shape plan(Shape h, std::int64_t context_tokens, UNetPlan& plan) const {
    h = layers_.resnets[0].plan(h, plan.sizes);
    h = layers_.attentions[0].plan(h, context_tokens, plan.sizes);
    return layers_.resnets[1].plan(h, plan.sizes);
  }

  void forward(VaeBuffers& b, const Shape& h, UNetRun& run) const {
    layers_.resnets[0].forward(b, h, run);
    layers_.attentions[0].forward(b, h, run.context, run.base);
    layers_.resnets[1].forward(b, h, run);
  }

 private:
  UNetLayers layers_;
};

class UNetUpBlock {
 public:
  void context_readers(std::vector<const Linear*>& readers) const { layers_.context_readers(readers); }

  static UNetUpBlock load(WeightLoader& weights, const nn::detail::UNetBlockSettings& block,
                          const nn::detail::UNetBlockCommon& common, int device) {
    UNetUpBlock up;
    for (std::int64_t layer = 0; layer < block.layers; ++layer) {
      const std::string index = std::to_string(layer);
      const std::int64_t skip_channels = layer == block.layers - 1 ? block.in_channels : block.out_channels;
      const std::int64_t from_below = layer == 0 ? block.previous_out_channels : block.out_channels;
      up.layers_.resnets.push_back(UNetResnet::load(weights, block.prefix + ".resnets." + index,
                                                    from_below + skip_channels, block.out_channels, common, device));
      if (block.cross_attention)
        up.layers_.attentions.push_back(load_unet_transformer(weights, block.prefix + ".attentions." + index, block,
                                                              common, block.transformer_layers[layer], device));
    }
    if (block.add_sampler)
      up.upsampler_ = VaeUpsample::load(weights, block.prefix + ".upsamplers.0", block.out_channels, device);
    return up;
  }

  std::size_t skip_count() const { return layers_.resnets.size(); }

  template <class Visit>
  void visit_linears(const Shape& x, std::int64_t context_tokens, Visit&& visit) const {
    layers_.visit_linears(x[0], x[0] * x[2] * x[3], x[0] * context_tokens, visit);
  }

  // skips: the plan's skip shapes, consumed from the back.
  Shape plan(Shape h, std::int64_t context_tokens, std::vector<Shape>& skips, UNetPlan& plan) const {
    for (std::size_t i = 0; i < layers_.resnets.size(); ++i) {
      h = concat_shape(h, skips.back());
      skips.pop_back();
      plan.sizes.activation(h);
      h = layers_.resnets[i].plan(h, plan.sizes);
      if (!layers_.attentions.empty()) h = layers_.attentions[i].plan(h, context_tokens, plan.sizes);
    }
    if (upsampler_) h = upsampler_->plan(h, plan.sizes);
    return h;
  }

  Shape forward(VaeBuffers& b, Shape h, UNetRun& run) const {
    for (std::size_t i = 0; i < layers_.resnets.size(); ++i) {
      const TensorView skip = run.skips.at(--run.next_skip);
      const Shape joined = concat_shape(h, skip.shape());
      // Per sample: h's channels, then the skip's (torch.cat([h, skip], dim=1)).
      const std::int64_t first = h.numel() / h[0], second = skip.numel() / h[0], pitch = first + second;
      copy_bf16_columns(b.spare, pitch, b.current, first, first, h[0], run.base.stream);
      copy_bf16_columns(static_cast<std::byte*>(b.spare) + first * 2, pitch, skip.data(), second, second, h[0],
                        run.base.stream);
      std::swap(b.current, b.spare);
      VaePlan unused;
      h = layers_.resnets[i].plan(joined, unused);
      layers_.resnets[i].forward(b, joined, run);
      if (!layers_.attentions.empty()) layers_.attentions[i].forward(b, h, run.context, run.base);
    }
    if (upsampler_) {
      VaePlan unused;
      const Shape in = h;
      h = upsampler_->plan(in, unused);
      upsampler_->forward(b, in, run.base);
    }
    return h;
  }

 private:
  static Shape concat_shape(const Shape& h, const Shape& skip) {
    SDNQ_REQUIRE(h[0] == skip[0] && h[2] == skip[2] && h[3] == skip[3], ShapeError,
                 "UNet up block: the activation {} and its skip {} differ in batch or size", h.to_string(),
                 skip.to_string());
    return Shape{h[0], h[1] + skip[1], h[2], h[3]};
  }

  UNetLayers layers_;
  std::optional<VaeUpsample> upsampler_;
};

}  // namespace sdnq::nn::gpu::detail
