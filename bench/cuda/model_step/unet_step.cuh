// One denoiser step of the full-size SDXL UNet on the GPU (1024×1024: 128×128 latents, batch 2 as with
// classifier-free guidance, 77 text tokens of width 2048, text_embeds 1280, 6 time ids), with random
// weights and no checkpoint files, in four variants (model_step/common.cuh): bf16, int8_qmm, uint4_svd32,
// int8_qmm_conv.
// The model is built from stabilityai/stable-diffusion-xl-base-1.0's published unet/config.json (below;
// the values hub-and-formats.md §3.6 lists) through an nn::InMemoryComponent. Quantized layers follow
// the reference's UNet checkpoints (the unet_sdxl fixtures): every Linear except time_embedding.*;
// convs stay bf16, as with SDNQ's default quant_conv = false, except in int8_qmm_conv (quant_conv and
// use_quantized_matmul_conv on: the convs with ≥ 32 channels in and out run cuda::conv2d_w8a8).
//
// Counters per variant:
//   step_ms           median of the timed steps (CUDA events around each forward, after 2 warm-up steps)
//   goal_ms           issue #7's goal on the H100 (bf16 85, int8 60; none stated for uint4 + SVD)
//   weights_GiB       device memory the loaded model holds (cudaMemGetInfo before and after load)
//   workspace_GiB     model.workspace_bytes(2, 128, 128, 77), the activation arena allocated once
//   peak_GiB          device memory in use after the timed steps minus before load (weights, workspace,
//                     cuBLAS workspace): nothing is allocated or freed during a step
//   goal_peak_GiB     weights_GiB + 1.5 (issue #7)
//   linears_ms        the model's Linears alone with their step's row counts (model.linears()), once each
//   other_ms          step_ms − linears_ms: convs, norms, attention, activations, copies
//   host_weights_s    building the random host weights (and quantizing them once per shape)
//   load_s            UNet2DConditionModel::load: every layer converted / repacked and uploaded
//   quantized_linears Linears that run the variant's quantized kernel (int8: quantized_matmul; 0 for bf16)
// Build + run: cmake --preset cuda -DSDNQ_BUILD_BENCHMARKS=ON; bench/bench_model_step --benchmark_filter=unet
#pragma once
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/workspace.hpp"
#include "sdnq/nn/gpu/unet.cuh"
#include "sdnq/nn/weights.hpp"

namespace unet_step {

using namespace sdnq;
using sdnq_bench::gib;
using sdnq_bench::median;
using sdnq_bench::median_ms;
using sdnq_bench::seconds_since;
using sdnq_bench::used_device_bytes;
using sdnq_bench::Variant;

// stabilityai/stable-diffusion-xl-base-1.0, unet/config.json.
constexpr const char* sdxl_unet_config = R"({
  "_class_name": "UNet2DConditionModel",
  "_diffusers_version": "0.19.0.dev0",
  "act_fn": "silu",
  "addition_embed_type": "text_time",
  "addition_embed_type_num_heads": 64,
  "addition_time_embed_dim": 256,
  "attention_head_dim": [5, 10, 20],
  "block_out_channels": [320, 640, 1280],
  "center_input_sample": false,
  "class_embed_type": null,
  "class_embeddings_concat": false,
  "conv_in_kernel": 3,
  "conv_out_kernel": 3,
  "cross_attention_dim": 2048,
  "cross_attention_norm": null,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  "downsample_padding": 1,
  "dual_cross_attention": false,
  "encoder_hid_dim": null,
  "encoder_hid_dim_type": null,
  "flip_sin_to_cos": true,
  "freq_shift": 0,
  "in_channels": 4,
  "layers_per_block": 2,
  "mid_block_only_cross_attention": null,
  "mid_block_scale_factor": 1,
  "mid_block_type": "UNetMidBlock2DCrossAttn",
  "norm_eps": 1e-05,
  "norm_num_groups": 32,
  "num_attention_heads": null,
  "num_class_embeds": null,
  "only_cross_attention": false,
  "out_channels": 4,
  "projection_class_embeddings_input_dim": 2816,
  "resnet_out_scale_factor": 1.0,
  "resnet_skip_time_act": false,
  "resnet_time_scale_shift": "default",
  "sample_size": 128,
  "time_cond_proj_dim": null,
  "time_embedding_act_fn": null,
  "time_embedding_dim": null,
  "time_embedding_type": "positional",
  "timestep_post_act": null,
  "transformer_layers_per_block": [1, 2, 10],
  "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  "upcast_attention": null,
  "use_linear_projection": true
})";

constexpr std::int64_t batch = 2, latent_side = 128, text_tokens = 77, text_width = 2048, pooled_width = 1280;
constexpr int warmup_steps = 2, timed_steps = 10;

