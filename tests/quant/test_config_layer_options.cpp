// §2.2 name matching, §2.4 per-layer options, load-time skip rules.
#include <string>
#include <vector>

#include "sdnq/quant/layer_options.hpp"
#include "sdnq_catch.hpp"

using sdnq::quant::LayerKind;
using sdnq::quant::matches_module_pattern;
using sdnq::quant::SdnqConfig;

TEST_CASE("module patterns: root prefix, exact name, component and glob", "[quant][options]") {
  // '.'-prefix: anchored at the model root
  CHECK(matches_module_pattern("proj_out.weight", ".proj_out"));
  CHECK_FALSE(matches_module_pattern("blocks.3.proj_out.weight", ".proj_out"));
  CHECK(matches_module_pattern("proj_out_extra.weight", ".proj_out"));  // a plain string prefix, as the reference
  // exact name and one dot-separated component
  CHECK(matches_module_pattern("blocks.0.norm.weight", "blocks.0.norm.weight"));
  CHECK(matches_module_pattern("blocks.3.proj_out.weight", "proj_out"));
  CHECK_FALSE(matches_module_pattern("blocks.3.proj_out2.weight", "proj_out"));
  CHECK_FALSE(matches_module_pattern("blocks.3.attn.weight", "blocks.3"));  // two components are not one
  // '*' turns the pattern into a start-anchored regex: "norm*" -> "norm.*"
  CHECK(matches_module_pattern("transformer_blocks.0.norm1.linear.weight", "transformer_blocks.0.norm*"));
  CHECK_FALSE(matches_module_pattern("x.transformer_blocks.0.norm1.weight", "transformer_blocks.0.norm*"));
  // ".*" becomes "\..*" (literal dot then anything); a bare '.' stays a regex wildcard
  CHECK(matches_module_pattern("blocks.7.attn.to_q.weight", "blocks.*.to_q"));
  CHECK(matches_module_pattern("blocksX7Xattn.weight", "blocks.7.attn*"));
  CHECK_FALSE(matches_module_pattern("blocks_7.attn.weight", "blocks.*attn"));
  CHECK_THROWS_AS(matches_module_pattern("a.weight", "a(*"), sdnq::ConfigError);
}

TEST_CASE("resolve_layer_options applies overrides, conv matmul, minimum dtypes and matmul skips", "[quant][options]") {
  const auto json = nlohmann::ordered_json::parse(R"({
    "quant_method": "sdnq", "weights_dtype": "uint4", "group_size": 0, "use_quantized_matmul": true,
    "use_quantized_matmul_conv": false,
    "modules_quant_config": {".blocks.1.": {"weights_dtype": "int6", "group_size": 32, "use_svd": true}},
    "modules_dtype_dict": {"minimum_6bits": ["to_k"], "uint8": ["to_k", "to_v"], "minimum_uint3": ["to_out"],
                           "8bit": ["ff"], "fp8": ["proj"]},
    "modules_to_not_use_matmul": ["to_v"]})");
  const SdnqConfig config = SdnqConfig::from_json(json, "test");

  const auto plain = resolve_layer_options(config, "blocks.0.attn.to_q.weight", LayerKind::linear);
  CHECK(plain.weights_type->name == "uint4");
  CHECK(plain.use_quantized_matmul);
  CHECK(plain.group_size == 0);

  const auto overridden = resolve_layer_options(config, "blocks.1.attn.to_q.weight", LayerKind::linear);
  CHECK(overridden.weights_type->name == "int6");
  CHECK(overridden.group_size == 32);
  CHECK(overridden.use_svd);

  // first matching key decides: minimum_6bits raises uint4 to int6 (N > 4, no "uint")
  CHECK(resolve_layer_options(config, "a.to_k.weight", LayerKind::linear).weights_type->name == "int6");
  // explicit dtype key
  const auto to_v = resolve_layer_options(config, "a.to_v.weight", LayerKind::linear);
  CHECK(to_v.weights_type->name == "uint8");
  CHECK_FALSE(to_v.use_quantized_matmul);  // modules_to_not_use_matmul
  // minimum_uint3 does not lower a 4-bit type
  CHECK(resolve_layer_options(config, "a.to_out.weight", LayerKind::linear).weights_type->name == "uint4");
  // "8bit" -> int8 for a 4-bit type
  CHECK(resolve_layer_options(config, "a.ff.weight", LayerKind::linear).weights_type->name == "int8");
  // alias key resolves through the table
  CHECK(resolve_layer_options(config, "a.proj.weight", LayerKind::linear).weights_type->name == "float8_e4m3fn");
  // convs take use_quantized_matmul_conv
  CHECK_FALSE(resolve_layer_options(config, "conv_in.weight", LayerKind::conv2d).use_quantized_matmul);
}

TEST_CASE("minimum rules with few bits pick unsigned types", "[quant][options]") {
  const SdnqConfig config = SdnqConfig::from_json(
      nlohmann::ordered_json::parse(
          R"({"weights_dtype": "uint2", "modules_dtype_dict": {"minimum-4bit": ["a"], "Minimum_Int3_Bits": ["b"]}})"),
      "test");
  CHECK(resolve_layer_options(config, "a.weight", LayerKind::linear).weights_type->name == "uint4");
  CHECK(resolve_layer_options(config, "b.weight", LayerKind::linear).weights_type->name == "uint3");
  const SdnqConfig bad = SdnqConfig::from_json(
      nlohmann::ordered_json::parse(R"({"modules_dtype_dict": {"minimum_lots": ["a"]}})"), "test");
  CHECK_THROWS_AS(resolve_layer_options(bad, "a.weight", LayerKind::linear), sdnq::ConfigError);
  const SdnqConfig unknown = SdnqConfig::from_json(
      nlohmann::ordered_json::parse(R"({"modules_dtype_dict": {"int99": ["a"]}})"), "test");
  CHECK_THROWS_AS(resolve_layer_options(unknown, "a.weight", LayerKind::linear), sdnq::ConfigError);
}

TEST_CASE("is_layer_quantized follows the load-time skip rules", "[quant][options]") {
  SdnqConfig config;
  config.modules_to_not_convert = {".proj_out", "norm_out", "small.weight"};
  config.minimum_allowed_numel = 1 << 30;  // quantization-time only: ignored when loading
  CHECK(is_layer_quantized(config, "blocks.0.to_q.weight", LayerKind::linear));
  CHECK_FALSE(is_layer_quantized(config, "proj_out.weight", LayerKind::linear));
  CHECK_FALSE(is_layer_quantized(config, "norm_out.linear.weight", LayerKind::linear));
  CHECK_FALSE(is_layer_quantized(config, "small.weight", LayerKind::linear));
  CHECK_FALSE(is_layer_quantized(config, "conv_in.weight", LayerKind::conv2d));
  CHECK_FALSE(is_layer_quantized(config, "embed.weight", LayerKind::embedding));
  config.quant_conv = config.quant_embedding = true;
  CHECK(is_layer_quantized(config, "conv_in.weight", LayerKind::conv2d));
  CHECK(is_layer_quantized(config, "up.weight", LayerKind::conv_transpose2d));
  CHECK(is_layer_quantized(config, "embed.weight", LayerKind::embedding));
}
