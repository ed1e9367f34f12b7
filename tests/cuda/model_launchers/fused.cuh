// Host launchers of the fused-producer tests at the nn level (test_gpu_models_fused.cpp holds the test
// cases). Included last by test_gpu_model_launchers.cu: it reuses the model launchers' input helpers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/model_launchers/common.cuh"
#include "cuda/test_gpu_models_fused_support.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/flux.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/gpu/sd3.cuh"
#include "sdnq/nn/gpu/unet.cuh"
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq::test {

namespace {

// f32 host tensor of bf16-representable values in [-bound, bound).
Tensor fused_test_random(const Shape& shape, std::uint32_t seed, float bound) {
  Tensor tensor = Tensor::empty(shape, DType::f32);
  std::uint32_t state = seed;
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    const float unit = static_cast<float>(state >> 8) / static_cast<float>(1 << 23) - 1.0f;
    tensor.data_as<float>()[i] = bf16(bound * unit).to_float();
  }
  return tensor;
}

Tensor fused_test_bf16(const Tensor& f32) {
  Tensor out = Tensor::empty(f32.shape(), DType::bf16);
  for (std::int64_t i = 0; i < f32.numel(); ++i) out.data_as<bf16>()[i] = bf16(f32.data_as<float>()[i]);
  return out;
}

// Readers of a fused producer among a model's Linears that take codes at their row count.
std::size_t fused_sites(const std::vector<std::pair<const nn::gpu::Linear*, std::int64_t>>& linears) {
  const auto ends_with = [](const std::string& text, std::string_view tail) {
    return text.size() >= tail.size() && text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
  };
  std::size_t sites = 0;
  for (const auto& [linear, rows] : linears) {
    const std::string& name = linear->name();
    const bool reader = ends_with(name, ".ff.net.0.proj") || ends_with(name, ".ff.net.2") ||
                        ends_with(name, ".to_qkv") || ends_with(name, ".add_qkv_proj") ||
                        ends_with(name, ".to_qkv_mlp");
    if (reader && nn::gpu::fused_quantization({linear}, rows) != nullptr) ++sites;
  }
  return sites;
}

void poison_workspace(cuda::Workspace& workspace) {
  Arena& arena = workspace.arena();
  ArenaScope scope(arena);
  const TensorView all = arena.take(Shape{static_cast<std::int64_t>(workspace.capacity())}, DType::u8, "poison");
  SDNQ_CUDA_CHECK(cudaMemset(all.data(), 0xFF, all.nbytes()));
}

bool all_finite_bf16(const Tensor& t) {
  const auto* bits = static_cast<const std::uint16_t*>(t.data());
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if ((bits[i] & 0x7F80u) == 0x7F80u) return false;
  return true;
}

// Runs `forward(workspace)` (returning the output view) with the model's fused producers on, then off.
template <class Model, class Forward>
FusedModelRun fused_against_plain(Model& model, std::size_t workspace_bytes, const Forward& forward) {
  FusedModelRun run;
  run.workspace_bytes = workspace_bytes;
  Tensor outputs[2];
  std::size_t peaks[2] = {0, 0};
  for (int pass = 0; pass < 2; ++pass) {
    model.set_fused_quantization(pass == 0);
    cuda::Workspace workspace(workspace_bytes, 0, "fused producer test workspace");
    poison_workspace(workspace);
    {
      ArenaScope scope(workspace.arena());
      outputs[pass] = cuda::to_host(forward(workspace));
    }
    peaks[pass] = workspace.peak();
  }
  model.set_fused_quantization(true);
  run.peak_fused = peaks[0];
  run.peak_plain = peaks[1];
  run.identical = outputs[0].nbytes() == outputs[1].nbytes() &&
                  std::memcmp(outputs[0].data(), outputs[1].data(), outputs[0].nbytes()) == 0;
  run.finite = all_finite_bf16(outputs[0]);
  return run;
}

}  // namespace

