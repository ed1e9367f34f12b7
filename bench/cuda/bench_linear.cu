// The quantized Linear dispatcher (linear.cuh) against cuBLAS bf16 at the issue's shapes, in one
// process: "linear_<format>" is the automatic route, "route_<name>_<format>" forces one route (the
// rows that chose the thresholds). Same conventions as bench_weight_only*.cu: median µs per call (the
// API call with its checks and every launch included; our calls add the bias, cuBLAS does not),
// TFLOP/s (2·M·N·K), TB/s over the bytes the kernels must read (codes + bf16 (scale, zero) pairs + SVD
// factors; bf16 weights for cuBLAS), vs_cublas = cuBLAS time / ours (> 1 is faster). Weights rotate
// among copies whose codes total > 120 MB. Formats: uint4 g128 with zero points + SVD rank 32, int8
// row-wise, native float8_e4m3fn row-wise (weight-only, kept in the GEMV layout); bf16 activations. Each layer keeps
// one code layout: the default (tensor-core) one, or the GEMV one for the "gemv_layout_" rows (the small-M GEMV route
// and its dense route). The "chunk16_" rows run the dense route with a 16 MiB chunk limit instead of 64 MiB (the chunk
// the dequantize writes can stay in the 50 MB L2 for the GEMM that reads it); the "beta_bias_" rows add the bias by a
// broadcast into y and beta = 1 instead of the cuBLASLt epilogue (the dense route without SVD).
// The "w8a8_dequantized_" rows time cuda::w8a8_dequantized_linear, the small-M (< 32 tokens) path of an
// 8-bit quantized-matmul layer (int8 codes [N, K] + F32 scale, bf16 activations, with bias; TB/s over
// codes + scales), each next to a "w8a8_dequantized_cublas_bf16" row of the same shape
// (--benchmark_filter=w8a8_dequantized runs both). Up to 16 tokens the route is the tensor-core
// weight-streaming kernel; the "w8a8_dequantized_cuda_cores_" rows force the CUDA-core kernel it
// replaced there (the route above 16 tokens and for N % 32 != 0 or K % 64 != 0), and the "_e4m3_"
// rows run float8_e4m3fn codes.
// Run: bench_linear --benchmark_min_time=0.05s

#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/core/scalar.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/linear.cuh"

