#pragma once
// Launcher of the Hopper weight-only GEMM tests (defined in test_gemm_weight_only_sm90.cu, called from
// test_gemm_weight_only_sm90.cpp).
#include <cstdint>
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

struct WeightOnlySm90Options {
  int tokens_per_block = 0;         // as gemm_weight_only_sm90's (0: chosen by the number of waves)
  bool one_block_per_tile = false;  // the grid of one block per output tile instead of one per SM
  bool whole_tiles = false;         // one block per SM without splitting the last partial wave along K
};

// K chunks each tile of the last partial wave runs as on device 0 with the default (persistent) grid
// (1: no split).
int weight_only_sm90_splits(const cuda::GemmTcWeightsHost& weights, std::int64_t tokens, int tokens_per_block);

struct WeightOnlySm90Output {
  Tensor y;                       // [M, N] on the host
  std::int64_t guard_writes = 0;  // elements around y in its buffer that no longer hold the NaN poison
};

// As run_gemm_weight_only_sm90, with y an offset view into a larger NaN-poisoned buffer: one guard row
// before it and 256 after it (a whole token tile), so a store outside y (tokens past M, a box put at
// the wrong place) changes a guard element.
WeightOnlySm90Output run_gemm_weight_only_sm90_guarded(const cuda::GemmTcWeightsHost& weights, TensorView x,
                                                       std::optional<TensorView> bias,
                                                       const WeightOnlySm90Options& options);

}  // namespace sdnq::test
