#pragma once
// UNet2DConditionModel (diffusers) with the SD 1.x / 2.x and SDXL settings: ResNet + cross-attention
// down/mid/up blocks, sinusoidal time embedding, and SDXL's "text_time" added conditioning
// (pooled text embeds + sinusoids of the six size/crop ids).
//
//   auto unet = sdnq::nn::UNet2DConditionModel::load("models/sdxl/unet");
//   Tensor noise_pred = unet.forward(sample, timestep, encoder_hidden_states, &text_embeds, &time_ids);
#define SDNQ_NN_RUN_CASE_UNET 1  // this header defines run_case_unet (model_conformance.hpp's convention)
#include "sdnq/nn/model_conformance.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/nn/models/detail/unet_blocks.hpp"
#include "sdnq/nn/models/detail/unet_config.hpp"

namespace sdnq::nn {

class UNet2DConditionModel {
 public:
  static UNet2DConditionModel load(const std::filesystem::path& component_folder) {
    WeightLoader weights = WeightLoader::open(component_folder);
    const std::string label = "UNet2DConditionModel at " + component_folder.string();
    const detail::DiffusersConfigReader reader(weights.config(), label);
    const std::string class_name = reader.string("_class_name", "");
    SDNQ_REQUIRE(class_name == "UNet2DConditionModel", UnsupportedError,
                 "{}: config.json has _class_name \"{}\"; this loader reads UNet2DConditionModel",
                 component_folder.string(), class_name);
    UNet2DConditionModel unet;
    unet.label_ = label;
    unet.config_ = detail::read_unet_config(reader);
    unet.load_weights(weights);
    weights.require_all_used("UNet2DConditionModel");
    return unet;
  }

  const UNet2DConditionConfig& config() const { return config_; }

  // sample [B, in_channels, H, W] (H, W multiples of the downsampling factor); timestep [], [1] or [B];
  // encoder_hidden_states [B, L, cross_attention_dim]; with text_time conditioning (SDXL) also
  // text_embeds [B, T] and time_ids [B, K] with T + K * addition_time_embed_dim =
  // projection_class_embeddings_input_dim, otherwise both nullptr.  -> [B, out_channels, H, W]
  Tensor forward(const TensorView& sample, const TensorView& timestep, const TensorView& encoder_hidden_states,
                 const TensorView* text_embeds = nullptr, const TensorView* time_ids = nullptr) const {
    check_inputs(sample, timestep, encoder_hidden_states, text_embeds, time_ids);
    const std::int64_t batch = sample.size(0);

    Tensor emb = time_embedding(timesteps_for_batch(timestep, batch));  // [B, time_embedding_dim]
    if (config_.text_time_embedding) emb = add(emb, added_time_embedding(*text_embeds, *time_ids));
    activate_(emb, Activation::silu);  // every resnet projects SiLU(emb)
    const TensorView temb = emb.view();

    std::vector<Tensor> skips;  // pushed by conv_in and the down blocks, popped by the up blocks
    skips.push_back(config_.center_input_sample ? conv_in_.forward(centered(sample)) : conv_in_.forward(sample));
    Tensor h = skips.back().clone();
    for (const auto& block : down_blocks_) h = block.forward(h, temb, encoder_hidden_states, skips);
    if (mid_block_) h = mid_block_->forward(h, temb, encoder_hidden_states);
    for (const auto& block : up_blocks_) h = block.forward(h, temb, encoder_hidden_states, skips);
    h = conv_norm_out_.forward(h);
    activate_(h, Activation::silu);
    return conv_out_.forward(h);
  }

