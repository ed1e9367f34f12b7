// CLIPTextModel / CLIPTextModelWithProjection against the reference fixtures (output_fp32.*, rel L2 < 1e-4).
#include <unistd.h>
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>

#include "nn_test_support.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/io/sharded.hpp"
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/models/clip.hpp"

using namespace sdnq;

namespace {
void check_clip_case(const std::filesystem::path& folder) {
  INFO(folder.string());
  const nn::ModelCaseResult result = nn::run_model_case(folder);
  REQUIRE(result.outputs.size() == 3);
  for (const auto& output : result.outputs) {
    INFO(output.name << " rel L2 " << output.rel_l2);
    CHECK(output.rel_l2 < 1e-4);
  }
}
}  // namespace

TEST_CASE("CLIP text models match the project's fixture slice", "[nn][clip]") {
  check_clip_case(test::data_dir() / "models" / "clip_l-bf16");       // CLIPTextModel, quick_gelu, no key prefix
  check_clip_case(test::data_dir() / "models" / "clip_g-uint4-svd");  // WithProjection, gelu, uint4 + SVD
}

TEST_CASE("CLIP text models match every clip_l / clip_g reference case", "[nn][clip]") {
  const auto fixtures = test::shared_fixtures_dir();
  if (!fixtures) {
    WARN("the shared reference fixtures are not on this machine; set SDNQ_FIXTURES to run all CLIP cases");
    return;
  }
  for (const char* kind : {"clip_l", "clip_g"})
    for (const char* quant : {"bf16", "int8", "uint4-svd", "fp8", "int8-qmm"})
      check_clip_case(*fixtures / "models" / (std::string(kind) + "-" + quant));
}

TEST_CASE("WeightLoader::report counts what the model took, per storage type, as the file stores it", "[nn][clip]") {
  const auto folder = test::data_dir() / "models" / "clip_g-uint4-svd";
  nn::WeightLoader weights = nn::WeightLoader::open(folder);
  CHECK(weights.report().bytes() == 0);
  (void)nn::ClipTextModel::load(weights);
  const nn::LoadReport report = weights.report();
  // Independently from the file: a quantized layer is a prefix with .weight and .scale (and its .zero_point,
  // .svd_up, .svd_down); every other tensor the model reads is dense, biases of quantized layers too (the
  // position_ids buffer is the one tensor it leaves).
  const io::Checkpoint file = io::open_checkpoint(folder);
  const auto has = [&](const std::string& name) {
    const auto& names = file.names();
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  std::uint64_t quantized_bytes = 0, dense_bytes = 0;
  std::int64_t layers = 0, dense_tensors = 0, dense_parameters = 0;
  for (const std::string& name : file.names()) {
    if (name.ends_with("embeddings.position_ids")) continue;
    const TensorView tensor = file.tensor(name);
    const std::string prefix = name.substr(0, name.rfind('.')), suffix = name.substr(name.rfind('.') + 1);
    const bool layer_part = suffix == "weight" || suffix == "scale" || suffix == "zero_point" || suffix == "svd_up" ||
                            suffix == "svd_down";
    if (layer_part && has(prefix + ".scale")) {
      quantized_bytes += tensor.nbytes();
      layers += name.ends_with(".weight");
    } else {
      dense_bytes += tensor.nbytes();
      dense_parameters += tensor.numel();
      ++dense_tensors;
    }
  }
  REQUIRE(layers > 0);
  REQUIRE(report.quantized.count("uint4") == 1);
  std::uint64_t reported_quantized = 0, reported_dense = 0;
  std::int64_t reported_layers = 0, reported_tensors = 0, reported_dense_parameters = 0;
  for (const auto& [type, load] : report.quantized) {
    reported_quantized += load.bytes;
    reported_layers += load.entries;
  }
  for (const auto& [dtype, load] : report.dense) {
    reported_dense += load.bytes;
    reported_tensors += load.entries;
    reported_dense_parameters += load.parameters;
  }
  CHECK(reported_quantized == quantized_bytes);
  CHECK(reported_layers == layers);
  CHECK(reported_dense == dense_bytes);
  CHECK(reported_tensors == dense_tensors);
  CHECK(reported_dense_parameters == dense_parameters);
  CHECK(report.bytes() == quantized_bytes + dense_bytes);
  // uint4 codes + group scales, zero points and SVD factors: more than 4 bits a parameter, far below 16.
  const nn::StorageLoad& uint4 = report.quantized.at("uint4");
  const double bits = 8.0 * static_cast<double>(uint4.bytes) / static_cast<double>(uint4.parameters);
  CHECK(bits > 4.0);
  CHECK(bits < 16.0);
  const std::string text = report.to_string();
  INFO(text);
  CHECK(text.find(folder.string()) == 0);
  CHECK(text.find("SDNQ  uint4") != std::string::npos);
  // Loading the same layers again (a second model from one loader) counts nothing twice.
  (void)nn::ClipTextModel::load(weights);
  CHECK(weights.report().bytes() == report.bytes());
}

TEST_CASE("CLIP rejects malformed input_ids with clear errors", "[nn][clip]") {
  const nn::ClipTextModel model = nn::ClipTextModel::load(test::data_dir() / "models" / "clip_l-bf16");
  CHECK(model.config().max_position_embeddings == 77);
  Tensor flat = Tensor::zeros({12}, DType::i64);
  CHECK_THROWS_WITH(model.forward(flat), Catch::Matchers::Contains("[batch, tokens]"));
  Tensor too_long = Tensor::zeros({1, 78}, DType::i64);
  CHECK_THROWS_WITH(model.forward(too_long), Catch::Matchers::Contains("max_position_embeddings = 77"));
  Tensor out_of_vocabulary = Tensor::zeros({1, 4}, DType::i64);
  out_of_vocabulary.data_as<std::int64_t>()[2] = 1000;
  CHECK_THROWS_AS(model.forward(out_of_vocabulary), ShapeError);
  Tensor float_ids = Tensor::zeros({1, 4}, DType::f32);
  CHECK_THROWS_AS(model.forward(float_ids), ShapeError);
  // I32 ids work like I64.
  Tensor ids32 = Tensor::zeros({1, 3}, DType::i32);
  CHECK(model.forward(ids32).last_hidden_state.shape() == Shape{1, 3, 64});
}

TEST_CASE("The conformance dispatcher and the CLIP loader refuse unknown classes", "[nn][clip]") {
  const auto folder = std::filesystem::temp_directory_path() / ("sdnq_nn_unknown_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  std::ofstream(folder / "config.json") << R"({"architectures": ["GPT2Model"]})";
  io::write_safetensors(folder / "reference.safetensors", std::initializer_list<io::NamedTensor>{});
  io::write_safetensors(folder / "model.safetensors", std::initializer_list<io::NamedTensor>{});
  CHECK_THROWS_AS(nn::run_model_case(folder), UnsupportedError);
  CHECK_THROWS_WITH(nn::run_model_case(folder), Catch::Matchers::Contains("GPT2Model"));
  CHECK_THROWS_AS(nn::ClipTextModel::load(folder), UnsupportedError);
  std::ofstream(folder / "config.json") << R"({"hidden_size": 64})";
  CHECK_THROWS_AS(nn::run_model_case(folder), ConfigError);
  std::error_code ignored;
  std::filesystem::remove_all(folder, ignored);
}
