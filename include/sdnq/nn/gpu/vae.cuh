#pragma once
// AutoencoderKL on the GPU in bf16: the CPU model's computation (nn/models/vae.hpp; SD/SDXL with quant
// convs, FLUX/SD3 16-channel without), its config parsing and tensor names, every weight uploaded to the
// device while loading (SDNQ convs dequantized once at load: gpu::Conv2d says why).
//
//   auto vae = sdnq::nn::gpu::AutoencoderKL::load("models/flux/vae", 0);
//   cuda::Workspace workspace(vae.decode_workspace_bytes(1, 128, 128), 0, "vae");
//   TensorView image = vae.decode(latents, workspace, stream);    // [1, 3, 1024, 1024] bf16
//
// decode() / encode() are the CPU model's (no scaling_factor / shift_factor; see nn::AutoencoderKL).
// Memory: activations come from the caller's workspace, sized by *_workspace_bytes for the input size.
// The outputs are taken first and left in use (valid until the caller releases them: an ArenaScope or
// arena reset); everything else is given back before returning. Nothing is allocated during a pass.
// Both run on `stream` without waiting for it.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/device_pool.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/conv2d.cuh"
#include "sdnq/nn/gpu/detail/vae_coders.cuh"
#include "sdnq/nn/gpu/detail/vae_kernels.cuh"
#include "sdnq/nn/models/detail/unet_config_reader.hpp"
#include "sdnq/nn/models/detail/vae_config.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu {

class AutoencoderKL {
 public:
  struct Posterior {
    TensorView mean;    // [N, latent_channels, H / f, W / f] bf16, in the workspace
    TensorView logvar;  // same shape, clamped to [-30, 20]
  };

  static AutoencoderKL load(const std::filesystem::path& component_folder, int device = 0) {
    WeightLoader weights = WeightLoader::open(component_folder);
    return load(weights, device);
  }
  // From an open component: its loader's options apply and weights.report() then tells what the model took.
  static AutoencoderKL load(WeightLoader& weights, int device = 0) {
    AutoencoderKL vae;
    vae.label_ = "AutoencoderKL (GPU) at " + weights.folder().string();
    const nn::detail::DiffusersConfigReader reader(weights.config(), vae.label_);
    const std::string class_name = reader.string("_class_name", "");
    SDNQ_REQUIRE(class_name == "AutoencoderKL", UnsupportedError,
                 "{}: config.json has _class_name \"{}\"; this loader reads AutoencoderKL", weights.folder().string(),
                 class_name);
    vae.device_ = device;
    vae.config_ = nn::detail::read_autoencoder_kl_config(reader);
    const AutoencoderKLConfig& config = vae.config_;
    cuda::DeviceGuard guard(device);
    cuda::PooledLoad pooled(device, "AutoencoderKL weights");  // no 2 MiB rounding per tensor
    vae.encoder_ = detail::VaeGpuEncoder::load(weights, config, device);
    vae.decoder_ = detail::VaeGpuDecoder::load(weights, config, device);
    const std::int64_t moments = 2 * config.latent_channels;
    if (config.use_quant_conv) vae.quant_conv_ = Conv2d::load(weights, "quant_conv", moments, moments, 1, {}, device);
    if (config.use_post_quant_conv)
      vae.post_quant_conv_ =
          Conv2d::load(weights, "post_quant_conv", config.latent_channels, config.latent_channels, 1, {}, device);
    weights.require_all_used("AutoencoderKL");
    return vae;
  }

  const AutoencoderKLConfig& config() const { return config_; }
  int device() const { return device_; }

  // Workspace bytes decode() needs for latents [batch, latent_channels, height, width], output included.
  std::size_t decode_workspace_bytes(std::int64_t batch, std::int64_t height, std::int64_t width) const {
    const Shape z{batch, config_.latent_channels, height, width};
    detail::VaePlan plan;
    const Shape out = decoder_->plan(z, plan);
    std::size_t bytes = Arena::footprint(out, DType::bf16) + buffers_bytes(plan) + plan.scratch_bytes;
    if (post_quant_conv_) bytes += Arena::footprint(z, DType::bf16);
    return bytes;
  }

  // Workspace bytes encode() needs for an image [batch, in_channels, height, width], outputs included.
  std::size_t encode_workspace_bytes(std::int64_t batch, std::int64_t height, std::int64_t width) const {
    detail::VaePlan plan;
    const Shape moments = encoder_->plan(Shape{batch, config_.in_channels, height, width}, plan);
    const Shape half{batch, config_.latent_channels, moments[2], moments[3]};
    return 2 * Arena::footprint(half, DType::bf16) + buffers_bytes(plan) +
           (quant_conv_ ? 2 : 1) * Arena::footprint(moments, DType::bf16) + plan.scratch_bytes;
  }