double goal_ms_of(Variant v) {
  return v == Variant::bf16 ? 85.0 : v == Variant::int8_qmm || v == Variant::int8_qmm_conv ? 60.0 : 0.0;
}

// Every tensor UNet2DConditionModel loads for config `c` (the structure of nn/models/unet.hpp).
class SdxlStateDict {
 public:
  SdxlStateDict(sdnq_bench::RandomWeights& random, const nn::UNet2DConditionConfig& c) : r_(random), c_(c) {
    const std::int64_t first = c.block_out_channels[0], temb = c.time_embedding_dim;
    const std::size_t blocks = c.block_count();
    r_.conv("conv_in", first, c.in_channels, c.conv_in_kernel);
    r_.linear("time_embedding.linear_1", temb, first, true, false);
    r_.linear("time_embedding.linear_2", temb, temb, true, false);
    r_.linear("add_embedding.linear_1", temb, c.projection_class_embeddings_input_dim, true, true);
    r_.linear("add_embedding.linear_2", temb, temb, true, true);
    std::int64_t out = first;
    for (std::size_t i = 0; i < blocks; ++i) {
      const std::string p = "down_blocks." + std::to_string(i);
      const std::int64_t in = out;
      out = c.block_out_channels[i];
      for (std::int64_t j = 0; j < c.layers_per_block[i]; ++j) {
        resnet(p + ".resnets." + std::to_string(j), j == 0 ? in : out, out);
        if (nn::detail::is_cross_attention_block(c.down_block_types[i]))
          transformer(p + ".attentions." + std::to_string(j), out, c.down_transformer_layers[i][j]);
      }
      if (i + 1 < blocks) r_.conv(p + ".downsamplers.0.conv", out, out, 3);
    }
    const std::int64_t deepest = c.block_out_channels.back();
    resnet("mid_block.resnets.0", deepest, deepest);
    transformer("mid_block.attentions.0", deepest, c.down_transformer_layers.back().front());
    resnet("mid_block.resnets.1", deepest, deepest);
    out = deepest;
    for (std::size_t i = 0; i < blocks; ++i) {
      const std::string p = "up_blocks." + std::to_string(i);
      const std::size_t mirrored = blocks - 1 - i;
      const std::int64_t previous = out, skip_in = c.block_out_channels[mirrored == 0 ? 0 : mirrored - 1];
      out = c.block_out_channels[mirrored];
      const std::int64_t layers = c.layers_per_block[mirrored] + 1;
      for (std::int64_t j = 0; j < layers; ++j) {
        const std::int64_t skip = j == layers - 1 ? skip_in : out, below = j == 0 ? previous : out;
        resnet(p + ".resnets." + std::to_string(j), below + skip, out);
        if (nn::detail::is_cross_attention_block(c.up_block_types[i]))
          transformer(p + ".attentions." + std::to_string(j), out, c.up_transformer_layers[i][j]);
      }
      if (i + 1 < blocks) r_.conv(p + ".upsamplers.0.conv", out, out, 3);
    }
    norm("conv_norm_out", first);
    r_.conv("conv_out", c.out_channels, first, c.conv_out_kernel);
  }

 private:
  void norm(const std::string& prefix, std::int64_t channels) {
    r_.tensor(prefix + ".weight", Shape{channels}, 1.0f);
    r_.tensor(prefix + ".bias", Shape{channels}, 1.0f);
  }
  void resnet(const std::string& p, std::int64_t in, std::int64_t out) {
    norm(p + ".norm1", in);
    r_.conv(p + ".conv1", out, in, 3);
    r_.linear(p + ".time_emb_proj", out, c_.time_embedding_dim, true, true);
    norm(p + ".norm2", out);
    r_.conv(p + ".conv2", out, out, 3);
    if (in != out) r_.conv(p + ".conv_shortcut", out, in, 1);
  }
  void transformer(const std::string& p, std::int64_t channels, std::int64_t layers) {
    norm(p + ".norm", channels);
    r_.linear(p + ".proj_in", channels, channels, true, true);
    for (std::int64_t i = 0; i < layers; ++i) {
      const std::string b = p + ".transformer_blocks." + std::to_string(i);
      for (const char* n : {".norm1", ".norm2", ".norm3"}) norm(b + n, channels);
      for (const char* a : {".attn1", ".attn2"}) {
        const std::int64_t source = a[5] == '1' ? channels : c_.cross_attention_dim[0];
        r_.linear(b + a + ".to_q", channels, channels, false, true);
        r_.linear(b + a + ".to_k", channels, source, false, true);
        r_.linear(b + a + ".to_v", channels, source, false, true);
        r_.linear(b + a + ".to_out.0", channels, channels, true, true);
      }
      r_.linear(b + ".ff.net.0.proj", 8 * channels, channels, true, true);
      r_.linear(b + ".ff.net.2", channels, 4 * channels, true, true);
    }
    r_.linear(p + ".proj_out", channels, channels, true, true);
  }

