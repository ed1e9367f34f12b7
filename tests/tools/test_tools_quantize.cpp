// sdnq-quantize's library functions (sdnq/tools/quantize_model.hpp): output in the reference's layout
// (compared with the reference fixtures of the same settings), loadable through quant::SdnqCheckpoint
// within the quantizer's error, pipelines with copied files, dry runs, overwrite rules, bad input.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/quant/checkpoint.hpp"
#include "sdnq/quant/dynamic.hpp"
#include "sdnq/tools/inspect.hpp"
#include "sdnq/tools/quantize_arguments.hpp"
#include "sdnq/tools/quantize_model.hpp"
#include "sdnq_catch.hpp"

namespace {

namespace fs = std::filesystem;
using namespace sdnq;

struct TempFolder {
  fs::path path;
  TempFolder() {
    path = fs::temp_directory_path() / fmt::format("sdnq-tools-test-{}-{}", ::getpid(), counter()++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempFolder() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  static int& counter() {
    static int value = 0;
    return value;
  }
};

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// Gaussian noise plus, for 2-D shapes, a strong rank-1 part (trained weights have a few large
// singular values; that is what the SVD branch takes out before quantizing).
Tensor random_bf16(const Shape& shape, std::uint32_t seed) {
  Tensor tensor = Tensor::empty(shape, DType::bf16);
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const std::int64_t rows = shape[0], columns = tensor.numel() / rows;
  std::vector<float> left(static_cast<std::size_t>(rows)), right(static_cast<std::size_t>(columns));
  for (auto& value : left) value = normal(generator) * 10;
  for (auto& value : right) value = normal(generator) * 10;
  const bool low_rank = shape.rank() == 2;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < columns; ++c)
      tensor.data_as<bf16>()[r * columns + c] = bf16(normal(generator) + (low_rank ? left[r] * right[c] : 0.0f));
  return tensor;
}

double relative_error(TensorView approximation, TensorView original) {
  double error = 0, norm = 0;
  for (std::int64_t i = 0; i < original.numel(); ++i) {
    const double a = quant::detail::load_float_from(approximation.dtype(), approximation.data(), i);
    const double o = quant::detail::load_float_from(original.dtype(), original.data(), i);
    error += (a - o) * (a - o);
    norm += o * o;
  }
  return std::sqrt(error / norm);
}

// A dense transformer-like component: two Linears, a bias, a norm, a Conv2d and a positional embedding.
void write_dense_component(const fs::path& folder) {
  fs::create_directories(folder);
  write_text(folder / "config.json", R"({"_class_name": "ToyTransformer2DModel", "hidden": 128})");
  const Tensor q = random_bf16(Shape{192, 256}, 1), out = random_bf16(Shape{128, 192}, 2), bias = random_bf16(Shape{192}, 3),
               norm = random_bf16(Shape{256}, 4), conv = random_bf16(Shape{64, 32, 3, 3}, 5),
               embedding = random_bf16(Shape{512, 64}, 6);
  io::write_safetensors(folder / "diffusion_pytorch_model.safetensors",
                        {{"blocks.0.attn.to_q.weight", q.view()},
                         {"blocks.0.attn.to_q.bias", bias.view()},
                         {"blocks.0.attn.to_out.weight", out.view()},
                         {"blocks.0.norm.weight", norm.view()},
                         {"conv_in.weight", conv.view()},
                         {"pos_embedding.weight", embedding.view()}},
                        {{"format", "pt"}});
}

tools::QuantizeRequest uint4_request(std::int64_t svd_rank) {
  tools::QuantizeRequest request;
  request.config.weights_dtype = "uint4";
  request.config.use_svd = svd_rank > 0;
  if (svd_rank > 0) request.config.svd_rank = svd_rank;
  request.interactive_progress = false;
  return request;
}

// The request sdnq-quantize makes of these command-line arguments (argv[0] added).
tools::QuantizeRequest request_of(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), "sdnq-quantize");
  std::vector<const char*> argv;
  for (const auto& argument : arguments) argv.push_back(argument.c_str());
  const auto parsed = tools::parse_arguments(static_cast<int>(argv.size()), argv.data(), tools::quantize_option_spec());
  tools::QuantizeRequest request = tools::quantize_request_from(parsed);
  request.interactive_progress = false;
  return request;
}

