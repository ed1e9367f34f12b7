#pragma once
// CLIPTextModel / CLIPTextModelWithProjection on the GPU in bf16: the CPU model's computation
// (nn/models/clip.hpp, whose header comment gives the math), its config parsing (ClipTextConfig) and
// its WeightLoader, with every weight uploaded to the device tensor by tensor while loading.
//
// Memory: weights live on the device; activations come from the caller's cuda::Workspace, sized by
// workspace_bytes(batch, tokens). forward() takes its four outputs from the workspace first and leaves
// them in use (views valid until the caller releases them: wrap the call in an ArenaScope or reset the
// arena), then takes and gives back its temporaries. Nothing is allocated during forward.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq/cuda/device_pool.hpp"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/attention.cuh"
#include "sdnq/nn/gpu/detail/text_kernels.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/gpu/norms.cuh"
#include "sdnq/nn/models/clip.hpp"

namespace sdnq::nn::gpu {

namespace detail {

// A dense or SDNQ (quant_embedding) table as bf16 [num_embeddings, dim] on the device.
inline Tensor load_embedding_table(WeightLoader& weights, const std::string& prefix, std::int64_t num_embeddings,
                                   std::int64_t dim, int device) {
  const Shape shape{num_embeddings, dim};
  if (auto quantized = weights.quantized(prefix, quant::LayerKind::embedding, shape))
    return upload_bf16(quant::dequantize(*quantized, DType::f32, quant::ScalePrecision::reference_compatible), device,
                       prefix);
  return upload_bf16(weights.stored_float(prefix + ".weight", shape), device, prefix);
}

}  // namespace detail

class ClipTextModel {
 public:
  // Views into the workspace (see the file comment); bf16.
  struct Outputs {
    TensorView last_hidden_state;         // [B, L, D]
    TensorView penultimate_hidden_state;  // [B, L, D], the input of the last layer
    TensorView pooled;                    // [B, D]
    TensorView text_embeds;               // [B, projection_dim], WithProjection only
  };

  static ClipTextModel load(const std::filesystem::path& component_folder, int device = 0) {
    WeightLoader weights = WeightLoader::open(component_folder);
    return load(weights, device);
  }
  // From an open component: its loader's options apply (set_requantized_matmul) and weights.report() then
  // tells what the model took.
  static ClipTextModel load(WeightLoader& weights, int device = 0) {
    ClipTextModel model;
    model.device_ = device;
    model.config_ = ClipTextConfig::from_json(weights.config(), (weights.folder() / "config.json").string());
    const ClipTextConfig& c = model.config_;
    const std::int64_t d = c.hidden_size;
    cuda::DeviceGuard guard(device);
    cuda::PooledLoad pooled(device, "CLIPTextModel weights");  // no 2 MiB rounding per tensor
    // The state-dict names of nn::ClipTextModel::load (clip.hpp).
    const std::string root = weights.contains("text_model.embeddings.token_embedding.weight") ? "text_model." : "";
    model.token_embedding_ =
        detail::load_embedding_table(weights, root + "embeddings.token_embedding", c.vocab_size, d, device);
    model.position_embedding_ = detail::upload_bf16(
        weights.stored_float(root + "embeddings.position_embedding.weight", Shape{c.max_position_embeddings, d}), device,
        "position_embedding");
    // transformers' from_pretrained keeps SDNQ scales and zero points in fp32 (diffusers' rounds them to
    // the model dtype): against output_bf16 the CPU float32 model differs by 1.0e-2 with fp32 ones and by
    // 3.3e-2 with bf16 ones (clip_g-uint4-svd), so the encoder's layers ask for the precise zero point.
    const auto linear = [&](const std::string& name, std::int64_t in, std::int64_t out) {
      return Linear::load(weights, name, in, out, true, device, cuda::CodeLayout::automatic, cuda::ScaleRounding::none);
    };
    for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
      const std::string p = root + "encoder.layers." + std::to_string(i) + ".";
      model.layers_.push_back(Layer{LayerNorm::load(weights, p + "layer_norm1", d, c.layer_norm_eps, true, device),
                                    linear(p + "self_attn.q_proj", d, d),
                                    linear(p + "self_attn.k_proj", d, d),
                                    linear(p + "self_attn.v_proj", d, d),
                                    linear(p + "self_attn.out_proj", d, d),
                                    LayerNorm::load(weights, p + "layer_norm2", d, c.layer_norm_eps, true, device),
                                    linear(p + "mlp.fc1", d, c.intermediate_size),
                                    linear(p + "mlp.fc2", c.intermediate_size, d)});
    }
    model.final_layer_norm_ = LayerNorm::load(weights, root + "final_layer_norm", d, c.layer_norm_eps, true, device);
    if (c.with_projection)
      model.text_projection_ = Linear::load(weights, "text_projection", d, c.projection_dim, false, device);
    weights.require_all_used(c.with_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel",
                             [](std::string_view name) { return name.ends_with("embeddings.position_ids"); });
    (void)detail::padded_head_dim(d / c.num_attention_heads);  // refuse unsupported head sizes at load
    return model;
  }

