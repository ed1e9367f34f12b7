// Launchers of the 8-bit GEMM for the Catch cases in test_gemm_w8a8.cpp.

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/test_gemm_w8a8_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/conv_w8a8.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/linear.cuh"
#include "sdnq/cuda/w8a8_code_tables.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/quant/conv_as_linear.hpp"

namespace sdnq::test {

namespace {

Tensor run_gemm_w8a8_on(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias, int tile,
                        const std::vector<SvdPartSpec>* svd_parts) {
  cuda::W8A8WeightsDevice device_weights = cuda::upload_w8a8_weights(weights);
  if (svd_parts != nullptr) {
    if (svd_parts->size() > device_weights.meta.svd_parts.size())
      throw std::runtime_error("run_gemm_w8a8_with_svd_parts: too many parts for the table");
    device_weights.meta.svd_part_count = static_cast<int>(svd_parts->size());
    for (std::size_t i = 0; i < svd_parts->size(); ++i)
      device_weights.meta.svd_parts[i] = {(*svd_parts)[i].column_end, (*svd_parts)[i].rank_begin, (*svd_parts)[i].rank};
  }
  Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t tokens = x.size(0);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));  // NaN in bf16 and fp16
  const std::size_t workspace_bytes = cuda::gemm_w8a8_workspace_bytes(device_weights.view(), tokens);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes)}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  std::optional<cuda::W8A8TileChoice> forced;
  if (tile >= 0) forced = static_cast<cuda::W8A8TileChoice>(tile);
  cuda::gemm_w8a8(device_weights.view(), device_x, device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt,
                  y, workspace, nullptr, forced);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(y);
}

}  // namespace

Tensor run_gemm_w8a8_kernel(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                            int tile) {
  return run_gemm_w8a8_on(weights, x, bias, tile, nullptr);
}

namespace {

std::atomic<int>& forced_setting(W8A8Forced which) {
  return which == W8A8Forced::e4m3_promotion_tiles ? cuda::kernel_detail::forced_e4m3_promotion_tiles
                                                   : cuda::kernel_detail::forced_w8a8_pairs;
}

}  // namespace

// Both settings read 0 as "not forced".
ForcedW8A8Scope::ForcedW8A8Scope(W8A8Forced which, int value) : which_(which) { forced_setting(which).store(value); }
ForcedW8A8Scope::~ForcedW8A8Scope() { forced_setting(which_).store(0); }

Tensor run_gemm_w8a8_with_svd_parts(const cuda::W8A8WeightsHost& weights, TensorView x, std::optional<TensorView> bias,
                                    const std::vector<SvdPartSpec>& parts, int tile) {
  return run_gemm_w8a8_on(weights, x, bias, tile, &parts);
}