 private:
  void load_weights(WeightLoader& weights) {
    const UNet2DConditionConfig& c = config_;
    const std::int64_t first = c.block_out_channels[0];
    const auto kernel_padding = [](std::int64_t kernel) {
      return Conv2dParams{.pad_h = static_cast<int>(kernel / 2), .pad_w = static_cast<int>(kernel / 2)};
    };
    conv_in_ = Conv2d::load(weights, "conv_in", c.in_channels, first, static_cast<int>(c.conv_in_kernel),
                            kernel_padding(c.conv_in_kernel));
    time_linear_1_ = Linear::load(weights, "time_embedding.linear_1", first, c.time_embedding_dim);
    time_linear_2_ = Linear::load(weights, "time_embedding.linear_2", c.time_embedding_dim, c.time_embedding_dim);
    if (c.text_time_embedding) {
      add_linear_1_ = Linear::load(weights, "add_embedding.linear_1", c.projection_class_embeddings_input_dim,
                                   c.time_embedding_dim);
      add_linear_2_ = Linear::load(weights, "add_embedding.linear_2", c.time_embedding_dim, c.time_embedding_dim);
    }

    const detail::UNetBlockLayout layout = detail::unet_block_layout(c);
    for (const auto& block : layout.down) down_blocks_.push_back(detail::UNetDownBlock::load(weights, block, layout.common));
    if (layout.mid)
      mid_block_ = detail::UNetMidBlock::load(weights, *layout.mid, layout.common, static_cast<float>(c.mid_block_scale_factor));
    for (const auto& block : layout.up) up_blocks_.push_back(detail::UNetUpBlock::load(weights, block, layout.common));
    conv_norm_out_ = GroupNorm::load(weights, "conv_norm_out", c.norm_num_groups, first, static_cast<float>(c.norm_eps));
    conv_out_ = Conv2d::load(weights, "conv_out", first, c.out_channels, static_cast<int>(c.conv_out_kernel),
                             kernel_padding(c.conv_out_kernel));
  }

  void check_inputs(const TensorView& sample, const TensorView& timestep, const TensorView& encoder_hidden_states,
                    const TensorView* text_embeds, const TensorView* time_ids) const {
    auto require_host_f32 = [&](const TensorView& x, const char* what) {
      SDNQ_REQUIRE(x.dtype() == DType::f32 && x.device().is_cpu(), ShapeError,
                   "{}: {} must be a host F32 tensor, got {} {} on {}", label_, what, dtype_name(x.dtype()),
                   x.shape().to_string(), x.device().to_string());
    };
    require_host_f32(sample, "sample");
    SDNQ_REQUIRE(sample.rank() == 4 && sample.size(1) == config_.in_channels && sample.size(0) > 0, ShapeError,
                 "{}: sample must be [B, {}, H, W], got {}", label_, config_.in_channels, sample.shape().to_string());
    const std::int64_t factor = config_.downsampling_factor(), batch = sample.size(0);
    SDNQ_REQUIRE(sample.size(2) > 0 && sample.size(3) > 0 && sample.size(2) % factor == 0 &&
                     sample.size(3) % factor == 0,
                 ShapeError, "{}: sample height and width must be positive multiples of the downsampling factor {}, got {}",
                 label_, factor, sample.shape().to_string());
    require_host_f32(timestep, "timestep");
    SDNQ_REQUIRE(timestep.numel() == 1 || (timestep.rank() == 1 && timestep.size(0) == batch), ShapeError,
                 "{}: timestep must be a scalar, [1] or [B = {}], got {}", label_, batch, timestep.shape().to_string());
    require_host_f32(encoder_hidden_states, "encoder_hidden_states");
    SDNQ_REQUIRE(encoder_hidden_states.rank() == 3 && encoder_hidden_states.size(0) == batch &&
                     encoder_hidden_states.size(1) > 0,
                 ShapeError, "{}: encoder_hidden_states must be [B = {}, L, C], got {}", label_, batch,
                 encoder_hidden_states.shape().to_string());
    for (std::int64_t width : config_.cross_attention_dim)
      SDNQ_REQUIRE(encoder_hidden_states.size(2) == width, ShapeError,
                   "{}: encoder_hidden_states must be [B, L, cross_attention_dim = {}], got {}", label_, width,
                   encoder_hidden_states.shape().to_string());
    if (!config_.text_time_embedding) {
      SDNQ_REQUIRE(text_embeds == nullptr && time_ids == nullptr, ShapeError,
                   "{}: text_embeds / time_ids were given, but the config has no addition_embed_type", label_);
      return;
    }
    SDNQ_REQUIRE(text_embeds != nullptr && time_ids != nullptr, ShapeError,
                 "{}: addition_embed_type \"text_time\" needs text_embeds and time_ids", label_);
    require_host_f32(*text_embeds, "text_embeds");
    require_host_f32(*time_ids, "time_ids");
    SDNQ_REQUIRE(text_embeds->rank() == 2 && text_embeds->size(0) == batch && time_ids->rank() == 2 &&
                     time_ids->size(0) == batch,
                 ShapeError, "{}: text_embeds must be [B = {}, T] and time_ids [B, K], got {} and {}", label_, batch,
                 text_embeds->shape().to_string(), time_ids->shape().to_string());
    const std::int64_t width = text_embeds->size(1) + time_ids->size(1) * config_.addition_time_embed_dim;
    SDNQ_REQUIRE(width == config_.projection_class_embeddings_input_dim, ShapeError,
                 "{}: text_embeds {} and time_ids {} give {} added-embedding features "
                 "(T + K * addition_time_embed_dim {}), but projection_class_embeddings_input_dim is {}",
                 label_, text_embeds->shape().to_string(), time_ids->shape().to_string(), width,
                 config_.addition_time_embed_dim, config_.projection_class_embeddings_input_dim);
  }

