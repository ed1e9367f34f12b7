// Launchers of the quantized Linear for the Catch cases in test_linear.cpp.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cuda/test_linear_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/linear.cuh"

namespace sdnq::test {
namespace {

cuda::LinearRoute to_route(TestRoute route) {
  switch (route) {
    case TestRoute::small_m:
      return cuda::LinearRoute::small_m;
    case TestRoute::tensor_core:
      return cuda::LinearRoute::tensor_core;
    case TestRoute::dequantize_cublas:
      return cuda::LinearRoute::dequantize_cublas;
    default:
      return cuda::LinearRoute::automatic;
  }
}

cuda::CodeLayout to_layout(TestLayout layout) {
  switch (layout) {
    case TestLayout::gemv:
      return cuda::CodeLayout::gemv;
    case TestLayout::tensor_core:
      return cuda::CodeLayout::tensor_core;
    case TestLayout::checkpoint:
      return cuda::CodeLayout::checkpoint;
    default:
      return cuda::CodeLayout::automatic;
  }
}

Tensor poisoned(Shape shape, DType dtype) {
  Tensor tensor = cuda::empty(shape, dtype);
  if (tensor.nbytes() > 0)
    SDNQ_CUDA_CHECK(cudaMemset(tensor.data(), 0xFF, tensor.nbytes()));  // NaN in bf16 and fp16
  return tensor;
}

struct CublasHandle {
  cublasHandle_t handle{};
  CublasHandle() { SDNQ_CUBLAS_CHECK(cublasCreate(&handle)); }
  ~CublasHandle() { cublasDestroy(handle); }
};

}  // namespace

LinearRun run_quantized_linear(const cuda::LinearCodes& weight, DType dtype, TensorView x,
                               std::optional<TensorView> bias, TestRoute route, std::size_t dense_workspace_limit,
                               TestLayout layout) {
  cuda::QuantizedLinearOptions options;
  options.dense_workspace_limit = dense_workspace_limit;
  options.layout = to_layout(layout);
  const cuda::QuantizedLinear layer(weight, dtype, 0, options);
  const std::int64_t tokens = x.size(0);
  const cuda::LinearRoute chosen = route == TestRoute::automatic ? layer.route_for(tokens) : to_route(route);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  Tensor y = poisoned(Shape{tokens, weight.out_features}, dtype);
  const std::size_t workspace_bytes = layer.workspace_bytes(tokens, chosen);
  Tensor workspace = poisoned(Shape{static_cast<std::int64_t>(workspace_bytes) + 16}, DType::u8);
  CublasHandle cublas;
  cuda::quantized_linear(layer, device_x, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y,
                         workspace, cublas.handle, nullptr, to_route(route));
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return LinearRun{cuda::to_host(y), cuda::linear_route_name(chosen), cuda::code_layout_name(layer.layout()),
                   layer.device_bytes()};
}

std::string adopt_gemv_refusal(const AdoptedGemv& a) {
  static const std::uint32_t never_read[4] = {};
  static const float no_values[256] = {};
  cuda::GemvWeightsDevice weights;
  const void* factor = a.factors && a.svd_rank > 0 ? never_read : nullptr;
  weights.meta = cuda::GemvWeights{a.bits,        a.is_signed, a.out_features, a.in_features,
                                   a.group_size,  a.dtype,     never_read,     never_read,
                                   a.svd_rank,    factor,      factor,         a.float_codes ? no_values : nullptr,
                                   a.float_decode};
  try {
    (void)cuda::QuantizedLinear::adopt_gemv(std::move(weights), "test.adopted", 0);
  } catch (const UnsupportedError& error) {
    return error.what();
  }
  throw std::runtime_error("adopt_gemv accepted weights it must refuse");
}

std::size_t quantized_linear_device_bytes(const cuda::LinearCodes& weight, DType dtype, TestLayout layout) {
  cuda::QuantizedLinearOptions options;
  options.layout = to_layout(layout);
  return cuda::QuantizedLinear(weight, dtype, 0, options).device_bytes();
}

Tensor run_w8a8_dequantized_linear(const cuda::LinearCodes& weight, DType dtype, TensorView x,
                                   std::optional<TensorView> bias) {
  const cuda::W8A8WeightsDevice w = dtype == DType::bf16
                                        ? cuda::upload_w8a8_weights(cuda::repack_for_w8a8<bf16>(weight))
                                        : cuda::upload_w8a8_weights(cuda::repack_for_w8a8<fp16>(weight));
  const std::int64_t tokens = x.size(0);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  Tensor y = poisoned(Shape{tokens, weight.out_features}, dtype);
  Tensor workspace =
      poisoned(Shape{static_cast<std::int64_t>(cuda::w8a8_dequantized_workspace_bytes(w.view(), tokens))}, DType::u8);
  CublasHandle cublas;
  cuda::w8a8_dequantized_linear(w.view(), nullptr, device_x,
                                device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y, workspace,
                                cublas.handle);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

Tensor run_w8a8_dequantized_linear_repacked(const cuda::W8A8WeightsHost& weights, TensorView x,
                                            std::optional<TensorView> bias, int runs) {
  const cuda::W8A8WeightsDevice w = cuda::upload_w8a8_weights(weights);
  const std::int64_t tokens = x.size(0);
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  Tensor first;
  for (int run = 0; run < runs; ++run) {
    Tensor y = poisoned(Shape{tokens, weights.out_features}, weights.dtype);
    cuda::w8a8_dequantized_linear(w.view(), nullptr, device_x,
                                  device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, y, TensorView(),
                                  nullptr);
    SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
    Tensor host = cuda::to_host(y);
    if (run == 0) {
      first = std::move(host);
    } else if (std::memcmp(first.data(), host.data(), first.nbytes()) != 0) {
      throw std::runtime_error("w8a8_dequantized_linear: two runs on the same inputs gave different bits");
    }
  }
  return first;
}

bool w8a8_dequantized_streams(std::int64_t tokens, std::int64_t out_features, std::int64_t in_features) {
  return tokens >= 1 &&
         cuda::kernel_detail::w8a8_rows_stream(out_features, in_features, cuda::current_gemm_tc_device());
}

void run_w8a8_dequantized_linear_misuse(const std::string& what) {
  const std::int64_t n = 64, k = 48, tokens = 4;
  cuda::W8A8WeightsHost host;
  host.kind = cuda::W8A8Kind::int8;
  host.out_features = n;
  host.in_features = k;
  host.dtype = DType::bf16;
  host.codes = Tensor::zeros(Shape{n, k}, DType::i8);
  host.scale = Tensor::zeros(Shape{n}, DType::f32);
  const cuda::W8A8WeightsDevice w = cuda::upload_w8a8_weights(host);
  cuda::W8A8Weights view = w.view();
  Tensor x = cuda::zeros(Shape{tokens, k}, DType::bf16);
  Tensor y = cuda::zeros(Shape{tokens, n}, DType::bf16);
  if (what == "k_not_multiple_of_16") {
    view.in_features = 40;
    x = cuda::zeros(Shape{tokens, 40}, DType::bf16);
  } else if (what == "wrong_width") {
    x = cuda::zeros(Shape{tokens, 64}, DType::bf16);
  } else if (what == "x_not_matrix") {
    x = cuda::zeros(Shape{tokens * k}, DType::bf16);
  } else if (what == "short_y") {
    y = cuda::zeros(Shape{tokens, n - 4}, DType::bf16);
  }
  TensorView x_view = x;
  Tensor wide;
  if (what == "unaligned_x") {
    wide = cuda::zeros(Shape{tokens * k + 8}, DType::bf16);
    x_view = TensorView(static_cast<char*>(wide.data()) + 2, DType::bf16, Shape{tokens, k}, Device::cuda(0));
  }
  cuda::w8a8_dequantized_linear(view, nullptr, x_view, std::nullopt, y, TensorView(), nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

Tensor run_dense_linear(TensorView x, TensorView weight, std::optional<TensorView> bias) {
  Tensor device_x = cuda::to_device(x), device_weight = cuda::to_device(weight);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  Tensor y = poisoned(Shape{x.size(0), weight.size(0)}, x.dtype());
  CublasHandle cublas;
  cuda::dense_linear(device_x, device_weight, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt,
                     y, cublas.handle);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

void run_quantized_linear_misuse(const cuda::LinearCodes& weight, const std::string& what) {
  const cuda::QuantizedLinear layer(weight, DType::bf16);
  const std::int64_t tokens = 300, n = weight.out_features, k = weight.in_features;
  Tensor x = cuda::zeros(Shape{tokens, k}, DType::bf16);
  Tensor y = cuda::empty(Shape{tokens, n}, DType::bf16);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(layer.workspace_bytes(tokens)) + 16}, DType::u8);
  CublasHandle cublas;
  if (what == "host_x") {
    std::vector<std::uint16_t> host(static_cast<std::size_t>(tokens * k));
    const TensorView lying(host.data(), DType::bf16, Shape{tokens, k}, Device::cuda(0));
    cuda::quantized_linear(layer, lying, std::nullopt, y, workspace, cublas.handle);
  } else if (what == "short_workspace") {
    // The dense route: at M = 300 a 4-bit weight may take the wgmma route, which needs no workspace here.
    const TensorView small(workspace.data(), DType::u8, Shape{16}, Device::cuda(0));
    cuda::quantized_linear(layer, x, std::nullopt, y, small, cublas.handle, nullptr,
                           cuda::LinearRoute::dequantize_cublas);
  } else if (what == "wrong_width") {
    Tensor wide = cuda::zeros(Shape{tokens, k + 32}, DType::bf16);
    cuda::quantized_linear(layer, wide, std::nullopt, y, workspace, cublas.handle);
  } else if (what == "forced_small_m") {
    cuda::quantized_linear(layer, x, std::nullopt, y, workspace, cublas.handle, nullptr, cuda::LinearRoute::small_m);
  } else if (what == "no_cublas") {
    cuda::quantized_linear(layer, x, std::nullopt, y, workspace, nullptr, nullptr,
                           cuda::LinearRoute::dequantize_cublas);
  }
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace sdnq::test