  sdnq_bench::RandomWeights& r_;
  const nn::UNet2DConditionConfig& c_;
};

nn::InMemoryComponent sdxl_component(Variant variant) {
  nn::InMemoryComponent component;
  component.config = nlohmann::json::parse(sdxl_unet_config);
  component.label = "SDXL UNet (random weights)";
  const nn::detail::DiffusersConfigReader reader(component.config, component.label);
  const nn::UNet2DConditionConfig config = nn::detail::read_unet_config(reader);
  sdnq_bench::RandomWeights random(component, variant);
  SdxlStateDict build(random, config);
  return component;
}

struct StepInputs {
  Tensor sample, timestep, context, text_embeds, time_ids;  // device
  StepInputs() {
    sample = cuda::empty(Shape{batch, 4, latent_side, latent_side}, DType::bf16);
    context = cuda::empty(Shape{batch, text_tokens, text_width}, DType::bf16);
    text_embeds = cuda::empty(Shape{batch, pooled_width}, DType::bf16);
    sdnq_bench::fill(sample, 11);
    sdnq_bench::fill(context, 12);
    sdnq_bench::fill(text_embeds, 13);
    Tensor t = Tensor::empty(Shape{batch}, DType::f32), ids = Tensor::empty(Shape{batch, 6}, DType::f32);
    const float size_ids[6] = {1024, 1024, 0, 0, 1024, 1024};  // original size, crop, target size
    for (std::int64_t n = 0; n < batch; ++n) {
      t.data_as<float>()[n] = 500.0f;
      for (int i = 0; i < 6; ++i) ids.data_as<float>()[n * 6 + i] = size_ids[i];
    }
    timestep = cuda::to_device(t);
    time_ids = cuda::to_device(ids);
  }
};

void bench_unet_step(benchmark::State& state, Variant variant) {
  SDNQ_CUDA_CHECK(cudaFree(nullptr));  // the context exists before the first reading
  const StepInputs in;
  const std::size_t before_load = used_device_bytes();
  const auto started = std::chrono::steady_clock::now();
  double build_seconds = 0.0;
  nn::gpu::UNet2DConditionModel model = [&] {
    nn::WeightLoader weights = nn::WeightLoader::from_memory(sdxl_component(variant));
    build_seconds = seconds_since(started);
    return nn::gpu::UNet2DConditionModel::load(weights, 0);
  }();  // the host tensors are freed here
  state.counters["host_weights_s"] = build_seconds;
  state.counters["load_s"] = seconds_since(started) - build_seconds;
  const std::size_t after_load = used_device_bytes();
  const auto linears = model.linears(batch, latent_side, latent_side, text_tokens);
  state.counters["quantized_linears"] = sdnq_bench::quantized_linears(linears, variant);
  const std::size_t workspace_bytes = model.workspace_bytes(batch, latent_side, latent_side, text_tokens);
  std::vector<double> steps;
  {
    cuda::Workspace workspace(workspace_bytes, 0, "UNet step workspace");
    const TensorView text = in.text_embeds.view(), ids = in.time_ids.view();
    const auto step = [&] {
      ArenaScope scope(workspace.arena());
      (void)model.forward(in.sample, in.timestep, in.context, &text, &ids, workspace, nullptr);
    };
    steps = sdnq_bench::time_steps(state, warmup_steps, step);
    state.counters["peak_GiB"] = static_cast<double>(used_device_bytes() - before_load) / gib;
  }
  const double step_ms = median(steps), linear_part = sdnq_bench::linears_ms(linears, "UNet");
  const double weights_gib = static_cast<double>(after_load - before_load) / gib;
  state.counters["step_ms"] = step_ms;
  if (goal_ms_of(variant) > 0) state.counters["goal_ms"] = goal_ms_of(variant);
  state.counters["weights_GiB"] = weights_gib;
  state.counters["goal_peak_GiB"] = weights_gib + 1.5;
  state.counters["workspace_GiB"] = static_cast<double>(workspace_bytes) / gib;
  state.counters["linears_ms"] = linear_part;
  state.counters["other_ms"] = step_ms - linear_part;
}

[[maybe_unused]] const int registered = sdnq_bench::register_step_benchmarks("bench_unet_step", bench_unet_step, timed_steps, true);

}  // namespace unet_step
