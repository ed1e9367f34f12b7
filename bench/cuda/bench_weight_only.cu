// Small-M weight-only GEMM (gemv.cuh) against cuBLAS bf16 on the same shapes, in one process.
// Reports the median µs of a launch, TFLOP/s (2·M·N·K), effective TB/s over the bytes the kernel must
// read (weights + group parameters + SVD factors; bf16 weights for cuBLAS) and the ratio to cuBLAS
// (cuBLAS time / our time; > 1 is faster). Weights are rotated among copies totalling > 2x the 50 MB L2
// so no launch finds its weights in cache; activations are tiny and do stay in L2 (as in a model).
// Run: bench_weight_only --benchmark_min_time=0.05s

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
#include "bench_harness.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemv.cuh"

namespace {

using namespace sdnq_bench;

// state.range: M, N, K, bits, group size (-1 row-wise), SVD rank, float codes: 0 integers, 1 read through a table
// of 2^bits values (as float4_e2m1fn or float5_e3m1fn weights are), 2 native float8_e4m3fn and 3 float8_e5m2
// converted by the hardware. The codes are random either way.
void bench_sdnq(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)), k = static_cast<int>(state.range(2));
  const int bits = static_cast<int>(state.range(3));
  const std::int64_t group = state.range(4) > 0 ? state.range(4) : k;
  const std::int64_t rank = state.range(5);
  const bool float_codes = state.range(6) != 0;
  const auto float_decode = state.range(6) == 2   ? sdnq::cuda::FloatDecode::fp8_e4m3fn
                            : state.range(6) == 3 ? sdnq::cuda::FloatDecode::fp8_e5m2
                                                  : sdnq::cuda::FloatDecode::table;
  std::vector<float> values(std::size_t{1} << bits);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = (static_cast<float>(i % 16) - 8.0f) * 0.5f;
  sdnq::Tensor code_values = sdnq::cuda::empty(sdnq::Shape{std::int64_t{1} << bits}, sdnq::DType::f32);
  SDNQ_CUDA_CHECK(cudaMemcpy(code_values.data(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
  const double code_bytes = double(n) * k * bits / 8, param_bytes = 4.0 * n * (k / group), svd_bytes = 2.0 * rank * (n + k);
  const double bytes = code_bytes + param_bytes + svd_bytes;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::GemvWeights> weights;
  for (int c = 0; c < copies; ++c) {
    sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{n, k / 32, bits}, sdnq::DType::u32);
    sdnq::Tensor params = sdnq::cuda::empty(sdnq::Shape{n, k / group, 2}, sdnq::DType::bf16);
    fill(codes, 200 + c);
    fill(params, 300 + c, 0.001f, 0.02f);
    sdnq::cuda::GemvWeights w;
    w.bits = bits;
    w.is_signed = bits == 8 && !float_codes;  // int8 row-wise: signed codes; float codes: their table
    w.out_features = n;
    w.in_features = k;
    w.group_size = group;
    w.codes = static_cast<const std::uint32_t*>(codes.data());
    w.group_params = params.data();
    if (float_codes) w.code_values = static_cast<const float*>(code_values.data());
    w.float_decode = float_decode;
    storage.push_back(std::move(codes));
    storage.push_back(std::move(params));
    if (rank > 0) {
      sdnq::Tensor up = sdnq::cuda::empty(sdnq::Shape{n, rank}, sdnq::DType::bf16);
      sdnq::Tensor down = sdnq::cuda::empty(sdnq::Shape{rank, k}, sdnq::DType::bf16);
      fill(up, 400 + c, -0.05f, 0.05f);
      fill(down, 500 + c, -0.05f, 0.05f);
      w.svd_rank = rank;
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
  const std::size_t workspace_bytes = sdnq::cuda::gemv_workspace_bytes(weights[0], m);
  sdnq::Tensor workspace = sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(workspace_bytes)}, sdnq::DType::u8);
  const double us = time_median_us(state, copies, [&](int c) {
    sdnq::cuda::gemv(weights[c], x, sdnq::TensorView(bias), y, workspace);
  });
  report(state, us, 2.0 * m * n * k, bytes);
  const auto it = cublas_microseconds().find({m, n, k});
  if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
}

void register_all() {
  const std::vector<std::pair<int, int>> shapes = {{3072, 3072}, {12288, 3072}, {3072, 12288}, {9216, 3072},
                                                   {21504, 3072}, {8192, 8192}, {1280, 5120}};
  for (const int m : {1, 4, 16, 64})
    for (const auto& [n, k] : shapes) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_uint4_g64" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 4, 64, 0, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_uint4_g128" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 4, 128, 0, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_uint4_g128_svd32" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 4, 128, 32, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_int8_rowwise" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 8, -1, 0, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_uint5_g64" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 5, 64, 0, 0})
          ->UseManualTime();
      if (m > 8) continue;  // float codes run the GEMV up to 8 tokens (QuantizedLinear), dequantize + cuBLAS above
      benchmark::RegisterBenchmark(("sdnq_float4_g128" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 4, 128, 0, 1})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_float5_g64" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 5, 64, 0, 1})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_float8_table_rowwise" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 8, -1, 0, 1})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_fp8_e4m3fn_rowwise" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 8, -1, 0, 2})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("sdnq_fp8_e5m2_rowwise" + shape).c_str(), bench_sdnq)
          ->Args({m, n, k, 8, -1, 0, 3})
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