std::set<std::string> names_of(const io::Checkpoint& checkpoint) {
  return {checkpoint.names().begin(), checkpoint.names().end()};
}

}  // namespace

TEST_CASE("sdnq-quantize writes the reference's keys, dtypes and shapes for fixture cases of the same settings",
          "[tools][quantize]") {
  std::vector<fs::path> cases = {test::data_dir() / "quantize/int8", test::data_dir() / "quantize/int4-g32"};
  const fs::path shared_uint4 = test::data_dir() / "../../../shared/fixtures/sdnq-reference/codecs/uint4";
  if (fs::exists(shared_uint4 / "reference.safetensors")) cases.push_back(shared_uint4);
  for (const auto& fixture_folder : cases) {
    INFO("fixture " << fixture_folder.string());
    TempFolder temp;
    // The fixture's dense source: its original weight and bias, its config without the quantization.
    const io::Checkpoint fixture = io::open_checkpoint(fixture_folder / "diffusion_pytorch_model.safetensors");
    const io::SafetensorsFile reference = io::SafetensorsFile::open(fixture_folder / "reference.safetensors");
    nlohmann::ordered_json config = tools::read_component_config(fixture_folder);
    const quant::SdnqConfig fixture_config =
        quant::SdnqConfig::from_json(config["quantization_config"], fixture_folder.string());
    config.erase("quantization_config");
    const fs::path source = temp.path / "dense";
    fs::create_directories(source);
    write_text(source / "config.json", config.dump(2));
    std::vector<io::NamedTensor> dense = {{"linear.weight", reference.tensor("original.linear.weight")}};
    if (fixture.contains("linear.bias")) dense.push_back({"linear.bias", fixture.tensor("linear.bias")});
    io::write_safetensors(source / "diffusion_pytorch_model.safetensors", dense, {{"format", "pt"}});

    tools::QuantizeRequest request;
    request.config = fixture_config;
    request.interactive_progress = false;
    tools::quantize_model(source.string(), temp.path / "out", request);

    const io::Checkpoint ours = io::open_checkpoint(temp.path / "out");
    REQUIRE(names_of(ours) == names_of(fixture));
    for (const auto& name : fixture.names()) {
      INFO("tensor " << name);
      CHECK(ours.info(name).dtype == fixture.info(name).dtype);
      CHECK(ours.info(name).shape == fixture.info(name).shape);
    }
    CHECK(ours.metadata() == fixture.metadata());
    // int8 / int4 are deterministic: the scales match exactly and the codes but for rare ties.
    const auto scale = ours.tensor("linear.scale"), fixture_scale = fixture.tensor("linear.scale");
    CHECK(std::memcmp(scale.data(), fixture_scale.data(), scale.nbytes()) == 0);
    const auto weight = ours.tensor("linear.weight"), fixture_weight = fixture.tensor("linear.weight");
    std::int64_t differing_bytes = 0;
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(weight.nbytes()); ++i)
      differing_bytes += static_cast<const std::uint8_t*>(weight.data())[i] !=
                         static_cast<const std::uint8_t*>(fixture_weight.data())[i];
    CHECK(differing_bytes * 1000 <= static_cast<std::int64_t>(weight.nbytes()));
    // Both config files, as the reference writes them, with the same weights_dtype.
    const auto written = quant::read_quantization_config(temp.path / "out");
    REQUIRE(written.has_value());
    CHECK(written->weights_dtype == fixture_config.weights_dtype);
    CHECK(fs::exists(temp.path / "out/quantization_config.json"));
    CHECK(tools::read_component_config(temp.path / "out")["_class_name"] == config["_class_name"]);
  }
}

