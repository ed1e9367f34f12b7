#pragma once
// Conditioning pieces shared by FLUX and SD3 (diffusers embeddings.py): the timestep / guidance /
// pooled-text embedding, FLUX's 3-axis rotary position embedding, and SD3's patch embedding with
// its center-cropped sincos table.
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/modules/conv2d.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::detail {

// Width of the sinusoid both models feed the timestep and guidance embedders (Timesteps(256, True, 0)).
inline constexpr int timestep_sinusoid_dim = 256;

// linear_1 -> SiLU -> linear_2: diffusers' TimestepEmbedding and PixArtAlphaTextProjection(act="silu").
struct TwoLayerMlp {
  Linear linear_1;
  Linear linear_2;

  static TwoLayerMlp load(WeightLoader& weights, const std::string& prefix, std::int64_t in_features,
                          std::int64_t out_features) {
    return {Linear::load(weights, prefix + ".linear_1", in_features, out_features),
            Linear::load(weights, prefix + ".linear_2", out_features, out_features)};
  }
  Tensor forward(const TensorView& x /*[B, in]*/) const {
    Tensor hidden = linear_1.forward(x);
    activate_(hidden, Activation::silu);
    return linear_2.forward(hidden);
  }
};

// time_text_embed: timestep_embedder(sinusoid(t)) [+ guidance_embedder(sinusoid(g))] + text_embedder(pooled).
// CombinedTimestepTextProjEmbeddings (SD3, FLUX-schnell) or CombinedTimestepGuidanceTextProjEmbeddings (FLUX-dev).
struct TimeTextEmbedding {
  TwoLayerMlp timestep_embedder;
  std::optional<TwoLayerMlp> guidance_embedder;
  TwoLayerMlp text_embedder;

  static TimeTextEmbedding load(WeightLoader& weights, std::int64_t inner_dim, std::int64_t pooled_projection_dim,
                                bool with_guidance) {
    const std::string prefix = "time_text_embed";
    TimeTextEmbedding embedding{
        TwoLayerMlp::load(weights, prefix + ".timestep_embedder", timestep_sinusoid_dim, inner_dim), std::nullopt,
        TwoLayerMlp::load(weights, prefix + ".text_embedder", pooled_projection_dim, inner_dim)};
    if (with_guidance)
      embedding.guidance_embedder =
          TwoLayerMlp::load(weights, prefix + ".guidance_embedder", timestep_sinusoid_dim, inner_dim);
    return embedding;
  }

  // timestep [B] and guidance [B] on the 0..1000 scale, pooled [B, P] -> temb [B, D].
  Tensor forward(const TensorView& timestep, const TensorView* guidance, const TensorView& pooled) const {
    Tensor conditioning = timestep_embedder.forward(timestep_embedding(timestep, timestep_sinusoid_dim, true, 0.0f));
    if (guidance_embedder)
      conditioning = add(conditioning,
                         guidance_embedder->forward(timestep_embedding(*guidance, timestep_sinusoid_dim, true, 0.0f)));
    return add(conditioning, text_embedder.forward(pooled));
  }
};

// cos and sin of the rotary angles, one row per token: [tokens, head_dim], each frequency twice in a row.
struct RotaryEmbedding {
  Tensor cos;
  Tensor sin;
};

// FLUX's FluxPosEmbed: axis a of each id row gets axes_dims[a] channels with frequencies
// theta^(-2i / axes_dims[a]); angles in float64 like the reference, then rounded to f32.
inline RotaryEmbedding rotary_embedding(const TensorView& ids /*[tokens, axes]*/,
                                        std::span<const std::int64_t> axes_dims, double theta = 10000.0) {
  const std::int64_t tokens = ids.size(0), axes = ids.size(1);
  std::int64_t head_dim = 0;
  for (auto axis_dim : axes_dims) head_dim += axis_dim;
  RotaryEmbedding rope{Tensor::empty({tokens, head_dim}, DType::f32), Tensor::empty({tokens, head_dim}, DType::f32)};
  const float* positions = ids.data_as<const float>();
  float* cos_out = rope.cos.data_as<float>();
  float* sin_out = rope.sin.data_as<float>();
  for (std::int64_t token = 0; token < tokens; ++token) {
    std::int64_t column = 0;
    for (std::size_t axis = 0; axis < axes_dims.size(); ++axis) {
      const std::int64_t axis_dim = axes_dims[axis];
      const double position = positions[token * axes + static_cast<std::int64_t>(axis)];
      for (std::int64_t i = 0; i < axis_dim / 2; ++i) {
        const double frequency = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(axis_dim));
        const double angle = position * frequency;
        const std::int64_t at = token * head_dim + column + 2 * i;
        cos_out[at] = cos_out[at + 1] = static_cast<float>(std::cos(angle));
        sin_out[at] = sin_out[at + 1] = static_cast<float>(std::sin(angle));
      }
      column += axis_dim;
    }
  }
  return rope;
}

