#pragma once
// Launcher of the Hopper weight-only GEMM tests (defined in test_gemm_weight_only_sm90.cu, called from
// test_gemm_weight_only_sm90.cpp).
#include <optional>

#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/gemm_tc_repack.hpp"

namespace sdnq::test {

// Whether device 0 runs gemm_weight_only_sm90 (sm_90a build on a Hopper GPU).
bool weight_only_sm90_runs();

// y [M, N] for x [M, K] (host, dtype of the repacked weights), bias [N] or empty: copies the inputs to
// the GPU, poisons y and the workspace with NaN, runs gemm_weight_only_sm90 (tokens_per_block as there),
// returns y on the host.
Tensor run_gemm_weight_only_sm90(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                                 int tokens_per_block = 0);

}  // namespace sdnq::test
