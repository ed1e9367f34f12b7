#pragma once
// UNet2DConditionModel's config.json as the library reads it: diffusers defaults for missing keys, the
// per-block settings expanded to one entry per block, and every feature this library does not
// implement refused with an UnsupportedError naming the key and its value.
//
// Naming gotcha kept from diffusers: with num_attention_heads null (always, in practice),
// `attention_head_dim` holds the number of attention HEADS per block; the head dimension is the
// block's channel count divided by it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/nn/models/detail/unet_config_reader.hpp"

namespace sdnq::nn {

struct UNet2DConditionConfig {
  std::int64_t in_channels = 4;
  std::int64_t out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0.0;
  std::vector<std::string> down_block_types;
  std::vector<std::string> up_block_types;
  bool has_mid_block = true;  // mid_block_type UNetMidBlock2DCrossAttn (or null: none)
  std::vector<std::int64_t> block_out_channels;
  std::vector<std::int64_t> layers_per_block;              // per down block
  std::vector<std::int64_t> attention_heads;               // per down block (attention_head_dim)
  std::vector<std::int64_t> cross_attention_dim;           // per down block
  std::vector<std::vector<std::int64_t>> down_transformer_layers;  // [block][layer]
  std::vector<std::vector<std::int64_t>> up_transformer_layers;    // [up block][layer]
  std::int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  int norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;
  std::int64_t conv_in_kernel = 3;
  std::int64_t conv_out_kernel = 3;
  std::int64_t time_embedding_dim = 0;  // block_out_channels[0] * 4 unless set
  // addition_embed_type "text_time" (SDXL): add_embedding(concat(text_embeds, sinusoid(time_ids)))
  bool text_time_embedding = false;
  std::int64_t addition_time_embed_dim = 0;
  std::int64_t projection_class_embeddings_input_dim = 0;