FusedInputRun compare_fused_input(std::int64_t tokens) {
  constexpr std::int64_t in = 64;
  struct Layer {
    const char* name;
    std::int64_t out;
    const char* type;
    bool matmul, fp32_scales;
  };
  const Layer layers[] = {{"q", 96, "int8", true, true},
                          {"k", 160, "int8", true, true},
                          {"bf16_scales", 32, "int8", true, false},
                          {"e4m3", 48, "float8_e4m3fn", true, true},
                          {"weight_only", 96, "uint4", false, true}};
  nn::InMemoryComponent component;
  component.label = "fused input test";
  std::uint32_t seed = 41;
  for (const Layer& layer : layers) {
    quant::LayerOptions options;
    options.weights_type = &format::storage_type(layer.type);
    options.use_quantized_matmul = layer.matmul;
    options.dequantize_fp32 = layer.fp32_scales;
    const Tensor weight = fused_test_random(Shape{layer.out, in}, seed++, 0.125f);
    auto quantized = std::make_shared<quant::QuantizedTensors>(
        quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16, seed++));
    quantized->name = layer.name;
    component.quantized.emplace(layer.name, quantized);
    component.dense.emplace(std::string(layer.name) + ".bias",
                            std::make_shared<const Tensor>(fused_test_random(Shape{layer.out}, seed++, 0.5f)));
  }
  nn::WeightLoader weights = nn::WeightLoader::from_memory(component);
  std::vector<nn::gpu::Linear> gpu;
  for (const Layer& layer : layers) gpu.push_back(nn::gpu::Linear::load(weights, layer.name, in, layer.out, true, 0));
  const nn::gpu::Linear &q = gpu[0], &k = gpu[1], &bf16_scales = gpu[2], &e4m3 = gpu[3], &weight_only = gpu[4];

  const Tensor x = cuda::to_device(fused_test_bf16(fused_test_random(Shape{tokens, in}, 5, 2.0f)), 0);
  const Tensor norm_weight = cuda::to_device(fused_test_bf16(fused_test_random(Shape{in}, 6, 1.5f)), 0);
  const Tensor norm_bias = cuda::to_device(fused_test_bf16(fused_test_random(Shape{in}, 7, 0.5f)), 0);
  const TensorView w = norm_weight, b = norm_bias;

  FusedInputRun run;
  run.fused_bytes = nn::gpu::fused_input_bytes({&q, &k}, tokens);
  run.mixed_readers_refused = nn::gpu::fused_quantization({&q, &weight_only}, tokens) == nullptr &&
                              nn::gpu::fused_quantization({&q, &bf16_scales}, tokens) == nullptr &&
                              nn::gpu::fused_quantization({&q, &e4m3}, tokens) == nullptr;
  std::size_t scratch = 0;
  for (const auto& layer : gpu) scratch = std::max(scratch, layer.workspace_bytes(tokens));
  cuda::Workspace workspace(run.fused_bytes + scratch + nn::gpu::detail::bf16_footprint(tokens, in), 0,
                            "fused input test");
  const nn::gpu::detail::CublasHandle cublas;
  Arena& arena = workspace.arena();
  const TensorView rows = arena.take(Shape{tokens, in}, DType::bf16, "LayerNorm rows");
  cuda::ops::layer_norm(x, &w, &b, 1e-5f, rows, nullptr);
  const std::optional<nn::gpu::FusedInput> fused = nn::gpu::take_fused_input({&q, &k}, tokens, arena, 0);
  run.fused = fused.has_value();
  if (!fused) return run;
  cuda::ops::layer_norm_to_w8a8(x, &w, &b, 1e-5f, fused->target, nullptr);
  for (const nn::gpu::Linear* layer : {&q, &k}) {
    Tensor plain = cuda::empty(Shape{tokens, layer->out_features()}, DType::bf16, 0);
    Tensor on_codes = cuda::empty(Shape{tokens, layer->out_features()}, DType::bf16, 0);
    SDNQ_CUDA_CHECK(cudaMemset(plain.data(), 0xFF, plain.nbytes()));  // NaN
    SDNQ_CUDA_CHECK(cudaMemset(on_codes.data(), 0xFF, on_codes.nbytes()));
    layer->forward(rows, plain, arena, cublas.get(), nullptr);
    layer->forward(fused->input, on_codes, arena, cublas.get(), nullptr);
    SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
    const Tensor a = cuda::to_host(plain), c = cuda::to_host(on_codes);
    run.identical.push_back(std::memcmp(a.data(), c.data(), a.nbytes()) == 0);
  }
  for (const nn::gpu::Linear* layer : {&weight_only, &bf16_scales, &e4m3}) {
    Tensor y = cuda::empty(Shape{tokens, layer->out_features()}, DType::bf16, 0);
    std::string message;
    try {
      layer->forward(fused->input, y, arena, cublas.get(), nullptr);
    } catch (const std::exception& error) {
      message = error.what();
    }
    run.misuse.push_back(message);
  }
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return run;
}

