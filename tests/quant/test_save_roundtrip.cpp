// save_sdnq_checkpoint: writes checkpoints in the fixture layout for int8, uint4+SVD, float8_e4m3fn,
// int6+Hadamard and uint4 codebook, loads them back through SdnqCheckpoint + dequantize, and compares
// keys, dtypes and shapes with the reference's fixture folders. The folders are kept under the build
// directory (printed) so they can be handed to the reference implementation.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "sdnq/quant/checkpoint.hpp"
#include "sdnq/quant/save.hpp"
#include "test_quantize_support.hpp"

namespace {

std::filesystem::path roundtrip_root() {
  return std::filesystem::canonical("/proc/self/exe").parent_path() / "roundtrip";
}

struct RoundTripCase {
  const char* name;
  const char* weights_dtype;
  const char* fixture;  // local fixture folder with the same settings on the same [64, 256] shape, or ""
  void (*adjust)(sdnq::quant::SdnqConfig&);
};

}  // namespace

TEST_CASE("save_sdnq_checkpoint round trip through the checkpoint loader", "[quant][save]") {
  using namespace sdnq;
  const auto source = test::FixtureCase::open(test::local_codec_fixtures() / "int6-hadamard");
  const TensorView original = source.reference.tensor("original.linear.weight");  // bf16 [64, 256]
  std::vector<std::uint16_t> bias_bits(64);
  for (int i = 0; i < 64; ++i) bias_bits[i] = bf16(0.01f * float(i) - 0.3f).bits;
  const TensorView bias(bias_bits.data(), DType::bf16, {64});

  const RoundTripCase cases[] = {
      {"int8", "int8", "", [](quant::SdnqConfig&) {}},
      {"uint4-svd", "uint4", "uint4-svd", [](quant::SdnqConfig& c) { c.use_svd = true, c.svd_rank = 16; }},
      {"float8_e4m3fn", "float8_e4m3fn", "", [](quant::SdnqConfig&) {}},
      {"int6-hadamard", "int6", "int6-hadamard", [](quant::SdnqConfig& c) { c.use_hadamard = true, c.hadamard_group_size = 64; }},
      {"uint4-codebook", "uint4", "uint4-codebook", [](quant::SdnqConfig& c) { c.use_codebook = true; }},
  };
  for (const auto& item : cases) {
    INFO("case " << item.name);
    quant::SdnqConfig config;
    config.weights_dtype = item.weights_dtype;
    config.add_skip_keys = false;
    config.minimum_allowed_channel_size = 0;
    config.minimum_allowed_numel = 0;
    item.adjust(config);
    quant::ComponentToSave component;
    component.parameters = {{"linear.bias", bias}, {"linear.weight", original}};
    component.modules = {{"linear", quant::LayerKind::linear}};
    component.model_config = {{"_class_name", "SdnqProbe"}, {"in_features", 256}, {"out_features", 64}};
    component.model_dtype = DType::bf16;
    const auto folder = roundtrip_root() / item.name;
    const auto written = quant::save_sdnq_checkpoint(folder, component, config, {.layer_name = "linear", .seed = 5});
    WARN("round-trip checkpoint written to " << folder.string());

    const auto checkpoint = quant::SdnqCheckpoint::open(folder);
    CHECK(checkpoint.config().weights_dtype == item.weights_dtype);
    REQUIRE(checkpoint.is_quantized("linear", quant::LayerKind::linear));
    const auto loaded = checkpoint.quantized_weight("linear", quant::LayerKind::linear, original.shape());
    const Tensor dense = quant::dequantize(loaded, DType::bf16, quant::ScalePrecision::reference_compatible);
    // an independent in-memory quantization with the same seed dequantizes to the same bits
    const auto options = quant::resolve_layer_options(written, "linear.weight", quant::LayerKind::linear);
    const auto direct = quant::quantize_weight(original, quant::LayerKind::linear, options, DType::bf16,
                                               quant::QuantizeControls{.layer_name = "linear", .seed = 5});
    const Tensor direct_dense = quant::dequantize(direct.view(), DType::bf16, quant::ScalePrecision::reference_compatible);
    CHECK(test::count_element_mismatches(dense, direct_dense, "dequantized") == 0);
    // quantization error in the range of the reference's own for such settings
    double error = 0, norm = 0;
    for (std::int64_t i = 0; i < original.numel(); ++i) {
      const double a = quant::detail::load_float_from(DType::bf16, dense.data(), i);
      const double o = quant::detail::load_float_from(DType::bf16, original.data(), i);
      error += (a - o) * (a - o);
      norm += o * o;
    }
    CHECK(std::sqrt(error / norm) < 0.2);  // the reference itself: uint4 0.141, uint4 codebook 0.168 on these weights
    CHECK(checkpoint.tensor("linear.bias").dtype() == DType::bf16);

    // same keys, dtypes and shapes as the reference wrote for this configuration
    if (std::string_view(item.fixture).empty()) continue;
    const auto reference = test::FixtureCase::open(test::local_codec_fixtures() / item.fixture);
    for (const auto& name : reference.model.names()) {
      INFO("tensor " << name);
      REQUIRE(checkpoint.contains(name));
      CHECK(checkpoint.tensor(name).dtype() == reference.model.tensor(name).dtype());
      CHECK(checkpoint.tensor(name).shape() == reference.model.tensor(name).shape());
    }
    CHECK(checkpoint.keys().size() == reference.model.names().size());
    std::ifstream ours_stream(folder / "quantization_config.json"), reference_stream(reference.folder / "config.json");
    std::ifstream ours_config_stream(folder / "config.json");
    const auto ours_json = nlohmann::json::parse(ours_stream);
    const auto reference_json = nlohmann::json::parse(reference_stream).at("quantization_config");
    CHECK(nlohmann::json::parse(ours_config_stream).at("quantization_config") == ours_json);
    for (const auto& [key, value] : reference_json.items()) {
      INFO("quantization_config key " << key);
      REQUIRE(ours_json.contains(key));
      CHECK(ours_json[key].type() == value.type());
      if (key != "modules_to_not_convert" && key != "minimum_allowed_channel_size" && key != "minimum_allowed_numel")
        CHECK(ours_json[key] == value);
    }
    CHECK(ours_json.size() == reference_json.size());
  }
}

