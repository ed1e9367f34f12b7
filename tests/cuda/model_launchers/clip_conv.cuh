// Host launchers of the GPU model tests: load a fixture case with nn::gpu, run it, compare with the
// reference's bf16 outputs (no Catch here; test_gpu_models.cpp holds the test cases).
#pragma once
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/clip.cuh"
#include "sdnq/nn/gpu/conv2d.cuh"
#include "sdnq/nn/gpu/linear.cuh"
#include "sdnq/nn/modules/conv2d.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq/nn/model_conformance.hpp"
#include "cuda/test_gpu_models_support.hpp"

namespace sdnq::test {

GpuModelRun run_clip_case_on_gpu(const std::filesystem::path& case_folder) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const nn::gpu::ClipTextModel model = nn::gpu::ClipTextModel::load(case_folder, 0);
  const TensorView host_ids = model_case.input("input_ids");
  const Tensor ids = cuda::to_device(host_ids, 0);
  GpuModelRun run;
  run.workspace_bytes = model.workspace_bytes(host_ids.size(0), host_ids.size(1));
  cuda::Workspace workspace(run.workspace_bytes, 0, "CLIP test workspace");
  const nn::gpu::ClipTextModel::Outputs out = model.forward(ids, workspace, nullptr);
  run.workspace_peak = workspace.peak();
  for (const nn::gpu::Linear* linear : model.linears())
    run.linear_kinds.emplace_back(nn::gpu::linear_kind_name(linear->kind()));
  const std::vector<std::pair<std::string, TensorView>> produced = {
      {"last_hidden_state", out.last_hidden_state},
      {"penultimate_hidden_state", out.penultimate_hidden_state},
      {"pooled", out.pooled},
      {"text_embeds", out.text_embeds}};
  const std::string prefix = "output_bf16.";
  for (const std::string& key : model_case.reference.names()) {
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string name = key.substr(prefix.size());
    const TensorView* mine = nullptr;
    for (const auto& [output_name, view] : produced)
      if (output_name == name && view.data() != nullptr) mine = &view;
    SDNQ_REQUIRE(mine != nullptr, ShapeError, "{}: the GPU model produced no output '{}'", case_folder.string(), name);
    const Tensor host = cuda::to_host(*mine);
    run.outputs.push_back({name, nn::relative_l2(host, model_case.reference.tensor(key))});
  }
  return run;
}

GpuModelRun compare_clip_with_cpu(const std::filesystem::path& case_folder, int copies) {
  const nn::ModelCase model_case = nn::load_model_case(case_folder);
  const TensorView fixture_ids = model_case.input("input_ids");  // [B, L] I64
  const std::int64_t batch = fixture_ids.size(0) * copies, tokens = fixture_ids.size(1);
  Tensor ids = Tensor::empty(Shape{batch, tokens}, DType::i64);
  for (std::int64_t i = 0; i < ids.numel(); ++i)
    ids.data_as<std::int64_t>()[i] = static_cast<const std::int64_t*>(fixture_ids.data())[i % fixture_ids.numel()];
  const nn::ClipTextModel cpu_model = nn::ClipTextModel::load(case_folder);
  nn::ClipTextModel::Outputs expected = cpu_model.forward(ids);

  const nn::gpu::ClipTextModel model = nn::gpu::ClipTextModel::load(case_folder, 0);
  GpuModelRun run;
  run.workspace_bytes = model.workspace_bytes(batch, tokens);
  cuda::Workspace workspace(run.workspace_bytes, 0, "CLIP comparison workspace");
  const Tensor device_ids = cuda::to_device(ids, 0);
  const nn::gpu::ClipTextModel::Outputs out = model.forward(device_ids, workspace, nullptr);
  run.workspace_peak = workspace.peak();
  for (const nn::gpu::Linear* linear : model.linears())
    run.linear_kinds.emplace_back(nn::gpu::linear_kind_name(linear->kind()));
  run.outputs.push_back(
      {"last_hidden_state", nn::relative_l2(cuda::to_host(out.last_hidden_state), expected.last_hidden_state)});
  run.outputs.push_back({"penultimate_hidden_state", nn::relative_l2(cuda::to_host(out.penultimate_hidden_state),
                                                                     expected.penultimate_hidden_state)});
  run.outputs.push_back({"pooled", nn::relative_l2(cuda::to_host(out.pooled), expected.pooled)});
  if (model.config().with_projection)
    run.outputs.push_back({"text_embeds", nn::relative_l2(cuda::to_host(out.text_embeds), expected.text_embeds)});
  return run;
}

