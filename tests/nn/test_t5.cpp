// T5EncoderModel against the reference fixtures, and its relative position buckets against a
// direct transcription of transformers' rule.
#include <cmath>
#include <string>

#include "nn_test_support.hpp"
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/models/t5.hpp"

using namespace sdnq;

namespace {
void check_t5_case(const std::filesystem::path& folder) {
  INFO(folder.string());
  const nn::ModelCaseResult result = nn::run_model_case(folder);
  REQUIRE(result.outputs.size() == 1);
  INFO("rel L2 " << result.outputs[0].rel_l2);
  CHECK(result.outputs[0].name == "last_hidden_state");
  CHECK(result.outputs[0].rel_l2 < 1e-4);
}
}  // namespace

TEST_CASE("T5 encoder matches the project's fixture slice", "[nn][t5]") {
  check_t5_case(test::data_dir() / "models" / "t5-bf16");
  check_t5_case(test::data_dir() / "models" / "t5-uint4-svd");
}

TEST_CASE("T5 encoder matches every t5 reference case", "[nn][t5]") {
  const auto fixtures = test::shared_fixtures_dir();
  if (!fixtures) {
    WARN("the shared reference fixtures are not on this machine; set SDNQ_FIXTURES to run all T5 cases");
    return;
  }
  for (const char* quant : {"bf16", "int8", "uint4-svd", "fp8", "int8-qmm"})
    check_t5_case(*fixtures / "models" / (std::string("t5-") + quant));
}

TEST_CASE("T5 relative position buckets follow the bidirectional log rule", "[nn][t5]") {
  // 32 buckets, max distance 128: 16 per sign, exact below 8, log-spaced up to 128, clamped at 15.
  for (std::int64_t relative = -300; relative <= 300; ++relative) {
    const std::int64_t distance = std::abs(relative);
    std::int64_t expected = relative > 0 ? 16 : 0;
    if (distance < 8)
      expected += distance;
    else
      expected +=
          std::min<std::int64_t>(15, 8 + static_cast<std::int64_t>(std::log(distance / 8.0) / std::log(16.0) * 8));
    INFO("relative position " << relative);
    REQUIRE(nn::t5_relative_position_bucket(relative, 32, 128) == expected);
  }
}

TEST_CASE("T5 rejects malformed input_ids with clear errors", "[nn][t5]") {
  const nn::T5EncoderModel model = nn::T5EncoderModel::load(test::data_dir() / "models" / "t5-bf16");
  Tensor rank3 = Tensor::zeros({1, 2, 3}, DType::i64);
  CHECK_THROWS_WITH(model.forward(rank3), Catch::Matchers::Contains("[batch, tokens]"));
  Tensor empty = Tensor::zeros({1, 0}, DType::i64);
  CHECK_THROWS_AS(model.forward(empty), ShapeError);
  Tensor negative = Tensor::zeros({1, 2}, DType::i64);
  negative.data_as<std::int64_t>()[1] = -1;
  CHECK_THROWS_AS(model.forward(negative), ShapeError);
  // Relative positions need no table size: long inputs work (bucket clamping).
  Tensor long_ids = Tensor::zeros({1, 200}, DType::i64);
  CHECK(model.forward(long_ids).shape() == Shape{1, 200, 64});
}
