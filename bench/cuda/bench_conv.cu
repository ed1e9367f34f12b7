// Quantized-matmul convs (conv_w8a8.cuh, the implicit GEMM) against the bf16 conv (ops::conv2d: im2col +
// cuBLAS bf16, the dense route of nn::gpu::Conv2d) on the SDXL UNet's and the VAE decoder's conv shapes,
// in one process. Each row is one whole call from bf16 NCHW x to bf16 NCHW out:
//   conv_bf16           ops::conv2d (im2col in one chunk where it fits 64 MiB, bias added afterwards)
//   conv_w8a8           conv2d_w8a8: the NHWC + pixel-maxima pass, then the route it chooses (route −1),
//                       or forced: 1 the implicit GEMM (128x128 tiles), 2 rows (im2col codes written
//                       once, gemm_w8a8); fp8 0 int8 codes, 1 float8_e4m3fn
//   conv_im2row_int8    the route with the same numerics from existing pieces: a bf16 im2row of every
//                       output row ([M, k·k·C]), quantize_w8a8_activations, gemm_w8a8, rows_to_nchw
// Counters: us (median per call), TFLOPs (2·M·O·k·k·C with M = N·Ho·Wo), vs_bf16 = conv_bf16 time / this
// time (> 1 is faster). The weights and x are the same buffers every launch (a model step reuses them
// too; the larger shapes' activations exceed the 50 MB L2 anyway).
// Arguments: N, C, H (= W), O, k, stride (padding k / 2).
// Run: bench_conv --benchmark_min_time=0.05s
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/conv_w8a8.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/ops/conv.cuh"

namespace {

using namespace sdnq_bench;

struct ConvShape {
  int batch, channels, size, out_channels, kernel, stride;
  int padding() const { return kernel / 2; }
  int out_size() const { return (size + 2 * padding() - kernel) / stride + 1; }
  std::int64_t rows() const { return std::int64_t{batch} * out_size() * out_size(); }
  std::int64_t columns() const { return std::int64_t{channels} * kernel * kernel; }
  double flops() const { return 2.0 * rows() * out_channels * columns(); }
  sdnq::Shape x() const { return sdnq::Shape{batch, channels, size, size}; }
  sdnq::Shape out() const { return sdnq::Shape{batch, out_channels, out_size(), out_size()}; }
  sdnq::cuda::ops::Conv2dOptions options() const { return sdnq::cuda::ops::Conv2dOptions::symmetric(stride, padding()); }
  auto key() const { return std::make_tuple(batch, channels, size, out_channels, kernel, stride); }
};

ConvShape shape_of(const benchmark::State& state) {
  return ConvShape{static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), static_cast<int>(state.range(2)),
                   static_cast<int>(state.range(3)), static_cast<int>(state.range(4)), static_cast<int>(state.range(5))};
}

std::map<std::tuple<int, int, int, int, int, int>, double>& bf16_microseconds() {
  static std::map<std::tuple<int, int, int, int, int, int>, double> times;
  return times;
}

void report_conv(benchmark::State& state, const ConvShape& shape, double us) {
  state.counters["us"] = us;
  state.counters["TFLOPs"] = shape.flops() / (us * 1e-6) / 1e12;
  const auto it = bf16_microseconds().find(shape.key());
  if (it != bf16_microseconds().end()) state.counters["vs_bf16"] = it->second / us;
}

