#pragma once
// SD3's PatchEmbed on the GPU in bf16 (the CPU module: nn::detail::PatchEmbedding): the p×p, stride-p
// Conv2d `pos_embed.proj` as patchify + one GEMM (its weight [D, C, p, p] is the matrix [D, C·p·p] for
// tokens laid out (c, dy, dx)), then the window of the stored table `pos_embed.pos_embed` [1, max², D]
// centered in the max × max grid added to every sample. The checkpoint keeps this layer dense (the
// reference's skip keys name pos_embed); a quantized one is dequantized at load, it is tiny.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "sdnq/core/arena.hpp"
#include "sdnq/cuda/linear.cuh"
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/resample.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/gpu/detail/dit_common.cuh"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/dequantize.hpp"

namespace sdnq::nn::gpu::detail {

class SD3PatchEmbed {
 public:
  static SD3PatchEmbed load(WeightLoader& weights, std::int64_t in_channels, std::int64_t dim, std::int64_t patch_size,
                            std::int64_t max_size, int device) {
    SD3PatchEmbed e;
    e.in_channels_ = in_channels;
    e.dim_ = dim;
    e.patch_size_ = patch_size;
    e.max_size_ = max_size;
    const Shape conv_shape{dim, in_channels, patch_size, patch_size};
    Tensor weight = [&] {
      if (auto quantized = weights.quantized("pos_embed.proj", quant::LayerKind::conv2d, conv_shape))
        return quant::dequantize(*quantized, DType::f32, quant::ScalePrecision::reference_compatible);
      return weights.dense("pos_embed.proj.weight", conv_shape);
    }();
    weight.reshape(Shape{dim, e.patch_features()});
    e.weight_ = upload_bf16(weight, device, "pos_embed.proj.weight");
    e.bias_ = upload_bf16(weights.stored_float("pos_embed.proj.bias", Shape{dim}), device, "pos_embed.proj.bias");
    Tensor table = weights.dense("pos_embed.pos_embed");
    SDNQ_REQUIRE(table.numel() == max_size * max_size * dim, FormatError,
                 "{}: tensor 'pos_embed.pos_embed' is {}, expected [1, {}, {}] for pos_embed_max_size {}",
                 weights.folder().string(), table.shape().to_string(), max_size * max_size, dim, max_size);
    table.reshape(Shape{max_size * max_size, dim});
    e.table_ = upload_bf16(table, device, "pos_embed.pos_embed");
    return e;
  }

  std::int64_t patch_features() const { return in_channels_ * patch_size_ * patch_size_; }

  // Arena bytes forward() takes for B samples of h × w patches.
  std::size_t workspace_bytes(std::int64_t batch, std::int64_t height, std::int64_t width) const {
    const std::int64_t tokens = height * width;
    return bf16_footprint(batch * tokens, patch_features()) + bf16_footprint(tokens, dim_);
  }

  // latent [B, C, H, W] (H, W multiples of p, at most max·p; checked by the model) -> tokens
  // [B, (H/p)·(W/p), D], row-major over the patch grid.
  void forward(const TensorView& latent, const TensorView& tokens, Arena& arena, cublasHandle_t cublas,
               cudaStream_t stream) const {
    ArenaScope scope(arena);
    const std::int64_t batch = latent.size(0), height = latent.size(2) / patch_size_,
                       width = latent.size(3) / patch_size_, count = height * width;
    const TensorView patches =
        arena.take(Shape{batch, count, patch_features()}, DType::bf16, "SD3 patches");  // [B, h·w, C·p·p]
    const TensorView window = arena.take(Shape{count, dim_}, DType::bf16, "SD3 positional window");  // [h·w, D]
    cuda::ops::patchify(latent, static_cast<int>(patch_size_), cuda::ops::PatchOrder::channel_major, patches, stream);
    cuda::dense_linear(token_rows(patches), weight_.view(), bias_.view(), token_rows(tokens), cublas, stream,
                       "SD3Transformer2DModel (GPU) pos_embed.proj");
    const std::int64_t top = (max_size_ - height) / 2, left = (max_size_ - width) / 2;
    copy_bf16_columns(window.data(), width * dim_, bf16_element(table_, (top * max_size_ + left) * dim_),
                      max_size_ * dim_, width * dim_, height, stream);
    for (std::int64_t b = 0; b < batch; ++b) cuda::ops::add(tokens[b], window, tokens[b], stream);
  }

 private:
  std::int64_t in_channels_ = 0, dim_ = 0, patch_size_ = 0, max_size_ = 0;
  Tensor weight_;  // [D, C·p·p] bf16 on the device
  Tensor bias_;    // [D]
  Tensor table_;   // [max², D]
};

}  // namespace sdnq::nn::gpu::detail