TEST_CASE("sdnq-quantize output of a pipeline loads through SdnqCheckpoint within the quantizer's error",
          "[tools][quantize]") {
  TempFolder temp;
  const fs::path pipeline = temp.path / "pipeline";
  write_text(pipeline / "model_index.json",
             R"({"_class_name": "ToyPipeline", "transformer": ["diffusers", "ToyTransformer2DModel"],)"
             R"( "text_encoder": ["transformers", "ToyEncoder"], "tokenizer": ["transformers", "ToyTokenizer"],)"
             R"( "scheduler": ["diffusers", "ToyScheduler"], "safety_checker": [null, null]})");
  write_dense_component(pipeline / "transformer");
  write_dense_component(pipeline / "text_encoder");
  write_text(pipeline / "tokenizer/vocab.json", R"({"a": 0})");
  write_text(pipeline / "scheduler/scheduler_config.json", R"({"_class_name": "ToyScheduler"})");
  write_text(pipeline / "assets/preview.txt", "not a component");

  tools::QuantizeRequest request = uint4_request(8);
  request.components = {"transformer"};
  const auto result = tools::quantize_model(pipeline.string(), temp.path / "out", request);
  const fs::path out = temp.path / "out";
  CHECK_FALSE(fs::exists(temp.path / "out.partial"));
  CHECK(fs::exists(out / "model_index.json"));
  CHECK(fs::exists(out / "tokenizer/vocab.json"));
  CHECK(fs::exists(out / "scheduler/scheduler_config.json"));
  CHECK(fs::exists(out / "assets/preview.txt"));
  CHECK_FALSE(quant::read_quantization_config(out / "text_encoder").has_value());  // copied dense
  REQUIRE(result.components.size() == 4);

  const auto checkpoint = quant::SdnqCheckpoint::open(out / "transformer");
  CHECK(checkpoint.config().weights_dtype == "uint4");
  CHECK(checkpoint.config().use_svd);
  const io::Checkpoint source = io::open_checkpoint(pipeline / "transformer");
  double error_with_svd = 0;
  for (const char* prefix : {"blocks.0.attn.to_q", "blocks.0.attn.to_out"}) {
    INFO("layer " << prefix);
    const std::string weight_name = std::string(prefix) + ".weight";
    REQUIRE(checkpoint.is_quantized(prefix, quant::LayerKind::linear));
    const TensorView original = source.tensor(weight_name);
    const auto layer = checkpoint.quantized_weight(prefix, quant::LayerKind::linear, original.shape());
    CHECK(layer.layout.svd_rank == 8);
    const Tensor dense = quant::dequantize(layer, DType::bf16, quant::ScalePrecision::reference_compatible);
    // The same weight quantized by quant::quantize_weight without SVD is the bound: SVD only helps.
    auto options = quant::resolve_layer_options(checkpoint.config(), weight_name, quant::LayerKind::linear);
    options.use_svd = false;
    const auto plain = quant::quantize_weight(original, quant::LayerKind::linear, options, DType::bf16);
    const double plain_error = relative_error(
        quant::dequantize(plain.view(), DType::bf16, quant::ScalePrecision::reference_compatible), original);
    error_with_svd = relative_error(dense, original);
    INFO("relative error with SVD " << error_with_svd << ", without " << plain_error);
    CHECK(error_with_svd < plain_error);
    CHECK(error_with_svd < 0.5 * plain_error);  // the rank-1 part no longer stretches the groups' ranges
  }
  // Dense by rule: the bias and norm (not 2-D weights), the Conv2d (quant_conv off), the embedding.
  for (const char* name : {"blocks.0.attn.to_q.bias", "blocks.0.norm.weight", "conv_in.weight", "pos_embedding.weight"}) {
    INFO("tensor " << name);
    CHECK(checkpoint.tensor(name).dtype() == DType::bf16);
    CHECK(std::memcmp(checkpoint.tensor(name).data(), source.tensor(name).data(), source.info(name).nbytes()) == 0);
  }
  const auto& not_converted = checkpoint.config().modules_to_not_convert;
  CHECK(std::find(not_converted.begin(), not_converted.end(), "conv_in.weight") != not_converted.end());
  CHECK(std::find(not_converted.begin(), not_converted.end(), "pos_embedding.weight") != not_converted.end());
  CHECK_FALSE(checkpoint.is_quantized("conv_in", quant::LayerKind::conv2d));

  // sdnq-inspect on the result: the transformer's two uint4 layers with rank 8, the encoder dense.
  const tools::ModelReport report = tools::inspect_model(out.string());
  REQUIRE(report.kind == tools::SourceKind::pipeline);
  const auto& transformer = *std::find_if(report.components.begin(), report.components.end(),
                                          [](const auto& c) { return c.name == "transformer"; });
  CHECK(transformer.is_sdnq());
  CHECK(transformer.class_name == "ToyTransformer2DModel");
  CHECK(transformer.layers_by_type == std::map<std::string, std::int64_t>{{"uint4", 2}});
  CHECK(transformer.layers_by_svd_rank == std::map<std::int64_t, std::int64_t>{{8, 2}});
  // Dense equivalent: every parameter as bf16, counted independently from the source shapes.
  std::uint64_t dense_bytes = 0;
  for (const auto& name : source.names()) dense_bytes += static_cast<std::uint64_t>(source.info(name).shape.numel()) * 2;
  CHECK(transformer.dense_bf16_bytes == dense_bytes);
  CHECK(transformer.bytes_on_disk == fs::file_size(out / "transformer/diffusion_pytorch_model.safetensors"));
  const auto& encoder = *std::find_if(report.components.begin(), report.components.end(),
                                      [](const auto& c) { return c.name == "text_encoder"; });
  CHECK(encoder.quantization_summary() == "not quantized");
}