  static Tensor timesteps_for_batch(const TensorView& timestep, std::int64_t batch) {
    Tensor steps = Tensor::empty({batch}, DType::f32);
    Tensor contiguous = Tensor::empty(timestep.shape(), DType::f32);
    copy(contiguous, timestep);
    const float* values = contiguous.data_as<float>();
    for (std::int64_t n = 0; n < batch; ++n) steps.data_as<float>()[n] = values[timestep.numel() == 1 ? 0 : n];
    return steps;
  }

  // TimestepEmbedding(sinusoid(t)): linear_1 -> SiLU -> linear_2. [B] -> [B, time_embedding_dim]
  Tensor time_embedding(const Tensor& steps) const {
    const Tensor sinusoid = timestep_embedding(steps, static_cast<int>(config_.block_out_channels[0]),
                                               config_.flip_sin_to_cos, static_cast<float>(config_.freq_shift));
    Tensor h = time_linear_1_.forward(sinusoid);
    activate_(h, Activation::silu);
    return time_linear_2_.forward(h);
  }

  // SDXL: add_embedding(concat(text_embeds, sinusoid(time_ids) flattened per sample)).
  Tensor added_time_embedding(const TensorView& text_embeds, const TensorView& time_ids) const {
    const std::int64_t batch = time_ids.size(0);
    Tensor ids = Tensor::empty(time_ids.shape(), DType::f32);
    copy(ids, time_ids);
    ids.reshape({time_ids.numel()});
    Tensor time_embeds = timestep_embedding(ids, static_cast<int>(config_.addition_time_embed_dim),
                                            config_.flip_sin_to_cos, static_cast<float>(config_.freq_shift));
    time_embeds.reshape({batch, time_ids.size(1) * config_.addition_time_embed_dim});
    const std::array<TensorView, 2> parts{text_embeds, time_embeds.view()};
    Tensor h = add_linear_1_.forward(concat(parts, 1));
    activate_(h, Activation::silu);
    return add_linear_2_.forward(h);
  }

  static Tensor sample_copy(const TensorView& sample) {
    Tensor out = Tensor::empty(sample.shape(), DType::f32);
    copy(out, sample);
    return out;
  }
  // center_input_sample: 2 * sample - 1.
  static Tensor centered(const TensorView& sample) {
    Tensor out = sample_copy(sample);
    float* values = out.data_as<float>();
    for (std::int64_t i = 0, n = out.numel(); i < n; ++i) values[i] = 2.0f * values[i] - 1.0f;
    return out;
  }

  std::string label_;
  UNet2DConditionConfig config_;
  Conv2d conv_in_, conv_out_;
  Linear time_linear_1_, time_linear_2_, add_linear_1_, add_linear_2_;
  std::vector<detail::UNetDownBlock> down_blocks_;
  std::optional<detail::UNetMidBlock> mid_block_;
  std::vector<detail::UNetUpBlock> up_blocks_;
  GroupNorm conv_norm_out_;
};

// A fixture case: `output` = forward(sample, timestep, encoder_hidden_states[, text_embeds, time_ids]).
inline ModelCaseResult run_case_unet(const ModelCase& model_case) {
  const UNet2DConditionModel unet = UNet2DConditionModel::load(model_case.folder);
  std::optional<TensorView> text_embeds, time_ids;
  if (model_case.has_input("text_embeds")) text_embeds = model_case.input("text_embeds");
  if (model_case.has_input("time_ids")) time_ids = model_case.input("time_ids");
  Tensor output = unet.forward(model_case.input("sample"), model_case.input("timestep"),
                               model_case.input("encoder_hidden_states"), text_embeds ? &*text_embeds : nullptr,
                               time_ids ? &*time_ids : nullptr);
  std::vector<std::pair<std::string, Tensor>> outputs;
  outputs.emplace_back("output", std::move(output));
  return compare_outputs(model_case, outputs);
}

}  // namespace sdnq::nn
