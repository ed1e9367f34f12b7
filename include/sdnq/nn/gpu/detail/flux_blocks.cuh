#pragma once
// The pieces of the GPU FluxTransformer2DModel (nn/gpu/flux.cuh): device weights of the double- and
// single-stream blocks under the CPU model's tensor names (nn/models/detail/dit_flux_blocks.hpp,
// dit_attention.hpp), built from the pieces shared with SD3 (dit_common.cuh), and FLUX's bf16 rounding of
// the scaled timestep.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "sdnq/cuda/check.hpp"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/gpu/detail/dit_common.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/dit_attention.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu::detail {

struct FluxDoubleBlockWeights {
  Linear norm1, norm1_context;  // AdaLayerNormZero linears: D -> 6D
  DitQkv image, context;        // to_q/k/v, add_q/k/v_proj
  Linear to_out, to_add_out;    // D -> D
  DitFeedForward ff, ff_context;

  static FluxDoubleBlockWeights load(WeightLoader& weights, int index, const nn::detail::AttentionShape& shape,
                                     int device) {
    const std::string p = fmt::format("transformer_blocks.{}", index);
    const std::int64_t d = shape.dim;
    FluxDoubleBlockWeights b{Linear::load(weights, p + ".norm1.linear", d, 6 * d, true, device),
                             Linear::load(weights, p + ".norm1_context.linear", d, 6 * d, true, device),
                             DitQkv::load(weights, p + ".attn", nn::detail::image_stream_names, shape, true, device),
                             DitQkv::load(weights, p + ".attn", nn::detail::context_stream_names, shape, true, device),
                             Linear::load(weights, p + ".attn.to_out.0", d, d, true, device),
                             Linear::load(weights, p + ".attn.to_add_out", d, d, true, device),
                             DitFeedForward::load(weights, p + ".ff", d, device),
                             DitFeedForward::load(weights, p + ".ff_context", d, device)};
    // Each stream's q, k, v as one GEMM where the weights allow (dense or 8-bit quantized matmul).
    b.image.join(nullptr, p + ".attn.to_qkv");
    b.context.join(nullptr, p + ".attn.add_qkv_proj");
    return b;
  }
};

struct FluxSingleBlockWeights {
  Linear norm;      // AdaLayerNormZeroSingle linear: D -> 3D
  Linear proj_mlp;  // D -> 4D
  DitQkv qkv;       // to_q/k/v; no output projection
  Linear proj_out;  // [attention; mlp] 5D -> D

  static FluxSingleBlockWeights load(WeightLoader& weights, int index, const nn::detail::AttentionShape& shape,
                                     int device) {
    const std::string p = fmt::format("single_transformer_blocks.{}", index);
    const std::int64_t d = shape.dim;
    FluxSingleBlockWeights b{Linear::load(weights, p + ".norm.linear", d, 3 * d, true, device),
                             Linear::load(weights, p + ".proj_mlp", d, 4 * d, true, device),
                             DitQkv::load(weights, p + ".attn", nn::detail::image_stream_names, shape, true, device),
                             Linear::load(weights, p + ".proj_out", 5 * d, d, true, device)};
    // q, k, v and proj_mlp read the same normed rows: one [7D, D] GEMM where the weights allow.
    b.qkv.join(&b.proj_mlp, p + ".to_qkv_mlp");
    return b;
  }
};

// The pipeline passes t / 1000 (and the guidance scale / 1000); a bf16 model multiplies back in bf16,
// as diffusers does (timestep.to(dtype) * 1000): out = bf16(bf16(in) · factor), widened to f32. The
// rounding matters: at t = 0.73 it moves the sinusoid's argument from 730 to 732.
template <class Unused = void>
__global__ void bf16_scaled_values_kernel(const float* in, float* out, long long count, float factor) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = __bfloat162float(__float2bfloat16(__bfloat162float(__float2bfloat16(in[i])) * factor));
}

// values [N] f32 -> out [N] f32 (contiguous device tensors).
inline void bf16_scaled_values(const TensorView& values, const TensorView& out, float factor, cudaStream_t stream) {
  constexpr int threads = 128;
  const auto count = static_cast<long long>(values.numel());
  if (count == 0) return;
  bf16_scaled_values_kernel<<<static_cast<unsigned>((count + threads - 1) / threads), threads, 0, stream>>>(
      values.data_as<const float>(), out.data_as<float>(), count, factor);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sdnq::nn::gpu::detail
