#pragma once
// Data movement of the UNet, VAE and DiTs on the device (explicit stream, outputs passed in):
//   upsample_nearest2x(x [N, C, H, W], out [N, C, 2H, 2W])   each pixel repeated 2×2
//   patchify(image [B, C, H, W], patch, order, tokens [B, (H/p)·(W/p), C·p·p])   and unpatchify, its inverse
//     PatchOrder::channel_major: token vector (c, dy, dx), FLUX's _pack_latents / _unpack_latents
//     PatchOrder::channel_minor: token vector (dy, dx, c), SD3's unpatchify
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"
#include "sdnq/cuda/ops/detail/layout_kernels.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

enum class PatchOrder { channel_major, channel_minor };

inline void upsample_nearest2x(const TensorView& x, const TensorView& out, cudaStream_t stream) {
  using namespace kernel_detail;
  require_operand(x, "upsample_nearest2x", "x");
  SDNQ_REQUIRE(x.rank() == 4, ShapeError, "cuda::ops::upsample_nearest2x: x must be [N, C, H, W], got {}",
               x.shape().to_string());
  require_like(out, x, Shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)}, "upsample_nearest2x", "out");
  if (x.numel() == 0) return;
  const long long planes = x.size(0) * x.size(1), height = x.size(2), width = x.size(3);
  const bool vector = width % 4 == 0 && aligned16(out.data());
  constexpr int threads = 256;
  dispatch_16bit(x.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(x.data());
    auto* o = static_cast<T*>(out.data());
    if (vector)
      upsample_nearest2x_kernel<T, true>
          <<<grid_for(out.numel() / 8, threads), threads, 0, stream>>>(in, o, planes, height, width);
    else
      upsample_nearest2x_kernel<T, false>
          <<<grid_for(out.numel(), threads), threads, 0, stream>>>(in, o, planes, height, width);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

namespace kernel_detail {

inline void run_patch(const TensorView& image, const TensorView& tokens, int patch, PatchOrder order, bool to_tokens,
                      const char* op, cudaStream_t stream) {
  const TensorView& source = to_tokens ? image : tokens;
  require_operand(image, op, "image");
  require_operand(tokens, op, "tokens");
  SDNQ_REQUIRE(image.rank() == 4 && patch >= 1 && image.size(2) % patch == 0 && image.size(3) % patch == 0, ShapeError,
               "cuda::ops::{}: image must be [B, C, H, W] with H and W divisible by the patch size {}, got {}", op,
               patch, image.shape().to_string());
  const std::int64_t batch = image.size(0), channels = image.size(1), height = image.size(2), width = image.size(3);
  const Shape token_shape{batch, (height / patch) * (width / patch), channels * patch * patch};
  SDNQ_REQUIRE(tokens.dtype() == image.dtype() && tokens.shape() == token_shape, ShapeError,
               "cuda::ops::{}: tokens must be {} {} for image {} and patch {}, got {} {}", op,
               dtype_name(image.dtype()), token_shape.to_string(), image.shape().to_string(), patch,
               dtype_name(tokens.dtype()), tokens.shape().to_string());
  SDNQ_REQUIRE(channels <= std::numeric_limits<int>::max(), UnsupportedError, "cuda::ops::{}: {} channels", op,
               channels);
  if (image.numel() == 0) return;
  constexpr int threads = 256;
  dispatch_16bit(image.dtype(), [&]<class T>() {
    const auto* in = static_cast<const T*>(source.data());
    auto* o = static_cast<T*>((to_tokens ? tokens : image).data());
    patch_kernel<T><<<grid_for(image.numel(), threads), threads, 0, stream>>>(
        in, o, batch, static_cast<int>(channels), height, width, patch, order == PatchOrder::channel_major, to_tokens);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kernel_detail

inline void patchify(const TensorView& image, int patch, PatchOrder order, const TensorView& tokens,
                     cudaStream_t stream) {
  kernel_detail::run_patch(image, tokens, patch, order, true, "patchify", stream);
}

inline void unpatchify(const TensorView& tokens, int patch, PatchOrder order, const TensorView& image,
                       cudaStream_t stream) {
  kernel_detail::run_patch(image, tokens, patch, order, false, "unpatchify", stream);
}

}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