TEST_CASE("sdnq-quantize dry runs write nothing and plan the sizes a real run writes", "[tools][quantize]") {
  TempFolder temp;
  write_dense_component(temp.path / "transformer");
  tools::QuantizeRequest request = uint4_request(8);
  request.dry_run = true;
  const auto plan = tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request);
  CHECK_FALSE(fs::exists(temp.path / "out"));
  CHECK_FALSE(fs::exists(temp.path / "out.partial"));
  REQUIRE(plan.components.size() == 1);
  REQUIRE(plan.components[0].layers.size() == 2);
  CHECK(plan.components[0].layers[0].weights_type == "uint4");
  CHECK(tools::describe_plan(plan).find("blocks.0.attn.to_q Linear uint4") != std::string::npos);

  request.dry_run = false;
  const auto done = tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request);
  const io::Checkpoint written = io::open_checkpoint(temp.path / "out");
  std::uint64_t tensor_bytes = 0;
  for (const auto& name : written.names()) tensor_bytes += written.info(name).nbytes();
  CHECK(plan.components[0].output_tensor_bytes == tensor_bytes);
  CHECK(done.components[0].output_tensor_bytes == tensor_bytes);
  for (const auto& layer : plan.components[0].layers) {
    std::uint64_t layer_bytes = 0;
    for (const char* suffix : {".weight", ".scale", ".zero_point", ".svd_up", ".svd_down"})
      if (written.contains(layer.name + suffix)) layer_bytes += written.info(layer.name + suffix).nbytes();
    CHECK(layer.stored_bytes == layer_bytes);
  }
}

TEST_CASE("sdnq-quantize refuses to overwrite without --overwrite and replaces with it", "[tools][quantize]") {
  TempFolder temp;
  write_dense_component(temp.path / "transformer");
  write_text(temp.path / "out/keep.txt", "precious");
  tools::QuantizeRequest request = uint4_request(0);
  CHECK_THROWS_AS(tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request), IoError);
  CHECK(fs::exists(temp.path / "out/keep.txt"));
  CHECK_FALSE(fs::exists(temp.path / "out.partial"));
  request.overwrite = true;
  tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request);
  CHECK_FALSE(fs::exists(temp.path / "out/keep.txt"));
  CHECK(quant::SdnqCheckpoint::open(temp.path / "out").config().weights_dtype == "uint4");
  CHECK_FALSE(fs::exists(temp.path / "out.previous"));
}