W8A8LowRankRun run_gemm_w8a8_low_rank_route(const cuda::W8A8WeightsHost& weights, TensorView x,
                                            std::optional<TensorView> bias, const std::vector<SvdPartSpec>& parts,
                                            int route) {
  const cuda::kernel_detail::ForcedW8A8LowRank forced_route(route);  // for this call only
  cuda::W8A8WeightsDevice device_weights = cuda::upload_w8a8_weights(weights);
  if (parts.size() > device_weights.meta.svd_parts.size())
    throw std::runtime_error("run_gemm_w8a8_low_rank_route: too many parts for the table");
  device_weights.meta.svd_part_count = static_cast<int>(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i)
    device_weights.meta.svd_parts[i] = {parts[i].column_end, parts[i].rank_begin, parts[i].rank};
  const cuda::W8A8Weights& w = device_weights.view();
  const Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::optional<TensorView> bias_view = device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt;
  const std::int64_t tokens = x.size(0), in_features = x.size(1);
  const auto poisoned = [](std::size_t bytes) {
    Tensor tensor = cuda::empty(Shape{static_cast<std::int64_t>(bytes)}, DType::u8);
    SDNQ_CUDA_CHECK(cudaMemset(tensor.data(), 0xFF, tensor.nbytes()));
    return tensor;
  };
  const auto run_on = [&](const cuda::W8A8Activations& activations) {
    Tensor y = cuda::empty(Shape{tokens, w.out_features}, w.dtype);
    SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));
    Tensor workspace = poisoned(cuda::gemm_w8a8_workspace_bytes(w, activations));
    cuda::gemm_w8a8(w, activations, bias_view, y, workspace, nullptr);
    return cuda::to_host(y);
  };
  const auto host_of = [&](const void* pointer, DType dtype, Shape shape) {
    return cuda::to_host(TensorView(const_cast<void*>(pointer), dtype, std::move(shape), device_x.device()));
  };

  W8A8LowRankRun run;
  Tensor buffer = poisoned(cuda::w8a8_activations_bytes(w, tokens));
  const cuda::W8A8Activations activations = cuda::quantize_w8a8_activations(w, device_x, buffer, nullptr);
  if (activations.low_rank != nullptr)
    run.low_rank = host_of(activations.low_rank, w.dtype, Shape{tokens, activations.low_rank_width});
  run.codes = host_of(activations.codes, DType::u8, Shape{tokens, in_features});
  run.scale = host_of(activations.scale, DType::f32, Shape{tokens});
  run.with_low_rank = run_on(activations);

  Tensor plain_buffer = poisoned(cuda::w8a8_activations_bytes(tokens, in_features));
  const cuda::W8A8Activations plain = cuda::quantize_w8a8_activations(w, device_x, plain_buffer, nullptr);
  if (plain.low_rank != nullptr) throw std::runtime_error("a codes-only buffer got a low-rank product");
  run.plain_codes = host_of(plain.codes, DType::u8, Shape{tokens, in_features});
  run.plain_scale = host_of(plain.scale, DType::f32, Shape{tokens});
  run.without_low_rank = run_on(plain);

  Tensor y = cuda::empty(Shape{tokens, w.out_features}, w.dtype);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));
  Tensor workspace = poisoned(cuda::gemm_w8a8_workspace_bytes(w, tokens));
  cuda::gemm_w8a8(w, device_x, bias_view, y, workspace, nullptr);
  run.fused = cuda::to_host(y);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return run;
}

namespace {

cuda::W8A8WeightsDevice conv_weights_on_device(const quant::QuantizedWeight& conv, DType dtype) {
  const auto as_linear = quant::conv2d_weight_as_linear(conv);
  if (!as_linear) throw std::runtime_error("conv_weights_on_device: the conv has no Linear form");
  const auto codes = nn::gpu::detail::linear_codes_of(as_linear->view());
  if (!codes) throw std::runtime_error("conv_weights_on_device: no LinearCodes for the conv");
  const bool fp32 = conv.layout.dequantize_fp32;
  return cuda::upload_w8a8_weights(dtype == DType::bf16 ? cuda::repack_for_w8a8<bf16>(codes->codes, fp32)
                                                        : cuda::repack_for_w8a8<fp16>(codes->codes, fp32));
}

}  // namespace

Tensor run_conv_w8a8(const quant::QuantizedWeight& conv, TensorView x, std::optional<TensorView> bias, int stride,
                     int padding, int tile) {
  const cuda::W8A8WeightsDevice weights = conv_weights_on_device(conv, x.dtype());
  const int kernel = static_cast<int>(conv.layout.original_shape[2]);
  const auto options = cuda::ops::Conv2dOptions::symmetric(stride, padding);
  const Tensor device_x = cuda::to_device(x);
  std::optional<Tensor> device_bias;
  if (bias) device_bias = cuda::to_device(*bias);
  const std::int64_t out_h = (x.size(2) + 2 * padding - kernel) / stride + 1;
  const std::int64_t out_w = (x.size(3) + 2 * padding - kernel) / stride + 1;
  Tensor out = cuda::empty(Shape{x.size(0), weights.meta.out_features, out_h, out_w}, x.dtype());
  SDNQ_CUDA_CHECK(cudaMemset(out.data(), 0xFF, out.nbytes()));
  std::optional<cuda::ConvW8A8TileChoice> forced;
  if (tile >= 0) forced = static_cast<cuda::ConvW8A8TileChoice>(tile);
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(cuda::conv2d_w8a8_workspace_bytes(
                                     x.shape(), weights.meta.out_features, kernel, options, x.dtype(), forced))},
                                 DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
  cuda::conv2d_w8a8(weights.view(), kernel, options, device_x,
                    device_bias ? std::optional<TensorView>(*device_bias) : std::nullopt, out, workspace, nullptr,
                    "test.conv", forced);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return cuda::to_host(out);
}

