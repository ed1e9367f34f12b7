// The standalone dequantize kernel (dequantize.cuh, checkpoint layout → dense bf16) against a
// cudaMemcpy device-to-device of the same byte count, in one process: the copy is the ceiling.
// Bytes counted = bytes read (codes + F32 scales/zero points) + bytes written (2·N·K); for the copy,
// the copied size counts twice (read + write). Inputs rotate among copies totalling > 120 MB, so none
// comes from L2; the 2·N·K output is larger than L2 on its own at these shapes.
// Run: bench_dequantize --benchmark_min_time=0.05s

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/dequantize.cuh"
#include "sdnq/cuda/device_memory.hpp"

namespace {

using namespace sdnq_bench;

enum Format : int { uint4_g128 = 0, int8_rowwise = 1, float8_e4m3fn = 2 };

const char* format_name(int format) {
  return format == uint4_g128 ? "uint4_g128" : format == int8_rowwise ? "int8_rowwise" : "float8_e4m3fn_rowwise";
}

// float8_e4m3fn values (§1.3) for the lookup table; NaN codes decode to NaN.
std::vector<float> e4m3fn_table() {
  std::vector<float> table(256);
  for (int code = 0; code < 256; ++code) {
    const int exponent = (code >> 3) & 15, mantissa = code & 7;
    double magnitude = exponent > 0 ? std::ldexp(1.0 + mantissa / 8.0, exponent - 7) : std::ldexp(mantissa / 8.0, -6);
    if (exponent == 15 && mantissa == 7) magnitude = std::nan("");
    table[code] = static_cast<float>((code >> 7) ? -magnitude : magnitude);
  }
  return table;
}

struct Weights {
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::LinearCodes> copies;
  double read_bytes = 0.0;
};

Weights make_weights(int format, std::int64_t n, std::int64_t k) {
  Weights out;
  const bool four_bit = format == uint4_g128;
  const std::int64_t groups = four_bit ? k / 128 : 1;
  const double code_bytes = four_bit ? n * k / 2.0 : double(n) * k;
  out.read_bytes = code_bytes + 4.0 * n * groups * (four_bit ? 2 : 1);
  const int copies = std::max(1, static_cast<int>(rotation_bytes / out.read_bytes) + 1);
  sdnq::Tensor table;
  if (format == float8_e4m3fn) {
    const std::vector<float> values = e4m3fn_table();
    table =
        sdnq::cuda::to_device(sdnq::TensorView(const_cast<float*>(values.data()), sdnq::DType::f32, sdnq::Shape{256}));
  }
  for (int c = 0; c < copies; ++c) {
    sdnq::cuda::LinearCodes w;
    w.name = "bench";
    w.bits = four_bit ? 4 : 8;
    w.value = four_bit                 ? sdnq::cuda::CodeValue::unsigned_integer
              : format == int8_rowwise ? sdnq::cuda::CodeValue::signed_integer
                                       : sdnq::cuda::CodeValue::lookup;
    w.out_features = n;
    w.in_features = k;
    w.group_size = four_bit ? 128 : -1;
    sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(code_bytes)},
                                           format == int8_rowwise ? sdnq::DType::i8 : sdnq::DType::u8);
    sdnq::Tensor scale = sdnq::cuda::empty(sdnq::Shape{n, groups, 1}, sdnq::DType::f32);
    fill(codes, 600 + c);
    fill(scale, 700 + c);  // random words: only the bandwidth matters (NaN values are fine)
    w.codes = codes;
    w.scale = scale;
    out.storage.push_back(std::move(codes));
    out.storage.push_back(std::move(scale));
    if (four_bit) {
      sdnq::Tensor zero = sdnq::cuda::empty(sdnq::Shape{n, groups, 1}, sdnq::DType::f32);
      fill(zero, 800 + c);
      w.zero_point = sdnq::TensorView(zero);
      out.storage.push_back(std::move(zero));
    }
    if (format == float8_e4m3fn) w.lookup_table = sdnq::TensorView(table);
    out.copies.push_back(w);
  }
  if (format == float8_e4m3fn) out.storage.push_back(std::move(table));
  return out;
}

// state.range: N, K, format.
void bench_dequantize(benchmark::State& state) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const Weights weights = make_weights(static_cast<int>(state.range(2)), n, k);
  sdnq::Tensor dense = sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::bf16);
  const double us = time_median_us(state, static_cast<int>(weights.copies.size()), [&](int c) {
    sdnq::cuda::dequantize(weights.copies[c], dense, sdnq::cuda::ScaleRounding::to_output_dtype, nullptr);
  });
  const double bytes = weights.read_bytes + 2.0 * n * k;
  report(state, us, 0.0, bytes);
  state.counters.erase("TFLOPs");
}

// The ceiling: a device-to-device copy moving the same bytes (half read, half written).
void bench_memcpy(benchmark::State& state) {
  const std::int64_t n = state.range(0), k = state.range(1);
  const Weights weights = make_weights(static_cast<int>(state.range(2)), n, k);
  const double bytes = weights.read_bytes + 2.0 * n * k;
  const auto half = static_cast<std::size_t>(bytes / 2) / 16 * 16;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / half) + 1);
  std::vector<sdnq::Tensor> sources;
  for (int c = 0; c < copies; ++c)
    sources.push_back(sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(half)}, sdnq::DType::u8));
  sdnq::Tensor destination = sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(half)}, sdnq::DType::u8);
  const double us = time_median_us(state, copies, [&](int c) {
    SDNQ_CUDA_CHECK(cudaMemcpyAsync(destination.data(), sources[c].data(), half, cudaMemcpyDeviceToDevice, nullptr));
  });
  report(state, us, 0.0, 2.0 * half);
  state.counters.erase("TFLOPs");
}

void register_all() {
  for (const auto& [n, k] : std::vector<std::pair<int, int>>{{12288, 3072}, {8192, 8192}, {3072, 3072}})
    for (const int format : {uint4_g128, int8_rowwise, float8_e4m3fn}) {
      const std::string suffix =
          std::string("/") + format_name(format) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("memcpy_d2d" + suffix).c_str(), bench_memcpy)
          ->Args({n, k, format})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("dequantize" + suffix).c_str(), bench_dequantize)
          ->Args({n, k, format})
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
