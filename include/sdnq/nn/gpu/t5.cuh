#pragma once
// T5EncoderModel on the GPU in bf16: the CPU model's computation (nn/models/t5.hpp, whose header comment
// gives the math), its config parsing (T5EncoderConfig) and tensor names, every weight uploaded to the
// device tensor by tensor while loading, each Linear over any SDNQ weight (nn::gpu::Linear).
//
// Position bias: block 0's table [buckets, H] becomes, at load, a bias per head and relative offset
// [H, 2·max_distance + 1] (the CPU's t5_relative_position_bucket, so the fp32 logarithm is the same);
// offsets beyond ±max_distance share the last bucket of their sign. forward() expands it once to the
// [H, L, L] bias that every block's fused attention adds to its unscaled scores.
//
// Precision, against the fixtures' output_bf16 (transformers): the Linears load with ScaleRounding::none,
// since transformers' from_pretrained keeps SDNQ scales and zero points in fp32 (diffusers' rounds them),
// and the layer norms round twice as T5LayerNorm does (RmsNormRounding::t5_two_step). Measured on the H100:
// t5-uint4-svd 3.02e-2 -> 1.98e-2, t5-bf16 2.6e-2 -> 0.94e-2; a CPU emulation had either change alone leave
// t5-uint4-svd near 2.8-2.9e-2.
//
// Memory: activations come from the caller's cuda::Workspace, sized by workspace_bytes(batch, tokens).
// forward() takes its output from the workspace first and leaves it in use (valid until the caller
// releases it: wrap the call in an ArenaScope or reset the arena), then takes and gives back its
// temporaries. Nothing is allocated during forward.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq/cuda/device_pool.hpp"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/attention.cuh"
#include "sdnq/nn/gpu/clip.cuh"  // detail::load_embedding_table
#include "sdnq/nn/gpu/detail/t5_kernels.cuh"
#include "sdnq/nn/gpu/detail/text_kernels.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/t5.hpp"

