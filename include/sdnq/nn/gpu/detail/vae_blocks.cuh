#pragma once
// The AutoencoderKL's building blocks on the GPU in bf16, loaded under the CPU blocks' names
// (nn/models/detail/resnet_block.hpp, resnet_sampling.hpp, vae_mid_block.hpp give the math); the GPU
// UNet (nn/gpu/unet.cuh) runs its resnets, samplers and GroupNorms through the same classes:
//   VaeGroupNorm        GroupNorm(+SiLU) with its weight and bias on the device (eps: the VAE's 1e-6 or given)
//   VaeResnetBlock      norm1, SiLU, conv1 [+ time bias], norm2, SiLU, conv2, + shortcut (1×1 conv when
//                       channels change); the UNet passes its time_emb_proj output as the time bias
//   VaeUpsample         nearest ×2, 3×3 conv          VaeDownsample   3×3 stride-2 conv (padding 0: bottom/right)
//   VaeMidBlock         resnet, spatial attention (optional), resnet
// Memory: a pass cycles through three activation buffers (VaeBuffers), each as large as the largest
// activation of the pass (VaePlan finds it by walking the same blocks). A block reads its input from
// `current` and leaves its output there; `spare` and `extra` are its temporaries. Conv im2col columns
// and the attention's q, k, v and score chunks come from the arena, given back when the block returns.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/ops/conv.cuh"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/cuda/ops/resample.cuh"
#include "sdnq/nn/gpu/conv2d.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu::detail {

inline constexpr float vae_norm_eps = 1e-6f;
inline const cuda::ops::Conv2dOptions vae_same_3x3 = cuda::ops::Conv2dOptions::symmetric(1, 1);

// What one forward needs besides its buffers.
struct VaeRun {
  Arena& arena;
  cublasHandle_t cublas;
  cudaStream_t stream;
  int device;
};

// The largest activation (elements) and the largest arena scratch (bytes) of a pass.
struct VaePlan {
  std::int64_t activation_elements = 0;
  std::size_t scratch_bytes = 0;
  void activation(const Shape& shape) { activation_elements = std::max(activation_elements, shape.numel()); }
  void scratch(std::size_t bytes) { scratch_bytes = std::max(scratch_bytes, bytes); }
};

// Three buffers of VaePlan::activation_elements bf16 each.
struct VaeBuffers {
  void* current = nullptr;
  void* spare = nullptr;
  void* extra = nullptr;
  int device = 0;
  TensorView at(void* buffer, const Shape& shape) const {
    return TensorView(buffer, DType::bf16, shape, Device::cuda(device));
  }
};

class VaeGroupNorm {
 public:
  static VaeGroupNorm load(WeightLoader& weights, const std::string& prefix, int groups, std::int64_t channels,
                           int device, float eps = vae_norm_eps) {
    SDNQ_REQUIRE(groups >= 1 && channels % groups == 0, ConfigError, "GroupNorm '{}': {} groups must divide {} channels",
                 prefix, groups, channels);
    VaeGroupNorm norm;
    norm.name_ = prefix;
    norm.groups_ = groups;
    norm.channels_ = channels;
    norm.eps_ = eps;
    norm.weight_ = upload_bf16(weights.stored_float(prefix + ".weight", Shape{channels}), device, prefix + ".weight");
    norm.bias_ = upload_bf16(weights.stored_float(prefix + ".bias", Shape{channels}), device, prefix + ".bias");
    return norm;
  }

  // Arena bytes forward takes for x (the split kernel's partial statistics at large H·W).
  std::size_t workspace_bytes(const Shape& x) const {
    return Arena::footprint(cuda::ops::group_norm_workspace_bytes(x, groups_));
  }

  // x [N, C, H, W] -> out (may be x), SiLU fused when `silu`.
  void forward(const TensorView& x, const TensorView& out, bool silu, Arena& arena, cudaStream_t stream) const {
    SDNQ_REQUIRE(x.rank() == 4 && x.size(1) == channels_, ShapeError, "GroupNorm '{}': input must be [N, {}, H, W], got {}",
                 name_, channels_, x.shape().to_string());
    const TensorView weight = weight_.view(), bias = bias_.view();
    ArenaScope scope(arena);
    const std::size_t scratch_bytes = cuda::ops::group_norm_workspace_bytes(x.shape(), groups_);
    const TensorView scratch =
        scratch_bytes == 0
            ? TensorView()
            : arena.take(Shape{static_cast<std::int64_t>(scratch_bytes)}, DType::u8, name_ + " partial statistics");
    cuda::ops::group_norm(x, groups_, &weight, &bias, eps_, out, silu, scratch, stream);
  }

