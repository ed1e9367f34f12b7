#pragma once
// Host launchers of the GPU T5 tests (model_launchers/t5.cuh), callable from the Catch test cases.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sdnq/core/tensor.hpp"

namespace sdnq::test {

struct GpuT5Run {
  double rel_l2 = 0.0;                    // last_hidden_state against the reference (see each launcher)
  double rel_l2_fp32 = 0.0;               // run_t5_case_on_gpu: against output_fp32.last_hidden_state too
  std::vector<std::string> linear_kinds;  // nn::gpu::linear_kind_name of every Linear, in load order
  std::size_t workspace_bytes = 0, workspace_peak = 0;
};

// Loads a t5-* fixture case on cuda:0, runs its input.input_ids through the bf16 forward and compares
// last_hidden_state with output_bf16.last_hidden_state (rel_l2) and output_fp32 (rel_l2_fp32).
GpuT5Run run_t5_case_on_gpu(const std::filesystem::path& case_folder);

// Runs the case's model on [batch, tokens] ids drawn from the vocabulary with `seed` on the GPU and
// through the CPU float32 nn::T5EncoderModel; rel_l2 is the GPU output against the CPU one. Longer
// sequences than the fixture's 12 tokens reach the logarithmic and the saturated position buckets,
// and batch·tokens ≥ 32 rows run the quantized-matmul GEMM.
GpuT5Run compare_t5_with_cpu(const std::filesystem::path& case_folder, std::int64_t batch, std::int64_t tokens,
                             std::uint64_t seed);

// Runs the case's model on `ids` (a host tensor, uploaded as it is; `keep_on_host` passes the host view
// itself) with a workspace sized by workspace_bytes(batch, workspace_tokens): throws what the model throws.
void run_t5_on_gpu_with_ids(const std::filesystem::path& case_folder, const Tensor& ids, std::int64_t workspace_tokens,
                            bool keep_on_host = false);

}  // namespace sdnq::test
