// Launcher of the Hopper weight-only GEMM for the Catch cases in test_gemm_weight_only_sm90.cpp.

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "cuda/test_gemm_weight_only_sm90_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_weight_only_sm90.cuh"

namespace sdnq::test {

namespace {

constexpr std::int64_t guard_rows_before = 1, guard_rows_after = 256;

// Runs gemm_weight_only_sm90 into rows guard_rows_before .. + M of `buffer` (device, [guard_rows_before
// + M + guard_rows_after, N], NaN-poisoned here) and returns the whole buffer on the host.
Tensor run_into_buffer(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                       const WeightOnlySm90Options& options) {
  const cuda::GemmTcWeightsDevice device_weights = cuda::upload_gemm_tc_weights(weights);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0), n = weights.out_features;
  Tensor buffer = cuda::empty(Shape{guard_rows_before + tokens + guard_rows_after, n}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(buffer.data(), 0xFF, buffer.nbytes()));  // NaN in bf16 and fp16
  // N % 64 == 0: the view starts 128-byte aligned, as a row range of a larger activation would.
  TensorView y(static_cast<char*>(buffer.data()) + guard_rows_before * n * 2, weights.dtype, Shape{tokens, n},
               buffer.device());
  const std::size_t workspace_bytes = cuda::gemm_weight_only_sm90_workspace_bytes(device_weights.view(), tokens);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  cuda::gemm_weight_only_sm90(
      device_weights.view(), device_x, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y,
      workspace, nullptr, options.tokens_per_block,
      options.one_block_per_tile ? cuda::WeightOnlySm90Grid::one_block_per_tile
      : options.whole_tiles      ? cuda::WeightOnlySm90Grid::persistent_whole_tiles
                                 : cuda::WeightOnlySm90Grid::persistent);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(buffer);
}

}  // namespace

bool weight_only_sm90_runs() { return cuda::weight_only_sm90_supported(0); }

int weight_only_sm90_splits(const cuda::GemmTcWeightsHost& weights, std::int64_t tokens, int tokens_per_block) {
  cuda::GemmTcWeights view{};
  view.bits = weights.bits;
  view.out_features = weights.out_features;
  view.in_features = weights.in_features;
  view.svd_rank_padded = weights.svd_up.defined() ? weights.svd_rank_padded : 0;
  return cuda::kernel_detail::plan_weight_only_sm90(view, tokens, cuda::current_gemm_tc_device(), tokens_per_block)
      .split.splits;
}

Tensor run_gemm_weight_only_sm90(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                                 int tokens_per_block) {
  const cuda::GemmTcWeightsDevice device_weights = cuda::upload_gemm_tc_weights(weights);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));  // NaN in bf16 and fp16
  const std::size_t workspace_bytes = cuda::gemm_weight_only_sm90_workspace_bytes(device_weights.view(), tokens);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  cuda::gemm_weight_only_sm90(device_weights.view(), device_x,
                              device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y, workspace,
                              nullptr, tokens_per_block);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

WeightOnlySm90Output run_gemm_weight_only_sm90_guarded(const cuda::GemmTcWeightsHost& weights, TensorView x,
                                                       std::optional<TensorView> bias,
                                                       const WeightOnlySm90Options& options) {
  const Tensor buffer = run_into_buffer(weights, x, bias, options);
  const std::int64_t tokens = x.size(0), n = weights.out_features;
  const auto* elements = static_cast<const std::uint16_t*>(buffer.data());
  WeightOnlySm90Output out;
  const std::int64_t y_begin = guard_rows_before * n, y_end = (guard_rows_before + tokens) * n;
  for (std::int64_t i = 0; i < buffer.numel(); ++i)
    if ((i < y_begin || i >= y_end) && elements[i] != 0xFFFF) ++out.guard_writes;
  out.y = Tensor::empty(Shape{tokens, n}, weights.dtype);
  std::memcpy(out.y.data(), elements + y_begin, static_cast<std::size_t>(tokens * n) * 2);
  return out;
}

}  // namespace sdnq::test