  // latents [N, latent_channels, h, w] (contiguous bf16 on the model's device) -> [N, out_channels, h·f, w·f].
  TensorView decode(const TensorView& latents, cuda::Workspace& workspace, cudaStream_t stream) const {
    require_spatial_input(latents, config_.latent_channels, "latents", 1);
    cuda::DeviceGuard guard(device_);
    Arena& arena = workspace.arena();
    detail::VaePlan plan;
    const Shape out_shape = decoder_->plan(latents.shape(), plan);
    const TensorView out = arena.take(out_shape, DType::bf16, "VAE decoded image");
    ArenaScope scope(arena);
    detail::VaeBuffers buffers = take_buffers(arena, plan);
    const detail::VaeRun run{arena, cublas_.get(), stream, device_};
    TensorView z = latents;
    if (post_quant_conv_) {
      z = arena.take(latents.shape(), DType::bf16, "VAE post_quant_conv output");
      post_quant_conv_->forward(latents, z, arena, cublas_.get(), stream);
    }
    decoder_->forward(z, buffers, run, out);
    return out;
  }

  // image [N, in_channels, H, W] (contiguous bf16 on the model's device, H and W multiples of the
  // downsampling factor) -> the latent distribution.
  Posterior encode(const TensorView& image, cuda::Workspace& workspace, cudaStream_t stream) const {
    require_spatial_input(image, config_.in_channels, "image", config_.downsampling_factor());
    cuda::DeviceGuard guard(device_);
    Arena& arena = workspace.arena();
    detail::VaePlan plan;
    const Shape moments_shape = encoder_->plan(image.shape(), plan);
    const std::int64_t batch = image.size(0), latent = config_.latent_channels;
    const Shape half{batch, latent, moments_shape[2], moments_shape[3]};
    Posterior posterior{arena.take(half, DType::bf16, "VAE posterior mean"),
                        arena.take(half, DType::bf16, "VAE posterior logvar")};
    ArenaScope scope(arena);
    detail::VaeBuffers buffers = take_buffers(arena, plan);
    const detail::VaeRun run{arena, cublas_.get(), stream, device_};
    TensorView moments = arena.take(moments_shape, DType::bf16, "VAE encoder moments");
    encoder_->forward(image, buffers, run, moments);
    if (quant_conv_) {
      const TensorView projected = arena.take(moments_shape, DType::bf16, "VAE quant_conv output");
      quant_conv_->forward(moments, projected, arena, cublas_.get(), stream);
      moments = projected;
    }
    // Per sample: channels [0, L) are the mean, [L, 2L) the logvar.
    const std::size_t half_bytes = static_cast<std::size_t>(half.numel() / batch) * 2;
    const auto* source = static_cast<const std::byte*>(moments.data());
    SDNQ_CUDA_CHECK(cudaMemcpy2DAsync(posterior.mean.data(), half_bytes, source, 2 * half_bytes, half_bytes,
                                      static_cast<std::size_t>(batch), cudaMemcpyDeviceToDevice, stream));
    SDNQ_CUDA_CHECK(cudaMemcpy2DAsync(posterior.logvar.data(), half_bytes, source + half_bytes, 2 * half_bytes,
                                      half_bytes, static_cast<std::size_t>(batch), cudaMemcpyDeviceToDevice, stream));
    detail::clamp_bf16_(posterior.logvar, -30.0f, 20.0f, stream);
    return posterior;
  }

 private:
  static std::size_t buffers_bytes(const detail::VaePlan& plan) {
    return 3 * Arena::footprint(static_cast<std::size_t>(plan.activation_elements) * 2);
  }

  detail::VaeBuffers take_buffers(Arena& arena, const detail::VaePlan& plan) const {
    const Shape flat{plan.activation_elements};
    detail::VaeBuffers b;
    b.device = device_;
    b.current = arena.take(flat, DType::bf16, "VAE activations (current)").data();
    b.spare = arena.take(flat, DType::bf16, "VAE activations (spare)").data();
    b.extra = arena.take(flat, DType::bf16, "VAE activations (extra)").data();
    return b;
  }

  void require_spatial_input(const TensorView& x, std::int64_t channels, const char* what,
                             std::int64_t multiple) const {
    SDNQ_REQUIRE(x.rank() == 4 && x.size(1) == channels, ShapeError, "{}: {} must be [N, {}, H, W], got {}", label_,
                 what, channels, x.shape().to_string());
    SDNQ_REQUIRE(x.dtype() == DType::bf16 && x.device() == Device::cuda(device_) && x.is_contiguous(), ShapeError,
                 "{}: {} must be a contiguous BF16 tensor on {}, got {} on {}", label_, what,
                 Device::cuda(device_).to_string(), dtype_name(x.dtype()), x.device().to_string());
    SDNQ_REQUIRE(x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0, ShapeError, "{}: {} {} is empty", label_, what,
                 x.shape().to_string());
    SDNQ_REQUIRE(x.size(2) % multiple == 0 && x.size(3) % multiple == 0, ShapeError,
                 "{}: {} height and width must be multiples of the downsampling factor {}, got {}", label_, what,
                 multiple, x.shape().to_string());
    cuda::check_pointer_location(x, what);
  }

  std::string label_;
  int device_ = 0;
  AutoencoderKLConfig config_;
  std::optional<detail::VaeGpuEncoder> encoder_;
  std::optional<detail::VaeGpuDecoder> decoder_;
  std::optional<Conv2d> quant_conv_, post_quant_conv_;
  detail::CublasHandle cublas_;
};

}  // namespace sdnq::nn::gpu