  std::size_t block_count() const { return block_out_channels.size(); }
  // Spatial ratio between the sample and the deepest feature map: 2 per down block but the last.
  std::int64_t downsampling_factor() const { return std::int64_t{1} << (block_count() - 1); }
};

namespace detail {

inline bool is_cross_attention_block(const std::string& type) {
  return type == "CrossAttnDownBlock2D" || type == "CrossAttnUpBlock2D";
}

// transformer_layers_per_block: an int, or per block an int or a list of one count per layer.
inline std::vector<std::vector<std::int64_t>> read_transformer_layers(const DiffusersConfigReader& reader,
                                                                      const char* key, const nlohmann::json& value,
                                                                      const std::vector<std::int64_t>& layers) {
  std::vector<std::vector<std::int64_t>> per_block;
  auto count = [&](const nlohmann::json& element) {
    if (!element.is_number_integer() || element.get<std::int64_t>() < 1)
      reader.invalid(key, value.dump(), "entries must be positive integers");
    return element.get<std::int64_t>();
  };
  if (value.is_number_integer()) {
    for (std::int64_t n : layers) per_block.emplace_back(static_cast<std::size_t>(n), count(value));
    return per_block;
  }
  if (!value.is_array() || value.size() != layers.size())
    reader.invalid(key, value.dump(), "must be an integer or a list with one entry per block");
  for (std::size_t block = 0; block < layers.size(); ++block) {
    const nlohmann::json& entry = value[block];
    if (entry.is_array()) {
      if (entry.size() != static_cast<std::size_t>(layers[block]))
        reader.invalid(key, value.dump(), "a per-layer list must have one entry per resnet of its block");
      std::vector<std::int64_t> counts;
      for (const auto& element : entry) counts.push_back(count(element));
      per_block.push_back(std::move(counts));
    } else {
      per_block.emplace_back(static_cast<std::size_t>(layers[block]), count(entry));
    }
  }
  return per_block;
}

inline UNet2DConditionConfig read_unet_config(const DiffusersConfigReader& reader) {
  UNet2DConditionConfig config;
  // Features outside the SD 1.x / 2.x / SDXL settings.
  for (const char* key : {"class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type",
                          "time_cond_proj_dim", "timestep_post_act", "time_embedding_act_fn", "cross_attention_norm",
                          "mid_block_only_cross_attention"})
    reader.require_unset(key);
  for (const char* key : {"dual_cross_attention", "resnet_skip_time_act", "class_embeddings_concat"})
    reader.require_false(key);
  if (reader.is_set("num_attention_heads"))
    reader.unsupported("num_attention_heads", reader.raw("num_attention_heads").dump(),
                       "diffusers' UNet2DConditionModel takes the head count from attention_head_dim");
  const auto& only_cross = reader.raw("only_cross_attention");
  if (!(only_cross.is_null() || (only_cross.is_boolean() && !only_cross.get<bool>())))
    reader.unsupported("only_cross_attention", only_cross.dump(), "only false");
  reader.one_of("act_fn", "silu", {"silu"});
  reader.one_of("resnet_time_scale_shift", "default", {"default"});
  reader.one_of("time_embedding_type", "positional", {"positional"});
  reader.one_of("attention_type", "default", {"default"});
  const std::string addition = reader.string("addition_embed_type", "");
  if (!addition.empty() && addition != "text_time")
    reader.unsupported("addition_embed_type", "\"" + addition + "\"", "only null or \"text_time\"");
  const std::string mid_block = reader.string("mid_block_type", "");
  if (reader.is_set("mid_block_type") && mid_block != "UNetMidBlock2DCrossAttn")
    reader.unsupported("mid_block_type", "\"" + mid_block + "\"", "only UNetMidBlock2DCrossAttn or null");
  config.has_mid_block = !reader.has_key("mid_block_type") || reader.is_set("mid_block_type");  // null: none

  config.in_channels = reader.integer("in_channels", 4);
  config.out_channels = reader.integer("out_channels", 4);
  config.center_input_sample = reader.boolean("center_input_sample", false);
  config.flip_sin_to_cos = reader.boolean("flip_sin_to_cos", true);
  config.freq_shift = reader.number("freq_shift", 0.0);
  config.down_block_types = reader.string_list(
      "down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"});
  config.up_block_types = reader.string_list(
      "up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"});
  config.block_out_channels = reader.integer_list("block_out_channels", {320, 640, 1280, 1280});
  const std::size_t blocks = config.block_out_channels.size();
  if (blocks == 0 || blocks > 8) reader.invalid("block_out_channels", "[]", "needs 1 to 8 entries");
  if (config.down_block_types.size() != blocks || config.up_block_types.size() != blocks)
    reader.invalid("down_block_types", std::to_string(config.down_block_types.size()) + " entries",
                   "down_block_types, up_block_types and block_out_channels must have the same length");
  for (const auto& type : config.down_block_types)
    if (type != "DownBlock2D" && type != "CrossAttnDownBlock2D")
      reader.unsupported("down_block_types", "\"" + type + "\"", "only DownBlock2D and CrossAttnDownBlock2D");
  for (const auto& type : config.up_block_types)
    if (type != "UpBlock2D" && type != "CrossAttnUpBlock2D")
      reader.unsupported("up_block_types", "\"" + type + "\"", "only UpBlock2D and CrossAttnUpBlock2D");

