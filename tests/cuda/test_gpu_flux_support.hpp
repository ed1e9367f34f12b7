#pragma once
// Host launchers of the GPU FLUX tests (model_launchers/flux.cuh), callable from the Catch test cases.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq/core/tensor.hpp"

namespace sdnq::test {

struct GpuFluxRun {
  double rel_l2 = 0.0;                    // output against the case's output_bf16.output
  std::vector<std::string> linear_kinds;  // nn::gpu::linear_kind_name of every Linear
  std::size_t workspace_bytes = 0, workspace_peak = 0;
  double rel_l2_reordered_ids = 0.0;  // output with img_ids in reverse row order against the first output
  bool repeat_is_identical = false;   // the original ids again, after the reordered ones: same bits
};

// Loads a flux-* fixture case on cuda:0, runs its input.* tensors through the bf16 forward and compares
// the output with output_bf16.output; then runs reordered img_ids and the original ones again on the
// same model (the cached RoPE tables).
GpuFluxRun run_flux_case_on_gpu(const std::filesystem::path& case_folder);

// The fixture inputs of a case, replaceable one by one (host tensors; the launcher uploads them).
struct FluxInputs {
  Tensor hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance;
};
FluxInputs flux_case_inputs(const std::filesystem::path& case_folder);

// Runs the case's model on `inputs`: throws what the model throws.
void run_flux_on_gpu_with(const std::filesystem::path& case_folder, const FluxInputs& inputs);

}  // namespace sdnq::test
