#pragma once
// Shared pieces of the one-denoiser-step benchmarks (model_step/flux_step.cuh, model_step/unet_step.cuh): the three
// weight variants, random host weights for an nn::InMemoryComponent (one tensor per distinct shape,
// quantized once per shape by the library's quantizer and served to every layer of that shape; every
// layer still uploads its own copy, so GPU memory is the real per-layer size), device-memory readings
// and median timing with CUDA events.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq_bench {

inline constexpr double gib = 1024.0 * 1024.0 * 1024.0;

//   bf16          every Linear dense bf16 (cuBLAS)
//   int8_qmm      SDNQ int8, row-wise scales, quantized matmul (cuda::gemm_w8a8 at M ≥ 32)
//   uint4_svd32   SDNQ uint4, group size 128 (the quantizer's auto choice), SVD rank 32
//   int8_qmm_conv int8_qmm, and the convs too (quant_conv and use_quantized_matmul_conv on: every conv with
//                 ≥ 32 input and output channels, cuda::conv2d_w8a8); UNet only
//   uint4_svd32_qmm uint4_svd32 saved with quantized matmul (the reference re-quantizes those weights to
//                 int8 on every call), loaded with nn::RequantizedMatmul::int8_at_load: W4A8 on
//                 cuda::gemm_w8a8 from 32 tokens, 8 bits a weight on the device; FLUX only
//   uint4_svd32_qmm_tables the same loaded with nn::RequantizedMatmul::int8_tables_at_load: the int8
//                 operand held as code tables (4-bit indices + a 16-entry table per 128 inputs, 5 bits a
//                 weight), expanded into the workspace before each GEMM; FLUX only
//   fp8_qmm       SDNQ float8_e4m3fn, row-wise scales, quantized matmul (cuda::gemm_w8a8's e4m3 GEMM at
//                 M ≥ 32); FLUX only
enum class Variant { bf16, int8_qmm, uint4_svd32, int8_qmm_conv, uint4_svd32_qmm, uint4_svd32_qmm_tables, fp8_qmm };

inline sdnq::quant::LayerOptions options_of(Variant v) {
  sdnq::quant::LayerOptions options;
  if (v == Variant::int8_qmm || v == Variant::int8_qmm_conv || v == Variant::fp8_qmm) {
    options.weights_type = &sdnq::format::storage_type(v == Variant::fp8_qmm ? "float8_e4m3fn" : "int8");
    options.use_quantized_matmul = true;
  } else {
    options.weights_type = &sdnq::format::storage_type("uint4");
    options.use_svd = true;
    options.svd_rank = 32;
    options.use_quantized_matmul = v == Variant::uint4_svd32_qmm || v == Variant::uint4_svd32_qmm_tables;
  }
  return options;
}

// Whether the variant's Linears run the 8-bit GEMM (LinearKind::quantized_matmul) rather than weight-only.
inline bool runs_quantized_matmul(Variant v) {
  return v == Variant::int8_qmm || v == Variant::int8_qmm_conv || v == Variant::uint4_svd32_qmm ||
         v == Variant::uint4_svd32_qmm_tables || v == Variant::fp8_qmm;
}

// Uniform in [-bound, bound), from a counter-based hash (fast, reproducible), in bf16 as published
// checkpoints hold their weights (so load_s times what loading one does).
inline std::shared_ptr<const sdnq::Tensor> random_host(const sdnq::Shape& shape, float bound, std::uint64_t seed) {
  sdnq::Tensor t = sdnq::Tensor::empty(shape, sdnq::DType::bf16);
  sdnq::bf16* values = t.data_as<sdnq::bf16>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    std::uint64_t z = (static_cast<std::uint64_t>(i) + seed * 0x632BE59BD9B4E5ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    values[i] = sdnq::bf16(bound * (static_cast<float>((z ^ (z >> 31)) >> 40) * (2.0f / 16777216.0f) - 1.0f));
  }
  return std::make_shared<const sdnq::Tensor>(std::move(t));
}

// Fills an InMemoryComponent with random weights, one host tensor per distinct shape.
class RandomWeights {
 public:
  RandomWeights(sdnq::nn::InMemoryComponent& component, Variant variant) : component_(component), variant_(variant) {}

