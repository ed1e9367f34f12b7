// SdnqConfig parsing / writing and finding the config of a component folder.
#include <filesystem>
#include <fstream>
#include <string>

#include "sdnq/quant/config.hpp"
#include "sdnq_catch.hpp"

using sdnq::ConfigError;
using sdnq::UnsupportedError;
using sdnq::quant::SdnqConfig;

namespace {

template <class Error>
std::string message_of(auto&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  FAIL("no exception of the expected type was thrown");
  return {};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("SdnqConfig reads the fixture's quantization_config with every field", "[quant][config]") {
  const auto config = sdnq::quant::read_quantization_config(sdnq::test::data_dir() / "codecs" / "uint4-svd");
  REQUIRE(config.has_value());
  CHECK(config->quant_method == "sdnq");
  CHECK(config->weights_dtype == "uint4");
  CHECK(config->use_svd);
  CHECK(config->svd_rank == 16);
  CHECK(config->group_size == 0);
  CHECK(config->dequantize_fp32);
  CHECK_FALSE(config->quantized_matmul_dtype.has_value());
  CHECK(config->minimum_allowed_numel == 0);  // the fixtures quantize the small probe layers too
  CHECK(config->extra.contains("use_grad_ckpt"));
  CHECK(config->extra.contains("is_unsigned"));
}

TEST_CASE("SdnqConfig missing keys take the reference constructor defaults", "[quant][config]") {
  const SdnqConfig config = SdnqConfig::from_json(nlohmann::json{{"quant_method", "sdnq"}}, "test");
  CHECK(config.weights_dtype == "int8");
  CHECK(config.group_size == 0);
  CHECK(config.svd_rank == 32);
  CHECK(config.svd_steps == 8);
  CHECK(config.hadamard_group_size == 256);
  CHECK(config.codebook_steps == 24);
  CHECK(config.dequantize_fp32);
  CHECK(config.add_skip_keys);
  CHECK(config.minimum_allowed_channel_size == 32);
  CHECK(config.minimum_allowed_numel == 16384);
  CHECK_FALSE(config.use_quantized_matmul);
  CHECK(config.modules_to_not_convert.empty());
}

TEST_CASE("SdnqConfig to_json writes back what it read, unknown keys included", "[quant][config]") {
  const auto path = sdnq::test::data_dir() / "codecs" / "int8-qmm" / "quantization_config.json";
  std::ifstream file(path);
  const nlohmann::json original = nlohmann::json::parse(file);
  const SdnqConfig config = SdnqConfig::from_json(original, path.string());
  CHECK(config.use_quantized_matmul);
  CHECK(config.to_json() == original);
  CHECK(SdnqConfig::from_json(config.to_ordered_json(), "again").to_json() == original);
}

TEST_CASE("SdnqConfig keeps modules_dtype_dict in file order with ordered_json", "[quant][config]") {
  const auto json = nlohmann::ordered_json::parse(
      R"({"quant_method": "sdnq", "modules_dtype_dict": {"uint4": ["a.weight"], "int5": ["b"], "8bit": ["c"]},
          "modules_quant_config": {"blocks.0": {"weights_dtype": "int6", "group_size": 32}}})");
  const SdnqConfig config = SdnqConfig::from_json(json, "ordered");
  REQUIRE(config.modules_dtype_dict.size() == 3);
  CHECK(config.modules_dtype_dict[0].first == "uint4");
  CHECK(config.modules_dtype_dict[1].first == "int5");
  CHECK(config.modules_dtype_dict[2].first == "8bit");
  CHECK(config.modules_dtype_dict[2].second == std::vector<std::string>{"c"});
  REQUIRE(config.modules_quant_config.size() == 1);
  CHECK(config.modules_quant_config[0].second["group_size"] == 32);
  CHECK(config.to_ordered_json()["modules_dtype_dict"].begin().key() == "uint4");
}

TEST_CASE("SdnqConfig rejects keys of the wrong JSON type, naming key, source and expected type", "[quant][config]") {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* expected;
  };
  const Case cases[] = {
      {"group_size", "32", "integer"},          {"group_size", 32.5, "integer"},
      {"use_svd", 1, "boolean"},                {"weights_dtype", 4, "string"},
      {"modules_to_not_convert", "x", "list of strings"},
      {"modules_to_not_convert", nlohmann::json::array({1}), "list of strings"},
      {"modules_dtype_dict", nlohmann::json::array(), "object"},
      {"modules_quant_config", nlohmann::json{{"x", 1}}, "object"},
      {"modules_quant_config", nlohmann::json{{"x", {{"group_size", "8"}}}}, "integer"},
      {"dynamic_loss_threshold", "small", "number"},
      {"quantized_matmul_dtype", false, "string"},
  };
  for (const auto& c : cases) {
    nlohmann::json json{{"quant_method", "sdnq"}};
    json[c.key] = c.value;
    const std::string message = message_of<ConfigError>([&] { SdnqConfig::from_json(json, "folder/config.json"); });
    INFO(message);
    CHECK(contains(message, c.key));
    CHECK(contains(message, "folder/config.json"));
    CHECK(contains(message, c.expected));
  }
}

