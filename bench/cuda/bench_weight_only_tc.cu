// Tensor-core weight-only GEMM (gemm_tc.cuh) against cuBLAS bf16 on the same shapes, in one process.
// Same conventions as bench_weight_only.cu: median µs of a launch (API call with its checks and, with
// SVD, its low-rank pre-pass launch included), TFLOP/s (2·M·N·K), effective TB/s over the bytes the
// kernel must read (weights + group parameters + SVD factors; bf16 weights for cuBLAS), and the ratio
// to cuBLAS (cuBLAS time / our time; > 1 is faster). Weights rotate among copies totalling > 2x the
// 50 MB L2. Also "dequant_cublas_uint4_g64": the standalone dequantize kernel into one bf16 scratch
// weight followed by cuBLAS — the route the library can take at large M while the fused kernel is slower.
// "sm90_*": the Hopper wgmma kernel (gemm_weight_only_sm90.cuh) on the same repacked weights, M ≥ 256, on
// its persistent grid; "sm90_per_tile_*" the same kernel with one block per output tile (the earlier grid).
// M ≤ 16: "tc_*" rows run the weight-streaming kernel (gemm_tc's default there), "tiled_*" the 16×64 tile
// it replaced.
// Run: bench_weight_only_tc --benchmark_min_time=0.05s  (--benchmark_filter='cublas|sm90' for the wgmma rows)

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/dequantize.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_tc.cuh"
#include "sdnq/cuda/gemm_weight_only_sm90.cuh"

namespace {

using namespace sdnq_bench;

// state.range: M, N, K, bits, group size (-1 row-wise), SVD rank (padded to 16 as the repack does),
// kernel (0 gemm_tc, 1 gemm_weight_only_sm90, 2 gemm_weight_only_sm90 with one block per output tile,
// 3 / 4 gemm_weight_only_sm90 forced to 128 / 256 tokens a block, 5 without splitting the last wave,
// 6 gemm_tc with M ≤ 16 on the 16×64 tile instead of the weight-streaming kernel).
void bench_sdnq_tc(benchmark::State& state) {
  const bool sm90 = state.range(6) >= 1 && state.range(6) <= 5;
  const auto small_m = state.range(6) == 6 ? sdnq::cuda::GemmTcSmallM::tiled : sdnq::cuda::GemmTcSmallM::streaming;
  const int tokens_per_block = state.range(6) == 3 ? 128 : state.range(6) == 4 ? 256 : 0;
  const auto sm90_grid = state.range(6) == 2   ? sdnq::cuda::WeightOnlySm90Grid::one_block_per_tile
                         : state.range(6) == 5 ? sdnq::cuda::WeightOnlySm90Grid::persistent_whole_tiles
                                               : sdnq::cuda::WeightOnlySm90Grid::persistent;
  if (sm90 && !sdnq::cuda::weight_only_sm90_supported(0)) {
    state.SkipWithError("the wgmma kernel needs an sm_90a build on a Hopper GPU");
    return;
  }
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const int bits = static_cast<int>(state.range(3));
  const std::int64_t group = state.range(4) > 0 ? state.range(4) : k;
  const std::int64_t rank = state.range(5), padded = (rank + 15) / 16 * 16;
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
  const std::size_t workspace_bytes = sm90 ? sdnq::cuda::gemm_weight_only_sm90_workspace_bytes(weights[0], m)
                                           : sdnq::cuda::gemm_tc_workspace_bytes(weights[0], m, small_m);
  sdnq::Tensor workspace =
      sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, sdnq::DType::u8);
  const double us = time_median_us(state, copies, [&](int c) {
    if (sm90)
      sdnq::cuda::gemm_weight_only_sm90(weights[c], x, sdnq::TensorView(bias), y, workspace, nullptr,
                                        tokens_per_block, sm90_grid);
    else
      sdnq::cuda::gemm_tc(weights[c], x, sdnq::TensorView(bias), y, workspace, nullptr, small_m);
  });
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
  const std::vector<std::pair<int, int>> shapes = {{3072, 3072},  {12288, 3072}, {3072, 12288}, {9216, 3072},
                                                   {21504, 3072}, {8192, 8192},  {1280, 5120}};
  for (const int m : {1, 4, 8, 16, 64, 256, 1024, 4096})
    for (const auto& [n, k] : shapes) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      benchmark::RegisterBenchmark(("tc_uint4_g64" + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 4, 64, 0, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("tc_uint4_g64_svd32" + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 4, 64, 32, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("tc_int8_rowwise" + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 8, -1, 0, 0})
          ->UseManualTime();
      if (m <= 16) {
        benchmark::RegisterBenchmark(("tc_uint4_g128_svd32" + shape).c_str(), bench_sdnq_tc)
            ->Args({m, n, k, 4, 128, 32, 0})
            ->UseManualTime();
        const std::vector<std::pair<std::string, std::vector<std::int64_t>>> tiled = {
            {"tiled_uint4_g64", {4, 64, 0}}, {"tiled_uint4_g64_svd32", {4, 64, 32}}, {"tiled_int8_rowwise", {8, -1, 0}}};
        for (const auto& [name, format] : tiled)
          benchmark::RegisterBenchmark((name + shape).c_str(), bench_sdnq_tc)
              ->Args({m, n, k, format[0], format[1], format[2], 6})
              ->UseManualTime();
      }
      if (m >= 256) {
        const std::vector<std::pair<std::string, std::vector<std::int64_t>>> sm90 = {
            {"sm90_uint4_g128", {4, 128, 0}},
            {"sm90_uint4_g128_svd32", {4, 128, 32}},
            {"sm90_uint4_g64", {4, 64, 0}},
            {"sm90_int8_rowwise", {8, -1, 0}}};
        for (const auto& [name, format] : sm90)
          benchmark::RegisterBenchmark((name + shape).c_str(), bench_sdnq_tc)
              ->Args({m, n, k, format[0], format[1], format[2], 1})
              ->UseManualTime();
        for (const auto& [name, format] : sm90)
          if (format[0] == 4 && format[1] == 128)
            benchmark::RegisterBenchmark(("sm90_per_tile_" + name.substr(5) + shape).c_str(), bench_sdnq_tc)
                ->Args({m, n, k, format[0], format[1], format[2], 2})
                ->UseManualTime();
      }
      if (m >= 256)
        benchmark::RegisterBenchmark(("dequant_cublas_uint4_g64" + shape).c_str(), bench_dequant_cublas)
            ->Args({m, n, k})
            ->UseManualTime();
    }
  // FLUX.1's single blocks (4096 image + 512 text tokens): q/k/v and proj_out, on the automatic choice of
  // tokens per block and forced to 128 / 256 (the wave count against the per-block cost).
  for (const auto& [n, k] : std::vector<std::pair<int, int>>{{3072, 3072}, {3072, 15360}, {12288, 3072}}) {
    const int m = 4608;
    const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
    benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
    for (const auto& [name, kernel] : std::vector<std::pair<std::string, int>>{
             {"sm90_uint4_g128_svd32", 1},
             {"sm90_t128_uint4_g128_svd32", 3},
             {"sm90_t256_uint4_g128_svd32", 4},
             {"sm90_whole_tiles_uint4_g128_svd32", 5}})
      benchmark::RegisterBenchmark((name + shape).c_str(), bench_sdnq_tc)
          ->Args({m, n, k, 4, 128, 32, kernel})
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
