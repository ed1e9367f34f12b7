// Host launchers of the GPU AutoencoderKL tests: load a fixture case with nn::gpu, decode and encode its
// inputs, compare with the reference's bf16 outputs (no Catch here; test_gpu_vae.cpp holds the cases).
#pragma once
#include <stdexcept>
#include <string>

#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/vae.cuh"
#include "sdnq/nn/model_conformance.hpp"
#include "cuda/test_gpu_vae_support.hpp"

namespace sdnq::test {

GpuVaeRun run_vae_case_on_gpu(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const nn::gpu::AutoencoderKL vae = nn::gpu::AutoencoderKL::load(case_folder, 0);
  GpuVaeRun run;
  run.any_conv_quantized = nn::WeightLoader::open(case_folder).is_sdnq();
  if (model_case.has_input("latents")) {
    const TensorView host = model_case.input("latents");
    const Tensor latents = nn::gpu::detail::upload_bf16(host, 0, "latents");
    run.decode_workspace_bytes = vae.decode_workspace_bytes(host.size(0), host.size(2), host.size(3));
    cuda::Workspace workspace(run.decode_workspace_bytes, 0, "VAE decode test workspace");
    const TensorView decoded = vae.decode(latents, workspace, nullptr);
    SDNQ_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    run.decode_peak = workspace.peak();
    run.decoded = nn::relative_l2(cuda::to_host(decoded), model_case.reference.tensor("output_bf16.decoded"));
  }
  if (model_case.has_input("image")) {
    const TensorView host = model_case.input("image");
    const Tensor image = nn::gpu::detail::upload_bf16(host, 0, "image");
    run.encode_workspace_bytes = vae.encode_workspace_bytes(host.size(0), host.size(2), host.size(3));
    cuda::Workspace workspace(run.encode_workspace_bytes, 0, "VAE encode test workspace");
    const nn::gpu::AutoencoderKL::Posterior posterior = vae.encode(image, workspace, nullptr);
    SDNQ_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    run.encode_peak = workspace.peak();
    run.encoded_mean =
        nn::relative_l2(cuda::to_host(posterior.mean), model_case.reference.tensor("output_bf16.encoded_mean"));
    run.encoded_logvar =
        nn::relative_l2(cuda::to_host(posterior.logvar), model_case.reference.tensor("output_bf16.encoded_logvar"));
  }
  return run;
}

void run_vae_misuse(const std::filesystem::path& case_folder, const std::string& which) {
  const nn::gpu::AutoencoderKL vae = nn::gpu::AutoencoderKL::load(case_folder, 0);
  const std::int64_t latent = vae.config().latent_channels, factor = vae.config().downsampling_factor();
  cuda::Workspace workspace(vae.decode_workspace_bytes(1, 8, 8), 0, "VAE misuse workspace");
  if (which == "latent channels") {
    (void)vae.decode(cuda::zeros(Shape{1, latent + 1, 8, 8}, DType::bf16), workspace, nullptr);
  } else if (which == "latents rank 3") {
    (void)vae.decode(cuda::zeros(Shape{latent, 8, 8}, DType::bf16), workspace, nullptr);
  } else if (which == "f32 latents") {
    (void)vae.decode(cuda::zeros(Shape{1, latent, 8, 8}, DType::f32), workspace, nullptr);
  } else if (which == "host latents") {
    (void)vae.decode(Tensor::zeros(Shape{1, latent, 8, 8}, DType::bf16), workspace, nullptr);
  } else if (which == "workspace too small") {
    (void)vae.decode(cuda::zeros(Shape{1, latent, 16, 16}, DType::bf16), workspace, nullptr);
  } else if (which == "image not a multiple of the factor") {
    cuda::Workspace big(vae.encode_workspace_bytes(1, 4 * factor, 4 * factor), 0, "VAE misuse encode workspace");
    (void)vae.encode(cuda::zeros(Shape{1, vae.config().in_channels, 4 * factor + 1, 4 * factor}, DType::bf16), big,
                     nullptr);
  } else {
    throw std::invalid_argument("run_vae_misuse: unknown case " + which);
  }
}

}  // namespace sdnq::test
