// Launchers of the conv2d tests (declared in test_ops_conv_support.hpp; no Catch here).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "cuda/test_ops_conv_support.hpp"
#include "cuda/test_ops_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/ops/conv.cuh"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"

namespace sdnq::test::conv {

namespace {

namespace device_ops = sdnq::cuda::ops;

device_ops::Conv2dOptions options_of(const ConvCall& call) {
  return {call.stride, call.pad_top, call.pad_left, call.pad_bottom, call.pad_right};
}

}  // namespace

Tensor conv2d_on_gpu(const TensorView& x, const TensorView& weight, const TensorView* bias, const ConvCall& call) {
  const device_ops::Conv2dOptions options = options_of(call);
  const std::int64_t kernel = weight.size(2);
  const std::int64_t out_h = (x.size(2) + call.pad_top + call.pad_bottom - kernel) / call.stride + 1;
  const std::int64_t out_w = (x.size(3) + call.pad_left + call.pad_right - kernel) / call.stride + 1;
  cudaStream_t stream{};
  SDNQ_CUDA_CHECK(cudaStreamCreate(&stream));
  const nn::gpu::detail::CublasHandle cublas;
  const Tensor dx = cuda::to_device(x), dw = cuda::to_device(weight);
  Tensor db;
  if (bias != nullptr) db = cuda::to_device(*bias);
  const TensorView bias_view = db.defined() ? db.view() : TensorView();
  Tensor out = cuda::empty(Shape{x.size(0), weight.size(0), out_h, out_w}, x.dtype());
  SDNQ_CUDA_CHECK(cudaMemset(out.data(), 0xFF, out.nbytes()));  // NaN in bf16 and fp16
  const std::int64_t scratch_bytes =
      call.scratch_bytes > 0 ? call.scratch_bytes
                             : static_cast<std::int64_t>(device_ops::conv2d_workspace_bytes(x.shape(), kernel, options,
                                                                                                x.dtype()));
  Tensor scratch;
  if (scratch_bytes > 0) scratch = cuda::empty(Shape{scratch_bytes}, DType::u8);
  device_ops::conv2d(dx, dw, bias != nullptr ? &bias_view : nullptr, options, out,
                     scratch.defined() ? scratch.view() : TensorView(), cublas.get(), stream, "test conv");
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  SDNQ_CUDA_CHECK(cudaStreamDestroy(stream));
  return cuda::to_host(out);
}

Tensor im2row_on_gpu(const TensorView& x, int kernel, const ConvCall& call, std::int64_t first, std::int64_t count) {
  const Tensor dx = cuda::to_device(x);
  Tensor rows = cuda::empty(Shape{count, kernel * kernel * x.size(1)}, x.dtype());
  SDNQ_CUDA_CHECK(cudaMemset(rows.data(), 0xFF, rows.nbytes()));
  device_ops::im2row(dx, kernel, options_of(call), first, rows, nullptr, "test im2row");
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(rows);
}

Tensor rows_to_nchw_on_gpu(const TensorView& rows, const TensorView* bias, std::int64_t first, const Shape& out_shape) {
  const Tensor drows = cuda::to_device(rows);
  Tensor dbias;
  if (bias != nullptr) dbias = cuda::to_device(*bias);
  const TensorView bias_view = dbias.defined() ? dbias.view() : TensorView();
  Tensor out = cuda::empty(out_shape, rows.dtype());
  SDNQ_CUDA_CHECK(cudaMemset(out.data(), 0xFF, out.nbytes()));
  device_ops::rows_to_nchw(drows, bias != nullptr ? &bias_view : nullptr, first, out, nullptr, "test rows");
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(out);
}

Tensor group_norm_split_on_gpu(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias,
                               float eps, bool silu, bool in_place, std::int64_t& scratch_bytes) {
  scratch_bytes = static_cast<std::int64_t>(device_ops::group_norm_workspace_bytes(x.shape(), groups));
  Tensor scratch;
  if (scratch_bytes > 0) scratch = cuda::empty(Shape{scratch_bytes}, DType::u8);
  const Tensor dx = cuda::to_device(x);
  Tensor dw, db;
  if (weight != nullptr) dw = cuda::to_device(*weight);
  if (bias != nullptr) db = cuda::to_device(*bias);
  const TensorView w = dw.defined() ? dw.view() : TensorView(), b = db.defined() ? db.view() : TensorView();
  Tensor out;
  if (!in_place) {
    out = cuda::empty(x.shape(), x.dtype());
    SDNQ_CUDA_CHECK(cudaMemset(out.data(), 0xFF, out.nbytes()));
  }
  const TensorView target = in_place ? dx.view() : out.view();
  device_ops::group_norm(dx, groups, weight != nullptr ? &w : nullptr, bias != nullptr ? &b : nullptr, eps, target,
                         silu, scratch.defined() ? scratch.view() : TensorView(), nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(target);
}

namespace {

template <class Action>
double median_ms(Action&& action) {
  cudaEvent_t start{}, stop{};
  SDNQ_CUDA_CHECK(cudaEventCreate(&start));
  SDNQ_CUDA_CHECK(cudaEventCreate(&stop));
  action();  // warm-up
  std::vector<float> times;
  for (int i = 0; i < 5; ++i) {
    SDNQ_CUDA_CHECK(cudaEventRecord(start));
    action();
    SDNQ_CUDA_CHECK(cudaEventRecord(stop));
    SDNQ_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    SDNQ_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  SDNQ_CUDA_CHECK(cudaEventDestroy(start));
  SDNQ_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[2];
}

}  // namespace

LargeOpTimings time_vae_top_level_ops(int channels, int size) {
  const Shape shape{1, channels, size, size};
  const Tensor x = cuda::to_device(random_tensor(shape, DType::bf16, 51));
  const Tensor weight = cuda::to_device(random_tensor(Shape{channels, channels, 3, 3}, DType::bf16, 52, -0.05f, 0.05f));
  const Tensor gamma = cuda::to_device(random_tensor(Shape{channels}, DType::bf16, 53, 0.5f, 1.5f));
  const Tensor beta = cuda::to_device(random_tensor(Shape{channels}, DType::bf16, 54));
  const Tensor out = cuda::empty(shape, DType::bf16), split_out = cuda::empty(shape, DType::bf16);
  const auto options = device_ops::Conv2dOptions::symmetric(1, 1);
  const Tensor conv_scratch =
      cuda::empty(Shape{static_cast<std::int64_t>(device_ops::conv2d_workspace_bytes(shape, 3, options))}, DType::u8);
  const Tensor norm_scratch =
      cuda::empty(Shape{static_cast<std::int64_t>(device_ops::group_norm_workspace_bytes(shape, 32))}, DType::u8);
  const nn::gpu::detail::CublasHandle cublas;
  const TensorView g = gamma, b = beta;
  LargeOpTimings t;
  t.conv_ms = median_ms(
      [&] { device_ops::conv2d(x, weight, &b, options, out, conv_scratch, cublas.get(), nullptr, "timing conv"); });
  t.group_norm_one_block_ms =
      median_ms([&] { device_ops::group_norm(x, 32, &g, &b, 1e-6f, out, true, TensorView(), nullptr); });
  t.group_norm_split_ms =
      median_ms([&] { device_ops::group_norm(x, 32, &g, &b, 1e-6f, split_out, true, norm_scratch, nullptr); });
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  const Tensor a = nn::detail::to_f32(cuda::to_host(out), "one block"),
               c = nn::detail::to_f32(cuda::to_host(split_out), "split");
  for (std::int64_t i = 0; i < a.numel(); ++i)
    t.split_max_difference =
        std::max(t.split_max_difference, static_cast<double>(std::fabs(a.data_as<float>()[i] - c.data_as<float>()[i])));
  return t;
}

void conv2d_misuse(const std::string& which) {
  const nn::gpu::detail::CublasHandle cublas;
  const Tensor x = cuda::empty(Shape{1, 8, 5, 5}, DType::bf16);
  const Tensor weight = cuda::empty(Shape{4, 8, 3, 3}, DType::bf16);
  const Tensor out = cuda::empty(Shape{1, 4, 5, 5}, DType::bf16);
  const Tensor scratch = cuda::empty(Shape{1 << 16}, DType::u8);
  const auto same = device_ops::Conv2dOptions::symmetric(1, 1);
  if (which == "channels") {
    const Tensor narrow = cuda::empty(Shape{1, 6, 5, 5}, DType::bf16);
    device_ops::conv2d(narrow, weight, nullptr, same, out, scratch, cublas.get(), nullptr, "decoder.conv_in");
  } else if (which == "out shape") {
    const Tensor wrong = cuda::empty(Shape{1, 4, 4, 5}, DType::bf16);
    device_ops::conv2d(x, weight, nullptr, same, wrong, scratch, cublas.get(), nullptr, "decoder.conv_in");
  } else if (which == "too small") {
    const Tensor tiny = cuda::empty(Shape{1, 8, 2, 2}, DType::bf16);
    const Tensor tiny_out = cuda::empty(Shape{1, 4, 1, 1}, DType::bf16);
    device_ops::conv2d(tiny, weight, nullptr, {}, tiny_out, scratch, cublas.get(), nullptr, "decoder.conv_in");
  } else if (which == "bias") {
    const Tensor bias = cuda::empty(Shape{5}, DType::bf16);
    const TensorView b = bias;
    device_ops::conv2d(x, weight, &b, same, out, scratch, cublas.get(), nullptr, "decoder.conv_in");
  } else if (which == "no scratch") {
    device_ops::conv2d(x, weight, nullptr, same, out, TensorView(), cublas.get(), nullptr, "decoder.conv_in");
  } else if (which == "host input") {
    const Tensor host = Tensor::empty(Shape{1, 8, 5, 5}, DType::bf16);
    device_ops::conv2d(host, weight, nullptr, same, out, scratch, cublas.get(), nullptr, "decoder.conv_in");
  } else {
    throw std::invalid_argument("conv2d_misuse: unknown case " + which);
  }
}

}  // namespace sdnq::test::conv