void bench_conv_bf16(benchmark::State& state) {
  const ConvShape shape = shape_of(state);
  sdnq::Tensor x = sdnq::cuda::empty(shape.x(), sdnq::DType::bf16);
  sdnq::Tensor weight =
      sdnq::cuda::empty(sdnq::Shape{shape.out_channels, shape.channels, shape.kernel, shape.kernel}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{shape.out_channels}, sdnq::DType::bf16);
  sdnq::Tensor out = sdnq::cuda::empty(shape.out(), sdnq::DType::bf16);
  fill(x, 1);
  fill(weight, 2, -0.05f, 0.05f);
  fill(bias, 3);
  const auto scratch_bytes =
      static_cast<std::int64_t>(sdnq::cuda::ops::conv2d_workspace_bytes(shape.x(), shape.kernel, shape.options()));
  sdnq::Tensor scratch;
  if (scratch_bytes > 0) scratch = sdnq::cuda::empty(sdnq::Shape{scratch_bytes}, sdnq::DType::u8);
  cublasHandle_t cublas{};
  SDNQ_CUBLAS_CHECK(cublasCreate(&cublas));
  const sdnq::TensorView bias_view = bias;
  const double us = time_median_us(state, 1, [&](int) {
    sdnq::cuda::ops::conv2d(x, weight, &bias_view, shape.options(), out,
                            scratch.defined() ? sdnq::TensorView(scratch) : sdnq::TensorView(), cublas, nullptr,
                            "bench");
  });
  SDNQ_CUBLAS_CHECK(cublasDestroy(cublas));
  bf16_microseconds()[shape.key()] = us;
  report_conv(state, shape, us);
}

// Random 8-bit codes [O, k·k·C] with per-channel scales, as repack_for_w8a8 leaves them on the device.
struct DeviceCodes {
  sdnq::Tensor codes, scale;
  sdnq::cuda::W8A8Weights view;
};

DeviceCodes random_codes(const ConvShape& shape, sdnq::cuda::W8A8Kind kind) {
  DeviceCodes w;
  w.codes = sdnq::cuda::empty(sdnq::Shape{shape.out_channels, shape.columns()}, sdnq::DType::u8);
  w.scale = sdnq::cuda::empty(sdnq::Shape{shape.out_channels}, sdnq::DType::f32);
  fill(w.codes, 4);  // random bytes (a few e4m3 NaN codes): the values do not change the time
  SDNQ_CUDA_CHECK(cudaMemset(w.scale.data(), 0x3C, w.scale.nbytes()));  // 0x3C3C3C3C ≈ 0.0115
  w.view = sdnq::cuda::W8A8Weights{kind,         shape.out_channels, shape.columns(), sdnq::DType::bf16, sdnq::DType::f32,
                                   w.codes.data(), static_cast<const float*>(w.scale.data())};
  return w;
}

// state.range(6): 0 int8, 1 e4m3; state.range(7): the route (−1 chosen, else cuda::ConvW8A8TileChoice).
void bench_conv_w8a8(benchmark::State& state) {
  const ConvShape shape = shape_of(state);
  const DeviceCodes w =
      random_codes(shape, state.range(6) == 0 ? sdnq::cuda::W8A8Kind::int8 : sdnq::cuda::W8A8Kind::float8_e4m3fn);
  sdnq::Tensor x = sdnq::cuda::empty(shape.x(), sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{shape.out_channels}, sdnq::DType::bf16);
  sdnq::Tensor out = sdnq::cuda::empty(shape.out(), sdnq::DType::bf16);
  fill(x, 1);
  fill(bias, 3);
  std::optional<sdnq::cuda::ConvW8A8TileChoice> route;
  if (state.range(7) >= 0) route = static_cast<sdnq::cuda::ConvW8A8TileChoice>(state.range(7));
  sdnq::Tensor workspace = sdnq::cuda::empty(
      sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::conv2d_w8a8_workspace_bytes(
          shape.x(), shape.out_channels, shape.kernel, shape.options(), sdnq::DType::bf16, route))},
      sdnq::DType::u8);
  try {
    const double us = time_median_us(state, 1, [&](int) {
      sdnq::cuda::conv2d_w8a8(w.view, shape.kernel, shape.options(), x, sdnq::TensorView(bias), out, workspace,
                              nullptr, "bench", route);
    });
    report_conv(state, shape, us);
  } catch (const sdnq::Error& error) {
    state.SkipWithError(error.what());
  }
}