TEST_CASE("SdnqConfig rejects unknown weights and matmul dtypes", "[quant][config]") {
  const std::string weights = message_of<ConfigError>(
      [] { SdnqConfig::from_json(nlohmann::json{{"weights_dtype", "int4x"}}, "cfg.json"); });
  CHECK(contains(weights, "int4x"));
  CHECK(contains(weights, "cfg.json"));
  const std::string matmul = message_of<ConfigError>(
      [] { SdnqConfig::from_json(nlohmann::json{{"quantized_matmul_dtype", "uint4"}}, "cfg.json"); });
  CHECK(contains(matmul, "quantized_matmul_dtype"));
  CHECK(contains(matmul, "uint4"));
  // aliases are valid names
  CHECK(SdnqConfig::from_json(nlohmann::json{{"weights_dtype", "fp6"}}, "x").weights_dtype == "fp6");
}

TEST_CASE("SdnqConfig refuses quant_methods that are not SDNQ", "[quant][config]") {
  for (const char* method : {"quanto", "bitsandbytes", "gguf"}) {
    // the other keys are of the wrong type for SDNQ: the method must be judged first
    const nlohmann::json json{{"quant_method", method}, {"weights", "qint8"}, {"group_size", "x"}};
    const std::string message = message_of<UnsupportedError>([&] { SdnqConfig::from_json(json, "te/config.json"); });
    CHECK(contains(message, method));
    CHECK(contains(message, "not SDNQ"));
    CHECK(contains(message, "te/config.json"));
  }
  CHECK(SdnqConfig::from_json(nlohmann::json{{"quant_method", "sdnq_training"}}, "x").quant_method == "sdnq_training");
}

TEST_CASE("read_quantization_config falls back to quantization_config.json, and reports none", "[quant][config]") {
  const auto folder = std::filesystem::temp_directory_path() / "sdnq_test_config_folder";
  std::filesystem::remove_all(folder);
  std::filesystem::create_directories(folder);
  {
    std::ofstream(folder / "config.json") << R"({"_class_name": "SdnqProbe", "in_features": 8})";
  }
  CHECK_FALSE(sdnq::quant::read_quantization_config(folder).has_value());
  {
    std::ofstream(folder / "quantization_config.json") << R"({"quant_method": "sdnq", "weights_dtype": "uint4"})";
  }
  const auto config = sdnq::quant::read_quantization_config(folder);
  REQUIRE(config.has_value());
  CHECK(config->weights_dtype == "uint4");
  {
    std::ofstream(folder / "config.json") << R"({"quantization_config": {"quant_method": "quanto"}})";
  }
  const std::string message =
      message_of<UnsupportedError>([&] { sdnq::quant::read_quantization_config(folder); });
  CHECK(contains(message, "quanto"));
  CHECK(contains(message, "config.json"));
  {
    std::ofstream(folder / "config.json") << R"({"quantization_config": )";
  }
  const std::string broken = message_of<sdnq::FormatError>([&] { sdnq::quant::read_quantization_config(folder); });
  CHECK(contains(broken, "config.json"));
  std::filesystem::remove_all(folder);
}
