// CPU dequantization throughput of quant::dequantize (the reference dequantizer) on a 3072x3072
// Linear weight, in GB/s of bf16 output: int8, uint4 with group size 64, uint4 + SVD rank 32, and
// float8_e4m3fn. Each runs on one thread and on the whole pool (SDNQ_NUM_THREADS, default all cores);
// "per_core" divides the rate by the threads used. Inputs come from quant::quantize_weight.
//
// Run: bench_dequantize_cpu --benchmark_min_time=0.5s
#include <random>
#include <string>

#include <benchmark/benchmark.h>

#include "sdnq/core/parallel.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"

namespace {

using namespace sdnq;

constexpr std::int64_t rows = 3072, columns = 3072;

Tensor random_weight() {  // [rows, columns] bf16
  Tensor weight = Tensor::empty(Shape{rows, columns}, DType::bf16);
  std::mt19937 generator(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (std::int64_t i = 0; i < weight.numel(); ++i) weight.data_as<bf16>()[i] = bf16(normal(generator));
  return weight;
}

quant::QuantizedTensors make_layer(const std::string& type, std::int64_t group_size, std::int64_t svd_rank) {
  static const Tensor weight = random_weight();
  quant::LayerOptions options;
  options.weights_type = &format::storage_type(type);
  options.group_size = group_size;
  options.use_svd = svd_rank > 0;
  options.svd_rank = svd_rank;
  return quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16);
}

// Runs on the calling thread only: parallel_for runs serially inside a pool chunk, so mark this
// thread as one for the benchmark's duration.
struct SerialScope {
  SerialScope() { sdnq::detail::inside_parallel_chunk = true; }
  ~SerialScope() { sdnq::detail::inside_parallel_chunk = false; }
};

void bench_dequantize(benchmark::State& state, const quant::QuantizedTensors& layer) {
  const bool single_thread = state.range(0) == 1;
  const int threads = single_thread ? 1 : parallel_thread_count();
  std::optional<SerialScope> serial;
  if (single_thread) serial.emplace();
  const quant::QuantizedWeight view = layer.view();
  for (auto _ : state) {
    Tensor dense = quant::dequantize(view, DType::bf16, quant::ScalePrecision::as_stored);
    benchmark::DoNotOptimize(dense.data());
  }
  const double output_bytes = static_cast<double>(rows * columns * 2);
  state.counters["bf16_out"] = benchmark::Counter(output_bytes, benchmark::Counter::kIsIterationInvariantRate,
                                                  benchmark::Counter::kIs1000);
  state.counters["per_core"] = benchmark::Counter(output_bytes / threads,
                                                  benchmark::Counter::kIsIterationInvariantRate,
                                                  benchmark::Counter::kIs1000);
  state.counters["threads"] = threads;
}

void BM_DequantizeInt8(benchmark::State& state) {
  static const auto layer = make_layer("int8", 0, 0);
  bench_dequantize(state, layer);
}
void BM_DequantizeUint4G64(benchmark::State& state) {
  static const auto layer = make_layer("uint4", 64, 0);
  bench_dequantize(state, layer);
}
void BM_DequantizeUint4Svd32(benchmark::State& state) {
  static const auto layer = make_layer("uint4", 0, 32);
  bench_dequantize(state, layer);
}
void BM_DequantizeFloat8E4m3fn(benchmark::State& state) {
  static const auto layer = make_layer("float8_e4m3fn", 0, 0);
  bench_dequantize(state, layer);
}

// Arg 1: one thread; arg 0: the whole pool.
BENCHMARK(BM_DequantizeInt8)->ArgName("single_thread")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DequantizeUint4G64)->ArgName("single_thread")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DequantizeUint4Svd32)->ArgName("single_thread")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DequantizeFloat8E4m3fn)->ArgName("single_thread")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