FusedModelRun compare_flux_fused(const std::filesystem::path& case_folder, std::int64_t image_tokens,
                                 std::int64_t text_tokens) {
  nn::gpu::FluxTransformer2DModel model = nn::gpu::FluxTransformer2DModel::load(case_folder, 0);
  FluxInputs in = flux_case_inputs(case_folder);  // pooled projections, timestep, guidance of the fixture
  const std::int64_t channels = in.hidden_states.size(2), joint_dim = in.encoder_hidden_states.size(2);
  const std::int64_t axes = in.img_ids.size(-1);
  in.hidden_states = fused_test_random(Shape{1, image_tokens, channels}, 71, 1.0f);
  in.encoder_hidden_states = fused_test_random(Shape{1, text_tokens, joint_dim}, 72, 1.0f);
  in.img_ids = Tensor::empty(Shape{image_tokens, axes}, DType::f32);
  in.txt_ids = Tensor::empty(Shape{text_tokens, axes}, DType::f32);
  for (std::int64_t t = 0; t < image_tokens; ++t)
    for (std::int64_t a = 0; a < axes; ++a)
      in.img_ids.data_as<float>()[t * axes + a] = a == 0 ? 0.0f : static_cast<float>(a == 1 ? t / 8 : t % 8);
  for (std::int64_t i = 0; i < in.txt_ids.numel(); ++i) in.txt_ids.data_as<float>()[i] = 0.0f;
  const std::int64_t batch = in.hidden_states.size(0);
  const std::size_t bytes = model.workspace_bytes(batch, image_tokens, text_tokens);
  FusedModelRun run = fused_against_plain(
      model, bytes, [&](cuda::Workspace& workspace) { return forward_on_gpu(model, in, workspace); });
  run.fused_sites = fused_sites(model.linears(batch, image_tokens, text_tokens));
  return run;
}

FusedModelRun compare_sd3_fused(const std::filesystem::path& case_folder) {
  nn::gpu::SD3Transformer2DModel model = nn::gpu::SD3Transformer2DModel::load(case_folder, 0);
  const Sd3Inputs in = sd3_case_inputs(case_folder);
  FusedModelRun run = fused_against_plain(model, workspace_for(model, in), [&](cuda::Workspace& workspace) {
    return forward_on_gpu(model, in, workspace);
  });
  run.fused_sites = fused_sites(model.linears(in.hidden_states.size(0), in.hidden_states.size(2),
                                              in.hidden_states.size(3), in.encoder_hidden_states.size(1)));
  return run;
}

FusedModelRun compare_unet_fused(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  nn::gpu::UNet2DConditionModel unet = nn::gpu::UNet2DConditionModel::load(case_folder, 0);
  const UnetInputs in(model_case);
  FusedModelRun run = fused_against_plain(unet, in.workspace_for(unet), [&](cuda::Workspace& workspace) {
    return forward(unet, in, in.sample, in.context, workspace);
  });
  run.fused_sites =
      fused_sites(unet.linears(in.sample.size(0), in.sample.size(2), in.sample.size(3), in.context.size(1)));
  return run;
}

}  // namespace sdnq::test
