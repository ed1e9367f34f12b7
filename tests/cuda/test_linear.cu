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
#include "sdnq/cuda/ops/elementwise.cuh"
#include "sdnq/cuda/ops/normalization.cuh"

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
      poisoned(Shape{static_cast<std::int64_t>(cuda::w8a8_dequantized_workspace_bytes(w.view()))}, DType::u8);
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
  } else if (what == "forced_small_m_float") {
    cuda::quantized_linear(layer, x, std::nullopt, y, workspace, cublas.handle, nullptr, cuda::LinearRoute::small_m);
  } else if (what == "no_cublas") {
    cuda::quantized_linear(layer, x, std::nullopt, y, workspace, nullptr, nullptr,
                           cuda::LinearRoute::dequantize_cublas);
  }
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

namespace {

// 8-bit rows of `rows` × `dim` on the device, poisoned: codes 0xA5, scales NaN (0xFF bytes).
struct PoisonedW8A8Rows {
  Tensor codes, scale;
  PoisonedW8A8Rows(std::int64_t rows, std::int64_t dim)
      : codes(cuda::empty(Shape{rows, dim}, DType::u8)), scale(cuda::empty(Shape{rows}, DType::f32)) {
    SDNQ_CUDA_CHECK(cudaMemset(codes.data(), 0xA5, codes.nbytes()));
    SDNQ_CUDA_CHECK(cudaMemset(scale.data(), 0xFF, scale.nbytes()));
  }
  cuda::ops::W8A8Rows out(cuda::W8A8Kind kind, bool in_t) const { return {codes, scale, kind, in_t}; }
};

}  // namespace

FusedProducerRun run_fused_producer(FusedProducer producer, const TensorView& x, const TensorView* weight,
                                    const TensorView* bias, const TensorView* emb, cuda::W8A8Kind kind,
                                    bool scale_in_activation_dtype) {
  namespace ops = cuda::ops;
  const Tensor dx = cuda::to_device(x);
  const std::int64_t width = x.size(x.rank() - 1);
  const std::int64_t dim = producer == FusedProducer::geglu ? width / 2 : width;
  const std::int64_t rows = x.numel() / width;
  const TensorView x_rows(dx.data(), x.dtype(), Shape{rows, width}, dx.device());
  Tensor dw, db, demb;
  if (weight != nullptr) dw = cuda::to_device(*weight);
  if (bias != nullptr) db = cuda::to_device(*bias);
  if (emb != nullptr) demb = cuda::to_device(*emb);
  const TensorView wv = dw.defined() ? dw.view() : TensorView(), bv = db.defined() ? db.view() : TensorView();
  const TensorView* w = dw.defined() ? &wv : nullptr;
  const TensorView* b = db.defined() ? &bv : nullptr;

  // The fused op.
  const PoisonedW8A8Rows fused(rows, dim);
  const ops::W8A8Rows target = fused.out(kind, scale_in_activation_dtype);
  // The plain op into poisoned rows of x's shape (or [R, D] for gelu / geglu).
  Shape rows_shape = x.shape();
  rows_shape[rows_shape.rank() - 1] = dim;
  Tensor plain = cuda::empty(rows_shape, x.dtype());
  SDNQ_CUDA_CHECK(cudaMemset(plain.data(), 0xFF, plain.nbytes()));
  switch (producer) {
    case FusedProducer::layer_norm:
    case FusedProducer::layer_norm_affine:
      ops::layer_norm_to_w8a8(dx, w, b, 1e-5f, target, nullptr);
      ops::layer_norm(dx, w, b, 1e-5f, plain, nullptr);
      break;
    case FusedProducer::layer_norm_modulate: {
      const TensorView shift = ops::modulation_chunk(demb, 2, 0), scale = ops::modulation_chunk(demb, 2, 1);
      ops::layer_norm_modulate_to_w8a8(dx, shift, scale, 1e-6f, target, nullptr);
      ops::layer_norm_modulate(dx, shift, scale, 1e-6f, plain, nullptr);
      break;
    }
    case FusedProducer::gelu_tanh:
      ops::activation_to_w8a8(x_rows, target, ops::Activation::gelu_tanh, nullptr);
      ops::activation(dx, plain, ops::Activation::gelu_tanh, nullptr);
      break;
    case FusedProducer::geglu:
      ops::geglu_to_w8a8(x_rows, target, nullptr);
      ops::geglu(dx, plain, nullptr);
      break;
  }
  // The unfused composition: quantize_w8a8_activations on the plain rows, for weights of this kind.
  cuda::W8A8Weights like;
  like.kind = kind;
  like.out_features = 16;
  like.in_features = dim;
  like.dtype = x.dtype();
  like.scale_dtype = scale_in_activation_dtype ? x.dtype() : DType::f32;
  Tensor buffer = cuda::empty(Shape{static_cast<std::int64_t>(cuda::w8a8_activations_bytes(rows, dim))}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(buffer.data(), 0xA5, buffer.nbytes()));
  const TensorView plain_rows(plain.data(), x.dtype(), Shape{rows, dim}, plain.device());
  const cuda::W8A8Activations quantized = cuda::quantize_w8a8_activations(like, plain_rows, buffer);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());

  FusedProducerRun run;
  run.fused_codes = cuda::to_host(fused.codes);
  run.fused_scale = cuda::to_host(fused.scale);
  run.plain_rows = cuda::to_host(plain);
  run.plain_codes = Tensor::empty(Shape{rows, dim}, DType::u8);
  run.plain_scale = Tensor::empty(Shape{rows}, DType::f32);
  SDNQ_CUDA_CHECK(
      cudaMemcpy(run.plain_codes.data(), quantized.codes, run.plain_codes.nbytes(), cudaMemcpyDeviceToHost));
  SDNQ_CUDA_CHECK(
      cudaMemcpy(run.plain_scale.data(), quantized.scale, run.plain_scale.nbytes(), cudaMemcpyDeviceToHost));
  return run;
}

