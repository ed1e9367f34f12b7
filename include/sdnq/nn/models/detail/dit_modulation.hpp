#pragma once
// Adaptive layer norms of the diffusion transformers (diffusers normalization.py). Each holds one
// `linear` that maps SiLU(temb) [B, D] to a modulation vector [B, chunks·D]; the LayerNorm itself has
// no affine parameters and eps 1e-6. Chunk orders differ, so they are spelled out here:
//   AdaLayerNormZero        (6): shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
//   SD35AdaLayerNormZeroX   (9): the 6 above, then shift_msa2, scale_msa2, gate_msa2
//   AdaLayerNormZeroSingle  (3): shift, scale, gate
//   AdaLayerNormContinuous  (2): scale, shift   (the opposite order)
#include <cstdint>
#include <string>

#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/models/detail/dit_ops.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::detail {

inline constexpr float adaptive_norm_eps = 1e-6f;

enum ZeroChunk : int {
  shift_msa,
  scale_msa,
  gate_msa,
  shift_mlp,
  scale_mlp,
  gate_mlp,
  shift_msa2,
  scale_msa2,
  gate_msa2
};
enum SingleChunk : int { single_shift, single_scale, single_gate };
enum ContinuousChunk : int { continuous_scale, continuous_shift };

// The per-sample modulation vector of one adaptive norm, split into its chunks.
struct Modulation {
  Tensor emb;  // [B, chunks * D]
  int chunks = 0;
  ModulationChunk operator[](int index) const { return modulation_chunk(emb, chunks, index); }
};

struct AdaptiveNorm {
  Linear linear;  // D -> chunks * D
  int chunks = 0;

  static AdaptiveNorm load(WeightLoader& weights, const std::string& prefix, std::int64_t dim, int chunks) {
    return {Linear::load(weights, prefix + ".linear", dim, chunks * dim), chunks};
  }
  // temb_silu = SiLU(temb) [B, D], shared by every adaptive norm of the model.
  Modulation modulation(const TensorView& temb_silu) const { return {linear.forward(temb_silu), chunks}; }
};

// LayerNorm(x) without affine parameters, eps 1e-6: [B, L, D].
inline Tensor plain_layer_norm(const TensorView& x) { return layer_norm(x, nullptr, nullptr, adaptive_norm_eps); }

// LN(x) * (1 + scale) + shift: the modulated norm every adaptive variant applies.
inline Tensor modulated_norm(const TensorView& x, const ModulationChunk& shift, const ModulationChunk& scale) {
  Tensor normed = plain_layer_norm(x);
  modulate_(normed, shift, scale);
  return normed;
}

// SiLU(temb): what every adaptive norm's linear reads.
inline Tensor silu_of(const TensorView& temb) {
  Tensor activated = Tensor::empty(temb.shape(), DType::f32);
  copy(activated, temb);
  activate_(activated, Activation::silu);
  return activated;
}

}  // namespace sdnq::nn::detail
