#pragma once
// Shared harness of the weight-only GEMM benchmarks: deterministic device fills, median-of-samples
// timing with CUDA events, the counters every row reports, and the cuBLAS bf16 baseline (whose times
// are remembered per shape so our rows can report the ratio).
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"

namespace sdnq_bench {

inline constexpr std::size_t rotation_bytes = 120u << 20;  // > 2x the H100's L2
inline constexpr int launches_per_sample = 10;

// Deterministic pseudo-random fill, so no host upload of hundreds of MB is needed.
__device__ inline std::uint32_t hash32(std::uint64_t i, std::uint32_t seed) {
  std::uint64_t z = i * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<std::uint32_t>(z ^ (z >> 31));
}
__global__ void fill_words(std::uint32_t* data, std::size_t count, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count; i += std::size_t(gridDim.x) * blockDim.x)
    data[i] = hash32(i, seed);
}
// bf16 values uniform in [low, high).
__global__ void fill_bf16(__nv_bfloat16* data, std::size_t count, float low, float high, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count; i += std::size_t(gridDim.x) * blockDim.x)
    data[i] = __float2bfloat16(low + (high - low) * (hash32(i, seed) >> 8) * (1.0f / 16777216.0f));
}

inline void fill(sdnq::TensorView t, std::uint32_t seed, float low = -1.0f, float high = 1.0f) {
  if (t.dtype() == sdnq::DType::bf16)
    fill_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(t.data()), t.numel(), low, high, seed);
  else
    fill_words<<<1024, 256>>>(static_cast<std::uint32_t*>(t.data()), t.nbytes() / 4, seed);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

struct Timer {
  cudaEvent_t start{}, stop{};
  Timer() {
    SDNQ_CUDA_CHECK(cudaEventCreate(&start));
    SDNQ_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
};

inline std::map<std::tuple<int, int, int>, double>& cublas_microseconds() {
  static std::map<std::tuple<int, int, int>, double> times;
  return times;
}

// Runs `launch(copy)` in samples of launches_per_sample, reports the median per launch.
template <class Launch>
double time_median_us(benchmark::State& state, int copies, Launch&& launch) {
  Timer timer;
  for (int i = 0; i < 3; ++i) launch(i % copies);  // warm-up: module load, cuBLAS heuristics
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> samples;
  int next = 0;
  for (auto _ : state) {
    SDNQ_CUDA_CHECK(cudaEventRecord(timer.start));
    for (int i = 0; i < launches_per_sample; ++i) launch(next++ % copies);
    SDNQ_CUDA_CHECK(cudaEventRecord(timer.stop));
    SDNQ_CUDA_CHECK(cudaEventSynchronize(timer.stop));
    float ms = 0.0f;
    SDNQ_CUDA_CHECK(cudaEventElapsedTime(&ms, timer.start, timer.stop));
    const double seconds = ms * 1e-3 / launches_per_sample;
    state.SetIterationTime(seconds);
    samples.push_back(seconds * 1e6);
  }
  std::sort(samples.begin(), samples.end());
  return samples.empty() ? 0.0 : samples[samples.size() / 2];
}

inline void report(benchmark::State& state, double us, double flops, double bytes) {
  state.counters["us"] = us;
  state.counters["TFLOPs"] = flops / (us * 1e-6) / 1e12;
  state.counters["TBps"] = bytes / (us * 1e-6) / 1e12;
}

inline void bench_cublas(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)), k = static_cast<int>(state.range(2));
  const double weight_bytes = 2.0 * n * k;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / weight_bytes) + 1);
  std::vector<sdnq::Tensor> weights;
  for (int c = 0; c < copies; ++c) {
    weights.push_back(sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::bf16));
    fill(weights.back(), 100 + c, -0.05f, 0.05f);
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 7);
  cublasHandle_t handle{};
  SDNQ_CUBLAS_CHECK(cublasCreate(&handle));
  const float alpha = 1.0f, beta = 0.0f;
  // Row-major y[M,N] = x[M,K]·W[N,K]ᵀ is column-major yᵀ = W·xᵀ (W read as its transpose).
  const double us = time_median_us(state, copies, [&](int c) {
    SDNQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, weights[c].data(), CUDA_R_16BF, k,
                                   x.data(), CUDA_R_16BF, k, &beta, y.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
  });
  SDNQ_CUBLAS_CHECK(cublasDestroy(handle));
  cublas_microseconds()[{m, n, k}] = us;
  report(state, us, 2.0 * m * n * k, weight_bytes);
}

}  // namespace sdnq_bench
