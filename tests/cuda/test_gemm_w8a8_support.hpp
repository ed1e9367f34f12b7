#pragma once
// Launchers of the 8-bit GEMM tests (defined in test_gemm_w8a8.cu, called from test_gemm_w8a8.cpp).
#include <optional>

#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/w8a8_repack.hpp"

namespace sdnq::test {

// y [M, N] for x [M, K] (host, the weights' activation dtype), bias [N] or empty: copies the inputs
// to the GPU, poisons y and the workspace with 0xFF bytes (NaN in bf16/fp16), runs gemm_w8a8,
// returns y on the host. `tile`: −1 lets gemm_w8a8 choose, 0..9 force a tile (cuda::W8A8TileChoice).
Tensor run_gemm_w8a8_kernel(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                            int tile = -1);

// Whether the current GPU runs the float8_e4m3fn GEMM (compute capability 8.9 or newer).
bool gpu_has_fp8_tensor_cores();

// Whether the wgmma tiles (4 to 9) run here: a Hopper GPU and sm_90a code in this build.
bool gpu_has_wgmma();

}  // namespace sdnq::test
