// CLIPTextModel / CLIPTextModelWithProjection against the reference fixtures (output_fp32.*, rel L2 < 1e-4).
#include <unistd.h>
#include <fstream>
#include <string>

#include "nn_test_support.hpp"
#include "sdnq/io/safetensors.hpp"
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