void run_clip_on_gpu_with_ids(const std::filesystem::path& case_folder, const Tensor& ids, bool keep_on_host) {
  const nn::gpu::ClipTextModel model = nn::gpu::ClipTextModel::load(case_folder, 0);
  const std::int64_t batch = ids.rank() == 2 ? ids.size(0) : 1, tokens = ids.rank() == 2 ? ids.size(1) : ids.numel();
  cuda::Workspace workspace(model.workspace_bytes(batch, std::min<std::int64_t>(tokens, 77)), 0,
                            "CLIP bad-input workspace");
  if (keep_on_host) {
    (void)model.forward(ids, workspace, nullptr);
    return;
  }
  const Tensor device_ids = cuda::to_device(ids, 0);
  (void)model.forward(device_ids, workspace, nullptr);
}

QuantizedConvRun compare_quantized_conv_with_cpu(const quant::LayerOptions& options, const Shape& x_shape,
                                                 std::int64_t out_channels, int kernel, int stride, int padding) {
  const std::int64_t channels = x_shape[1];
  const auto random = [](const Shape& shape, std::uint32_t seed) {  // bf16 values in [-1, 1)
    Tensor tensor = Tensor::empty(shape, DType::f32);
    std::uint32_t state = seed;
    for (std::int64_t i = 0; i < tensor.numel(); ++i) {
      state = state * 1664525u + 1013904223u;
      tensor.data_as<float>()[i] = bf16(static_cast<float>(state >> 8) / static_cast<float>(1 << 23) - 1.0f).to_float();
    }
    return tensor;
  };
  const Tensor weight = random(Shape{out_channels, channels, kernel, kernel}, 7);
  auto quantized = std::make_shared<quant::QuantizedTensors>(
      quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options, DType::bf16, 3));
  quantized->name = "conv";
  nn::InMemoryComponent component;
  component.label = "quantized conv test";
  component.quantized.emplace("conv", quantized);
  component.dense.emplace("conv.bias", std::make_shared<const Tensor>(random(Shape{out_channels}, 8)));
  nn::WeightLoader weights = nn::WeightLoader::from_memory(component);

  const nn::Conv2dParams params{.stride_h = stride, .stride_w = stride, .pad_h = padding, .pad_w = padding};
  const nn::Conv2d cpu = nn::Conv2d::load(weights, "conv", channels, out_channels, kernel, params);
  const nn::gpu::Conv2d gpu = nn::gpu::Conv2d::load(weights, "conv", channels, out_channels, kernel,
                                                    cuda::ops::Conv2dOptions::symmetric(stride, padding), 0);
  const Tensor x = random(x_shape, 9);
  const Tensor bias = random(Shape{out_channels}, 8);
  const Tensor expected = nn::conv2d(x, cpu.dense_weight(), &bias.view(), params);

  Tensor x_bf16 = Tensor::empty(x_shape, DType::bf16);
  for (std::int64_t i = 0; i < x.numel(); ++i) x_bf16.data_as<bf16>()[i] = bf16(x.data_as<float>()[i]);
  const Tensor device_x = cuda::to_device(x_bf16, 0);
  Tensor out = cuda::empty(gpu.output_shape(x_shape), DType::bf16, 0);
  SDNQ_CUDA_CHECK(cudaMemset(out.data(), 0xFF, out.nbytes()));  // NaN
  cuda::Workspace workspace(gpu.workspace_bytes(x_shape), 0, "quantized conv test");
  const nn::gpu::detail::CublasHandle cublas;
  gpu.forward(device_x, out, workspace.arena(), cublas.get(), nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  QuantizedConvRun run;
  run.rel_l2 = nn::relative_l2(cuda::to_host(out), expected);
  run.runs_on_codes = gpu.runs_on_codes();
  run.runs_quantized_matmul = gpu.runs_quantized_matmul();
  run.device_bytes = gpu.device_bytes();
  run.dense_bf16_bytes = static_cast<std::size_t>(weight.numel() + out_channels) * 2;
  return run;
}