  // A Linear [out, in] under `prefix` (uniform in ±1/√in, torch's init), with a bias [out]; quantized by
  // the variant when `quantizable` (dense for bf16).
  void linear(const std::string& prefix, std::int64_t out, std::int64_t in, bool bias, bool quantizable) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    if (bias) tensor(prefix + ".bias", sdnq::Shape{out}, bound);
    if (variant_ == Variant::bf16 || !quantizable) {
      tensor(prefix + ".weight", sdnq::Shape{out, in}, bound);
      return;
    }
    const Key key{out, in};
    auto found = quantized_.find(key);
    if (found == quantized_.end()) {
      sdnq::quant::QuantizeControls controls;
      controls.layer_name = prefix;
      controls.seed = seed_++;
      const auto weight = shared(sdnq::Shape{out, in}, bound);
      found = quantized_
                  .emplace(key, std::make_shared<const sdnq::quant::QuantizedTensors>(sdnq::quant::quantize_weight(
                                    weight->view(), sdnq::quant::LayerKind::linear, options_of(variant_),
                                    sdnq::DType::bf16, controls)))
                  .first;
    }
    component_.quantized[prefix] = found->second;
  }

  // A conv [out, in, k, k] (+ bias [out]) under `prefix`: dense bf16, or for int8_qmm_conv quantized with
  // quantized matmul where SDNQ allows it (≥ 32 channels in and out; conv_in / conv_out stay dense).
  void conv(const std::string& prefix, std::int64_t out, std::int64_t in, std::int64_t kernel) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in * kernel * kernel));
    tensor(prefix + ".bias", sdnq::Shape{out}, bound);
    const sdnq::Shape shape{out, in, kernel, kernel};
    if (variant_ != Variant::int8_qmm_conv || out < 32 || in < 32) {
      tensor(prefix + ".weight", shape, bound);
      return;
    }
    const Key key{out, in, kernel, kernel};
    auto found = quantized_.find(key);
    if (found == quantized_.end()) {
      sdnq::quant::QuantizeControls controls;
      controls.layer_name = prefix;
      controls.seed = seed_++;
      found = quantized_
                  .emplace(key, std::make_shared<const sdnq::quant::QuantizedTensors>(sdnq::quant::quantize_weight(
                                    shared(shape, bound)->view(), sdnq::quant::LayerKind::conv2d,
                                    options_of(variant_), sdnq::DType::bf16, controls)))
                  .first;
    }
    component_.quantized[prefix] = found->second;
  }

  // A dense tensor `name`, shared with every earlier one of the same shape.
  void tensor(const std::string& name, const sdnq::Shape& shape, float bound) { component_.dense[name] = shared(shape, bound); }

 private:
  using Key = std::vector<std::int64_t>;

  std::shared_ptr<const sdnq::Tensor> shared(const sdnq::Shape& shape, float bound) {
    Key key;
    for (std::int64_t i = 0; i < shape.rank(); ++i) key.push_back(shape[i]);
    auto found = dense_.find(key);
    if (found == dense_.end()) found = dense_.emplace(key, random_host(shape, bound, seed_++)).first;
    return found->second;
  }

  sdnq::nn::InMemoryComponent& component_;
  Variant variant_;
  std::uint64_t seed_ = 1;
  std::map<Key, std::shared_ptr<const sdnq::Tensor>> dense_;
  std::map<Key, std::shared_ptr<const sdnq::quant::QuantizedTensors>> quantized_;
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

inline std::size_t used_device_bytes() {
  std::size_t free_bytes = 0, total_bytes = 0;
  SDNQ_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return total_bytes - free_bytes;
}

inline double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Median over `repeats` of the milliseconds `work()` takes on the default stream.
template <class Work>
double median_ms(int repeats, Work&& work) {
  Timer timer;
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) {
    SDNQ_CUDA_CHECK(cudaEventRecord(timer.start));
    work();
    SDNQ_CUDA_CHECK(cudaEventRecord(timer.stop));
    SDNQ_CUDA_CHECK(cudaEventSynchronize(timer.stop));
    float ms = 0.0f;
    SDNQ_CUDA_CHECK(cudaEventElapsedTime(&ms, timer.start, timer.stop));
    samples.push_back(ms);
  }
  return median(samples);
}

inline const char* variant_name(Variant v) {
  return v == Variant::bf16                     ? "bf16"
         : v == Variant::int8_qmm               ? "int8_qmm"
         : v == Variant::int8_qmm_conv          ? "int8_qmm_conv"
         : v == Variant::uint4_svd32_qmm        ? "uint4_svd32_qmm"
         : v == Variant::uint4_svd32_qmm_tables ? "uint4_svd32_qmm_tables"
         : v == Variant::fp8_qmm                ? "fp8_qmm"
                                                : "uint4_svd32";
}

// The Linears of a model's step (model.linears(...): pointer and row count each) that run the variant's
// quantized kernel (int8: quantized_matmul; 0 for bf16).
template <class Linears>
int quantized_linears(const Linears& all, Variant variant) {
  const auto wanted = runs_quantized_matmul(variant) ? sdnq::nn::gpu::LinearKind::quantized_matmul
                                                     : sdnq::nn::gpu::LinearKind::quantized;
  int count = 0;
  for (const auto& [linear, rows] : all) count += linear->kind() == wanted;
  return count;
}

