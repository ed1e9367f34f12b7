// Host launchers of the GPU UNet tests: load a fixture case with nn::gpu, run it, compare with the
// reference's bf16 output (no Catch here; test_gpu_unet.cpp holds the test cases).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/unet.cuh"
#include "sdnq/nn/model_conformance.hpp"
#include "cuda/test_gpu_unet_support.hpp"

namespace sdnq::test {

namespace {

// The case's inputs on the device: bf16 activations, f32 timestep and time_ids.
struct UnetInputs {
  Tensor sample, timestep, context, text_embeds, time_ids;
  explicit UnetInputs(const nn::ModelCase& c) {
    sample = nn::gpu::detail::upload_bf16(c.input("sample"), 0, "sample");
    Tensor t = Tensor::empty(c.input("timestep").shape(), DType::f32);
    copy(t, c.input("timestep"));
    timestep = cuda::to_device(t, 0);
    context = nn::gpu::detail::upload_bf16(c.input("encoder_hidden_states"), 0, "encoder_hidden_states");
    if (c.has_input("text_embeds")) text_embeds = nn::gpu::detail::upload_bf16(c.input("text_embeds"), 0, "text_embeds");
    if (c.has_input("time_ids")) {
      Tensor ids = Tensor::empty(c.input("time_ids").shape(), DType::f32);
      copy(ids, c.input("time_ids"));
      time_ids = cuda::to_device(ids, 0);
    }
  }
  std::size_t workspace_for(const nn::gpu::UNet2DConditionModel& unet) const {
    return unet.workspace_bytes(sample.size(0), sample.size(2), sample.size(3), context.size(1));
  }
};

// Every byte of the workspace set to 0xFF: a bf16 NaN wherever a kernel fails to write.
void poison(cuda::Workspace& workspace) {
  Arena& arena = workspace.arena();
  ArenaScope scope(arena);
  const TensorView all = arena.take(Shape{static_cast<std::int64_t>(workspace.capacity())}, DType::u8, "poison");
  SDNQ_CUDA_CHECK(cudaMemset(all.data(), 0xFF, all.nbytes()));
}

TensorView forward(const nn::gpu::UNet2DConditionModel& unet, const UnetInputs& in, const Tensor& sample,
                   const Tensor& context, cuda::Workspace& workspace) {
  const TensorView text = in.text_embeds.defined() ? in.text_embeds.view() : TensorView();
  const TensorView ids = in.time_ids.defined() ? in.time_ids.view() : TensorView();
  const TensorView out = unet.forward(sample, in.timestep, context, in.text_embeds.defined() ? &text : nullptr,
                                      in.time_ids.defined() ? &ids : nullptr, workspace, nullptr);
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  return out;
}

}  // namespace

GpuUnetRun run_unet_case_on_gpu(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const nn::gpu::UNet2DConditionModel unet = nn::gpu::UNet2DConditionModel::load(case_folder, 0);
  const UnetInputs in(model_case);
  GpuUnetRun run;
  run.workspace_bytes = in.workspace_for(unet);
  cuda::Workspace workspace(run.workspace_bytes, 0, "UNet test workspace");
  poison(workspace);
  const Tensor out = cuda::to_host(forward(unet, in, in.sample, in.context, workspace));
  run.workspace_peak = workspace.peak();
  // bf16 NaN / Inf: all exponent bits set.
  const auto* bits = static_cast<const std::uint16_t*>(out.data());
  run.output_finite = true;
  for (std::int64_t i = 0; i < out.numel(); ++i) run.output_finite &= (bits[i] & 0x7F80u) != 0x7F80u;
  run.rel_l2 = nn::relative_l2(out, model_case.reference.tensor("output_bf16.output"));
  for (const auto& [linear, rows] :
       unet.linears(in.sample.size(0), in.sample.size(2), in.sample.size(3), in.context.size(1)))
    run.linear_kinds.emplace_back(nn::gpu::linear_kind_name(linear->kind()));
  return run;
}

void run_unet_misuse(const std::filesystem::path& case_folder, const std::string& which) {
  if (which == "missing tensor") {
    // The case's own tensors, in memory, less one cross-attention projection.
    nn::WeightLoader source = nn::WeightLoader::open(case_folder);
    nn::InMemoryComponent component;
    component.config = source.config();
    component.label = case_folder.string() + " less one tensor";
    for (const std::string& name : source.unused_tensors())
      if (name != "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")
        component.dense[name] = std::make_shared<const Tensor>(source.dense(name));
    nn::WeightLoader weights = nn::WeightLoader::from_memory(std::move(component));
    (void)nn::gpu::UNet2DConditionModel::load(weights, 0);
    return;
  }
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const nn::gpu::UNet2DConditionModel unet = nn::gpu::UNet2DConditionModel::load(case_folder, 0);
  UnetInputs in(model_case);
  // Sized for the case's own inputs; the bad inputs fail their checks before taking memory.
  cuda::Workspace workspace(in.workspace_for(unet), 0, "UNet misuse workspace");
  const std::int64_t batch = in.sample.size(0), channels = unet.config().in_channels;
  const std::int64_t height = in.sample.size(2), width = in.sample.size(3);
  if (which == "sample channels") {
    (void)forward(unet, in, cuda::zeros(Shape{batch, channels + 1, height, width}, DType::bf16), in.context, workspace);
  } else if (which == "sample size") {
    (void)forward(unet, in, cuda::zeros(Shape{batch, channels, height + 1, width}, DType::bf16), in.context, workspace);
  } else if (which == "f32 sample") {
    (void)forward(unet, in, cuda::zeros(Shape{batch, channels, height, width}, DType::f32), in.context, workspace);
  } else if (which == "context width") {
    const Tensor wide = cuda::zeros(Shape{batch, in.context.size(1), in.context.size(2) + 8}, DType::bf16);
    (void)forward(unet, in, in.sample, wide, workspace);
  } else if (which == "no time_ids") {
    in.time_ids = Tensor();
    (void)forward(unet, in, in.sample, in.context, workspace);
  } else {
    throw std::invalid_argument("run_unet_misuse: unknown case " + which);
  }
}

}  // namespace sdnq::test