 private:
  std::string name_;
  int groups_ = 32;
  std::int64_t channels_ = 0;
  float eps_ = vae_norm_eps;
  Tensor weight_, bias_;  // [C] bf16 on the device
};

class VaeResnetBlock {
 public:
  static VaeResnetBlock load(WeightLoader& weights, const std::string& prefix, std::int64_t in_channels,
                             std::int64_t out_channels, int groups, int device, float eps = vae_norm_eps) {
    VaeResnetBlock block;
    block.norm1_ = VaeGroupNorm::load(weights, prefix + ".norm1", groups, in_channels, device, eps);
    block.conv1_ = Conv2d::load(weights, prefix + ".conv1", in_channels, out_channels, 3, vae_same_3x3, device);
    block.norm2_ = VaeGroupNorm::load(weights, prefix + ".norm2", groups, out_channels, device, eps);
    block.conv2_ = Conv2d::load(weights, prefix + ".conv2", out_channels, out_channels, 3, vae_same_3x3, device);
    if (in_channels != out_channels)
      block.shortcut_ = Conv2d::load(weights, prefix + ".conv_shortcut", in_channels, out_channels, 1, {}, device);
    return block;
  }

  // x [N, in, H, W] -> [N, out, H, W]
  Shape plan(const Shape& x, VaePlan& plan) const {
    const Shape out = conv1_->output_shape(x);
    plan.activation(x);
    plan.activation(out);
    plan.scratch(conv1_->workspace_bytes(x));
    plan.scratch(conv2_->workspace_bytes(out));
    plan.scratch(norm1_->workspace_bytes(x));
    plan.scratch(norm2_->workspace_bytes(out));
    if (shortcut_) plan.scratch(shortcut_->workspace_bytes(x));
    return out;
  }

  // time_bias: the UNet's time_emb_proj(SiLU(temb)) [N, out], added per channel after conv1 (the
  // projection is a Linear the UNet holds, so the VAE's unit does not compile the GEMM kernels).
  void forward(const VaeBuffers& b, const Shape& x_shape, const VaeRun& run,
               const TensorView* time_bias = nullptr) const {
    const Shape out_shape = conv1_->output_shape(x_shape);
    const TensorView x = b.at(b.current, x_shape);
    norm1_->forward(x, b.at(b.spare, x_shape), true, run.arena, run.stream);
    const TensorView h = b.at(b.extra, out_shape);
    conv1_->forward(b.at(b.spare, x_shape), h, run.arena, run.cublas, run.stream);
    if (time_bias != nullptr) cuda::ops::add_channel_vector(h, *time_bias, h, run.stream);
    norm2_->forward(h, h, true, run.arena, run.stream);
    const TensorView update = b.at(b.spare, out_shape);
    conv2_->forward(h, update, run.arena, run.cublas, run.stream);
    if (!shortcut_) return cuda::ops::add(x, update, x, run.stream);
    const TensorView shortcut = b.at(b.extra, out_shape);
    shortcut_->forward(x, shortcut, run.arena, run.cublas, run.stream);
    cuda::ops::add(shortcut, update, b.at(b.current, out_shape), run.stream);  // x is no longer needed
  }

 private:
  std::optional<VaeGroupNorm> norm1_, norm2_;
  std::optional<Conv2d> conv1_, conv2_, shortcut_;
};

// nearest ×2, then a 3×3 conv: [N, C, H, W] -> [N, C, 2H, 2W]
class VaeUpsample {
 public:
  static VaeUpsample load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int device) {
    VaeUpsample block;
    block.conv_ = Conv2d::load(weights, prefix + ".conv", channels, channels, 3, vae_same_3x3, device);
    return block;
  }
  Shape plan(const Shape& x, VaePlan& plan) const {
    const Shape doubled{x[0], x[1], 2 * x[2], 2 * x[3]};
    plan.activation(doubled);
    plan.scratch(conv_->workspace_bytes(doubled));
    return conv_->output_shape(doubled);
  }
  void forward(const VaeBuffers& b, const Shape& x_shape, const VaeRun& run) const {
    const Shape doubled{x_shape[0], x_shape[1], 2 * x_shape[2], 2 * x_shape[3]};
    SDNQ_REQUIRE(x_shape[1] == conv_->in_channels(), ShapeError, "Upsample2D '{}': input must have {} channels, got {}",
                 conv_->name(), conv_->in_channels(), x_shape.to_string());
    cuda::ops::upsample_nearest2x(b.at(b.current, x_shape), b.at(b.spare, doubled), run.stream);
    conv_->forward(b.at(b.spare, doubled), b.at(b.current, doubled), run.arena, run.cublas, run.stream);
  }

 private:
  std::optional<Conv2d> conv_;
};