void conv_w8a8_misuse(const std::string& which) {
  // A 3x3 conv over 32 channels into 32 outputs (K = 288): the smallest layer SDNQ gives quantized matmul.
  quant::LayerOptions options;
  options.weights_type = &format::storage_type("int8");
  options.use_quantized_matmul = true;
  Tensor weight = Tensor::empty(Shape{32, 32, 3, 3}, DType::f32);
  for (std::int64_t i = 0; i < weight.numel(); ++i) weight.data_as<float>()[i] = static_cast<float>(i % 7) - 3.0f;
  const quant::QuantizedTensors conv = quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options, DType::bf16);
  const cuda::W8A8WeightsDevice weights = conv_weights_on_device(conv.view(), DType::bf16);
  // 72 channels under a 2x2 kernel also give K = 288, but 72 % 16 != 0.
  const bool odd_channels = which == "channels not a multiple of 16";
  const int kernel = odd_channels ? 2 : 3;
  const std::int64_t channels = odd_channels ? 72 : which == "x channels differ from the weight" ? 48 : 32;
  const auto conv_options = cuda::ops::Conv2dOptions::symmetric(1, odd_channels ? 0 : 1);
  Tensor x = cuda::empty(Shape{1, channels, 8, 8}, DType::bf16);
  SDNQ_CUDA_CHECK(cudaMemset(x.data(), 0, x.nbytes()));
  const std::int64_t out_size = odd_channels ? 7 : 8;
  Tensor out = cuda::empty(Shape{1, 32, out_size, which == "out of the wrong shape" ? out_size - 1 : out_size},
                           DType::bf16);
  std::size_t workspace_bytes = cuda::conv2d_w8a8_workspace_bytes(x.shape(), 32, kernel, conv_options);
  if (which == "workspace too small") workspace_bytes -= 512;
  Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes)}, DType::u8);
  Tensor host_x = Tensor::empty(x.shape(), DType::bf16);
  const TensorView input = which == "x on the host" ? host_x.view() : x.view();
  cuda::conv2d_w8a8(weights.view(), kernel, conv_options, input, std::nullopt, out, workspace, nullptr,
                    "down_blocks.1.resnets.0.conv1");
}

