// Host launchers of the GPU T5 tests: load a fixture case with nn::gpu, run it, compare with the
// reference's bf16 output or the CPU float32 model (no Catch here; test_gpu_t5.cpp holds the cases).
#pragma once
#include <random>
#include <string>

#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/t5.cuh"
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/models/t5.hpp"
#include "cuda/test_gpu_t5_support.hpp"

namespace sdnq::test {

namespace {

void record_linears(const nn::gpu::T5EncoderModel& model, GpuT5Run& run) {
  for (const nn::gpu::Linear* linear : model.linears())
    run.linear_kinds.emplace_back(nn::gpu::linear_kind_name(linear->kind()));
}

}  // namespace

GpuT5Run run_t5_case_on_gpu(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const nn::gpu::T5EncoderModel model = nn::gpu::T5EncoderModel::load(case_folder, 0);
  const TensorView host_ids = model_case.input("input_ids");  // [B, L] I64
  const Tensor ids = cuda::to_device(host_ids, 0);
  GpuT5Run run;
  run.workspace_bytes = model.workspace_bytes(host_ids.size(0), host_ids.size(1));
  cuda::Workspace workspace(run.workspace_bytes, 0, "T5 test workspace");
  const TensorView out = model.forward(ids, workspace, nullptr);
  run.workspace_peak = workspace.peak();
  record_linears(model, run);
  const Tensor host_out = cuda::to_host(out);
  run.rel_l2 = nn::relative_l2(host_out, model_case.reference.tensor("output_bf16.last_hidden_state"));
  run.rel_l2_fp32 = nn::relative_l2(host_out, model_case.reference.tensor("output_fp32.last_hidden_state"));
  return run;
}

GpuT5Run compare_t5_with_cpu(const std::filesystem::path& case_folder, std::int64_t batch, std::int64_t tokens,
                             std::uint64_t seed) {
  const nn::T5EncoderModel cpu_model = nn::T5EncoderModel::load(case_folder);
  Tensor ids = Tensor::empty(Shape{batch, tokens}, DType::i64);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int64_t> id(0, cpu_model.config().vocab_size - 1);
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids.data_as<std::int64_t>()[i] = id(rng);
  const Tensor expected = cpu_model.forward(ids);

  const nn::gpu::T5EncoderModel model = nn::gpu::T5EncoderModel::load(case_folder, 0);
  GpuT5Run run;
  run.workspace_bytes = model.workspace_bytes(batch, tokens);
  cuda::Workspace workspace(run.workspace_bytes, 0, "T5 comparison workspace");
  const Tensor device_ids = cuda::to_device(ids, 0);
  const TensorView out = model.forward(device_ids, workspace, nullptr);
  run.workspace_peak = workspace.peak();
  record_linears(model, run);
  run.rel_l2 = nn::relative_l2(cuda::to_host(out), expected);
  return run;
}

void run_t5_on_gpu_with_ids(const std::filesystem::path& case_folder, const Tensor& ids, std::int64_t workspace_tokens,
                            bool keep_on_host) {
  const nn::gpu::T5EncoderModel model = nn::gpu::T5EncoderModel::load(case_folder, 0);
  const std::int64_t batch = ids.rank() == 2 ? ids.size(0) : 1;
  cuda::Workspace workspace(model.workspace_bytes(batch, workspace_tokens), 0, "T5 bad-input workspace");
  if (keep_on_host) {
    (void)model.forward(ids, workspace, nullptr);
    return;
  }
  const Tensor device_ids = cuda::to_device(ids, 0);
  (void)model.forward(device_ids, workspace, nullptr);
}

}  // namespace sdnq::test
