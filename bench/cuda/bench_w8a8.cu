// 8-bit GEMMs with fused per-token activation quantization (gemm_w8a8.cuh) against cuBLAS bf16 on the
// same shapes, in one process. Our time is one gemm_w8a8 call: the counter reset, the activation
// quantization (inside the kernel) and the GEMM with its epilogue, from bf16 x to bf16 y. Counters:
// median µs per call, TFLOP/s (2·M·N·K), effective TB/s over the weight bytes, vs_cublas = cuBLAS bf16
// time / our time (> 1 is faster). Weights rotate among copies totalling > 2x the 50 MB L2.
// Second baseline: cuBLASLt int8 (int32 out) and e4m3 (bf16 out) on PRE-quantized operands — a bare
// 8-bit GEMM without any quantization or scaling, so a lower bound for a library route.
// Also forced tiles to tune the heuristic (cuda::W8A8TileChoice: 1 large 128×128 mma.sync; 4 / 5:
// cp.async wgmma 128×128 / 128×256; 6 / 7: TMA + mbarrier warp-specialized wgmma 128×128 / 128×256 on
// a persistent grid; 8 / 9: the same kernel with one block per tile): int8 tiles 6-9 at M ≥ 512;
// e4m3 tiles 1 (mma.sync), 6 and 8 at M ≥ 512. The *_prequantized rows time the TMA kernel alone on
// codes quantized beforehand (W8A8Params::codes_ready): what the fused quantization costs.
// Run: bench_w8a8 --benchmark_min_time=0.05s
#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_w8a8.cuh"

namespace {

using namespace sdnq_bench;

// state.range: M, N, K, kind (0 int8, 1 e4m3), forced tile (−1: gemm_w8a8 chooses), codes ready (1:
// time only the TMA kernel on x quantized by one gemm_w8a8 call before).
void bench_w8a8(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const auto kind = state.range(3) == 0 ? sdnq::cuda::W8A8Kind::int8 : sdnq::cuda::W8A8Kind::float8_e4m3fn;
  const double bytes = double(n) * k + 4.0 * n;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::W8A8Weights> weights;
  for (int c = 0; c < copies; ++c) {
    sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::u8);
    sdnq::Tensor scale = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::f32);
    fill(codes, 200 + c);  // random bytes (a few e4m3 NaN codes): the values do not change the time
    SDNQ_CUDA_CHECK(cudaMemset(scale.data(), 0x3C, scale.nbytes()));  // 0x3C3C3C3C ≈ 0.0115
    weights.push_back(sdnq::cuda::W8A8Weights{kind, n, k, sdnq::DType::bf16, sdnq::DType::f32, codes.data(),
                                              static_cast<const float*>(scale.data())});
    storage.push_back(std::move(codes));
    storage.push_back(std::move(scale));
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 8);
  fill(bias, 9);
  sdnq::Tensor workspace = sdnq::cuda::empty(
      sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::gemm_w8a8_workspace_bytes(weights[0], m))}, sdnq::DType::u8);
  std::optional<sdnq::cuda::W8A8TileChoice> tile;
  if (state.range(4) >= 0) tile = static_cast<sdnq::cuda::W8A8TileChoice>(state.range(4));
  try {
    const bool codes_ready = state.range(5) == 1;
    int multiprocessors = 0;
    SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0));
    if (codes_ready) sdnq::cuda::gemm_w8a8(weights[0], x, sdnq::TensorView(bias), y, workspace, nullptr, tile);
    const double us = time_median_us(state, copies, [&](int c) {
      if (!codes_ready) return sdnq::cuda::gemm_w8a8(weights[c], x, sdnq::TensorView(bias), y, workspace, nullptr, tile);
      namespace detail = sdnq::cuda::kernel_detail;
      detail::W8A8Params p = detail::w8a8_params(weights[c], x, sdnq::TensorView(bias), y, workspace);
      p.codes_ready = true;
      detail::dispatch_gemm_w8a8(weights[c], *tile, p, multiprocessors, nullptr);
      SDNQ_CUDA_CHECK(cudaGetLastError());
    });
    report(state, us, 2.0 * m * n * k, bytes);
    const auto it = cublas_microseconds().find({m, n, k});
    if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
  } catch (const sdnq::Error& error) {
    state.SkipWithError(error.what());
  }
}