TEST_CASE("sdnq-quantize rejects bad input with typed errors naming it", "[tools][quantize]") {
  TempFolder temp;
  tools::QuantizeRequest request = uint4_request(0);
  try {
    tools::quantize_model((temp.path / "missing").string(), temp.path / "out", request);
    FAIL("no error for a missing folder");
  } catch (const IoError& error) {
    CHECK(std::string(error.what()).find("missing: no such file or folder") != std::string::npos);
  }
  // Already quantized input: the fixture component.
  try {
    tools::quantize_model((test::data_dir() / "models/flux-uint4-svd").string(), temp.path / "out", request);
    FAIL("no error for quantized input");
  } catch (const FormatError& error) {
    CHECK(std::string(error.what()).find("already quantized") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(temp.path / "out"));
  CHECK_FALSE(fs::exists(temp.path / "out.partial"));
  write_dense_component(temp.path / "pipeline/transformer");
  write_text(temp.path / "pipeline/model_index.json", R"({"transformer": ["diffusers", "ToyTransformer2DModel"]})");
  request.components = {"unet"};
  try {
    tools::quantize_model((temp.path / "pipeline").string(), temp.path / "out", request);
    FAIL("no error for an unknown component");
  } catch (const ConfigError& error) {
    CHECK(std::string(error.what()).find("no component \"unet\"") != std::string::npos);
    CHECK(std::string(error.what()).find("transformer") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(temp.path / "out.partial"));
}

TEST_CASE("sdnq-quantize options: --config is the base, given options replace its values and add to its lists",
          "[tools][quantize]") {
  TempFolder temp;
  write_text(temp.path / "base.json", R"({"quantization_config": {"quant_method": "sdnq", "weights_dtype": "uint4",
      "group_size": 32, "use_svd": true, "svd_rank": 8, "use_hadamard": true, "modules_to_not_convert": ["conv_in"],
      "modules_dtype_dict": {"int8": ["to_out"]}, "modules_quant_config": {"to_q": {"group_size": 64}}}})");
  const std::string base = (temp.path / "base.json").string();
  const tools::QuantizeRequest kept = request_of({"--config", base});
  CHECK(kept.config.weights_dtype == "uint4");
  CHECK(kept.config.group_size == 32);
  CHECK(kept.config.use_svd);
  CHECK(kept.config.svd_rank == 8);
  CHECK(kept.config.use_hadamard);  // not reset by the absent --hadamard
  CHECK(kept.config.modules_quant_config.size() == 1);

  std::vector<std::string> arguments = {"--config", base, "--type", "int5", "--group-size", "64"};
  arguments.insert(arguments.end(), {"--skip", "to_q,blocks.1", "--no-matmul", "proj_out"});
  arguments.insert(arguments.end(), {"--module-types", "uint8=pos_embedding;int8=ff.net.2"});
  arguments.insert(arguments.end(), {"--quantized-matmul-dtype", "int8", "--scales-in-model-dtype"});
  arguments.insert(arguments.end(), {"--dynamic", "--dynamic-loss-threshold", "0.01", "--codebook-steps", "5"});
  arguments.insert(arguments.end(), {"--hadamard-group-size", "128"});
  const tools::QuantizeRequest changed = request_of(arguments);
  const quant::SdnqConfig& config = changed.config;
  CHECK(config.weights_dtype == "int5");
  CHECK(config.group_size == 64);
  CHECK(config.svd_rank == 8);
  CHECK(config.modules_to_not_convert == std::vector<std::string>{"conv_in", "to_q", "blocks.1"});
  CHECK(config.modules_to_not_use_matmul == std::vector<std::string>{"proj_out"});
  REQUIRE(config.modules_dtype_dict.size() == 2);  // int8 extended, uint8 added after it: the file's order first
  CHECK(config.modules_dtype_dict[0].first == "int8");
  CHECK(config.modules_dtype_dict[0].second == std::vector<std::string>{"to_out", "ff.net.2"});
  CHECK(config.modules_dtype_dict[1].first == "uint8");
  CHECK(config.modules_dtype_dict[1].second == std::vector<std::string>{"pos_embedding"});
  CHECK(config.quantized_matmul_dtype == std::optional<std::string>("int8"));
  CHECK_FALSE(config.dequantize_fp32);
  CHECK(config.use_dynamic_quantization);
  CHECK(config.dynamic_loss_threshold == std::optional<double>(0.01));
  CHECK(config.codebook_steps == 5);
  CHECK(config.hadamard_group_size == 128);
}