W8A8PrequantizedRun run_gemm_w8a8_prequantized(const std::vector<const cuda::W8A8WeightsHost*>& weights, TensorView x,
                                               const std::vector<std::optional<TensorView>>& biases, int tile) {
  std::vector<cuda::W8A8WeightsDevice> device_weights;
  for (const cuda::W8A8WeightsHost* w : weights) device_weights.push_back(cuda::upload_w8a8_weights(*w));
  const Tensor device_x = cuda::to_device(x);
  std::vector<std::optional<Tensor>> device_biases;
  for (const auto& bias : biases)
    device_biases.push_back(bias ? std::optional<Tensor>(cuda::to_device(*bias)) : std::nullopt);
  const std::int64_t tokens = x.size(0), in_features = x.size(1);
  std::optional<cuda::W8A8TileChoice> forced;
  if (tile >= 0) forced = static_cast<cuda::W8A8TileChoice>(tile);

  const std::size_t buffer_bytes = cuda::w8a8_activations_bytes(tokens, in_features);
  Tensor buffer = cuda::empty(Shape{static_cast<std::int64_t>(buffer_bytes)}, DType::u8);
  SDNQ_CUDA_CHECK(cudaMemset(buffer.data(), 0xFF, buffer.nbytes()));
  const cuda::W8A8Activations activations =
      cuda::quantize_w8a8_activations(device_weights.front().view(), device_x, buffer, nullptr);

  W8A8PrequantizedRun run;
  const auto* base = static_cast<const std::uint8_t*>(buffer.data());
  const auto* scale_bytes = reinterpret_cast<const std::uint8_t*>(activations.scale);
  run.codes_in_buffer = activations.codes == base && scale_bytes >= base + tokens * in_features &&
                        scale_bytes + tokens * sizeof(float) <= base + buffer_bytes &&
                        reinterpret_cast<std::uintptr_t>(scale_bytes) % 256 == 0 && activations.tokens == tokens &&
                        activations.in_features == in_features;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const cuda::W8A8Weights& w = device_weights[i].view();
    const std::optional<TensorView> bias =
        device_biases[i] ? std::optional<TensorView>(*device_biases[i]) : std::nullopt;
    run.fits = run.fits && cuda::w8a8_activations_fit(w, activations);
    Tensor y = cuda::empty(Shape{tokens, w.out_features}, w.dtype);
    SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFE, y.nbytes()));
    const std::size_t workspace_bytes = cuda::gemm_w8a8_workspace_bytes(w, activations);
    Tensor workspace = cuda::empty(Shape{static_cast<std::int64_t>(workspace_bytes)}, DType::u8);
    cuda::gemm_w8a8(w, activations, bias, y, workspace, nullptr, forced);
    run.prequantized.push_back(cuda::to_host(y));
  }
  run.codes = cuda::to_host(TensorView(buffer.data(), DType::u8, Shape{tokens, in_features}, buffer.device()));
  run.scale =
      cuda::to_host(TensorView(const_cast<float*>(activations.scale), DType::f32, Shape{tokens}, buffer.device()));
  // The fused calls last: their workspaces are other memory, so the shared codes above are unaffected
  // either way, and the pre-quantized results came from the codes compared with the CPU.
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const cuda::W8A8Weights& w = device_weights[i].view();
    const std::optional<TensorView> bias =
        device_biases[i] ? std::optional<TensorView>(*device_biases[i]) : std::nullopt;
    Tensor y = cuda::empty(Shape{tokens, w.out_features}, w.dtype);
    SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));
    Tensor workspace =
        cuda::empty(Shape{static_cast<std::int64_t>(cuda::gemm_w8a8_workspace_bytes(w, tokens))}, DType::u8);
    SDNQ_CUDA_CHECK(cudaMemset(workspace.data(), 0xFF, workspace.nbytes()));
    cuda::gemm_w8a8(w, device_x, bias, y, workspace, nullptr, forced);
    run.fused.push_back(cuda::to_host(y));
  }
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return run;
}

namespace {
// int8 weights [64, 128] with an SVD branch; host pointers stand in for device ones (never dereferenced).
cuda::W8A8Weights weights_with_svd() {
  alignas(16) static const std::uint8_t bytes[16] = {};
  cuda::W8A8Weights w{cuda::W8A8Kind::int8, 64, 128, DType::bf16, DType::f32, bytes,
                      reinterpret_cast<const float*>(bytes)};
  w.svd_down = bytes;
  w.svd_up = bytes;
  w.svd_rank_padded = 64;
  return w;
}
}  // namespace

std::string dequantized_linear_message_with_svd() {
  try {
    cuda::w8a8_dequantized_linear(weights_with_svd(), nullptr, TensorView(), std::nullopt, TensorView(), TensorView(),
                                  nullptr);
  } catch (const sdnq::Error& error) {
    return error.what();
  }
  return "";
}

namespace {

cuda::W8A8WeightsDevice weights_with_tables(const quant::Int8CodeTables& tables) {
  cuda::W8A8WeightsHost host;
  host.out_features = tables.rows;
  host.in_features = tables.columns;
  host.scale = Tensor::empty(Shape{tables.rows}, DType::f32);
  for (std::int64_t o = 0; o < tables.rows; ++o) host.scale.data_as<float>()[o] = 0.01f;
  host.tables.emplace();
  host.tables->rows = tables.rows;
  host.tables->columns = tables.columns;
  host.tables->group = tables.group;
  host.tables->indices = tables.indices.clone();
  host.tables->tables = tables.tables.clone();
  return cuda::upload_w8a8_weights(host, 0);
}

}  // namespace

