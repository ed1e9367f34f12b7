#pragma once
// AutoencoderKL's config.json as the library reads it (diffusers defaults for missing keys).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sdnq/nn/models/detail/unet_config_reader.hpp"

namespace sdnq::nn {

struct AutoencoderKLConfig {
  std::int64_t in_channels = 3;
  std::int64_t out_channels = 3;
  std::vector<std::int64_t> block_out_channels{64};
  std::int64_t layers_per_block = 1;
  std::int64_t latent_channels = 4;
  int norm_num_groups = 32;
  double scaling_factor = 0.18215;
  double shift_factor = 0.0;  // null in the file means 0
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  // Spatial ratio between images and latents: 2 per down block but the last.
  std::int64_t downsampling_factor() const { return std::int64_t{1} << (block_out_channels.size() - 1); }
};

namespace detail {

inline AutoencoderKLConfig read_autoencoder_kl_config(const DiffusersConfigReader& reader) {
  AutoencoderKLConfig config;
  config.in_channels = reader.integer("in_channels", 3);
  config.out_channels = reader.integer("out_channels", 3);
  config.block_out_channels = reader.integer_list("block_out_channels", {64});
  config.layers_per_block = reader.integer("layers_per_block", 1);
  config.latent_channels = reader.integer("latent_channels", 4);
  config.norm_num_groups = static_cast<int>(reader.integer("norm_num_groups", 32));
  config.scaling_factor = reader.number("scaling_factor", 0.18215);
  config.shift_factor = reader.number("shift_factor", 0.0);
  config.use_quant_conv = reader.boolean("use_quant_conv", true);
  config.use_post_quant_conv = reader.boolean("use_post_quant_conv", true);
  config.mid_block_add_attention = reader.boolean("mid_block_add_attention", true);
  reader.one_of("act_fn", "silu", {"silu"});
  reader.require_unset("latents_mean");
  reader.require_unset("latents_std");

  const std::size_t levels = config.block_out_channels.size();
  if (levels == 0 || levels > 8) reader.invalid("block_out_channels", "[]", "needs 1 to 8 entries");
  const auto down_types = reader.string_list("down_block_types", {"DownEncoderBlock2D"});
  const auto up_types = reader.string_list("up_block_types", {"UpDecoderBlock2D"});
  if (down_types.size() != levels || up_types.size() != levels)
    reader.invalid("down_block_types", std::to_string(down_types.size()) + " entries",
                   "down_block_types, up_block_types and block_out_channels must have the same length");
  for (const auto& type : down_types)
    if (type != "DownEncoderBlock2D") reader.unsupported("down_block_types", type, "only DownEncoderBlock2D");
  for (const auto& type : up_types)
    if (type != "UpDecoderBlock2D") reader.unsupported("up_block_types", type, "only UpDecoderBlock2D");

  auto positive = [&](const char* key, std::int64_t value) {
    if (value <= 0) reader.invalid(key, std::to_string(value), "must be positive");
  };
  positive("in_channels", config.in_channels);
  positive("out_channels", config.out_channels);
  positive("layers_per_block", config.layers_per_block);
  positive("latent_channels", config.latent_channels);
  positive("norm_num_groups", config.norm_num_groups);
  for (std::int64_t channels : config.block_out_channels) {
    positive("block_out_channels", channels);
    if (channels % config.norm_num_groups != 0)
      reader.invalid("block_out_channels", std::to_string(channels),
                     "every entry must be divisible by norm_num_groups = " + std::to_string(config.norm_num_groups));
  }
  return config;
}

}  // namespace detail
}  // namespace sdnq::nn
