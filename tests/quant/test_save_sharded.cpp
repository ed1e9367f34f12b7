// save_sdnq_checkpoint with a maximum shard size: diffusers' shard names and index (metadata.total_size,
// weight_map), read back through the sharded reader identical to the single-file output; a re-save
// replaces the other layout; a failed save leaves the previous checkpoint readable and no temporaries.
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "io/test_safetensors_support.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/quant/checkpoint.hpp"
#include "sdnq/quant/save.hpp"
#include "test_quantize_support.hpp"

namespace {

using namespace sdnq;

// Four Linear layers [64, 256] (bf16) with biases, from the int6-hadamard fixture's original weight.
struct FourLayers {
  test::FixtureCase source = test::FixtureCase::open(test::local_codec_fixtures() / "int6-hadamard");
  std::vector<std::uint16_t> bias_bits = std::vector<std::uint16_t>(64, bf16(0.25f).bits);
  quant::ComponentToSave component;
  quant::SdnqConfig config;
  FourLayers() {
    const TensorView weight = source.reference.tensor("original.linear.weight");
    const TensorView bias(bias_bits.data(), DType::bf16, {64});
    for (const char* layer : {"blocks.0.to_q", "blocks.0.to_k", "blocks.1.to_q", "blocks.1.to_k"}) {
      component.parameters.push_back({std::string(layer) + ".bias", bias});
      component.parameters.push_back({std::string(layer) + ".weight", weight});
      component.modules.push_back({layer, quant::LayerKind::linear});
    }
    component.model_config = {{"_class_name", "SdnqProbe"}};
    config.weights_dtype = "uint4";
    config.use_svd = true;
    config.svd_rank = 8;
    config.add_skip_keys = false;
    config.minimum_allowed_numel = 0;
  }
};

bool same_tensor(TensorView a, TensorView b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

std::set<std::string> file_names(const std::filesystem::path& folder) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) names.insert(entry.path().filename().string());
  return names;
}

}  // namespace

TEST_CASE("save_sdnq_checkpoint shards like diffusers and reads back identical", "[quant][save][sharded]") {
  FourLayers model;
  test::ScratchFolder single, sharded;
  quant::save_sdnq_checkpoint(single.path(), model.component, model.config, {.seed = 3});
  CHECK(file_names(single.path()) ==
        std::set<std::string>{"config.json", "diffusion_pytorch_model.safetensors", "quantization_config.json"});

  // A layer stores about 14.5 kB (uint4 codes 8192 B, SVD factors 5120 B, scales, bias): one per 20 kB shard.
  const std::uint64_t limit = 20000;
  quant::save_sdnq_checkpoint(sharded.path(), model.component, model.config, {.seed = 3}, limit);
  const io::Checkpoint reference = io::open_checkpoint(single.path());
  std::uint64_t total = 0;
  for (const auto& name : reference.names()) total += reference.info(name).nbytes();
  REQUIRE(total > 2 * limit);

  const auto index_path = sharded / "diffusion_pytorch_model.safetensors.index.json";
  REQUIRE(std::filesystem::is_regular_file(index_path));
  CHECK_FALSE(std::filesystem::exists(sharded / "diffusion_pytorch_model.safetensors"));
  const auto index = nlohmann::json::parse(test::read_file(index_path));
  CHECK(index["metadata"]["total_size"] == total);
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) shards.insert(shard.get<std::string>());
  CHECK(index["weight_map"].size() == reference.names().size());
  const std::size_t count = shards.size();
  CHECK(count >= 3);
  for (std::size_t i = 1; i <= count; ++i) {
    const std::string name = fmt::format("diffusion_pytorch_model-{:05d}-of-{:05d}.safetensors", i, count);
    INFO(name);
    CHECK(shards.count(name) == 1);
    const auto shard = io::SafetensorsFile::open(sharded / name);
    CHECK(shard.metadata().at("format") == "pt");
    std::uint64_t shard_bytes = 0;
    for (const auto& tensor : shard.names()) shard_bytes += shard.info(tensor).nbytes();
    CHECK((shard_bytes <= limit || shard.names().size() == 1));
  }

  const io::Checkpoint read_back = io::open_checkpoint(sharded.path());
  REQUIRE(read_back.is_sharded());
  CHECK(read_back.names().size() == reference.names().size());
  for (const auto& name : reference.names()) {
    INFO(name);
    REQUIRE(read_back.contains(name));
    CHECK(same_tensor(read_back.tensor(name), reference.tensor(name)));
  }
  // The checkpoint loader reads the layers from the shards as from the single file.
  const auto loaded = quant::SdnqCheckpoint::open(sharded.path());
  const auto layer = loaded.quantized_weight("blocks.1.to_k", quant::LayerKind::linear, Shape{64, 256});
  const auto single_checkpoint = quant::SdnqCheckpoint::open(single.path());  // the views below point into it
  const auto expected = single_checkpoint.quantized_weight("blocks.1.to_k", quant::LayerKind::linear, Shape{64, 256});
  CHECK(same_tensor(quant::dequantize(layer, DType::bf16, quant::ScalePrecision::reference_compatible),
                    quant::dequantize(expected, DType::bf16, quant::ScalePrecision::reference_compatible)));

  // Saving the single-file layout over it removes the index and the shards.
  quant::save_sdnq_checkpoint(sharded.path(), model.component, model.config, {.seed = 3});
  CHECK(file_names(sharded.path()) == file_names(single.path()));
}

