// Tensor-core weight-only GEMM (gemm_tc.cuh) against cuBLAS bf16 on the same shapes, in one process.
// Same conventions as bench_weight_only.cu: median µs of a launch (API call with its checks and, with
// SVD, its low-rank pre-pass launch included), TFLOP/s (2·M·N·K), effective TB/s over the bytes the
// kernel must read (weights + group parameters + SVD factors; bf16 weights for cuBLAS), and the ratio
// to cuBLAS (cuBLAS time / our time; > 1 is faster). Weights rotate among copies totalling > 2x the
// 50 MB L2. Also "dequant_cublas_uint4_g64": the standalone dequantize kernel into one bf16 scratch
// weight followed by cuBLAS — the route the library can take at large M while the fused kernel is slower.
// Run: bench_weight_only_tc --benchmark_min_time=0.05s

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/dequantize.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_tc.cuh"

namespace {

constexpr std::size_t rotation_bytes = 120u << 20;  // > 2x the H100's L2
constexpr int launches_per_sample = 10;

__device__ std::uint32_t hash32(std::uint64_t i, std::uint32_t seed) {
  std::uint64_t z = i * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<std::uint32_t>(z ^ (z >> 31));
}
__global__ void fill_words(std::uint32_t* data, std::size_t count, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x)
    data[i] = hash32(i, seed);
}
__global__ void fill_bf16(__nv_bfloat16* data, std::size_t count, float low, float high, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x)
    data[i] = __float2bfloat16(low + (high - low) * (hash32(i, seed) >> 8) * (1.0f / 16777216.0f));
}

void fill(sdnq::TensorView t, std::uint32_t seed, float low = -1.0f, float high = 1.0f) {
  if (t.dtype() == sdnq::DType::bf16)
    fill_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(t.data()), t.numel(), low, high, seed);
  else
    fill_words<<<1024, 256>>>(static_cast<std::uint32_t*>(t.data()), t.nbytes() / 4, seed);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

std::map<std::tuple<int, int, int>, double>& cublas_microseconds() {
  static std::map<std::tuple<int, int, int>, double> times;
  return times;
}

template <class Launch>
double time_median_us(benchmark::State& state, int copies, Launch&& launch) {
  cudaEvent_t start{}, stop{};
  SDNQ_CUDA_CHECK(cudaEventCreate(&start));
  SDNQ_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) launch(i % copies);  // warm-up: module load, heuristics, smem opt-in
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> samples;
  int next = 0;
  for (auto _ : state) {
    SDNQ_CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < launches_per_sample; ++i) launch(next++ % copies);
    SDNQ_CUDA_CHECK(cudaEventRecord(stop));
    SDNQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    SDNQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double seconds = ms * 1e-3 / launches_per_sample;
    state.SetIterationTime(seconds);
    samples.push_back(seconds * 1e6);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(samples.begin(), samples.end());
  return samples.empty() ? 0.0 : samples[samples.size() / 2];
}

void report(benchmark::State& state, double us, double flops, double bytes) {
  state.counters["us"] = us;
  state.counters["TFLOPs"] = flops / (us * 1e-6) / 1e12;
  state.counters["TBps"] = bytes / (us * 1e-6) / 1e12;
}