namespace {

using namespace sdnq_bench;
using sdnq::cuda::LinearRoute;

enum Format : int { uint4_g128_svd32 = 0, int8_rowwise = 1, e4m3_rowwise = 2 };

std::uint64_t next_random(std::uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A random host checkpoint weight: codes uniform, scales 0.001..0.02, zero points −0.05..0, SVD
// factors ±0.05.
struct HostWeight {
  sdnq::cuda::LinearCodes codes;
  sdnq::Tensor packed, scale, zero_point, svd_up, svd_down, lookup_table;
};

HostWeight make_host_weight(int format, std::int64_t n, std::int64_t k, std::uint64_t seed) {
  HostWeight out;
  const bool four_bit = format == uint4_g128_svd32;
  const std::int64_t groups = four_bit ? k / 128 : 1;
  out.packed =
      sdnq::Tensor::empty(sdnq::Shape{four_bit ? n * k / 2 : n * k}, four_bit ? sdnq::DType::u8 : sdnq::DType::i8);
  auto* bytes = static_cast<std::uint8_t*>(out.packed.data());
  for (std::int64_t i = 0; i < out.packed.numel(); i += 8) {
    const std::uint64_t word = next_random(seed);
    for (int b = 0; b < 8 && i + b < out.packed.numel(); ++b) bytes[i + b] = static_cast<std::uint8_t>(word >> (8 * b));
  }
  const auto uniform = [&](float low, float high) {
    return low + (high - low) * static_cast<float>(next_random(seed) >> 40) / 16777216.0f;
  };
  out.scale = sdnq::Tensor::empty(sdnq::Shape{n, groups, 1}, sdnq::DType::f32);
  for (std::int64_t i = 0; i < out.scale.numel(); ++i) out.scale.data_as<float>()[i] = uniform(0.001f, 0.02f);
  auto& w = out.codes;
  w.name = "bench";
  w.bits = four_bit ? 4 : 8;
  w.value = four_bit ? sdnq::cuda::CodeValue::unsigned_integer : sdnq::cuda::CodeValue::signed_integer;
  if (format == e4m3_rowwise) {  // native float8_e4m3fn codes read through their values (GEMV layout)
    out.lookup_table = sdnq::Tensor::empty(sdnq::Shape{256}, sdnq::DType::f32);
    for (int code = 0; code < 256; ++code)
      out.lookup_table.data_as<float>()[code] = sdnq::fp8_e4m3fn::from_bits(static_cast<std::uint8_t>(code)).to_float();
    w.value = sdnq::cuda::CodeValue::lookup;
    w.lookup_table = sdnq::TensorView(out.lookup_table);
  }
  w.out_features = n;
  w.in_features = k;
  w.group_size = four_bit ? 128 : -1;
  w.codes = out.packed;
  w.scale = out.scale;
  if (four_bit) {
    out.zero_point = sdnq::Tensor::empty(sdnq::Shape{n, groups, 1}, sdnq::DType::f32);
    for (std::int64_t i = 0; i < out.zero_point.numel(); ++i)
      out.zero_point.data_as<float>()[i] = uniform(-0.05f, 0.0f);
    w.zero_point = sdnq::TensorView(out.zero_point);
    constexpr std::int64_t rank = 32;
    out.svd_up = sdnq::Tensor::empty(sdnq::Shape{n, rank}, sdnq::DType::bf16);
    out.svd_down = sdnq::Tensor::empty(sdnq::Shape{rank, k}, sdnq::DType::bf16);
    for (std::int64_t i = 0; i < n * rank; ++i)
      out.svd_up.data_as<sdnq::bf16>()[i] = sdnq::bf16(uniform(-0.05f, 0.05f));
    for (std::int64_t i = 0; i < rank * k; ++i)
      out.svd_down.data_as<sdnq::bf16>()[i] = sdnq::bf16(uniform(-0.05f, 0.05f));
    w.svd_up = sdnq::TensorView(out.svd_up);
    w.svd_down = sdnq::TensorView(out.svd_down);
  }
  return out;
}

double read_bytes(int format, double n, double k) {
  return format == uint4_g128_svd32 ? n * k / 2 + 4.0 * n * (k / 128) + 2.0 * 32 * (n + k) : n * k + 4.0 * n;
}

// Layers per (format, N, K, layout, chunk limit), built once and shared by every M and route (the host
// repack is slow).
std::vector<std::unique_ptr<sdnq::cuda::QuantizedLinear>>& layers(int format, std::int64_t n, std::int64_t k,
                                                                   sdnq::cuda::CodeLayout layout,
                                                                   std::int64_t chunk_mib, bool bias_epilogue) {
  static std::map<std::tuple<int, std::int64_t, std::int64_t, int, std::int64_t, bool>,
                  std::vector<std::unique_ptr<sdnq::cuda::QuantizedLinear>>>
      cache;
  auto& entry = cache[{format, n, k, static_cast<int>(layout), chunk_mib, bias_epilogue}];
  if (entry.empty()) {
    const HostWeight host = make_host_weight(format, n, k, 1234 + format);
    const int copies = std::max(1, static_cast<int>(rotation_bytes / read_bytes(format, n, k)) + 1);
    sdnq::cuda::QuantizedLinearOptions options;
    options.layout = layout;
    options.dense_workspace_limit = static_cast<std::size_t>(chunk_mib) << 20;
    options.bias_epilogue = bias_epilogue;
    for (int c = 0; c < copies; ++c)
      entry.push_back(std::make_unique<sdnq::cuda::QuantizedLinear>(host.codes, sdnq::DType::bf16, 0, options));
  }
  return entry;
}

// state.range: M, N, K, format, route (LinearRoute as an integer), with bias (0/1), layout (CodeLayout as
// an integer), dense chunk limit in MiB, bias by the cuBLASLt epilogue (1) or by beta = 1 (0).
void bench_linear(benchmark::State& state) {
  const std::int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const int format = static_cast<int>(state.range(3));
  const auto route = static_cast<LinearRoute>(state.range(4));
  const bool with_bias = state.range(5) != 0;
  const bool bias_epilogue = state.range(8) != 0;
  auto& copies = layers(format, n, k, static_cast<sdnq::cuda::CodeLayout>(state.range(6)), state.range(7),
                        bias_epilogue);
  const LinearRoute taken = route == LinearRoute::automatic ? copies[0]->route_for(m) : route;
  if (!copies[0]->supports(taken)) {
    state.SkipWithError("route not available for this weight");
    return;
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 8);
  fill(bias, 9);
  const std::size_t workspace_bytes = copies[0]->workspace_bytes(m, taken);
  sdnq::Tensor workspace =
      sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, sdnq::DType::u8);
  cublasHandle_t handle{};
  SDNQ_CUBLAS_CHECK(cublasCreate(&handle));
  const double us = time_median_us(state, static_cast<int>(copies.size()), [&](int c) {
    sdnq::cuda::quantized_linear(*copies[c], x, with_bias ? std::optional<sdnq::TensorView>(bias) : std::nullopt, y,
                                 workspace, handle, nullptr, route);
  });
  SDNQ_CUBLAS_CHECK(cublasDestroy(handle));
  report(state, us, 2.0 * m * n * k, read_bytes(format, n, k));
  state.counters["route"] = static_cast<double>(static_cast<int>(taken));
  state.counters["device_MB"] = static_cast<double>(copies[0]->device_bytes()) / 1e6;
  const auto it = cublas_microseconds().find({static_cast<int>(m), static_cast<int>(n), static_cast<int>(k)});
  if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
}

// state.range: M, N, K, codes (0 int8, 1 float8_e4m3fn), kernel (0 the route, 1 the CUDA-core kernel).
// Weights made on the device (random codes, bf16-valued scales 0.001..0.02), rotated among copies
// totalling > 120 MB.
void bench_w8a8_dequantized(benchmark::State& state) {
  const std::int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool e4m3 = state.range(3) == 1, cuda_cores = state.range(4) == 1;
  const double bytes = read_bytes(int8_rowwise, static_cast<double>(n), static_cast<double>(k));
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  sdnq::Tensor host_scale = sdnq::Tensor::empty(sdnq::Shape{n}, sdnq::DType::f32);
  std::uint64_t seed = 4321;
  for (std::int64_t i = 0; i < n; ++i)
    host_scale.data_as<float>()[i] =
        sdnq::bf16(0.001f + 0.019f * static_cast<float>(next_random(seed) >> 40) / 16777216.0f).to_float();
  std::vector<sdnq::Tensor> codes;
  std::vector<sdnq::cuda::W8A8Weights> weights;
  const sdnq::Tensor scale = sdnq::cuda::to_device(host_scale);
  for (int c = 0; c < copies; ++c) {
    codes.push_back(sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::i8));
    fill(codes.back(), 200 + c);
    weights.push_back(sdnq::cuda::W8A8Weights{e4m3 ? sdnq::cuda::W8A8Kind::float8_e4m3fn : sdnq::cuda::W8A8Kind::int8,
                                              n, k, sdnq::DType::bf16, sdnq::DType::f32, codes.back().data(),
                                              static_cast<const float*>(scale.data())});
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 10);
  fill(bias, 11);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  const double us = time_median_us(state, copies, [&](int c) {
    if (!cuda_cores)
      return sdnq::cuda::w8a8_dequantized_linear(weights[c], nullptr, x, bias, y, sdnq::TensorView(), nullptr);
    sdnq::cuda::kernel_detail::W8A8GemvParams p{};
    p.codes = weights[c].codes;
    p.scale = weights[c].scale;
    p.x = x.data();
    p.bias = bias.data();
    p.y = y.data();
    p.tokens = m;
    p.out_features = n;
    p.in_features = k;
    if (e4m3)
      sdnq::cuda::kernel_detail::launch_w8a8_gemv<__nv_bfloat16, true>(p, nullptr);
    else
      sdnq::cuda::kernel_detail::launch_w8a8_gemv<__nv_bfloat16, false>(p, nullptr);
  });
  report(state, us, 2.0 * m * n * k, bytes);
  const auto it = cublas_microseconds().find({static_cast<int>(m), static_cast<int>(n), static_cast<int>(k)});
  if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
}