void run_fused_producer_misuse(const std::string& what) {
  namespace ops = cuda::ops;
  const auto kind = cuda::W8A8Kind::int8;
  if (what.rfind("norm_", 0) == 0) {
    const std::int64_t dim = what == "norm_dim_40" ? 40 : 64, rows = 6;
    Tensor x = cuda::zeros(Shape{2, 3, dim}, DType::bf16);
    Tensor wide = cuda::zeros(Shape{rows * dim + 8}, DType::bf16);
    TensorView xv = x;
    if (what == "norm_unaligned_x")
      xv = TensorView(static_cast<char*>(wide.data()) + 2, DType::bf16, Shape{2, 3, dim}, Device::cuda(0));
    PoisonedW8A8Rows out(rows, what == "norm_codes_shape" ? dim + 16 : dim);
    ops::W8A8Rows target = out.out(kind, false);
    Tensor bf16_scale = cuda::empty(Shape{rows}, DType::bf16);
    if (what == "norm_scale_dtype") target.scale = bf16_scale;
    std::vector<std::uint8_t> host(static_cast<std::size_t>(rows * dim));
    if (what == "norm_host_codes") target.codes = TensorView(host.data(), DType::u8, Shape{rows, dim}, Device::cpu());
    ops::layer_norm_to_w8a8(xv, nullptr, nullptr, 1e-5f, target, nullptr);
  } else if (what == "gelu_rank3") {
    Tensor x = cuda::zeros(Shape{2, 3, 32}, DType::bf16);
    PoisonedW8A8Rows out(6, 32);
    ops::activation_to_w8a8(x, out.out(kind, false), ops::Activation::gelu_tanh, nullptr);
  } else if (what == "geglu_odd") {
    Tensor x = cuda::zeros(Shape{4, 31}, DType::bf16);
    PoisonedW8A8Rows out(4, 16);
    ops::geglu_to_w8a8(x, out.out(kind, false), nullptr);
  } else if (what == "geglu_codes_rows") {
    Tensor x = cuda::zeros(Shape{4, 64}, DType::bf16);
    PoisonedW8A8Rows out(5, 32);
    ops::geglu_to_w8a8(x, out.out(kind, false), nullptr);
  }
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace sdnq::test