TEST_CASE("sdnq-quantize options: bad values and bad --config files are errors naming them", "[tools][quantize]") {
  TempFolder temp;
  const auto message_of = [](const std::vector<std::string>& arguments) -> std::string {
    try {
      request_of(arguments);
    } catch (const Error& error) {
      return error.what();
    }
    return "no error";
  };
  const auto usage_error = [&](const std::vector<std::string>& arguments, const std::string& expected) {
    INFO(fmt::format("{}", fmt::join(arguments, " ")));
    CHECK_THROWS_AS(request_of(arguments), tools::UsageError);
    CHECK(message_of(arguments).find(expected) != std::string::npos);
  };
  usage_error({"--group-size", "32"}, "--type is required");
  usage_error({"--type", "int9000"}, "--type \"int9000\" is not an SDNQ storage type");
  usage_error({"--type", "int8", "--module-types", "bogus=to_q"}, "--module-types \"bogus\"");
  usage_error({"--type", "int8", "--module-types", "to_q"}, "expected TYPE=pattern");
  usage_error({"--type", "int8", "--module-types", "int8="}, "int8 names no module pattern");
  usage_error({"--type", "int8", "--quantized-matmul-dtype", "int3x"}, "--quantized-matmul-dtype");
  usage_error({"--type", "int8", "--dynamic-loss-threshold", "0.1"}, "needs --dynamic");
  usage_error({"--type", "int8", "--dynamic", "--dynamic-loss-threshold", "-1"}, "a number >= 0");
  usage_error({"--type", "int8", "--dynamic", "--dynamic-loss-threshold", "0.1x"}, "a number >= 0");

  const std::string missing = (temp.path / "missing.json").string();
  CHECK_THROWS_AS(request_of({"--config", missing}), IoError);
  CHECK(message_of({"--config", missing}).find("missing.json") != std::string::npos);
  write_text(temp.path / "broken.json", R"({"weights_dtype": "int8",)");
  CHECK_THROWS_AS(request_of({"--config", (temp.path / "broken.json").string()}), ConfigError);
  CHECK(message_of({"--config", (temp.path / "broken.json").string()}).find("broken.json: not valid JSON") !=
        std::string::npos);
  write_text(temp.path / "list.json", "[1, 2]");
  CHECK_THROWS_AS(request_of({"--config", (temp.path / "list.json").string()}), ConfigError);
  write_text(temp.path / "gguf.json", R"({"quant_method": "gguf"})");
  CHECK_THROWS_AS(request_of({"--config", (temp.path / "gguf.json").string()}), UnsupportedError);
  CHECK(message_of({"--config", (temp.path / "gguf.json").string()})
            .find("gguf.json: quant_method \"gguf\" is not "
                  "SDNQ; sdnq-quantize writes SDNQ") != std::string::npos);
  write_text(temp.path / "typed.json", R"({"weights_dtype": "int8", "group_size": "64"})");
  CHECK_THROWS_AS(request_of({"--config", (temp.path / "typed.json").string()}), ConfigError);
}

TEST_CASE("sdnq-quantize per-module options: a dtype for some layers, others left dense, loaded as written",
          "[tools][quantize]") {
  TempFolder temp;
  write_dense_component(temp.path / "transformer");
  const tools::QuantizeRequest request =
      request_of({"--type", "uint4", "--module-types", "int8=to_out", "--skip", "to_q", "--no-skip-keys"});
  tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request);
  const auto written = quant::SdnqCheckpoint::open(temp.path / "out");
  const io::Checkpoint source = io::open_checkpoint(temp.path / "transformer");
  CHECK_FALSE(written.is_quantized("blocks.0.attn.to_q", quant::LayerKind::linear));
  CHECK(written.tensor("blocks.0.attn.to_q.weight").dtype() == DType::bf16);
  CHECK(relative_error(written.tensor("blocks.0.attn.to_q.weight"), source.tensor("blocks.0.attn.to_q.weight")) == 0);
  REQUIRE(written.is_quantized("blocks.0.attn.to_out", quant::LayerKind::linear));
  CHECK(written.layer_options("blocks.0.attn.to_out", quant::LayerKind::linear).weights_type->name == "int8");
  CHECK(written.tensor("blocks.0.attn.to_out.weight").dtype() == DType::i8);
  const quant::QuantizedWeight out =
      written.quantized_weight("blocks.0.attn.to_out", quant::LayerKind::linear, Shape{128, 192});
  CHECK(relative_error(quant::dequantize(out, DType::f32, quant::ScalePrecision::reference_compatible).view(),
                       source.tensor("blocks.0.attn.to_out.weight")) < 0.02);
}

