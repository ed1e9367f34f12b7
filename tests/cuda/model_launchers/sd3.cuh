// Host launchers of the GPU SD3 tests: load a fixture case with nn::gpu, run it, compare with the
// reference's bf16 output or with the CPU float32 model (no Catch here; test_gpu_sd3.cpp holds the
// test cases).
#pragma once
#include <string>

#include "cuda/model_launchers/common.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/sd3.cuh"
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/models/sd3.hpp"
#include "cuda/test_gpu_sd3_support.hpp"

namespace sdnq::test {

namespace {

// Uploads the inputs (bf16 activations, f32 timestep) and runs forward into `workspace`.
TensorView forward_on_gpu(const nn::gpu::SD3Transformer2DModel& model, const Sd3Inputs& in,
                          cuda::Workspace& workspace) {
  const Tensor hidden = nn::gpu::detail::upload_bf16(in.hidden_states, 0, "hidden_states");
  const Tensor context = nn::gpu::detail::upload_bf16(in.encoder_hidden_states, 0, "encoder_hidden_states");
  const Tensor pooled = nn::gpu::detail::upload_bf16(in.pooled_projections, 0, "pooled_projections");
  const Tensor timestep = cuda::to_device(in.timestep, 0);
  const TensorView out = model.forward(hidden, context, pooled, timestep, workspace, nullptr);
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  return out;
}

std::size_t workspace_for(const nn::gpu::SD3Transformer2DModel& model, const Sd3Inputs& in) {
  return model.workspace_bytes(in.hidden_states.size(0), in.hidden_states.size(2), in.hidden_states.size(3),
                               in.encoder_hidden_states.size(1));
}

// Loads `model_folder` on the GPU, runs it on `in` and compares the output with `expected`.
GpuSd3Run run_on_gpu(const std::filesystem::path& model_folder, const Sd3Inputs& in, const TensorView& expected) {
  const nn::gpu::SD3Transformer2DModel model = nn::gpu::SD3Transformer2DModel::load(model_folder, 0);
  GpuSd3Run run;
  run.workspace_bytes = workspace_for(model, in);
  cuda::Workspace workspace(run.workspace_bytes, 0, "SD3 test workspace");
  const TensorView out = forward_on_gpu(model, in, workspace);
  run.workspace_peak = workspace.peak();
  for (const auto& [linear, rows] : model.linears(in.hidden_states.size(0), in.hidden_states.size(2),
                                                  in.hidden_states.size(3), in.encoder_hidden_states.size(1)))
    run.linear_kinds.emplace_back(nn::gpu::linear_kind_name(linear->kind()));
  run.rel_l2 = nn::relative_l2(cuda::to_host(out), expected);
  return run;
}

}  // namespace

Sd3Inputs sd3_case_inputs(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  return {host_copy(model_case.input("hidden_states")), host_copy(model_case.input("encoder_hidden_states")),
          host_copy(model_case.input("pooled_projections")), host_copy(model_case.input("timestep"))};
}

GpuSd3Run run_sd3_case_on_gpu(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  return run_on_gpu(case_folder, sd3_case_inputs(case_folder), model_case.reference.tensor("output_bf16.output"));
}

GpuSd3Run run_sd3_against_cpu_model(const std::filesystem::path& model_folder,
                                    const std::filesystem::path& case_folder) {
  const Sd3Inputs in = sd3_case_inputs(case_folder);
  const Tensor expected = nn::SD3Transformer2DModel::load(model_folder)
                              .forward(in.hidden_states, in.encoder_hidden_states, in.pooled_projections, in.timestep);
  return run_on_gpu(model_folder, in, expected);
}

void run_sd3_on_gpu_with(const std::filesystem::path& case_folder, const Sd3Inputs& inputs) {
  const nn::gpu::SD3Transformer2DModel model = nn::gpu::SD3Transformer2DModel::load(case_folder, 0);
  // Sized for the fixture's own inputs; the bad inputs fail their checks before taking memory.
  cuda::Workspace workspace(workspace_for(model, sd3_case_inputs(case_folder)), 0, "SD3 bad-input workspace");
  (void)forward_on_gpu(model, inputs, workspace);
}

}  // namespace sdnq::test