// 3×3 conv with stride 2; diffusers' padding 0 pads one zero row at the bottom and one column at the
// right (the CPU block's pad_right_bottom), expressed here as asymmetric conv padding.
class VaeDownsample {
 public:
  static VaeDownsample load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int padding,
                            int device) {
    const cuda::ops::Conv2dOptions options =
        padding == 0 ? cuda::ops::Conv2dOptions{.stride = 2, .pad_bottom = 1, .pad_right = 1}
                     : cuda::ops::Conv2dOptions::symmetric(2, padding);
    VaeDownsample block;
    block.conv_ = Conv2d::load(weights, prefix + ".conv", channels, channels, 3, options, device);
    return block;
  }
  Shape plan(const Shape& x, VaePlan& plan) const {
    const Shape out = conv_->output_shape(x);
    plan.activation(out);
    plan.scratch(conv_->workspace_bytes(x));
    return out;
  }
  // Leaves the output in b.spare: the caller swaps current and spare.
  void forward(const VaeBuffers& b, const Shape& x_shape, const VaeRun& run) const {
    conv_->forward(b.at(b.current, x_shape), b.at(b.spare, conv_->output_shape(x_shape)), run.arena, run.cublas,
                   run.stream);
  }

 private:
  std::optional<Conv2d> conv_;
};

// diffusers' Attention over the H·W positions with one head spanning all C channels, kept in NCHW:
// q, k, v [C, P] per image come from 1×1 convs (the Linear projections), scores [rows, P] = qᵀk / √C
// for a bounded chunk of query rows, softmax along P, out[:, rows] = v · scoresᵀ; then to_out and the
// residual. The scores are materialized chunk by chunk (any C; the fused kernel stops at head_dim 128).
class VaeSpatialAttention {
 public:
  // Bytes of scores one chunk of query rows may take.
  static constexpr std::int64_t scores_budget_bytes = 64ll << 20;