void bench_conv_im2row_int8(benchmark::State& state) {
  const ConvShape shape = shape_of(state);
  const DeviceCodes w = random_codes(shape, sdnq::cuda::W8A8Kind::int8);
  sdnq::Tensor x = sdnq::cuda::empty(shape.x(), sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{shape.out_channels}, sdnq::DType::bf16);
  sdnq::Tensor out = sdnq::cuda::empty(shape.out(), sdnq::DType::bf16);
  sdnq::Tensor rows = sdnq::cuda::empty(sdnq::Shape{shape.rows(), shape.columns()}, sdnq::DType::bf16);
  sdnq::Tensor products = sdnq::cuda::empty(sdnq::Shape{shape.rows(), shape.out_channels}, sdnq::DType::bf16);
  sdnq::Tensor buffer = sdnq::cuda::empty(
      sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::w8a8_activations_bytes(shape.rows(), shape.columns()))},
      sdnq::DType::u8);
  fill(x, 1);
  fill(bias, 3);
  const sdnq::TensorView bias_view = bias;
  try {
    const double us = time_median_us(state, 1, [&](int) {
      sdnq::cuda::ops::im2row(x, shape.kernel, shape.options(), 0, rows, nullptr, "bench");
      const sdnq::cuda::W8A8Activations codes = sdnq::cuda::quantize_w8a8_activations(w.view, rows, buffer);
      sdnq::cuda::gemm_w8a8(w.view, codes, bias_view, products, sdnq::TensorView());
      sdnq::cuda::ops::rows_to_nchw(products, nullptr, 0, out, nullptr, "bench");
    });
    report_conv(state, shape, us);
  } catch (const sdnq::Error& error) {
    state.SkipWithError(error.what());
  }
}

// N, C, H (= W), O, k, stride: the SDXL UNet at 1024x1024 (128x128 latents, batch 2: CFG) and the VAE decoder.
void conv_shapes(benchmark::internal::Benchmark* b, bool with_kind) {
  const std::int64_t shapes[][6] = {
      {2, 320, 128, 320, 3, 1},    // down_blocks.0 resnets
      {2, 320, 128, 320, 3, 2},    // down_blocks.0 downsampler
      {2, 640, 64, 640, 3, 1},     // down_blocks.1 resnets
      {2, 1280, 32, 1280, 3, 1},   // down_blocks.2 / mid resnets
      {2, 2560, 32, 1280, 3, 1},   // up_blocks.0 resnets.0 conv1 (skip concatenated)
      {2, 960, 128, 320, 3, 1},    // up_blocks.2 resnets.0 conv1
      {2, 960, 128, 320, 1, 1},    // its conv_shortcut
      {1, 512, 256, 512, 3, 1},    // VAE decoder up_blocks.1 at 256x256
      {1, 128, 1024, 128, 3, 1},   // VAE decoder up_blocks.3 at 1024x1024
  };
  for (const auto& s : shapes) {
    if (with_kind) {
      for (const std::int64_t route : {-1, 1, 2}) b->Args({s[0], s[1], s[2], s[3], s[4], s[5], 0, route});
      b->Args({s[0], s[1], s[2], s[3], s[4], s[5], 1, -1});
    } else {
      b->Args({s[0], s[1], s[2], s[3], s[4], s[5]});
    }
  }
  b->ArgNames(with_kind ? std::vector<std::string>{"N", "C", "H", "O", "k", "s", "fp8", "route"}
                        : std::vector<std::string>{"N", "C", "H", "O", "k", "s"});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(bench_conv_bf16)->Apply([](benchmark::internal::Benchmark* b) { conv_shapes(b, false); });
BENCHMARK(bench_conv_w8a8)->Apply([](benchmark::internal::Benchmark* b) { conv_shapes(b, true); });
BENCHMARK(bench_conv_im2row_int8)->Apply([](benchmark::internal::Benchmark* b) { conv_shapes(b, false); });

}  // namespace

BENCHMARK_MAIN();
