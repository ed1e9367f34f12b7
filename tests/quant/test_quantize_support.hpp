#pragma once
// Shared by the writer's tests: reading a reference fixture case (config + stored tensors + the
// original weight) and comparing the quantizer's tensors with the stored ones element by element.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"

namespace sdnq::test {

inline std::filesystem::path shared_codec_fixtures() { return "/work/shared/fixtures/sdnq-reference/codecs"; }
inline std::filesystem::path local_codec_fixtures() { return data_dir() / "quantize"; }

struct FixtureCase {
  std::filesystem::path folder;
  quant::SdnqConfig config;
  io::SafetensorsFile model, reference;

  static FixtureCase open(const std::filesystem::path& folder) {
    std::ifstream stream(folder / "config.json");
    const auto config_json = nlohmann::json::parse(stream);
    return FixtureCase{folder,
                       quant::SdnqConfig::from_json(config_json.at("quantization_config"), (folder / "config.json").string()),
                       io::SafetensorsFile::open(folder / "diffusion_pytorch_model.safetensors"),
                       io::SafetensorsFile::open(folder / "reference.safetensors")};
  }
};

struct LayerOfCase {
  std::string prefix;  // "linear", "conv", "embed"
  quant::LayerKind kind;
};
inline std::vector<LayerOfCase> quantized_layers(const FixtureCase& fixture) {
  std::vector<LayerOfCase> layers;
  for (auto [prefix, kind] : {std::pair{"linear", quant::LayerKind::linear}, std::pair{"conv", quant::LayerKind::conv2d},
                              std::pair{"embed", quant::LayerKind::embedding}})
    if (fixture.model.contains(std::string(prefix) + ".scale")) layers.push_back({prefix, kind});
  return layers;
}

// Number of differing elements (compared as raw element bytes); shapes and dtypes must agree.
inline std::int64_t count_element_mismatches(TensorView ours, TensorView stored, const std::string& what) {
  INFO(what << ": ours " << dtype_name(ours.dtype()) << ours.shape().to_string() << ", stored "
            << dtype_name(stored.dtype()) << stored.shape().to_string());
  REQUIRE(ours.dtype() == stored.dtype());
  REQUIRE(ours.shape() == stored.shape());
  const std::size_t size = ours.element_size();
  std::int64_t mismatches = 0;
  for (std::int64_t i = 0; i < ours.numel(); ++i)
    if (std::memcmp(static_cast<const char*>(ours.data()) + i * size, static_cast<const char*>(stored.data()) + i * size,
                    size) != 0)
      ++mismatches;
  return mismatches;
}

}  // namespace sdnq::test
