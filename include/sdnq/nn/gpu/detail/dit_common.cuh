#pragma once
// Pieces the GPU diffusion transformers (FLUX, SD3) share: device weights of the two-layer MLP, the GELU-tanh
// feed-forward and one stream's q/k/v projections with optional per-head RMS QK-norm, under the CPU model's tensor
// names (nn/models/detail/dit_attention.hpp, dit_embeddings.hpp); and their forwards on bf16 rows, which take their
// scratch from the caller's arena and allocate nothing.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/models/detail/dit_attention.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu::detail {

// Copies `columns` bf16 values of each of `rows` rows between two row-major buffers of different
// pitches (counts in elements): e.g. one stream's tokens [B, L, D] into or out of a joint [B, S, D].
inline void copy_bf16_columns(void* target, std::int64_t target_pitch, const void* source, std::int64_t source_pitch,
                              std::int64_t columns, std::int64_t rows, cudaStream_t stream) {
  constexpr std::size_t bf16_bytes = 2;
  SDNQ_CUDA_CHECK(cudaMemcpy2DAsync(target, static_cast<std::size_t>(target_pitch) * bf16_bytes, source,
                                    static_cast<std::size_t>(source_pitch) * bf16_bytes,
                                    static_cast<std::size_t>(columns) * bf16_bytes, static_cast<std::size_t>(rows),
                                    cudaMemcpyDeviceToDevice, stream));
}

// The address `elements` bf16 values into x.
inline void* bf16_element(const TensorView& x, std::int64_t elements) {
  return static_cast<std::byte*>(x.data()) + elements * 2;
}

// x viewed with another shape of the same element count (contiguous).
inline TensorView view_as(const TensorView& x, const Shape& shape) {
  return TensorView(x.data(), x.dtype(), shape, x.device());
}

// Arena bytes of a bf16 [rows, columns] buffer (from the byte count: a temporary Shape here makes
// g++ -O3 warn maybe-uninitialized).
inline std::size_t bf16_footprint(std::int64_t rows, std::int64_t columns) {
  return Arena::footprint(static_cast<std::size_t>(rows * columns) * 2);
}

// [B, L, C] -> [B·L, C].
inline TensorView token_rows(const TensorView& x) { return view_as(x, Shape{x.numel() / x.size(-1), x.size(-1)}); }

// linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding / PixArtAlphaTextProjection).
struct DitTwoLayerMlp {
  Linear linear_1, linear_2;

  static DitTwoLayerMlp load(WeightLoader& weights, const std::string& prefix, std::int64_t in_features,
                             std::int64_t out_features, int device) {
    return {Linear::load(weights, prefix + ".linear_1", in_features, out_features, true, device),
            Linear::load(weights, prefix + ".linear_2", out_features, out_features, true, device)};
  }

  // x [M, in] -> out [M, out]; hidden [M, out] is the caller's scratch.
  void forward(const TensorView& x, const TensorView& hidden, const TensorView& out, Arena& arena,
               cublasHandle_t cublas, cudaStream_t stream) const {
    linear_1.forward(x, hidden, arena, cublas, stream);
    cuda::ops::activation(hidden, hidden, cuda::ops::Activation::silu, stream);
    linear_2.forward(hidden, out, arena, cublas, stream);
  }
};

// FeedForward(dim, mult=4, "gelu-approximate"): net.0.proj -> gelu_tanh -> net.2.
struct DitFeedForward {
  Linear project_in, project_out;

  static DitFeedForward load(WeightLoader& weights, const std::string& prefix, std::int64_t dim, int device) {
    return {Linear::load(weights, prefix + ".net.0.proj", dim, 4 * dim, true, device),
            Linear::load(weights, prefix + ".net.2", 4 * dim, dim, true, device)};
  }

  // x [M, D] -> out [M, D]; hidden [M, 4D] is the caller's scratch.
  void forward(const TensorView& x, const TensorView& hidden, const TensorView& out, Arena& arena,
               cublasHandle_t cublas, cudaStream_t stream) const {
    project_in.forward(x, hidden, arena, cublas, stream);
    cuda::ops::activation(hidden, hidden, cuda::ops::Activation::gelu_tanh, stream);
    project_out.forward(hidden, out, arena, cublas, stream);
  }
};

// q, k, v of one stream; with qk_norm, the per-head RMS norms of q and k (weights [head_dim], eps 1e-6).
struct DitQkv {
  Linear q, k, v;
  Tensor norm_q, norm_k;  // [head_dim] bf16 on the device, or undefined without qk_norm
  std::int64_t head_dim = 0;

  std::optional<Linear> joined;  // q | k | v (| an extra Linear of the same input) in one, see join()