// cuBLASLt D[M,N] = A[M,K]·B[N,K]ᵀ on pre-quantized 8-bit operands (TN, the layout 8-bit Lt needs):
// int8 → int32, or e4m3 → bf16 with unit scales. state.range: M, N, K, kind (0 int8, 1 e4m3).
void bench_cublaslt(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const bool fp8 = state.range(3) == 1;
  const double bytes = double(n) * k;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> weights;
  for (int c = 0; c < copies; ++c) {
    weights.push_back(sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::u8));
    fill(weights.back(), 200 + c);
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::u8);
  fill(x, 8);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, fp8 ? sdnq::DType::bf16 : sdnq::DType::i32);
  sdnq::Tensor workspace = sdnq::cuda::empty(sdnq::Shape{32 << 20}, sdnq::DType::u8);

  cublasLtHandle_t handle{};
  cublasLtMatmulDesc_t op{};
  cublasLtMatrixLayout_t a_layout{}, b_layout{}, d_layout{};
  cublasLtMatmulPreference_t preference{};
  SDNQ_CUBLAS_CHECK(cublasLtCreate(&handle));
  const cudaDataType_t in_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_8I, out_type = fp8 ? CUDA_R_16BF : CUDA_R_32I;
  const cublasComputeType_t compute = fp8 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32I;
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, compute, fp8 ? CUDA_R_32F : CUDA_R_32I));
  const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
  // Column-major: Dᵀ[N, M] = W[N, K] · xᵀ  → op(A) = Wᵀ-stored-as [K, N] transposed, op(B) = x as [K, M].
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout, in_type, k, n, k));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_layout, in_type, k, m, k));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_layout, out_type, n, m, n));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const std::size_t workspace_bytes = workspace.nbytes();
  SDNQ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes, sizeof(workspace_bytes)));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, op, a_layout, b_layout, d_layout, d_layout,
                                                               preference, 1, &heuristic, &found);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0) {
    state.SkipWithError("cuBLASLt has no algorithm for this 8-bit GEMM");
  } else {
    const float alpha_f = 1.0f, beta_f = 0.0f;
    const int alpha_i = 1, beta_i = 0;
    const void* alpha = fp8 ? static_cast<const void*>(&alpha_f) : &alpha_i;
    const void* beta = fp8 ? static_cast<const void*>(&beta_f) : &beta_i;
    const double us = time_median_us(state, copies, [&](int c) {
      SDNQ_CUBLAS_CHECK(cublasLtMatmul(handle, op, alpha, weights[c].data(), a_layout, x.data(), b_layout, beta,
                                       y.data(), d_layout, y.data(), d_layout, &heuristic.algo, workspace.data(),
                                       workspace_bytes, nullptr));
    });
    report(state, us, 2.0 * m * n * k, bytes);
    const auto it = cublas_microseconds().find({m, n, k});
    if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
  }
  cublasLtMatmulPreferenceDestroy(preference);
  cublasLtMatrixLayoutDestroy(a_layout);
  cublasLtMatrixLayoutDestroy(b_layout);
  cublasLtMatrixLayoutDestroy(d_layout);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(handle);
}

void register_all() {
  const std::vector<std::pair<int, int>> shapes = {{3072, 3072}, {12288, 3072}, {3072, 12288},
                                                   {9216, 3072}, {21504, 3072}, {3072, 15360}};
  for (const int m : {16, 512, 4096})
    for (const auto& [n, k] : shapes) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_int8" + shape).c_str(), bench_w8a8)
          ->Args({m, n, k, 0, -1, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_fp8" + shape).c_str(), bench_w8a8)->Args({m, n, k, 1, -1, 0})->UseManualTime();
      benchmark::RegisterBenchmark(("cublaslt_int8_prequantized" + shape).c_str(), bench_cublaslt)
          ->Args({m, n, k, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("cublaslt_fp8_prequantized" + shape).c_str(), bench_cublaslt)
          ->Args({m, n, k, 1})
          ->UseManualTime();
      if (m <= 32) continue;
      for (const int tile : {6, 7, 8, 9}) {  // forced int8 tiles (see the file comment)
        benchmark::RegisterBenchmark(("w8a8_int8_tile" + std::to_string(tile) + shape).c_str(), bench_w8a8)
            ->Args({m, n, k, 0, tile, 0})
            ->UseManualTime();
        benchmark::RegisterBenchmark(("w8a8_int8_prequantized_tile" + std::to_string(tile) + shape).c_str(),
                                     bench_w8a8)
            ->Args({m, n, k, 0, tile, 1})
            ->UseManualTime();
      }
      for (const int tile : {1, 6, 8})
        benchmark::RegisterBenchmark(("w8a8_fp8_tile" + std::to_string(tile) + shape).c_str(), bench_w8a8)
            ->Args({m, n, k, 1, tile, 0})
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