void register_all() {
  const std::vector<std::pair<int, int>> shapes = {{3072, 3072},  {12288, 3072}, {3072, 12288}, {9216, 3072},
                                                   {21504, 3072}, {8192, 8192},  {1280, 5120}};
  const char* format_names[] = {"uint4_g128_svd32", "int8_rowwise", "e4m3_rowwise"};
  const int automatic = static_cast<int>(sdnq::cuda::CodeLayout::automatic);
  const int gemv_layout = static_cast<int>(sdnq::cuda::CodeLayout::gemv);
  const auto add = [](const std::string& name, std::vector<std::int64_t> args) {
    if (args.size() == 8) args.push_back(1);  // the cuBLASLt bias epilogue
    benchmark::RegisterBenchmark(name.c_str(), bench_linear)->Args(args)->UseManualTime();
  };
  for (const auto& [n, k] : shapes)
    for (const int m : {1, 4, 16, 64, 256, 1024, 4096}) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      for (const int format : {uint4_g128_svd32, int8_rowwise}) {
        const std::string name = format_names[format];
        const int route_automatic = static_cast<int>(LinearRoute::automatic);
        const int dense = static_cast<int>(LinearRoute::dequantize_cublas);
        add("linear_" + name + shape, {m, n, k, format, route_automatic, 1, automatic, 64});
        // Forced routes only where they compete (the slow ends are in docs/kernels.md already).
        if (m <= 16) {
          add("gemv_layout_linear_" + name + shape, {m, n, k, format, route_automatic, 1, gemv_layout, 64});
          add("gemv_layout_route_small_m_" + name + shape,
              {m, n, k, format, static_cast<int>(LinearRoute::small_m), 1, gemv_layout, 64});
        }
        if (m <= 256)
          add("route_tensor_core_" + name + shape,
              {m, n, k, format, static_cast<int>(LinearRoute::tensor_core), 1, automatic, 64});
        if (m >= 256)
          add("route_tensor_core_sm90_" + name + shape,
              {m, n, k, format, static_cast<int>(LinearRoute::tensor_core_sm90), 1, automatic, 64});
        if (m >= 64) {
          add("route_dequantize_cublas_" + name + shape, {m, n, k, format, dense, 1, automatic, 64});
          add("chunk16_route_dequantize_cublas_" + name + shape, {m, n, k, format, dense, 1, automatic, 16});
          add("gemv_layout_route_dequantize_cublas_" + name + shape, {m, n, k, format, dense, 1, gemv_layout, 64});
          if (format == int8_rowwise)
            add("beta_bias_route_dequantize_cublas_" + name + shape, {m, n, k, format, dense, 1, automatic, 64, 0});
        }
      }
    }
  // Native e4m3 codes, row-wise (float8_e4m3fn weight-only layers): kept in the GEMV layout, the weight-streaming
  // kernel on their bytes up to 32 tokens, dequantize + cuBLAS above (the rows that chose fp8_rows_max_tokens).
  for (const auto& [n, k] : shapes)
    for (const int m : {1, 4, 8, 16, 32, 64}) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      if (m == 8 || m == 32)
        benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      add("linear_e4m3_rowwise" + shape,
          {m, n, k, e4m3_rowwise, static_cast<int>(LinearRoute::automatic), 1, automatic, 64});
      if (m <= 16)
        add("route_small_m_e4m3_rowwise" + shape,
            {m, n, k, e4m3_rowwise, static_cast<int>(LinearRoute::small_m), 1, automatic, 64});
      add("route_tensor_core_e4m3_rowwise" + shape,
          {m, n, k, e4m3_rowwise, static_cast<int>(LinearRoute::tensor_core), 1, automatic, 64});
      if (m >= 16)
        add("route_dequantize_cublas_e4m3_rowwise" + shape,
            {m, n, k, e4m3_rowwise, static_cast<int>(LinearRoute::dequantize_cublas), 1, automatic, 64});
    }
  // The dequantized 8-bit path below 32 tokens (FLUX.1's modulation Linears are 18432 and 9216 × 3072).
  for (const auto& [n, k] : std::vector<std::pair<int, int>>{{18432, 3072}, {9216, 3072}, {3072, 3072}, {12288, 3072}})
    for (const int m : {1, 4, 16, 31}) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("w8a8_dequantized_cublas_bf16" + shape).c_str(), bench_cublas)
          ->Args({m, n, k})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_dequantized_int8_bf16" + shape).c_str(), bench_w8a8_dequantized)
          ->Args({m, n, k, 0, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_dequantized_e4m3_bf16" + shape).c_str(), bench_w8a8_dequantized)
          ->Args({m, n, k, 1, 0})
          ->UseManualTime();
      if (m <= 16)
        benchmark::RegisterBenchmark(("w8a8_dequantized_cuda_cores_int8_bf16" + shape).c_str(), bench_w8a8_dequantized)
            ->Args({m, n, k, 0, 1})
            ->UseManualTime();
    }
  // Where the dense route's time goes at large M: without the bias (int8: no extra K columns, no copy
  // of x) and cuBLAS alone at the extended K (K + 8) and in the route's two N chunks.
  for (const int m : {1024, 4096})
    for (const auto& [n, k] : std::vector<std::pair<int, int>>{{12288, 3072}, {8192, 8192}}) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      add("route_dequantize_cublas_nobias_int8_rowwise" + shape,
          {m, n, k, int8_rowwise, static_cast<int>(LinearRoute::dequantize_cublas), 0, automatic, 64});
      benchmark::RegisterBenchmark(("cublas_bf16_k_plus_8" + shape).c_str(), bench_cublas)
          ->Args({m, n, k + 8})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("cublas_bf16_half_n" + shape).c_str(), bench_cublas)
          ->Args({m, n / 2, k})
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
