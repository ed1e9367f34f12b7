#pragma once
// Launcher of the tensor-core GEMM tests (defined in test_gemm_tc.cu, called from test_gemm_tc.cpp).
#include <optional>

#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/gemm_tc_repack.hpp"

namespace sdnq::test {

// y [M, N] for x [M, K] (host, dtype of the repacked weights), bias [N] or empty: copies the inputs
// to the GPU, poisons y and the workspace with NaN, runs gemm_tc, returns y on the host.
Tensor run_gemm_tc_kernel(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias);

}  // namespace sdnq::test
