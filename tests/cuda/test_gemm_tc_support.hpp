#pragma once
// Launcher of the tensor-core GEMM tests (defined in test_gemm_tc.cu, called from test_gemm_tc.cpp),
// and the comparison against the double reference that test_gemm_weight_only_sm90.cpp shares.
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "cuda/test_gemv_support.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/detail/gemm_tc_repack.hpp"

namespace sdnq::test {

// y [M, N] for x [M, K] (host, dtype of the repacked weights), bias [N] or empty: copies the inputs
// to the GPU, poisons y and the workspace with NaN, runs gemm_tc, returns y on the host.
// `tiled_small_m`: M ≤ 16 on the 16×64 tile instead of the weight-streaming kernel.
Tensor run_gemm_tc_kernel(const cuda::GemmTcWeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                          bool tiled_small_m = false);

// Whether gemm_tc's plan runs `tokens` rows of a bits-wide [N, K] weight (group 64) on the weight-streaming
// kernel on a GPU with `multiprocessors` SMs, compute capability `major` and `shared_optin` bytes of
// shared memory a block may opt in to. Host only: no GPU needed.
bool gemm_tc_plan_streams(int bits, std::int64_t tokens, std::int64_t out_features, std::int64_t in_features,
                          int multiprocessors, int major, int shared_optin);

struct GemmComparison {
  double relative_l2;       // of the GPU result against the double reference
  std::int64_t non_finite;  // elements left NaN (y is NaN-poisoned before the launch) or overflowed
};

// Runs `run(repacked weights, x, bias)` (a launcher above, or one over the same repacked layout) on
// random x and bias from `seed` and compares y with x · Ŵᵀ + b in double, Ŵ being linear.dense.
template <class T, class Run>
GemmComparison compare_repacked_gemm(const RandomLinear& linear, std::int64_t tokens, bool with_bias,
                                     std::uint64_t seed, Run&& run) {
  const std::int64_t n = linear.codes.out_features, k = linear.codes.in_features;
  const cuda::GemmTcWeightsHost repacked = cuda::repack_for_gemm_tc<T>(linear.codes);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor x = Tensor::empty(Shape{tokens, k}, dtype_of_v<T>);
  Tensor bias = Tensor::empty(Shape{n}, dtype_of_v<T>);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<T>()[i] = T(dist(rng));
  for (std::int64_t i = 0; i < n; ++i) bias.data_as<T>()[i] = T(dist(rng));

  const Tensor y = run(repacked, x, with_bias ? std::optional<TensorView>(bias) : std::nullopt);
  std::vector<double> xs(static_cast<std::size_t>(tokens * k));
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = x.data_as<T>()[i].to_float();
  std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
  std::int64_t non_finite = 0;
  for (std::int64_t m = 0; m < tokens; ++m)
    for (std::int64_t o = 0; o < n; ++o) {
      double sum = with_bias ? bias.data_as<T>()[o].to_float() : 0.0;
      const double* row = linear.dense.data() + o * k;
      const double* input = xs.data() + m * k;
      for (std::int64_t c = 0; c < k; ++c) sum += input[c] * row[c];
      expected[m * n + o] = sum;
      actual[m * n + o] = y.data_as<T>()[m * n + o].to_float();
      if (!std::isfinite(actual[m * n + o])) ++non_finite;
    }
  return {relative_l2(actual, expected), non_finite};
}

}  // namespace sdnq::test