void bench_cublas(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
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

// state.range: M, N, K, bits, group size (-1 row-wise), SVD rank (padded to 64 as the repack does).
void bench_sdnq_tc(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const int bits = static_cast<int>(state.range(3));
  const std::int64_t group = state.range(4) > 0 ? state.range(4) : k;
  const std::int64_t rank = state.range(5), padded = (rank + 63) / 64 * 64;
  const double code_bytes = double(n) * k * bits / 8, param_bytes = 4.0 * n * (k / group),
               svd_bytes = 2.0 * rank * (n + k);
  const double bytes = code_bytes + param_bytes + svd_bytes;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::GemmTcWeights> weights;
  for (int c = 0; c < copies; ++c) {
    sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{k / 64, n / 16, 32, bits}, sdnq::DType::u32);
    sdnq::Tensor params = sdnq::cuda::empty(sdnq::Shape{k / group, n, 2}, sdnq::DType::bf16);
    fill(codes, 200 + c);
    fill(params, 300 + c, 0.001f, 0.02f);
    sdnq::cuda::GemmTcWeights w{bits,
                                bits == 8,
                                n,
                                k,
                                group,
                                0,
                                sdnq::DType::bf16,
                                static_cast<const std::uint32_t*>(codes.data()),
                                params.data(),
                                nullptr,
                                nullptr};
    storage.push_back(std::move(codes));
    storage.push_back(std::move(params));
    if (rank > 0) {
      sdnq::Tensor up = sdnq::cuda::empty(sdnq::Shape{n, padded}, sdnq::DType::bf16);
      sdnq::Tensor down = sdnq::cuda::empty(sdnq::Shape{padded, k}, sdnq::DType::bf16);
      fill(up, 400 + c, -0.05f, 0.05f);
      fill(down, 500 + c, -0.05f, 0.05f);
      w.svd_rank_padded = padded;
      w.svd_up = up.data();
      w.svd_down = down.data();
      storage.push_back(std::move(up));
      storage.push_back(std::move(down));
    }
    weights.push_back(w);
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 8);
  fill(bias, 9);
  const std::size_t workspace_bytes = sdnq::cuda::gemm_tc_workspace_bytes(weights[0], m);
  sdnq::Tensor workspace =
      sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, sdnq::DType::u8);
  const double us = time_median_us(
      state, copies, [&](int c) { sdnq::cuda::gemm_tc(weights[c], x, sdnq::TensorView(bias), y, workspace); });
  report(state, us, 2.0 * m * n * k, bytes);
  const auto it = cublas_microseconds().find({m, n, k});
  if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
}

// uint4 g64 with zero points in checkpoint layout: dequantize (scales rounded to bf16) into a bf16
// scratch [N, K], then cublasGemmEx; the time covers both launches.
void bench_dequant_cublas(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  constexpr int group = 64;
  const double bytes = double(n) * k / 2 + 8.0 * n * (k / group);
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::LinearCodes> weights;
  for (int c = 0; c < copies; ++c) {
    sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{std::int64_t(n) * k / 2}, sdnq::DType::u8);
    sdnq::Tensor scale = sdnq::cuda::empty(sdnq::Shape{n, k / group, 1}, sdnq::DType::f32);
    sdnq::Tensor zero = sdnq::cuda::empty(sdnq::Shape{n, k / group, 1}, sdnq::DType::f32);
    fill(codes, 600 + c);
    fill(scale, 700 + c);  // random words: only the bandwidth matters here
    fill(zero, 800 + c);
    sdnq::cuda::LinearCodes w;
    w.name = "bench";
    w.bits = 4;
    w.out_features = n;
    w.in_features = k;
    w.group_size = group;
    w.codes = codes;
    w.scale = scale;
    w.zero_point = sdnq::TensorView(zero);
    weights.push_back(w);
    storage.push_back(std::move(codes));
    storage.push_back(std::move(scale));
    storage.push_back(std::move(zero));
  }
  sdnq::Tensor dense = sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::bf16);
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 10);
  cublasHandle_t handle{};
  SDNQ_CUBLAS_CHECK(cublasCreate(&handle));
  const float alpha = 1.0f, beta = 0.0f;
  const double us = time_median_us(state, copies, [&](int c) {
    sdnq::cuda::dequantize(weights[c], dense, sdnq::cuda::ScaleRounding::to_output_dtype, nullptr);
    SDNQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, dense.data(), CUDA_R_16BF, k,
                                   x.data(), CUDA_R_16BF, k, &beta, y.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
  });
  SDNQ_CUBLAS_CHECK(cublasDestroy(handle));
  report(state, us, 2.0 * m * n * k, bytes);
  const auto it = cublas_microseconds().find({m, n, k});
  if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
}

void register_all() {
  const std::vector<std::pair<int, int>> shapes = {
      {3072, 3072}, {12288, 3072}, {3072, 12288}, {9216, 3072}, {21504, 3072}};
  for (const int m : {16, 64, 256, 1024, 4096})
    for (const auto& [n, k] : shapes) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      benchmark::RegisterBenchmark(("tc_uint4_g64" + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 4, 64, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("tc_uint4_g64_svd32" + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 4, 64, 32})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("tc_int8_rowwise" + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 8, -1, 0})
          ->UseManualTime();
      if (m >= 256)
        benchmark::RegisterBenchmark(("dequant_cublas_uint4_g64" + shape).c_str(), bench_dequant_cublas)
            ->Args({m, n, k})
            ->UseManualTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