// The step's Linears alone, each once with its rows, on x / y scratch of the largest shape: the median
// of 3 passes in ms. With SDNQ_BENCH_LINEAR_BREAKDOWN=1 it also prints each distinct (rows, out, in,
// kind) with its count and total time, slowest first, to find where a variant loses.
template <class Linears>
double linears_ms(const Linears& all, const char* label) {
  using namespace sdnq;
  std::int64_t max_x = 0, max_y = 0;
  std::size_t scratch = 0;
  for (const auto& [linear, rows] : all) {
    max_x = std::max(max_x, rows * linear->in_features());
    max_y = std::max(max_y, rows * linear->out_features());
    scratch = std::max(scratch, linear->workspace_bytes(rows));
  }
  const Tensor x = cuda::empty(Shape{max_x}, DType::bf16), y = cuda::empty(Shape{max_y}, DType::bf16);
  fill(x, 21);
  cuda::Workspace workspace(scratch + 4096, 0, std::string(label) + " Linear breakdown scratch");
  nn::gpu::detail::CublasHandle cublas;
  const auto run = [&](const nn::gpu::Linear& linear, std::int64_t rows) {
    const TensorView xv(x.data(), DType::bf16, Shape{rows, linear.in_features()}, x.device());
    const TensorView yv(y.data(), DType::bf16, Shape{rows, linear.out_features()}, y.device());
    linear.forward(xv, yv, workspace.arena(), cublas.get(), nullptr);
  };
  const double total = median_ms(3, [&] {
    for (const auto& [linear, rows] : all) run(*linear, rows);
  });
  const char* breakdown = std::getenv("SDNQ_BENCH_LINEAR_BREAKDOWN");
  if (breakdown == nullptr || std::string(breakdown) != "1") return total;
  struct Shape4 {
    std::int64_t rows, out, in;
    std::string kind;
    bool operator<(const Shape4& o) const { return std::tie(rows, out, in, kind) < std::tie(o.rows, o.out, o.in, o.kind); }
  };
  std::map<Shape4, std::pair<int, const nn::gpu::Linear*>> shapes;
  for (const auto& [linear, rows] : all) {
    auto& entry = shapes[{rows, linear->out_features(), linear->in_features(), nn::gpu::linear_kind_name(linear->kind())}];
    entry.first += 1;
    entry.second = linear;
  }
  std::vector<std::pair<double, std::string>> lines;
  for (const auto& [shape, entry] : shapes) {
    const double each = median_ms(5, [&] { run(*entry.second, shape.rows); });
    char line[160];
    std::snprintf(line, sizeof line, "%-10s M %6lld N %6lld K %6lld  x%-3d %8.3f ms  (%.1f TFLOP/s)", shape.kind.c_str(),
                  static_cast<long long>(shape.rows), static_cast<long long>(shape.out),
                  static_cast<long long>(shape.in), entry.first, each * entry.first,
                  2e-9 * shape.rows * shape.out * shape.in / each);
    lines.emplace_back(each * entry.first, line);
  }
  std::sort(lines.rbegin(), lines.rend());
  std::printf("%s Linears by shape (total %.3f ms):\n", label, total);
  for (const auto& [ms, line] : lines) std::printf("  %s\n", line.c_str());
  return total;
}

// The steps timed with CUDA events, one per benchmark iteration, after `warmup` untimed ones.
template <class Step>
std::vector<double> time_steps(benchmark::State& state, int warmup, Step&& step) {
  for (int i = 0; i < warmup; ++i) step();
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<double> steps;
  for (auto _ : state) {
    const double ms = median_ms(1, step);
    state.SetIterationTime(ms * 1e-3);
    steps.push_back(ms);
  }
  return steps;
}

// Registers `name`/<variant> for the three variants (and int8_qmm_conv with `quantized_convs`,
// uint4_svd32_qmm and uint4_svd32_qmm_tables with `requantized_matmul`, fp8_qmm with `fp8_matmul`), each `iterations`
// manually timed steps in ms.
template <class Bench>
int register_step_benchmarks(const char* name, Bench bench, int iterations, bool quantized_convs = false,
                             bool requantized_matmul = false, bool fp8_matmul = false) {
  std::vector<Variant> variants{Variant::bf16, Variant::int8_qmm, Variant::uint4_svd32};
  if (quantized_convs) variants.push_back(Variant::int8_qmm_conv);
  if (requantized_matmul) {
    variants.push_back(Variant::uint4_svd32_qmm);
    variants.push_back(Variant::uint4_svd32_qmm_tables);
  }
  if (fp8_matmul) variants.push_back(Variant::fp8_qmm);
  for (Variant v : variants)
    benchmark::RegisterBenchmark((std::string(name) + "/" + variant_name(v)).c_str(), bench, v)
        ->Iterations(iterations)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  return 0;
}

}  // namespace sdnq_bench