namespace {

// F32 tensor of bf16 values uniform in [-bound, bound) from a seeded LCG.
Tensor random_bf16_values(const Shape& shape, std::uint32_t seed, float bound) {
  Tensor tensor = Tensor::empty(shape, DType::f32);
  std::uint32_t state = seed;
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    const float unit = static_cast<float>(state >> 8) / static_cast<float>(1 << 23) - 1.0f;
    tensor.data_as<float>()[i] = bf16(bound * unit).to_float();
  }
  return tensor;
}

Tensor bf16_on_device(const Tensor& values) {
  Tensor host = Tensor::empty(values.shape(), DType::bf16);
  for (std::int64_t i = 0; i < values.numel(); ++i) host.data_as<bf16>()[i] = bf16(values.data_as<float>()[i]);
  return cuda::to_device(host, 0);
}

Tensor f32_of_bf16(const Tensor& host) {
  Tensor values = Tensor::empty(host.shape(), DType::f32);
  for (std::int64_t j = 0; j < values.numel(); ++j) values.data_as<float>()[j] = host.data_as<bf16>()[j].to_float();
  return values;
}

// `layer`'s forward(x) and forward(input) (the rows shared by share_input), each into a NaN-poisoned bf16
// output, copied to the host.
std::pair<Tensor, Tensor> forward_plain_and_shared(const nn::gpu::Linear& layer, const Tensor& x,
                                                   const nn::gpu::LinearInput& input, Arena& arena,
                                                   cublasHandle_t cublas) {
  const Shape shape{x.size(0), layer.out_features()};
  Tensor plain = cuda::empty(shape, DType::bf16, 0), shared = cuda::empty(shape, DType::bf16, 0);
  SDNQ_CUDA_CHECK(cudaMemset(plain.data(), 0xFF, plain.nbytes()));  // NaN
  SDNQ_CUDA_CHECK(cudaMemset(shared.data(), 0xFF, shared.nbytes()));
  layer.forward(x.view(), plain, arena, cublas, nullptr);
  layer.forward(input, shared, arena, cublas, nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  return {cuda::to_host(plain), cuda::to_host(shared)};
}

}  // namespace

SharedInputRun compare_shared_input(std::int64_t tokens) {
  constexpr std::int64_t in = 64;
  const auto random = random_bf16_values;
  struct Layer {
    const char* name;
    std::int64_t out;
    const char* type;
    bool matmul, fp32_scales;
  };
  const Layer layers[] = {{"q", 96, "int8", true, true},
                          {"k", 160, "int8", true, true},
                          {"narrow", 32, "int8", true, false},
                          {"weight_only", 96, "uint4", false, true}};
  nn::InMemoryComponent component;
  component.label = "shared input test";
  std::uint32_t seed = 21;
  for (const Layer& layer : layers) {
    quant::LayerOptions options;
    options.weights_type = &format::storage_type(layer.type);
    options.use_quantized_matmul = layer.matmul;
    options.dequantize_fp32 = layer.fp32_scales;
    const Tensor weight = random(Shape{layer.out, in}, seed++, 0.125f);
    auto quantized = std::make_shared<quant::QuantizedTensors>(
        quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16, seed++));
    quantized->name = layer.name;
    component.quantized.emplace(layer.name, quantized);
    component.dense.emplace(std::string(layer.name) + ".bias",
                            std::make_shared<const Tensor>(random(Shape{layer.out}, seed++, 0.5f)));
  }
  nn::WeightLoader weights = nn::WeightLoader::from_memory(component);
  std::vector<nn::gpu::Linear> gpu;
  std::vector<nn::Linear> cpu;
  for (const Layer& layer : layers) {
    gpu.push_back(nn::gpu::Linear::load(weights, layer.name, in, layer.out, true, 0));
    cpu.push_back(nn::Linear::load(weights, layer.name, in, layer.out, true));
  }
  const Tensor x = random(Shape{tokens, in}, 5, 2.0f);
  const Tensor device_x = bf16_on_device(x);

  SharedInputRun run;
  run.shared_bytes = nn::gpu::shared_input_bytes({&gpu[0], &gpu[1], &gpu[2], &gpu[3]}, tokens);
  std::size_t scratch = 0;
  for (const auto& layer : gpu) scratch = std::max(scratch, layer.workspace_bytes(tokens));
  cuda::Workspace workspace(run.shared_bytes + scratch, 0, "shared input test");
  const nn::gpu::detail::CublasHandle cublas;
  Arena& arena = workspace.arena();
  const nn::gpu::LinearInput input = nn::gpu::share_input(device_x, {&gpu[0], &gpu[1], &gpu[2], &gpu[3]}, arena, nullptr);
  run.quantized_once = input.codes.has_value();
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const auto [plain_host, shared_host] = forward_plain_and_shared(gpu[i], device_x, input, arena, cublas.get());
    run.identical.push_back(std::memcmp(plain_host.data(), shared_host.data(), plain_host.nbytes()) == 0);
    run.rel_l2_to_cpu.push_back(nn::relative_l2(f32_of_bf16(shared_host), cpu[i].forward(x)));
  }
  return run;
}

