// Host launchers of the GPU FLUX tests: load a fixture case with nn::gpu, run it, compare with the
// reference's bf16 output (no Catch here; test_gpu_flux.cpp holds the test cases).
#pragma once
#include <algorithm>
#include <cstring>
#include <string>

#include "cuda/model_launchers/common.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/flux.cuh"
#include "sdnq/nn/model_conformance.hpp"
#include "cuda/test_gpu_flux_support.hpp"

namespace sdnq::test {

namespace {

// Uploads the inputs (bf16 activations, f32 timestep / guidance) and runs forward into `workspace`.
TensorView forward_on_gpu(const nn::gpu::FluxTransformer2DModel& model, const FluxInputs& in,
                          cuda::Workspace& workspace) {
  const Tensor hidden = nn::gpu::detail::upload_bf16(in.hidden_states, 0, "hidden_states");
  const Tensor context = nn::gpu::detail::upload_bf16(in.encoder_hidden_states, 0, "encoder_hidden_states");
  const Tensor pooled = nn::gpu::detail::upload_bf16(in.pooled_projections, 0, "pooled_projections");
  const Tensor timestep = cuda::to_device(in.timestep, 0);
  Tensor guidance;
  if (in.guidance.defined()) guidance = cuda::to_device(in.guidance, 0);
  const TensorView guidance_view = guidance.defined() ? guidance.view() : TensorView();
  const TensorView out = model.forward(hidden, context, pooled, timestep, in.img_ids, in.txt_ids,
                                       guidance.defined() ? &guidance_view : nullptr, workspace, nullptr);
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  return out;
}

}  // namespace

FluxInputs flux_case_inputs(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  FluxInputs in{host_copy(model_case.input("hidden_states")),
                host_copy(model_case.input("encoder_hidden_states")),
                host_copy(model_case.input("pooled_projections")),
                host_copy(model_case.input("timestep")),
                host_copy(model_case.input("img_ids")),
                host_copy(model_case.input("txt_ids")),
                Tensor()};
  if (model_case.has_input("guidance")) in.guidance = host_copy(model_case.input("guidance"));
  return in;
}

GpuFluxRun run_flux_case_on_gpu(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const nn::gpu::FluxTransformer2DModel model = nn::gpu::FluxTransformer2DModel::load(case_folder, 0);
  const FluxInputs in = flux_case_inputs(case_folder);
  GpuFluxRun run;
  const std::int64_t batch = in.hidden_states.size(0);
  run.workspace_bytes = model.workspace_bytes(batch, in.hidden_states.size(1), in.encoder_hidden_states.size(1));
  cuda::Workspace workspace(run.workspace_bytes, 0, "FLUX test workspace");
  const auto output_of = [&](const FluxInputs& inputs) {
    ArenaScope scope(workspace.arena());
    return cuda::to_host(forward_on_gpu(model, inputs, workspace));
  };
  const Tensor out = output_of(in);
  run.workspace_peak = workspace.peak();
  for (const auto& [linear, rows] : model.linears(batch, in.hidden_states.size(1), in.encoder_hidden_states.size(1)))
    run.linear_kinds.emplace_back(nn::gpu::linear_kind_name(linear->kind()));
  run.rel_l2 = nn::relative_l2(out, model_case.reference.tensor("output_bf16.output"));

  // The model keeps the RoPE tables of the last ids: image positions in reverse order must change the
  // output, and the original ids must then give the first output again, bit for bit.
  FluxInputs reordered = flux_case_inputs(case_folder);
  const std::int64_t rows = reordered.img_ids.numel() / reordered.img_ids.size(-1), axes = reordered.img_ids.size(-1);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t a = 0; a < axes; ++a)
      reordered.img_ids.data_as<float>()[r * axes + a] = in.img_ids.data_as<const float>()[(rows - 1 - r) * axes + a];
  run.rel_l2_reordered_ids = nn::relative_l2(output_of(reordered), out);
  const Tensor again = output_of(in);
  run.repeat_is_identical = std::memcmp(again.data(), out.data(), out.nbytes()) == 0;
  return run;
}

void run_flux_on_gpu_with(const std::filesystem::path& case_folder, const FluxInputs& inputs) {
  const nn::gpu::FluxTransformer2DModel model = nn::gpu::FluxTransformer2DModel::load(case_folder, 0);
  // Sized for the fixture's own token counts; the bad inputs fail their checks before taking memory.
  const FluxInputs fixture = flux_case_inputs(case_folder);
  cuda::Workspace workspace(model.workspace_bytes(fixture.hidden_states.size(0), fixture.hidden_states.size(1),
                                                  fixture.encoder_hidden_states.size(1)),
                            0, "FLUX bad-input workspace");
  (void)forward_on_gpu(model, inputs, workspace);
}

}  // namespace sdnq::test