  const ClipTextConfig& config() const { return config_; }
  int device() const { return device_; }

  // The Linear layers in load order (kinds for reports and tests).
  std::vector<const Linear*> linears() const {
    std::vector<const Linear*> all;
    for (const Layer& l : layers_)
      for (const Linear* linear : {&l.q_proj, &l.k_proj, &l.v_proj, &l.out_proj, &l.fc1, &l.fc2}) all.push_back(linear);
    if (config_.with_projection) all.push_back(&text_projection_);
    return all;
  }

  // Workspace bytes one forward over [batch, tokens] ids needs, outputs included.
  std::size_t workspace_bytes(std::int64_t batch, std::int64_t tokens) const {
    const ClipTextConfig& c = config_;
    const std::int64_t rows = batch * tokens, d = c.hidden_size;
    const auto bf16_bytes = [](Shape shape) { return Arena::footprint(shape, DType::bf16); };
    std::size_t outputs = 2 * bf16_bytes({rows, d}) + bf16_bytes({batch, d}) +
                          (c.with_projection ? bf16_bytes({batch, c.projection_dim}) : 0) +
                          Arena::footprint(Shape{1}, DType::i32);
    std::size_t layer_temporaries = 5 * bf16_bytes({rows, d}) + bf16_bytes({rows, c.intermediate_size});
    std::size_t scratch =
        attention_workspace_bytes(batch, tokens, tokens, c.num_attention_heads, d / c.num_attention_heads);
    for (const Layer& l : layers_)
      for (const Linear* linear : {&l.q_proj, &l.k_proj, &l.v_proj, &l.out_proj, &l.fc1, &l.fc2})
        scratch = std::max(scratch, linear->workspace_bytes(rows));
    if (c.with_projection) scratch = std::max(scratch, text_projection_.workspace_bytes(batch));
    return outputs + bf16_bytes({rows, d}) + layer_temporaries + scratch;
  }