// Dynamic quantization through the tool: each layer gets the dtype quant::choose_dynamic_dtype picks
// for it (the same bytes), the written config makes a loader resolve that dtype, a dry run plans what
// the real run writes, and with a threshold nothing reaches the layers stay dense.
TEST_CASE("sdnq-quantize --dynamic: the dtype the search picks per layer, recorded for loaders", "[tools][quantize]") {
  TempFolder temp;
  write_dense_component(temp.path / "transformer");
  const io::Checkpoint source = io::open_checkpoint(temp.path / "transformer");
  tools::QuantizeRequest request =
      request_of({"--type", "uint2", "--dynamic", "--dynamic-loss-threshold", "0.02", "--no-skip-keys", "--dry-run"});
  const auto plan = tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request);
  CHECK_FALSE(fs::exists(temp.path / "out"));
  request.dry_run = false;
  const auto done = tools::quantize_model((temp.path / "transformer").string(), temp.path / "out", request);
  REQUIRE(done.components.size() == 1);
  CHECK(plan.components[0].output_tensor_bytes == done.components[0].output_tensor_bytes);
  const auto written = quant::SdnqCheckpoint::open(temp.path / "out");
  std::set<std::string> chosen;
  for (const char* prefix : {"blocks.0.attn.to_q", "blocks.0.attn.to_out"}) {
    INFO(prefix);
    const std::string name = std::string(prefix) + ".weight";
    const quant::LayerOptions options = quant::resolve_layer_options(request.config, name, quant::LayerKind::linear);
    quant::QuantizeControls controls;
    controls.layer_name = prefix;
    const quant::DynamicChoice expected = quant::choose_dynamic_dtype(source.tensor(name), quant::LayerKind::linear,
                                                                      options, DType::bf16, 0.02, controls);
    REQUIRE(expected.weights_dtype.has_value());
    CHECK(expected.loss <= 0.02);
    chosen.insert(*expected.weights_dtype);
    CHECK(written.layer_options(prefix, quant::LayerKind::linear).weights_type->name == *expected.weights_dtype);
    const TensorView stored = written.tensor(name), want = expected.tensors->weight.view();
    REQUIRE(stored.shape() == want.shape());
    REQUIRE(stored.nbytes() == want.nbytes());
    CHECK(std::memcmp(stored.data(), want.data(), stored.nbytes()) == 0);
  }
  CHECK_FALSE(chosen.contains("uint2"));  // the rank-1 part makes 2 bits too coarse for 0.02

  // Threshold 0: no candidate of the ladder reproduces these weights exactly (checked), so none is taken.
  {
    const std::string name = "blocks.0.attn.to_q.weight";
    quant::QuantizeControls controls;
    controls.layer_name = "blocks.0.attn.to_q";
    REQUIRE_FALSE(
        quant::choose_dynamic_dtype(source.tensor(name), quant::LayerKind::linear,
                                    quant::resolve_layer_options(request.config, name, quant::LayerKind::linear),
                                    DType::bf16, 0.0, controls)
            .weights_dtype.has_value());
  }
  request = request_of({"--type", "uint2", "--dynamic", "--dynamic-loss-threshold", "0", "--no-skip-keys"});
  const auto dense = tools::quantize_model((temp.path / "transformer").string(), temp.path / "dense", request);
  const auto kept = quant::SdnqCheckpoint::open(temp.path / "dense");
  CHECK_FALSE(kept.is_quantized("blocks.0.attn.to_q", quant::LayerKind::linear));
  CHECK(kept.tensor("blocks.0.attn.to_q.weight").dtype() == DType::bf16);
  CHECK(dense.components[0].layers.empty());
  const auto& skipped = dense.components[0].skipped;
  CHECK(std::count_if(skipped.begin(), skipped.end(), [](const std::string& reason) {
          return reason.find("(dynamic quantization: no dtype within the loss threshold)") != std::string::npos;
        }) == 2);
}

TEST_CASE("infer_layer_kind: 2-D Linear or Embedding by module name, 3/4/5-D convolutions", "[tools][quantize]") {
  using quant::LayerKind;
  CHECK(tools::infer_layer_kind("blocks.0.attn.to_q.weight", Shape{8, 8}) == LayerKind::linear);
  CHECK(tools::infer_layer_kind("text_model.embeddings.token_embedding.weight", Shape{8, 8}) == LayerKind::embedding);
  CHECK(tools::infer_layer_kind("encoder.embed_tokens.weight", Shape{8, 8}) == LayerKind::embedding);
  CHECK(tools::infer_layer_kind("shared.weight", Shape{8, 8}) == LayerKind::embedding);
  CHECK(tools::infer_layer_kind("conv_in.weight", Shape{8, 4, 3, 3}) == LayerKind::conv2d);
  CHECK(tools::infer_layer_kind("conv.weight", Shape{8, 4, 3}) == LayerKind::conv1d);
  CHECK_FALSE(tools::infer_layer_kind("norm.weight", Shape{8}).has_value());
  CHECK_FALSE(tools::infer_layer_kind("to_q.bias", Shape{8, 8}).has_value());
}