  // Joins q, k, v and `extra` (another Linear reading the same rows, e.g. FLUX's proj_mlp; or null) into
  // `joined` where Linear::concatenate can (dense or 8-bit quantized-matmul weights): one wide GEMM.
  void join(Linear* extra, const std::string& name) {
    std::vector<Linear*> parts{&q, &k, &v};
    if (extra != nullptr) parts.push_back(extra);
    joined = Linear::concatenate(parts, name);
  }
  // Columns of the wide scratch project_into() needs with `joined` (0 without).
  std::int64_t joined_width() const { return joined ? joined->out_features() : 0; }

  // share_input() over q, k, v (and `extra`, another Linear reading the same rows, or null), and its arena bytes.
  LinearInput share(const TensorView& x, const Linear* extra, Arena& arena, cudaStream_t stream) const {
    return extra == nullptr ? share_input(x, {&q, &k, &v}, arena, stream)
                            : share_input(x, {&q, &k, &v, extra}, arena, stream);
  }
  std::size_t share_bytes(std::int64_t rows, const Linear* extra) const {
    return extra == nullptr ? shared_input_bytes({&q, &k, &v}, rows) : shared_input_bytes({&q, &k, &v, extra}, rows);
  }

  static DitQkv load(WeightLoader& weights, const std::string& prefix, const nn::detail::QkvNames& names,
                     const nn::detail::AttentionShape& shape, bool qk_norm, int device) {
    DitQkv qkv{Linear::load(weights, prefix + "." + names.q, shape.dim, shape.dim, true, device),
               Linear::load(weights, prefix + "." + names.k, shape.dim, shape.dim, true, device),
               Linear::load(weights, prefix + "." + names.v, shape.dim, shape.dim, true, device),
               Tensor(),
               Tensor(),
               shape.head_dim};
    if (qk_norm) {
      const auto norm = [&](const char* name) {
        const std::string key = prefix + "." + name + ".weight";
        return upload_bf16(weights.stored_float(key, Shape{shape.head_dim}), device, key);
      };
      qkv.norm_q = norm(names.norm_q);
      qkv.norm_k = norm(names.norm_k);
    }
    return qkv;
  }

  // The projections of x [B·L, D] written into tokens [first, first + L) of the joint buffers
  // joint[0..2] = q, k, v [B, S, D], q and k RMS-normed per head on the way; scratch [B·L, D].
  // `x` may carry the rows' 8-bit codes (share_input with q, k, v among its readers). With `joined`,
  // `wide` [B·L, joined_width()] takes the one GEMM's output (the extra Linear's columns stay there, from 3D).
  void project_into(const LinearInput& x, const TensorView& scratch, std::int64_t first, const TensorView* joint,
                    Arena& arena, cublasHandle_t cublas, cudaStream_t stream, const TensorView& wide = {}) const {
    const std::int64_t batch = joint[0].size(0), joint_tokens = joint[0].size(1), dim = joint[0].size(2);
    const std::int64_t rows = x.rows.size(0), tokens = rows / batch;
    if (joined) {
      const std::int64_t width = joined->out_features();
      SDNQ_REQUIRE(wide.rank() == 2 && wide.size(0) == rows && wide.size(1) == width, ShapeError,
                   "{}: the joined projection needs a wide buffer [{}, {}], got {}", joined->name(), rows, width,
                   wide.shape().to_string());
      joined->forward(x, wide, arena, cublas, stream);
      const Tensor* norms[] = {&norm_q, &norm_k, nullptr};
      for (int i = 0; i < 3; ++i)
        for (std::int64_t b = 0; b < batch; ++b) {
          void* target = bf16_element(joint[i], (b * joint_tokens + first) * dim);
          copy_bf16_columns(target, dim, bf16_element(wide, b * tokens * width + i * dim), width, dim, tokens, stream);
          if (norms[i] != nullptr && norms[i]->defined()) {
            const TensorView per_head(target, DType::bf16, Shape{tokens * (dim / head_dim), head_dim}, wide.device());
            const TensorView weight = norms[i]->view();
            cuda::ops::rms_norm(per_head, &weight, nn::detail::qk_norm_eps, per_head, stream);
          }
        }
      return;
    }
    const Linear* projections[] = {&q, &k, &v};
    const Tensor* norms[] = {&norm_q, &norm_k, nullptr};
    const TensorView per_head = view_as(scratch, Shape{rows * (dim / head_dim), head_dim});
    for (int i = 0; i < 3; ++i) {
      projections[i]->forward(x, scratch, arena, cublas, stream);
      if (norms[i] != nullptr && norms[i]->defined()) {
        const TensorView weight = norms[i]->view();
        cuda::ops::rms_norm(per_head, &weight, nn::detail::qk_norm_eps, per_head, stream);
      }
      copy_bf16_columns(bf16_element(joint[i], first * dim), joint_tokens * dim, scratch.data(), tokens * dim,
                        tokens * dim, batch, stream);
    }
  }
};

}  // namespace sdnq::nn::gpu::detail