namespace sdnq::nn::gpu {

namespace detail {

// T5LayerNorm's weight [dim] as bf16 on the device (RMS without mean; the CPU RMSNorm's name and shape).
inline Tensor load_rms_weight(WeightLoader& weights, const std::string& prefix, std::int64_t dim, int device) {
  return upload_bf16(weights.stored_float(prefix + ".weight", Shape{dim}), device, prefix);
}

}  // namespace detail

class T5EncoderModel {
 public:
  static T5EncoderModel load(const std::filesystem::path& component_folder, int device = 0) {
    WeightLoader weights = WeightLoader::open(component_folder);
    return load(weights, device);
  }
  // From an open component: its loader's options apply (set_requantized_matmul) and weights.report() then
  // tells what the model took.
  static T5EncoderModel load(WeightLoader& weights, int device = 0) {
    T5EncoderModel model;
    model.device_ = device;
    model.config_ = T5EncoderConfig::from_json(weights.config(), (weights.folder() / "config.json").string());
    const T5EncoderConfig& c = model.config_;
    (void)detail::padded_head_dim(c.d_kv);  // refuse unsupported head sizes at load
    cuda::DeviceGuard guard(device);
    cuda::PooledLoad pooled(device, "T5EncoderModel weights");  // no 2 MiB rounding per tensor
    const std::string embedding = weights.contains("shared.weight") ? "shared" : "encoder.embed_tokens";
    model.embed_tokens_ = detail::load_embedding_table(weights, embedding, c.vocab_size, c.d_model, device);
    const std::int64_t inner = c.num_heads * c.d_kv;
    // Parameters as transformers keeps them (see the file comment), as the GPU CLIP does.
    const auto load_linear = [&](const std::string& prefix, std::int64_t in, std::int64_t out) {
      return Linear::load(weights, prefix, in, out, false, device, cuda::CodeLayout::automatic,
                          cuda::ScaleRounding::none);
    };
    for (std::int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = "encoder.block." + std::to_string(i) + ".layer.";
      Block block{detail::load_rms_weight(weights, p + "0.layer_norm", c.d_model, device),
                  load_linear(p + "0.SelfAttention.q", c.d_model, inner),
                  load_linear(p + "0.SelfAttention.k", c.d_model, inner),
                  load_linear(p + "0.SelfAttention.v", c.d_model, inner),
                  load_linear(p + "0.SelfAttention.o", inner, c.d_model),
                  detail::load_rms_weight(weights, p + "1.layer_norm", c.d_model, device),
                  {},
                  {},
                  {}};
      if (c.gated) {
        block.wi_0 = load_linear(p + "1.DenseReluDense.wi_0", c.d_model, c.d_ff);
        block.wi_1 = load_linear(p + "1.DenseReluDense.wi_1", c.d_model, c.d_ff);
      } else {
        block.wi_0 = load_linear(p + "1.DenseReluDense.wi", c.d_model, c.d_ff);
      }
      block.wo = load_linear(p + "1.DenseReluDense.wo", c.d_ff, c.d_model);
      model.blocks_.push_back(std::move(block));
    }
    const Tensor table = weights.dense("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                       Shape{c.relative_attention_num_buckets, c.num_heads});
    model.bias_by_offset_ = detail::upload_bf16(bias_by_offset(c, table), device, "T5 relative_attention_bias");
    model.final_layer_norm_ = detail::load_rms_weight(weights, "encoder.final_layer_norm", c.d_model, device);
    // The tied copy of `shared` may be stored too (transformers writes it for some checkpoints).
    weights.require_all_used("T5EncoderModel",
                             [](std::string_view name) { return name == "encoder.embed_tokens.weight"; });
    return model;
  }

  const T5EncoderConfig& config() const { return config_; }
  int device() const { return device_; }

  // The Linear layers in load order (kinds for reports and tests).
  std::vector<const Linear*> linears() const {
    std::vector<const Linear*> all;
    for (const Block& b : blocks_) {
      for (const Linear* linear : {&b.q, &b.k, &b.v, &b.o, &b.wi_0}) all.push_back(linear);
      if (config_.gated) all.push_back(&b.wi_1);
      all.push_back(&b.wo);
    }
    return all;
  }

  // Workspace bytes one forward over [batch, tokens] ids needs, the output included.
  std::size_t workspace_bytes(std::int64_t batch, std::int64_t tokens) const {
    const T5EncoderConfig& c = config_;
    const std::int64_t rows = batch * tokens, inner = c.num_heads * c.d_kv;
    const auto bf16_bytes = [](Shape shape) { return Arena::footprint(shape, DType::bf16); };
    const std::size_t output = bf16_bytes({rows, c.d_model}) + Arena::footprint(Shape{1}, DType::i32);
    const std::size_t forward_wide = bf16_bytes({rows, c.d_model}) + bf16_bytes({c.num_heads, tokens, tokens});
    const std::size_t block_temporaries = 2 * bf16_bytes({rows, c.d_model}) + 4 * bf16_bytes({rows, inner}) +
                                          (c.gated ? 2 : 1) * bf16_bytes({rows, c.d_ff});
    std::size_t scratch = attention_workspace_bytes(batch, tokens, tokens, c.num_heads, c.d_kv);
    for (const Linear* linear : linears()) scratch = std::max(scratch, linear->workspace_bytes(rows));
    return output + forward_wide + block_temporaries + scratch;
  }

  // input_ids: a contiguous device I64 or I32 tensor [B, L], B, L ≥ 1 -> last_hidden_state [B, L, d_model]
  // bf16 (a workspace view, see the file comment). No attention mask, as FLUX and SD3 call it. Runs on
  // `stream` and waits for it once at the end, to report ids outside the vocabulary (ShapeError).
  TensorView forward(const TensorView& input_ids, cuda::Workspace& workspace, cudaStream_t stream) const {
    const T5EncoderConfig& c = config_;
    SDNQ_REQUIRE(input_ids.rank() == 2 && input_ids.size(0) >= 1 && input_ids.size(1) >= 1, ShapeError,
                 "T5EncoderModel (GPU): input_ids must be [batch, tokens] with batch, tokens >= 1, got {}",
                 input_ids.shape().to_string());
    SDNQ_REQUIRE(input_ids.device() == Device::cuda(device_) &&
                     (input_ids.dtype() == DType::i64 || input_ids.dtype() == DType::i32) && input_ids.is_contiguous(),
                 ShapeError,
                 "T5EncoderModel (GPU): input_ids must be a contiguous I64 or I32 tensor on {}, got {} on {}",
                 Device::cuda(device_).to_string(), dtype_name(input_ids.dtype()), input_ids.device().to_string());
    const std::int64_t batch = input_ids.size(0), tokens = input_ids.size(1), d = c.d_model;
    const std::int64_t rows = batch * tokens, inner = c.num_heads * c.d_kv, heads = c.num_heads;
    Arena& arena = workspace.arena();
    // T5 has no position table: the length is bounded by the workspace the caller sized.
    const std::size_t needed = workspace_bytes(batch, tokens), available = arena.capacity() - arena.used();
    SDNQ_REQUIRE(needed <= available, ShapeError,
                 "T5EncoderModel (GPU): input_ids {} need {} workspace bytes (workspace_bytes({}, {})), the workspace "
                 "has {} free: the sequence is longer than the workspace was sized for",
                 input_ids.shape().to_string(), needed, batch, tokens, available);
    cuda::check_pointer_location(input_ids, "T5 input_ids");
    cuda::DeviceGuard guard(device_);

    const TensorView out = arena.take(Shape{batch, tokens, d}, DType::bf16, "T5 last_hidden_state");
    const TensorView bad_id = arena.take(Shape{1}, DType::i32, "T5 bad token id flag");
    SDNQ_CUDA_CHECK(cudaMemsetAsync(bad_id.data(), 0, sizeof(std::int32_t), stream));
    {
      ArenaScope scope(arena);
      const TensorView x = arena.take(Shape{rows, d}, DType::bf16, "T5 residual stream");  // [B·L, d_model]
      const TensorView bias = arena.take(Shape{heads, tokens, tokens}, DType::bf16, "T5 position bias");  // [H, L, L]
      detail::embed_tokens(input_ids, embed_tokens_, nullptr, x, static_cast<int*>(bad_id.data()), stream);
      detail::expand_position_bias(bias_by_offset_, c.relative_attention_max_distance, bias, stream);
      cuda::ops::AttentionOptions attention_options;
      attention_options.scale = 1.0f;  // T5 folds the scaling into its weights
      attention_options.bias = &bias;
      const Shape sequence{batch, tokens, inner};
      for (const Block& block : blocks_) {
        ArenaScope block_scope(arena);
        const TensorView h = arena.take(Shape{rows, d}, DType::bf16, "T5 normalized hidden states");
        const TensorView update = arena.take(Shape{rows, d}, DType::bf16, "T5 block update");
        const TensorView q = arena.take(Shape{rows, inner}, DType::bf16, "T5 q");  // [B·L, H·d_kv]
        const TensorView k = arena.take(Shape{rows, inner}, DType::bf16, "T5 k");
        const TensorView v = arena.take(Shape{rows, inner}, DType::bf16, "T5 v");
        const TensorView attended = arena.take(Shape{rows, inner}, DType::bf16, "T5 attention output");
        const TensorView hidden = arena.take(Shape{rows, c.d_ff}, DType::bf16, "T5 feed-forward hidden");
        const TensorView gate =
            c.gated ? arena.take(Shape{rows, c.d_ff}, DType::bf16, "T5 feed-forward wi_1 output") : TensorView();
        const TensorView attention_weight = block.attention_norm.view();
        cuda::ops::rms_norm(x, &attention_weight, c.layer_norm_epsilon, h, t5_norm_rounding, stream);
        block.q.forward(h, q, arena, cublas_.get(), stream);
        block.k.forward(h, k, arena, cublas_.get(), stream);
        block.v.forward(h, v, arena, cublas_.get(), stream);
        gpu::attention(reshaped(q, sequence), reshaped(k, sequence), reshaped(v, sequence),
                       reshaped(attended, sequence), heads, attention_options, arena, stream);
        block.o.forward(attended, update, arena, cublas_.get(), stream);
        cuda::ops::add(x, update, x, stream);
        const TensorView feed_forward_weight = block.feed_forward_norm.view();
        cuda::ops::rms_norm(x, &feed_forward_weight, c.layer_norm_epsilon, h, t5_norm_rounding, stream);
        block.wi_0.forward(h, hidden, arena, cublas_.get(), stream);
        cuda::ops::activation(hidden, hidden, c.dense_act, stream);
        if (c.gated) {
          block.wi_1.forward(h, gate, arena, cublas_.get(), stream);
          // act(wi_0 h) · wi_1 h: the [B·L, 1, d_ff] view makes wi_1's output a per-row vector.
          const TensorView hidden_rows(hidden.data(), DType::bf16, Shape{rows, 1, c.d_ff}, hidden.device());
          cuda::ops::mul_vector(hidden_rows, gate, hidden_rows, stream);
        }
        block.wo.forward(hidden, update, arena, cublas_.get(), stream);
        cuda::ops::add(x, update, x, stream);
      }
      const TensorView final_weight = final_layer_norm_.view();
      cuda::ops::rms_norm(reshaped(x, Shape{batch, tokens, d}), &final_weight, c.layer_norm_epsilon, out,
                          t5_norm_rounding, stream);
    }
    std::int32_t bad = 0;
    SDNQ_CUDA_CHECK(cudaMemcpyAsync(&bad, bad_id.data(), sizeof bad, cudaMemcpyDeviceToHost, stream));
    SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    SDNQ_REQUIRE(bad == 0, ShapeError, "T5EncoderModel (GPU): input_ids {} hold an id outside the vocabulary [0, {})",
                 input_ids.shape().to_string(), c.vocab_size);
    return out;
  }

 private:
  struct Block {
    Tensor attention_norm;  // [d_model] bf16 on the device
    Linear q, k, v, o;
    Tensor feed_forward_norm;  // [d_model]
    Linear wi_0, wi_1, wo;     // wi_1 unused when not gated; wi_0 is `wi` then
  };

  // by_offset[h, r + R] = table[bucket(r), h] for r in [-R, R], R = max_distance. Every offset beyond
  // ±R falls in the last bucket of its sign (the logarithm reaches num_buckets / 2 − 1 at R, then clamps),
  // which the check below confirms for this config.
  static Tensor bias_by_offset(const T5EncoderConfig& c, const Tensor& table) {
    const std::int64_t max_offset = c.relative_attention_max_distance, heads = c.num_heads;
    const auto bucket = [&](std::int64_t offset) {
      return t5_relative_position_bucket(offset, c.relative_attention_num_buckets, max_offset);
    };
    SDNQ_REQUIRE(bucket(max_offset) == bucket(4 * max_offset) && bucket(-max_offset) == bucket(-4 * max_offset),
                 ConfigError, "T5EncoderModel: relative position buckets do not saturate at max_distance {}",
                 max_offset);
    const TensorView f32_table = table.view();
    const Tensor widened = nn::detail::to_f32(f32_table, "T5 relative_attention_bias");
    Tensor by_offset = Tensor::empty(Shape{heads, 2 * max_offset + 1}, DType::f32);
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t offset = -max_offset; offset <= max_offset; ++offset)
        by_offset.data_as<float>()[h * (2 * max_offset + 1) + offset + max_offset] =
            widened.data_as<float>()[bucket(offset) * heads + h];
    return by_offset;
  }

  // T5LayerNorm rounds x · rsqrt(mean(x²) + eps) to bf16 before the bf16 multiply by its weight; rounding
  // once instead cost t5-bf16 most of its 2.65e-2 against output_bf16 (0.93e-2 emulated with two roundings).
  static constexpr cuda::ops::RmsNormRounding t5_norm_rounding = cuda::ops::RmsNormRounding::t5_two_step;

  static TensorView reshaped(const TensorView& x, const Shape& shape) {
    return TensorView(x.data(), x.dtype(), shape, x.device());
  }

  int device_ = 0;
  T5EncoderConfig config_;
  Tensor embed_tokens_;  // [vocab, d_model] bf16 on the device
  std::vector<Block> blocks_;
  Tensor bias_by_offset_;    // [H, 2·max_distance + 1] bf16 on the device
  Tensor final_layer_norm_;  // [d_model]
  detail::CublasHandle cublas_;
};

}  // namespace sdnq::nn::gpu
