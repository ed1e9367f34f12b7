#pragma once
// AutoencoderKL (diffusers): the image <-> latent autoencoder of SD 1.x/2.x, SDXL (4 latent channels,
// quant_conv / post_quant_conv) and FLUX / SD3 (16 channels, shift and scale factors, no quant convs).
//
//   auto vae = sdnq::nn::AutoencoderKL::load("models/flux/vae");
//   auto [mean, logvar] = vae.encode(image);         // image [N, 3, H, W] in [-1, 1]
//   Tensor pixels = vae.decode(latents);             // raw decoder output, roughly in [-1, 1]
//
// encode() and decode() are diffusers' `vae.encode(x).latent_dist` and `vae.decode(z).sample`: they do
// not apply scaling_factor / shift_factor. A pipeline maps between the two spaces itself:
// latent = (mean - shift_factor) * scaling_factor, and decode(latent / scaling_factor + shift_factor);
// to_latents() and from_latents() do exactly that.
#define SDNQ_NN_RUN_CASE_VAE 1  // this header defines run_case_vae (model_conformance.hpp's convention)
#include "sdnq/nn/model_conformance.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "sdnq/nn/models/detail/vae_coders.hpp"
#include "sdnq/nn/models/detail/vae_config.hpp"

namespace sdnq::nn {

struct AutoencoderKLPosterior {
  Tensor mean;    // [N, latent_channels, H / f, W / f]
  Tensor logvar;  // same shape, clamped to [-30, 20] like diffusers' DiagonalGaussianDistribution
};

class AutoencoderKL {
 public:
  static AutoencoderKL load(const std::filesystem::path& component_folder) {
    WeightLoader weights = WeightLoader::open(component_folder);
    const std::string label = "AutoencoderKL at " + component_folder.string();
    const detail::DiffusersConfigReader reader(weights.config(), label);
    const std::string class_name = reader.string("_class_name", "");
    SDNQ_REQUIRE(class_name == "AutoencoderKL", UnsupportedError,
                 "{}: config.json has _class_name \"{}\"; this loader reads AutoencoderKL", component_folder.string(),
                 class_name);
    AutoencoderKL vae;
    vae.label_ = label;
    vae.config_ = detail::read_autoencoder_kl_config(reader);
    const AutoencoderKLConfig& config = vae.config_;
    vae.encoder_ = detail::VaeEncoder::load(weights, config);
    vae.decoder_ = detail::VaeDecoder::load(weights, config);
    const std::int64_t moments = 2 * config.latent_channels;
    if (config.use_quant_conv) vae.quant_conv_ = Conv2d::load(weights, "quant_conv", moments, moments, 1, {});
    if (config.use_post_quant_conv)
      vae.post_quant_conv_ =
          Conv2d::load(weights, "post_quant_conv", config.latent_channels, config.latent_channels, 1, {});
    weights.require_all_used("AutoencoderKL");
    return vae;
  }

  const AutoencoderKLConfig& config() const { return config_; }

  // image [N, in_channels, H, W] (H, W multiples of the downsampling factor) -> the latent distribution
  AutoencoderKLPosterior encode(const TensorView& image) const {
    require_spatial_input(image, config_.in_channels, "image", config_.downsampling_factor());
    Tensor moments = encoder_->forward(image);
    if (quant_conv_) moments = quant_conv_->forward(moments);
    std::vector<Tensor> halves = chunk(moments, 2, 1);  // mean, logvar
    float* logvar = halves[1].data_as<float>();
    for (std::int64_t i = 0, n = halves[1].numel(); i < n; ++i) logvar[i] = std::clamp(logvar[i], -30.0f, 20.0f);
    return {std::move(halves[0]), std::move(halves[1])};
  }

  // latents [N, latent_channels, h, w] -> image [N, out_channels, h * f, w * f]
  Tensor decode(const TensorView& latents) const {
    require_spatial_input(latents, config_.latent_channels, "latents", 1);
    if (!post_quant_conv_) return decoder_->forward(latents);
    return decoder_->forward(post_quant_conv_->forward(latents));
  }

  // Diffusion-space latents from the posterior mean, and back (what pipelines do around the denoiser).
  Tensor to_latents(const TensorView& mean) const {
    return affine(mean, static_cast<float>(config_.scaling_factor), -static_cast<float>(config_.shift_factor), true);
  }
  Tensor from_latents(const TensorView& latents) const {
    return affine(latents, 1.0f / static_cast<float>(config_.scaling_factor),
                  static_cast<float>(config_.shift_factor), false);
  }

 private:
  void require_spatial_input(const TensorView& x, std::int64_t channels, const char* what,
                             std::int64_t multiple) const {
    SDNQ_REQUIRE(x.dtype() == DType::f32 && x.device().is_cpu(), ShapeError,
                 "{}: {} must be a host F32 tensor, got {} on {}", label_, what, dtype_name(x.dtype()),
                 x.device().to_string());
    SDNQ_REQUIRE(x.rank() == 4 && x.size(1) == channels, ShapeError, "{}: {} must be [N, {}, H, W], got {}", label_,
                 what, channels, x.shape().to_string());
    SDNQ_REQUIRE(x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0, ShapeError, "{}: {} {} is empty", label_, what,
                 x.shape().to_string());
    SDNQ_REQUIRE(x.size(2) % multiple == 0 && x.size(3) % multiple == 0, ShapeError,
                 "{}: {} height and width must be multiples of the downsampling factor {}, got {}", label_, what,
                 multiple, x.shape().to_string());
  }

  // shift_first: (x + offset) * scale; otherwise x * scale + offset.
  static Tensor affine(const TensorView& x, float scale, float offset, bool shift_first) {
    Tensor out = Tensor::empty(x.shape(), DType::f32);
    copy(out, x);
    float* values = out.data_as<float>();
    for (std::int64_t i = 0, n = out.numel(); i < n; ++i)
      values[i] = shift_first ? (values[i] + offset) * scale : values[i] * scale + offset;
    return out;
  }

  std::string label_;
  AutoencoderKLConfig config_;
  std::optional<detail::VaeEncoder> encoder_;
  std::optional<detail::VaeDecoder> decoder_;
  std::optional<Conv2d> quant_conv_, post_quant_conv_;
};

// A fixture case: `decoded` = decode(input.latents); `encoded_mean` / `encoded_logvar` = encode(input.image).
inline ModelCaseResult run_case_vae(const ModelCase& model_case) {
  const AutoencoderKL vae = AutoencoderKL::load(model_case.folder);
  std::vector<std::pair<std::string, Tensor>> outputs;
  if (model_case.has_input("latents")) outputs.emplace_back("decoded", vae.decode(model_case.input("latents")));
  if (model_case.has_input("image")) {
    AutoencoderKLPosterior posterior = vae.encode(model_case.input("image"));
    outputs.emplace_back("encoded_mean", std::move(posterior.mean));
    outputs.emplace_back("encoded_logvar", std::move(posterior.logvar));
  }
  return compare_outputs(model_case, outputs);
}

}  // namespace sdnq::nn