TEST_CASE("save_sdnq_checkpoint keeps fnuz header dtypes in every layout", "[quant][save][sharded][fnuz]") {
  FourLayers model;
  model.config.weights_dtype = "float8_e5m2fnuz";
  model.config.use_svd = false;
  test::ScratchFolder folder;
  quant::save_sdnq_checkpoint(folder.path(), model.component, model.config, {}, 40000);
  const io::Checkpoint written = io::open_checkpoint(folder.path());
  REQUIRE(written.is_sharded());
  CHECK(written.info("blocks.0.to_q.weight").safetensors_dtype == "F8_E5M2FNUZ");
  CHECK(written.info("blocks.0.to_q.weight").dtype == DType::u8);
  const auto loaded = quant::SdnqCheckpoint::open(folder.path());
  const auto layer = loaded.quantized_weight("blocks.0.to_q", quant::LayerKind::linear, Shape{64, 256});
  CHECK(layer.layout.weights_type->name == "float8_e5m2fnuz");
}

TEST_CASE("a failed sharded save leaves the previous checkpoint readable", "[quant][save][sharded]") {
  FourLayers model;
  test::ScratchFolder folder;
  quant::save_sdnq_checkpoint(folder.path(), model.component, model.config, {.seed = 3});
  // A folder where the second of the new shards must go: its rename fails after the first shard's.
  const std::uint64_t limit = 20000;
  test::ScratchFolder probe;
  quant::save_sdnq_checkpoint(probe.path(), model.component, model.config, {.seed = 3}, limit);
  const auto index = nlohmann::json::parse(test::read_file(probe / "diffusion_pytorch_model.safetensors.index.json"));
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) shards.insert(shard.get<std::string>());
  REQUIRE(shards.size() >= 2);
  const std::string blocked = *std::next(shards.begin());
  std::filesystem::create_directories(folder / blocked / "occupied");

  CHECK_THROWS_AS(quant::save_sdnq_checkpoint(folder.path(), model.component, model.config, {.seed = 3}, limit),
                  IoError);
  // No index names a mix: the folder still opens as the single file written before, unchanged.
  CHECK_FALSE(std::filesystem::exists(folder / "diffusion_pytorch_model.safetensors.index.json"));
  const io::Checkpoint after = io::open_checkpoint(folder.path());
  CHECK_FALSE(after.is_sharded());
  const io::Checkpoint sharded_probe = io::open_checkpoint(probe.path());
  for (const auto& name : sharded_probe.names()) CHECK(same_tensor(after.tensor(name), sharded_probe.tensor(name)));
  for (const auto& name : file_names(folder.path())) CHECK(name.find(".tmp-") == std::string::npos);
}