std::vector<std::int8_t> expand_w8a8_codes_on_device(const quant::Int8CodeTables& tables) {
  const cuda::W8A8WeightsDevice weights = weights_with_tables(tables);
  const std::size_t bytes = cuda::w8a8_expanded_codes_bytes(weights.view());
  const Tensor scratch = cuda::empty(Shape{static_cast<std::int64_t>(bytes)}, DType::u8, 0);
  SDNQ_CUDA_CHECK(cudaMemset(scratch.data(), 0xFF, bytes));
  const cuda::W8A8Weights expanded = cuda::expand_w8a8_codes(weights.view(), scratch.data(), bytes, nullptr);
  SDNQ_REQUIRE(expanded.codes == scratch.data() && !cuda::w8a8_has_code_tables(expanded), ShapeError,
               "expand_w8a8_codes must return weights reading its scratch");
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<std::int8_t> out(bytes);
  SDNQ_CUDA_CHECK(cudaMemcpy(out.data(), scratch.data(), bytes, cudaMemcpyDeviceToHost));
  return out;
}

std::vector<std::string> code_table_misuse_messages(const quant::Int8CodeTables& tables) {
  const cuda::W8A8WeightsDevice weights = weights_with_tables(tables);
  const std::size_t bytes = cuda::w8a8_expanded_codes_bytes(weights.view());
  const Tensor scratch = cuda::empty(Shape{static_cast<std::int64_t>(bytes + 16)}, DType::u8, 0);
  std::vector<std::string> messages;
  const auto message_of = [&](const auto& call) {
    try {
      call();
    } catch (const sdnq::Error& error) {
      return messages.emplace_back(error.what());
    }
    return messages.emplace_back("");
  };
  cuda::W8A8Activations codes;  // never read: the weights are refused first
  message_of([&] { cuda::gemm_w8a8(weights.view(), codes, std::nullopt, TensorView(), TensorView(), nullptr); });
  message_of([&] {
    cuda::w8a8_dequantized_linear(weights.view(), nullptr, TensorView(), std::nullopt, TensorView(), TensorView(),
                                  nullptr);
  });
  message_of([&] { cuda::expand_w8a8_codes(weights.view(), scratch.data(), bytes - 1, nullptr, "test.layer"); });
  message_of([&] {
    cuda::expand_w8a8_codes(weights.view(), static_cast<std::uint8_t*>(scratch.data()) + 8, bytes, nullptr,
                            "test.layer");
  });
  return messages;
}

bool svd_weights_fit_activations(bool with_rows) {
  static const std::uint8_t byte = 0;  // stands in for device pointers: fit only compares them with null
  const cuda::W8A8Weights w = weights_with_svd();
  cuda::W8A8Activations a;
  a.kind = cuda::W8A8Kind::int8;
  a.dtype = DType::bf16;
  a.tokens = 32;
  a.in_features = 128;
  a.codes = &byte;
  a.scale = reinterpret_cast<const float*>(&byte);
  a.rows = with_rows ? &byte : nullptr;
  return cuda::w8a8_activations_fit(w, a);
}

void run_gemm_w8a8_on_activations_of(const cuda::W8A8WeightsHost& like, const cuda::W8A8WeightsHost& weights,
                                     TensorView x, bool& fits) {
  const cuda::W8A8WeightsDevice device_like = cuda::upload_w8a8_weights(like);
  const cuda::W8A8WeightsDevice device_weights = cuda::upload_w8a8_weights(weights);
  const Tensor device_x = cuda::to_device(x);
  const std::int64_t tokens = x.size(0);
  Tensor buffer =
      cuda::empty(Shape{static_cast<std::int64_t>(cuda::w8a8_activations_bytes(tokens, like.in_features))}, DType::u8);
  const cuda::W8A8Activations activations = cuda::quantize_w8a8_activations(device_like.view(), device_x, buffer);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  fits = cuda::w8a8_activations_fit(device_weights.view(), activations);
  Tensor y = cuda::empty(Shape{tokens, weights.out_features}, weights.dtype);
  cuda::gemm_w8a8(device_weights.view(), activations, std::nullopt, y, TensorView(), nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

bool gpu_has_fp8_tensor_cores() {
  int device = 0, major = 0, minor = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor >= 89;
}

bool gpu_has_wgmma() {
  int device = 0, major = 0, minor = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor == 90 && cuda::kernel_detail::has_wgmma_code(device);
}

}  // namespace sdnq::test
