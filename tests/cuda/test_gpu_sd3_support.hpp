#pragma once
// Host launchers of the GPU SD3 tests (model_launchers/sd3.cuh), callable from the Catch test cases.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq/core/tensor.hpp"

namespace sdnq::test {

struct GpuSd3Run {
  double rel_l2 = 0.0;                    // output against the expected tensor
  std::vector<std::string> linear_kinds;  // nn::gpu::linear_kind_name of every Linear
  std::size_t workspace_bytes = 0, workspace_peak = 0;
};

// Loads an sd3-* fixture case on cuda:0, runs its input.* tensors through the bf16 forward and compares
// the output with output_bf16.output.
GpuSd3Run run_sd3_case_on_gpu(const std::filesystem::path& case_folder);

// Runs the checkpoint in `model_folder` on the inputs of the fixture case `case_folder` on the GPU and
// through the CPU float32 model (nn::SD3Transformer2DModel), and compares the two outputs.
GpuSd3Run run_sd3_against_cpu_model(const std::filesystem::path& model_folder,
                                    const std::filesystem::path& case_folder);

// The fixture inputs of a case, replaceable one by one (host f32 tensors; the launcher uploads them).
struct Sd3Inputs {
  Tensor hidden_states, encoder_hidden_states, pooled_projections, timestep;
};
Sd3Inputs sd3_case_inputs(const std::filesystem::path& case_folder);

// Runs the case's model on `inputs` with a workspace sized for the case's own inputs: throws what the
// model throws.
void run_sd3_on_gpu_with(const std::filesystem::path& case_folder, const Sd3Inputs& inputs);

}  // namespace sdnq::test