TEST_CASE("save_sdnq_checkpoint applies the quantization-time skip rules", "[quant][save]") {
  using namespace sdnq;
  std::vector<float> big(64 * 512, 0.25f), small(64 * 16, 0.5f), embed(512 * 64, 0.125f);
  quant::ComponentToSave component;
  component.parameters = {{"blocks.0.proj.weight", TensorView(big.data(), DType::f32, {64, 512})},
                          {"blocks.0.narrow.weight", TensorView(small.data(), DType::f32, {64, 16})},
                          {"proj_out.weight", TensorView(big.data(), DType::f32, {64, 512})},
                          {"embed.weight", TensorView(embed.data(), DType::f32, {512, 64})}};
  component.modules = {{"blocks.0.proj", quant::LayerKind::linear}, {"blocks.0.narrow", quant::LayerKind::linear},
                       {"proj_out", quant::LayerKind::linear}, {"embed", quant::LayerKind::embedding}};
  component.model_class_name = "SomeUnlistedModel";
  component.model_dtype = DType::f32;
  quant::SdnqConfig config;  // defaults: add_skip_keys, minimum channel 32, minimum numel 16384, no embeddings
  const auto folder = roundtrip_root() / "skip-rules";
  const auto written = quant::save_sdnq_checkpoint(folder, component, config);
  const auto& skipped = written.modules_to_not_convert;
  CHECK(std::find(skipped.begin(), skipped.end(), ".proj_out") != skipped.end());  // common skip key
  CHECK(std::find(skipped.begin(), skipped.end(), "blocks.0.narrow.weight") != skipped.end());  // C = 16 < 32
  CHECK(std::find(skipped.begin(), skipped.end(), "embed.weight") != skipped.end());  // quant_embedding off
  CHECK(std::find(skipped.begin(), skipped.end(), "proj_out.weight") == skipped.end());  // matched: not appended
  const auto file = io::SafetensorsFile::open(folder / "diffusion_pytorch_model.safetensors");
  CHECK(file.contains("blocks.0.proj.scale"));
  CHECK(file.tensor("blocks.0.proj.weight").dtype() == DType::i8);
  CHECK(file.tensor("proj_out.weight").dtype() == DType::f32);
  CHECK(file.tensor("blocks.0.narrow.weight").dtype() == DType::f32);
  CHECK_FALSE(file.contains("embed.scale"));
  CHECK(file.metadata().at("format") == "pt");
}