// In place on x [B, tokens, heads, head_dim]: rotate interleaved pairs,
// (x0, x1) -> (x0·cos - x1·sin, x1·cos + x0·sin).
inline void apply_rotary_embedding_(Tensor& x, const RotaryEmbedding& rope) {
  const std::int64_t batch = x.size(0), tokens = x.size(1), heads = x.size(2), head_dim = x.size(3);
  SDNQ_REQUIRE(rope.cos.size(0) == tokens && rope.cos.size(1) == head_dim, ShapeError,
               "rotary embedding {} does not fit attention input [batch, {}, heads, {}]", rope.cos.shape().to_string(),
               tokens, head_dim);
  float* values = x.data_as<float>();
  const float* cos = rope.cos.data_as<const float>();
  const float* sin = rope.sin.data_as<const float>();
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t h = 0; h < heads; ++h) {
        float* v = values + ((b * tokens + t) * heads + h) * head_dim;
        const float* c = cos + t * head_dim;
        const float* s = sin + t * head_dim;
        for (std::int64_t i = 0; i < head_dim; i += 2) {
          const float even = v[i], odd = v[i + 1];
          v[i] = even * c[i] + (-odd) * s[i];
          v[i + 1] = odd * c[i + 1] + even * s[i + 1];
        }
      }
}

// SD3's PatchEmbed: a patch_size-strided Conv2d, flattened to tokens, plus the window of the stored
// pos_embed table [1, max², D] centered in the max × max grid.
struct PatchEmbedding {
  Conv2d proj;
  Tensor pos_embed;  // [max * max, D]
  std::int64_t patch_size = 0;
  std::int64_t max_size = 0;
  std::int64_t dim = 0;

  static PatchEmbedding load(WeightLoader& weights, std::int64_t in_channels, std::int64_t dim, std::int64_t patch_size,
                             std::int64_t max_size) {
    Conv2dParams params;
    params.stride_h = params.stride_w = static_cast<int>(patch_size);
    PatchEmbedding embedding{
        Conv2d::load(weights, "pos_embed.proj", in_channels, dim, static_cast<int>(patch_size), params),
        weights.dense("pos_embed.pos_embed"), patch_size, max_size, dim};
    SDNQ_REQUIRE(embedding.pos_embed.numel() == max_size * max_size * dim, FormatError,
                 "pos_embed.pos_embed is {}, expected [1, {}, {}] for pos_embed_max_size {}",
                 embedding.pos_embed.shape().to_string(), max_size * max_size, dim, max_size);
    embedding.pos_embed.reshape({max_size * max_size, dim});
    return embedding;
  }

  // latent [B, C, H, W] -> tokens [B, (H/p)·(W/p), D], row-major over the patch grid.
  Tensor forward(const TensorView& latent) const {
    Tensor patches = proj.forward(latent);  // [B, D, h, w]
    const std::int64_t batch = patches.size(0), height = patches.size(2), width = patches.size(3);
    SDNQ_REQUIRE(height <= max_size && width <= max_size, ShapeError,
                 "SD3Transformer2DModel.forward: hidden_states of {} patches x {} patches exceed pos_embed_max_size {}",
                 height, width, max_size);
    const std::int64_t top = (max_size - height) / 2, left = (max_size - width) / 2;
    Tensor tokens = Tensor::empty({batch, height * width, dim}, DType::f32);
    const float* source = patches.data_as<const float>();
    const float* table = pos_embed.data_as<const float>();
    float* out = tokens.data_as<float>();
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t y = 0; y < height; ++y)
        for (std::int64_t x = 0; x < width; ++x) {
          const float* position = table + ((top + y) * max_size + left + x) * dim;
          float* token = out + (b * height * width + y * width + x) * dim;
          for (std::int64_t d = 0; d < dim; ++d)
            token[d] = source[((b * dim + d) * height + y) * width + x] + position[d];
        }
    return tokens;
  }
};

}  // namespace sdnq::nn::detail
