#pragma once
// Host launchers of the GPU AutoencoderKL tests (model_launchers/vae.cuh), callable from the Catch test cases.
#include <cstddef>
#include <filesystem>
#include <string>

namespace sdnq::test {

struct GpuVaeRun {
  // Relative L2 against the case's output_bf16.decoded / encoded_mean / encoded_logvar (-1: no such input).
  double decoded = -1.0, encoded_mean = -1.0, encoded_logvar = -1.0;
  std::size_t decode_workspace_bytes = 0, decode_peak = 0, encode_workspace_bytes = 0, encode_peak = 0;
  bool any_conv_quantized = false;  // the checkpoint is SDNQ (its convs were dequantized at load)
};

// Loads a vae_* fixture case on cuda:0 and runs input.latents through decode and input.image through
// encode in bf16 (each in a workspace of exactly *_workspace_bytes), comparing with output_bf16.*.
GpuVaeRun run_vae_case_on_gpu(const std::filesystem::path& case_folder);

// Runs one misuse named by `which` against the case's model; throws what the model throws.
void run_vae_misuse(const std::filesystem::path& case_folder, const std::string& which);

}  // namespace sdnq::test
