#pragma once
// Shared pieces of the one-denoiser-step benchmarks (bench_flux_step.cu, bench_unet_step.cu): the three
// weight variants, random host weights for an nn::InMemoryComponent (one tensor per distinct shape,
// quantized once per shape by the library's quantizer and served to every layer of that shape; every
// layer still uploads its own copy, so GPU memory is the real per-layer size), device-memory readings
// and median timing with CUDA events.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq_bench {

inline constexpr double gib = 1024.0 * 1024.0 * 1024.0;

//   bf16          every Linear dense bf16 (cuBLAS)
//   int8_qmm      SDNQ int8, row-wise scales, quantized matmul (cuda::gemm_w8a8 at M ≥ 32)
//   uint4_svd32   SDNQ uint4, group size 128 (the quantizer's auto choice), SVD rank 32
enum class Variant { bf16, int8_qmm, uint4_svd32 };

inline sdnq::quant::LayerOptions options_of(Variant v) {
  sdnq::quant::LayerOptions options;
  if (v == Variant::int8_qmm) {
    options.weights_type = &sdnq::format::storage_type("int8");
    options.use_quantized_matmul = true;
  } else {
    options.weights_type = &sdnq::format::storage_type("uint4");
    options.use_svd = true;
    options.svd_rank = 32;
  }
  return options;
}

// Uniform in [-bound, bound), from a counter-based hash (fast, reproducible).
inline std::shared_ptr<const sdnq::Tensor> random_host(const sdnq::Shape& shape, float bound, std::uint64_t seed) {
  sdnq::Tensor t = sdnq::Tensor::empty(shape, sdnq::DType::f32);
  float* values = t.data_as<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    std::uint64_t z = (static_cast<std::uint64_t>(i) + seed * 0x632BE59BD9B4E5ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    values[i] = bound * (static_cast<float>((z ^ (z >> 31)) >> 40) * (2.0f / 16777216.0f) - 1.0f);
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

  // A dense bf16 conv [out, in, k, k] (+ bias [out]) under `prefix`.
  void conv(const std::string& prefix, std::int64_t out, std::int64_t in, std::int64_t kernel) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in * kernel * kernel));
    tensor(prefix + ".weight", sdnq::Shape{out, in, kernel, kernel}, bound);
    tensor(prefix + ".bias", sdnq::Shape{out}, bound);
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

}  // namespace sdnq_bench