RequantizedLinearRun compare_requantized_linears(std::int64_t tokens, nn::RequantizedMatmul policy, bool gemv_layout) {
  constexpr std::int64_t in = 128;
  struct Layer {
    const char* name;
    std::int64_t out;
    const char* type;
    std::int64_t group_size;  // 0: the quantizer's choice
    int svd_rank;
    const char* matmul = nullptr;  // quantized_matmul_dtype; null: the quantizer's choice
  };
  const Layer layers[] = {{"uint4_g64_svd", 192, "uint4", 64, 32},
                          {"uint4_g64", 96, "uint4", 64, 0},
                          {"int8_svd", 64, "int8", 0, 16},
                          {"int4_rows", 128, "int4", -1, 0},
                          {"float8_e5m2", 64, "float8_e5m2", 0, 0},
                          {"uint4_rows", 96, "uint4", -1, 0},
                          {"float4_e2m1fn_rows_fp8", 64, "float4_e2m1fn", -1, 0, "float8_e4m3fn"},
                          {"uint4_g64_fp8", 96, "uint4", 64, 0, "float8_e4m3fn"}};
  nn::InMemoryComponent component;
  component.label = "re-quantized quantized-matmul test";
  std::uint32_t seed = 41;
  RequantizedLinearRun run;
  for (const Layer& layer : layers) {
    quant::LayerOptions options;
    options.weights_type = &format::storage_type(layer.type);
    options.use_quantized_matmul = true;
    options.group_size = layer.group_size;
    options.use_svd = layer.svd_rank > 0;
    options.svd_rank = layer.svd_rank;
    if (layer.matmul != nullptr) options.quantized_matmul_dtype = layer.matmul;
    const Tensor weight = random_bf16_values(Shape{layer.out, in}, seed++, 0.125f);
    auto quantized = std::make_shared<quant::QuantizedTensors>(
        quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16, seed++));
    quantized->name = layer.name;
    run.names.emplace_back(layer.name);
    run.re_quantized_by_reference.push_back(quantized->layout.re_quantize_for_matmul);
    run.svd.push_back(quantized->layout.svd_rank > 0);
    component.quantized.emplace(layer.name, quantized);
    component.dense.emplace(std::string(layer.name) + ".bias",
                            std::make_shared<const Tensor>(random_bf16_values(Shape{layer.out}, seed++, 0.5f)));
  }
  nn::WeightLoader weights = nn::WeightLoader::from_memory(component);
  weights.set_requantized_matmul(policy);
  std::vector<nn::gpu::Linear> gpu;
  std::vector<nn::Linear> cpu;
  std::vector<const nn::gpu::Linear*> readers;
  for (const Layer& layer : layers) {
    gpu.push_back(nn::gpu::Linear::load(weights, layer.name, in, layer.out, true, 0,
                                        gemv_layout ? cuda::CodeLayout::gemv : cuda::CodeLayout::automatic));
    cpu.push_back(nn::Linear::load(weights, layer.name, in, layer.out, true));
  }
  for (const auto& layer : gpu) readers.push_back(&layer);
  run.svd_runs_here = cuda::gemm_w8a8_runs_svd(192, in, 0);
  const Tensor x = random_bf16_values(Shape{tokens, in}, 7, 2.0f);
  const Tensor device_x = bf16_on_device(x);
  const std::size_t shared_bytes = nn::gpu::shared_input_bytes(readers, tokens);
  std::size_t scratch = 0;
  for (const auto& layer : gpu) scratch = std::max(scratch, layer.workspace_bytes(tokens));
  cuda::Workspace workspace(shared_bytes + scratch, 0, "re-quantized quantized-matmul test");
  const nn::gpu::detail::CublasHandle cublas;
  Arena& arena = workspace.arena();
  const nn::gpu::LinearInput input = nn::gpu::share_input(device_x, readers, arena, nullptr);
  std::vector<Tensor> outputs;  // forward(x) per layer, f32 on the host
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    run.kinds.emplace_back(nn::gpu::linear_kind_name(gpu[i].kind()));
    run.device_bytes.push_back(gpu[i].device_bytes());
    const auto [plain_host, shared_host] = forward_plain_and_shared(gpu[i], device_x, input, arena, cublas.get());
    run.identical.push_back(std::memcmp(plain_host.data(), shared_host.data(), plain_host.nbytes()) == 0);
    run.rel_l2_to_cpu.push_back(nn::relative_l2(f32_of_bf16(plain_host), cpu[i].forward(x)));
    outputs.push_back(f32_of_bf16(plain_host));
    run.outputs.push_back(f32_of_bf16(plain_host));
  }
  run.peak = workspace.peak();
  run.workspace_bytes = shared_bytes + scratch;

  // The first three layers joined (two with an SVD branch between them): each column block against its part.
  // Under code tables the int8 + SVD layer holds codes, the uint4 ones tables: those three stay apart
  // (mixed_storage_joined records it), and the two uint4 layers are joined instead.
  nn::gpu::Linear* parts[] = {&gpu[0], &gpu[1], &gpu[2]};
  std::span<nn::gpu::Linear* const> joining(parts);
  if (policy == nn::RequantizedMatmul::int8_tables_at_load) {
    run.mixed_storage_joined = nn::gpu::Linear::concatenate(joining, "joined").has_value();
    joining = joining.first(2);
  }
  const std::optional<nn::gpu::Linear> joined = nn::gpu::Linear::concatenate(joining, "joined");
  if (!joined) return run;
  run.joined_kind = nn::gpu::linear_kind_name(joined->kind());
  run.joined_device_bytes = joined->device_bytes();
  const std::int64_t width = joined->out_features();
  Tensor y = cuda::empty(Shape{tokens, width}, DType::bf16, 0);
  SDNQ_CUDA_CHECK(cudaMemset(y.data(), 0xFF, y.nbytes()));
  cuda::Workspace joined_workspace(joined->workspace_bytes(tokens), 0, "joined Linear test");
  joined->forward(device_x.view(), y, joined_workspace.arena(), cublas.get(), nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  const Tensor all = f32_of_bf16(cuda::to_host(y));
  std::int64_t column = 0;
  for (std::size_t i = 0; i < joining.size(); ++i) {
    Tensor block = Tensor::empty(Shape{tokens, layers[i].out}, DType::f32);
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t o = 0; o < layers[i].out; ++o)
        block.data_as<float>()[t * layers[i].out + o] = all.data_as<float>()[t * width + column + o];
    run.joined_rel_l2.push_back(nn::relative_l2(block, outputs[i]));
    column += layers[i].out;
  }
  return run;
}

}  // namespace sdnq::test
