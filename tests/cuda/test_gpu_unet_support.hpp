#pragma once
// Host launchers of the GPU UNet tests (model_launchers/unet.cuh), callable from the Catch test cases.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace sdnq::test {

struct GpuUnetRun {
  double rel_l2 = -1.0;                   // output against output_bf16.output
  bool output_finite = false;             // no NaN left from the poisoned workspace
  std::vector<std::string> linear_kinds;  // nn::gpu::linear_kind_name of every Linear
  std::size_t workspace_bytes = 0, workspace_peak = 0;
};

// Loads a unet_* fixture case on cuda:0 and runs its input.* tensors through the bf16 forward in a
// workspace of exactly workspace_bytes, filled with NaN first (every output element must be written).
GpuUnetRun run_unet_case_on_gpu(const std::filesystem::path& case_folder);

// Runs one misuse named by `which` against the case's model; throws what the model (or its loader) throws.
void run_unet_misuse(const std::filesystem::path& case_folder, const std::string& which);

}  // namespace sdnq::test
