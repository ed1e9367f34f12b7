#pragma once
// The pieces of the GPU FluxTransformer2DModel (nn/gpu/flux.cuh): device weights of the double- and
// single-stream blocks under the CPU model's tensor names (nn/models/detail/dit_flux_blocks.hpp,
// dit_attention.hpp), and the token copies between the per-stream buffers and the joint sequence.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "sdnq/cuda/check.hpp"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/dit_attention.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu::detail {

// linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding / PixArtAlphaTextProjection).
struct FluxTwoLayerMlp {
  Linear linear_1, linear_2;

  static FluxTwoLayerMlp load(WeightLoader& weights, const std::string& prefix, std::int64_t in_features,
                              std::int64_t out_features, int device) {
    return {Linear::load(weights, prefix + ".linear_1", in_features, out_features, true, device),
            Linear::load(weights, prefix + ".linear_2", out_features, out_features, true, device)};
  }
};

// q, k, v of one stream with the per-head RMS norms of q and k (weights [head_dim], eps 1e-6).
struct FluxQkv {
  Linear q, k, v;
  Tensor norm_q, norm_k;  // [head_dim] bf16 on the device

  static FluxQkv load(WeightLoader& weights, const std::string& prefix, const nn::detail::QkvNames& names,
                      const nn::detail::AttentionShape& shape, int device) {
    const auto norm = [&](const char* name) {
      const std::string key = prefix + "." + name + ".weight";
      return upload_bf16(weights.dense(key, Shape{shape.head_dim}), device, key);
    };
    return {Linear::load(weights, prefix + "." + names.q, shape.dim, shape.dim, true, device),
            Linear::load(weights, prefix + "." + names.k, shape.dim, shape.dim, true, device),
            Linear::load(weights, prefix + "." + names.v, shape.dim, shape.dim, true, device), norm(names.norm_q),
            norm(names.norm_k)};
  }
};

// FeedForward(dim, mult=4, gelu-approximate): net.0.proj -> gelu_tanh -> net.2.
struct FluxFeedForward {
  Linear project_in, project_out;

  static FluxFeedForward load(WeightLoader& weights, const std::string& prefix, std::int64_t dim, int device) {
    return {Linear::load(weights, prefix + ".net.0.proj", dim, 4 * dim, true, device),
            Linear::load(weights, prefix + ".net.2", 4 * dim, dim, true, device)};
  }
};

struct FluxDoubleBlockWeights {
  Linear norm1, norm1_context;  // AdaLayerNormZero linears: D -> 6D
  FluxQkv image, context;       // to_q/k/v, add_q/k/v_proj
  Linear to_out, to_add_out;    // D -> D
  FluxFeedForward ff, ff_context;

  static FluxDoubleBlockWeights load(WeightLoader& weights, int index, const nn::detail::AttentionShape& shape,
                                     int device) {
    const std::string p = fmt::format("transformer_blocks.{}", index);
    const std::int64_t d = shape.dim;
    return {Linear::load(weights, p + ".norm1.linear", d, 6 * d, true, device),
            Linear::load(weights, p + ".norm1_context.linear", d, 6 * d, true, device),
            FluxQkv::load(weights, p + ".attn", nn::detail::image_stream_names, shape, device),
            FluxQkv::load(weights, p + ".attn", nn::detail::context_stream_names, shape, device),
            Linear::load(weights, p + ".attn.to_out.0", d, d, true, device),
            Linear::load(weights, p + ".attn.to_add_out", d, d, true, device),
            FluxFeedForward::load(weights, p + ".ff", d, device),
            FluxFeedForward::load(weights, p + ".ff_context", d, device)};
  }
};

struct FluxSingleBlockWeights {
  Linear norm;      // AdaLayerNormZeroSingle linear: D -> 3D
  Linear proj_mlp;  // D -> 4D
  FluxQkv qkv;      // to_q/k/v; no output projection
  Linear proj_out;  // [attention; mlp] 5D -> D

  static FluxSingleBlockWeights load(WeightLoader& weights, int index, const nn::detail::AttentionShape& shape,
                                     int device) {
    const std::string p = fmt::format("single_transformer_blocks.{}", index);
    const std::int64_t d = shape.dim;
    return {Linear::load(weights, p + ".norm.linear", d, 3 * d, true, device),
            Linear::load(weights, p + ".proj_mlp", d, 4 * d, true, device),
            FluxQkv::load(weights, p + ".attn", nn::detail::image_stream_names, shape, device),
            Linear::load(weights, p + ".proj_out", 5 * d, d, true, device)};
  }
};

// Copies `columns` bf16 values of `rows` rows between two row-major buffers of different pitches
// (all counts in elements): e.g. one stream's tokens [B, L, D] into or out of the joint [B, S, D].
inline void copy_bf16_rows(void* target, std::int64_t target_pitch, const void* source, std::int64_t source_pitch,
                           std::int64_t columns, std::int64_t rows, cudaStream_t stream) {
  constexpr std::size_t bf16_size = 2;
  SDNQ_CUDA_CHECK(cudaMemcpy2DAsync(target, static_cast<std::size_t>(target_pitch) * bf16_size, source,
                                    static_cast<std::size_t>(source_pitch) * bf16_size,
                                    static_cast<std::size_t>(columns) * bf16_size, static_cast<std::size_t>(rows),
                                    cudaMemcpyDeviceToDevice, stream));
}

// The pipeline passes t / 1000 (and the guidance scale / 1000); a bf16 model multiplies back in bf16,
// as diffusers does (timestep.to(dtype) * 1000): out = bf16(bf16(in) · factor), widened to f32. The
// rounding matters: at t = 0.73 it moves the sinusoid's argument from 730 to 732.
template <class Unused = void>
__global__ void bf16_scaled_values_kernel(const float* in, float* out, long long count, float factor) {
  const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count)
    out[i] = __bfloat162float(__float2bfloat16(__bfloat162float(__float2bfloat16(in[i])) * factor));
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

inline void* bf16_offset(const TensorView& x, std::int64_t elements) {
  return static_cast<std::byte*>(x.data()) + elements * 2;
}

}  // namespace sdnq::nn::gpu::detail