  config.layers_per_block = reader.integer_per_block("layers_per_block", 2, blocks);
  config.attention_heads = reader.integer_per_block("attention_head_dim", 8, blocks);
  config.cross_attention_dim = reader.integer_per_block("cross_attention_dim", 1280, blocks);
  const nlohmann::json one = 1;
  const nlohmann::json& layers_value =
      reader.is_set("transformer_layers_per_block") ? reader.raw("transformer_layers_per_block") : one;
  config.down_transformer_layers =
      read_transformer_layers(reader, "transformer_layers_per_block", layers_value, config.layers_per_block);
  std::vector<std::int64_t> up_layers(config.layers_per_block.rbegin(), config.layers_per_block.rend());
  for (std::int64_t& n : up_layers) ++n;  // up blocks have one resnet more than their down block
  if (reader.is_set("reverse_transformer_layers_per_block")) {
    config.up_transformer_layers = read_transformer_layers(
        reader, "reverse_transformer_layers_per_block", reader.raw("reverse_transformer_layers_per_block"), up_layers);
  } else {
    for (std::size_t block = 0; block < blocks; ++block) {
      const nlohmann::json& entry = layers_value.is_array() ? layers_value[blocks - 1 - block] : layers_value;
      if (entry.is_array())
        reader.invalid("transformer_layers_per_block", layers_value.dump(),
                       "per-layer lists need reverse_transformer_layers_per_block for the up blocks");
      config.up_transformer_layers.emplace_back(static_cast<std::size_t>(up_layers[block]),
                                                entry.get<std::int64_t>());
    }
  }

  config.downsample_padding = reader.integer("downsample_padding", 1);
  config.mid_block_scale_factor = reader.number("mid_block_scale_factor", 1.0);
  if (!reader.is_set("norm_num_groups"))
    reader.unsupported("norm_num_groups", "null", "the output GroupNorm needs a group count");
  config.norm_num_groups = static_cast<int>(reader.integer("norm_num_groups", 32));
  config.norm_eps = reader.number("norm_eps", 1e-5);
  config.use_linear_projection = reader.boolean("use_linear_projection", false);
  config.conv_in_kernel = reader.integer("conv_in_kernel", 3);
  config.conv_out_kernel = reader.integer("conv_out_kernel", 3);
  // resnet_out_scale_factor only reaches the resnets of block types not supported here (as in diffusers).
  config.time_embedding_dim = reader.integer("time_embedding_dim", config.block_out_channels[0] * 4);
  if (addition == "text_time") {
    config.text_time_embedding = true;
    if (!reader.is_set("addition_time_embed_dim") || !reader.is_set("projection_class_embeddings_input_dim"))
      reader.invalid("addition_embed_type", "\"text_time\"",
                     "needs addition_time_embed_dim and projection_class_embeddings_input_dim");
    config.addition_time_embed_dim = reader.integer("addition_time_embed_dim", 0);
    config.projection_class_embeddings_input_dim = reader.integer("projection_class_embeddings_input_dim", 0);
  }

  auto positive = [&](const char* key, std::int64_t value) {
    if (value <= 0) reader.invalid(key, std::to_string(value), "must be positive");
  };
  positive("in_channels", config.in_channels);
  positive("out_channels", config.out_channels);
  positive("norm_num_groups", config.norm_num_groups);
  positive("time_embedding_dim", config.time_embedding_dim);
  for (std::int64_t value : config.layers_per_block) positive("layers_per_block", value);
  for (std::int64_t value : config.cross_attention_dim) positive("cross_attention_dim", value);
  for (std::size_t block = 0; block < blocks; ++block) {
    const std::int64_t channels = config.block_out_channels[block];
    positive("block_out_channels", channels);
    if (channels % config.norm_num_groups != 0)
      reader.invalid("block_out_channels", std::to_string(channels),
                     "every entry must be divisible by norm_num_groups = " + std::to_string(config.norm_num_groups));
    const std::int64_t heads = config.attention_heads[block];
    if (heads <= 0 || heads > channels)
      reader.invalid("attention_head_dim", std::to_string(heads),
                     "the head count of a block must be in [1, its channel count " + std::to_string(channels) + "]");
  }
  for (const char* key : {"conv_in_kernel", "conv_out_kernel"}) {
    const std::int64_t kernel = reader.integer(key, 3);
    if (kernel <= 0 || kernel % 2 == 0) reader.invalid(key, std::to_string(kernel), "must be a positive odd size");
  }
  if (config.text_time_embedding) {
    positive("addition_time_embed_dim", config.addition_time_embed_dim);
    positive("projection_class_embeddings_input_dim", config.projection_class_embeddings_input_dim);
  }
  return config;
}

}  // namespace detail
}  // namespace sdnq::nn