  static VaeSpatialAttention load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int groups,
                                  int device) {
    SDNQ_REQUIRE(!weights.contains(prefix + ".query.weight"), UnsupportedError,
                 "{}: tensor '{}.query.weight' uses the old attention naming (query/key/value/proj_attn); "
                 "re-save the model with diffusers so it uses to_q/to_k/to_v/to_out.0",
                 weights.folder().string(), prefix);
    VaeSpatialAttention attention;
    attention.channels_ = channels;
    attention.group_norm_ = VaeGroupNorm::load(weights, prefix + ".group_norm", groups, channels, device);
    attention.to_q_ = Conv2d::load_linear_as_1x1(weights, prefix + ".to_q", channels, channels, device);
    attention.to_k_ = Conv2d::load_linear_as_1x1(weights, prefix + ".to_k", channels, channels, device);
    attention.to_v_ = Conv2d::load_linear_as_1x1(weights, prefix + ".to_v", channels, channels, device);
    attention.to_out_ = Conv2d::load_linear_as_1x1(weights, prefix + ".to_out.0", channels, channels, device);
    return attention;
  }

  static std::int64_t query_rows_per_chunk(std::int64_t positions) {
    const std::int64_t fit = scores_budget_bytes / (positions * 2);
    return fit >= positions ? positions : std::max<std::int64_t>(8, fit / 8 * 8);
  }

  Shape plan(const Shape& x, VaePlan& plan) const {
    const std::int64_t positions = x[2] * x[3];
    plan.activation(x);
    const auto bf16_bytes = [](std::int64_t elements) { return Arena::footprint(static_cast<std::size_t>(elements) * 2); };
    plan.scratch(4 * bf16_bytes(x.numel()) + bf16_bytes(query_rows_per_chunk(positions) * positions));
    return x;
  }

  void forward(const VaeBuffers& b, const Shape& x_shape, const VaeRun& run) const {
    SDNQ_REQUIRE(x_shape[1] == channels_, ShapeError, "attention '{}': input must have {} channels, got {}",
                 to_q_->name(), channels_, x_shape.to_string());
    const std::int64_t batch = x_shape[0], positions = x_shape[2] * x_shape[3];
    const TensorView x = b.at(b.current, x_shape), normalized = b.at(b.spare, x_shape);
    group_norm_->forward(x, normalized, false, run.arena, run.stream);
    ArenaScope scope(run.arena);
    const TensorView q = run.arena.take(x_shape, DType::bf16, "VAE attention q");  // [N, C, H, W]
    const TensorView k = run.arena.take(x_shape, DType::bf16, "VAE attention k");
    const TensorView v = run.arena.take(x_shape, DType::bf16, "VAE attention v");
    const TensorView attended = run.arena.take(x_shape, DType::bf16, "VAE attention output");
    to_q_->forward(normalized, q, run.arena, run.cublas, run.stream);
    to_k_->forward(normalized, k, run.arena, run.cublas, run.stream);
    to_v_->forward(normalized, v, run.arena, run.cublas, run.stream);
    const std::int64_t rows = query_rows_per_chunk(positions);
    const TensorView scores = run.arena.take(Shape{rows, positions}, DType::bf16, "VAE attention scores");
    const float scale = 1.0f / std::sqrt(static_cast<float>(channels_));
    const std::int64_t image_elements = channels_ * positions;
    using cuda::ops::kernel_detail::gemm_16bit;
    for (std::int64_t image = 0; image < batch; ++image) {
      const auto* qi = static_cast<const bf16_bits*>(q.data()) + image * image_elements;
      const auto* ki = static_cast<const bf16_bits*>(k.data()) + image * image_elements;
      const auto* vi = static_cast<const bf16_bits*>(v.data()) + image * image_elements;
      auto* oi = static_cast<bf16_bits*>(attended.data()) + image * image_elements;
      for (std::int64_t first = 0; first < positions; first += rows) {
        const std::int64_t count = std::min(rows, positions - first);
        // scores [count, P] row-major = column-major [P, count] = k_cm [P, C] · (q_cm[first.., :])ᵀ
        gemm_16bit(run.cublas, DType::bf16, CUBLAS_OP_N, CUBLAS_OP_T, positions, count, channels_, scale, ki,
                   positions, qi + first, positions, 0.0f, scores.data(), positions);
        const TensorView chunk(scores.data(), DType::bf16, Shape{count, positions}, Device::cuda(run.device));
        cuda::ops::softmax(chunk, chunk, run.stream);
        // out[:, first..] row-major [C, count] = column-major [count, C] = scores_cmᵀ [count, P] · v_cm [P, C]
        gemm_16bit(run.cublas, DType::bf16, CUBLAS_OP_T, CUBLAS_OP_N, count, channels_, positions, 1.0f,
                   scores.data(), positions, vi, positions, 0.0f, oi + first, positions);
      }
    }
    to_out_->forward(attended, normalized, run.arena, run.cublas, run.stream);
    cuda::ops::add(x, normalized, x, run.stream);
  }

 private:
  using bf16_bits = std::uint16_t;  // pointer arithmetic on bf16 elements
  std::int64_t channels_ = 0;
  std::optional<VaeGroupNorm> group_norm_;
  std::optional<Conv2d> to_q_, to_k_, to_v_, to_out_;
};

class VaeMidBlock {
 public:
  static VaeMidBlock load(WeightLoader& weights, const std::string& prefix, std::int64_t channels, int groups,
                          bool add_attention, int device) {
    VaeMidBlock block;
    block.first_ = VaeResnetBlock::load(weights, prefix + ".resnets.0", channels, channels, groups, device);
    if (add_attention)
      block.attention_ = VaeSpatialAttention::load(weights, prefix + ".attentions.0", channels, groups, device);
    block.second_ = VaeResnetBlock::load(weights, prefix + ".resnets.1", channels, channels, groups, device);
    return block;
  }
  Shape plan(const Shape& x, VaePlan& plan) const {
    Shape h = first_->plan(x, plan);
    if (attention_) h = attention_->plan(h, plan);
    return second_->plan(h, plan);
  }
  void forward(const VaeBuffers& b, const Shape& x_shape, const VaeRun& run) const {
    first_->forward(b, x_shape, run);
    if (attention_) attention_->forward(b, x_shape, run);
    second_->forward(b, x_shape, run);
  }

 private:
  std::optional<VaeResnetBlock> first_, second_;
  std::optional<VaeSpatialAttention> attention_;
};

}  // namespace sdnq::nn::gpu::detail