  // input_ids: a contiguous device I64 or I32 tensor [B, L], 1 ≤ L ≤ max_position_embeddings. Runs on
  // `stream` and waits for it once at the end, to report ids outside the vocabulary (ShapeError).
  Outputs forward(const TensorView& input_ids, cuda::Workspace& workspace, cudaStream_t stream) const {
    const ClipTextConfig& c = config_;
    const char* model_name = c.with_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel";
    SDNQ_REQUIRE(input_ids.rank() == 2, ShapeError, "{} (GPU): input_ids must be [batch, tokens], got {}", model_name,
                 input_ids.shape().to_string());
    SDNQ_REQUIRE(input_ids.device() == Device::cuda(device_) &&
                     (input_ids.dtype() == DType::i64 || input_ids.dtype() == DType::i32) && input_ids.is_contiguous(),
                 ShapeError, "{} (GPU): input_ids must be a contiguous I64 or I32 tensor on {}, got {} on {}",
                 model_name, Device::cuda(device_).to_string(), dtype_name(input_ids.dtype()),
                 input_ids.device().to_string());
    const std::int64_t batch = input_ids.size(0), tokens = input_ids.size(1), d = c.hidden_size;
    SDNQ_REQUIRE(tokens >= 1 && tokens <= c.max_position_embeddings && batch >= 1, ShapeError,
                 "{} (GPU): input_ids {} has {} tokens, but the position table holds max_position_embeddings = {}",
                 model_name, input_ids.shape().to_string(), tokens, c.max_position_embeddings);
    cuda::check_pointer_location(input_ids, "CLIP input_ids");
    cuda::DeviceGuard guard(device_);
    Arena& arena = workspace.arena();
    const std::int64_t rows = batch * tokens, heads = c.num_attention_heads;

    Outputs out;
    out.last_hidden_state = arena.take(Shape{batch, tokens, d}, DType::bf16, "CLIP last_hidden_state");
    out.penultimate_hidden_state = arena.take(Shape{batch, tokens, d}, DType::bf16, "CLIP penultimate_hidden_state");
    out.pooled = arena.take(Shape{batch, d}, DType::bf16, "CLIP pooled");
    if (c.with_projection)
      out.text_embeds = arena.take(Shape{batch, c.projection_dim}, DType::bf16, "CLIP text_embeds");
    const TensorView bad_id = arena.take(Shape{1}, DType::i32, "CLIP bad token id flag");
    SDNQ_CUDA_CHECK(cudaMemsetAsync(bad_id.data(), 0, sizeof(std::int32_t), stream));
    {
      ArenaScope scope(arena);
      const TensorView x = arena.take(Shape{rows, d}, DType::bf16, "CLIP residual stream");  // [B·L, D]
      const TensorView positions(position_embedding_.data(), DType::bf16, Shape{tokens, d}, Device::cuda(device_));
      detail::embed_tokens(input_ids, token_embedding_, &positions, x, static_cast<int*>(bad_id.data()), stream);
      cuda::ops::AttentionOptions attention_options;
      attention_options.scale = 1.0f / std::sqrt(static_cast<float>(d / heads));
      attention_options.causal = true;
      const Shape sequence{batch, tokens, d};
      for (std::size_t i = 0; i < layers_.size(); ++i) {
        const Layer& layer = layers_[i];
        if (i + 1 == layers_.size())
          SDNQ_CUDA_CHECK(cudaMemcpyAsync(out.penultimate_hidden_state.data(), x.data(), x.nbytes(),
                                          cudaMemcpyDeviceToDevice, stream));
        ArenaScope layer_scope(arena);
        const TensorView h = arena.take(Shape{rows, d}, DType::bf16, "CLIP normalized hidden states");
        const TensorView q = arena.take(Shape{rows, d}, DType::bf16, "CLIP q");
        const TensorView k = arena.take(Shape{rows, d}, DType::bf16, "CLIP k");
        const TensorView v = arena.take(Shape{rows, d}, DType::bf16, "CLIP v");
        const TensorView attended = arena.take(Shape{rows, d}, DType::bf16, "CLIP attention output");
        const TensorView inner = arena.take(Shape{rows, c.intermediate_size}, DType::bf16, "CLIP MLP hidden");
        layer.layer_norm1.forward(x, h, stream);
        layer.q_proj.forward(h, q, arena, cublas_.get(), stream);
        layer.k_proj.forward(h, k, arena, cublas_.get(), stream);
        layer.v_proj.forward(h, v, arena, cublas_.get(), stream);
        gpu::attention(reshaped(q, sequence), reshaped(k, sequence), reshaped(v, sequence),
                       reshaped(attended, sequence), heads, attention_options, arena, stream);
        layer.out_proj.forward(attended, q, arena, cublas_.get(), stream);  // q is free again: the update
        cuda::ops::add(x, q, x, stream);
        layer.layer_norm2.forward(x, h, stream);
        layer.fc1.forward(h, inner, arena, cublas_.get(), stream);
        cuda::ops::activation(inner, inner, c.hidden_act, stream);
        layer.fc2.forward(inner, q, arena, cublas_.get(), stream);
        cuda::ops::add(x, q, x, stream);
      }
      final_layer_norm_.forward(reshaped(x, sequence), out.last_hidden_state, stream);
    }
    // Legacy configs (eos_token_id 2) pool at the largest id; the kernel takes a negative id for that.
    detail::gather_eos(input_ids, out.last_hidden_state, out.pooled, c.eos_token_id == 2 ? -1 : c.eos_token_id, stream);
    if (c.with_projection) text_projection_.forward(out.pooled, out.text_embeds, arena, cublas_.get(), stream);
    std::int32_t bad = 0;
    SDNQ_CUDA_CHECK(cudaMemcpyAsync(&bad, bad_id.data(), sizeof bad, cudaMemcpyDeviceToHost, stream));
    SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
    SDNQ_REQUIRE(bad == 0, ShapeError, "{} (GPU): input_ids {} hold an id outside the vocabulary [0, {})", model_name,
                 input_ids.shape().to_string(), c.vocab_size);
    return out;
  }

 private:
  struct Layer {
    LayerNorm layer_norm1;
    Linear q_proj, k_proj, v_proj, out_proj;
    LayerNorm layer_norm2;
    Linear fc1, fc2;
  };

  static TensorView reshaped(const TensorView& x, const Shape& shape) {
    return TensorView(x.data(), x.dtype(), shape, x.device());
  }

  int device_ = 0;
  ClipTextConfig config_;
  Tensor token_embedding_;     // [vocab, D] bf16 on the device
  Tensor position_embedding_;  // [max_position_embeddings, D] bf16 on the device
  std::vector<Layer> layers_;
  LayerNorm final_layer_norm_;
  Linear text_projection_;  // WithProjection only
  detail::CublasHandle cublas_;
};

}  // namespace sdnq::nn::gpu
