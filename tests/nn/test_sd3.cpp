// SD3Transformer2DModel against the reference fixtures (float32 compute, rel L2 < 1e-4 against
// output_fp32.output), plus the errors for bad configs, missing tensors and bad forward arguments.
// The copies in tests/data/models run everywhere (their pos_embed table is cut to the window the
// 16×16 input reads, see tests/data/models/sd3-bf16/README.md); every sd3-* case runs where the full
// fixtures are (../shared beside the checkout, or SDNQ_FIXTURES).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixture_paths.hpp"
#include "sdnq/io/detail/safetensors_writer.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/nn/models/sd3.hpp"
#include "sdnq_catch.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Tensor;
using sdnq::TensorView;
using sdnq::nn::SD3Transformer2DModel;

fs::path full_fixture_models() { return sdnq::test::reference_fixtures_dir() / "models"; }
using sdnq::test::cases_named;

void check_case(const fs::path& folder) {
  const sdnq::nn::ModelCaseResult result = sdnq::nn::run_model_case(folder);
  INFO(folder.filename().string());
  REQUIRE(result.outputs.size() == 1);
  INFO("output rel L2 " << result.outputs[0].rel_l2);
  CHECK(result.outputs[0].name == "output");
  CHECK(result.outputs[0].rel_l2 < 1e-4);
}

const fs::path bundled_bf16 = sdnq::test::data_dir() / "models" / "sd3-bf16";

// A copy of the bundled bf16 case in a fresh temporary folder, its config.json changed by `edit`.
template <class Edit>
fs::path copy_with_config(const std::string& name, Edit&& edit) {
  const fs::path folder = fs::temp_directory_path() / ("sdnq-test-sd3-" + name);
  fs::remove_all(folder);
  fs::create_directories(folder);
  for (const auto& entry : fs::directory_iterator(bundled_bf16))
    fs::copy_file(entry.path(), folder / entry.path().filename());
  nlohmann::json config = nlohmann::json::parse(std::ifstream(folder / "config.json"));
  edit(config);
  std::ofstream(folder / "config.json") << config.dump(2);
  return folder;
}

// Checks that `message` contains `part`, showing the message when it does not.
#define CHECK_MENTIONS(message, part)                       \
  do {                                                      \
    const std::string checked_message = (message);          \
    INFO(checked_message);                                  \
    CHECK(checked_message.find(part) != std::string::npos); \
  } while (0)

template <class Error>
std::string message_of(const auto& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  FAIL("no exception was thrown");
  return {};
}

// `x` [1, ...] repeated `copies` times along a new batch axis.
Tensor repeat_batch(const TensorView& x, std::int64_t copies) {
  sdnq::Shape shape = x.shape();
  shape[0] = copies;
  Tensor out = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < copies; ++i) std::memcpy(out.data_as<float>() + i * x.numel(), x.data(), x.nbytes());
  return out;
}

// A copy of the bundled bf16 case turned into an SD3.5-style checkpoint whose block 0 has dual
// attention: norm1 grows to 9 chunks (the first 6 as stored, then shift/scale/gate for attn2) and
// attn2 gets q/k/v projections and an output projection scaled by `out_scale` (0: attn2 adds nothing).
fs::path with_dual_attention_block(const std::string& name, float out_scale) {
  const fs::path folder = copy_with_config(name, [](auto& c) { c["dual_attention_layers"] = {0}; });
  const auto original = sdnq::io::SafetensorsFile::open(bundled_bf16 / "diffusion_pytorch_model.safetensors");
  constexpr std::int64_t dim = 64;
  const std::string norm1 = "transformer_blocks.0.norm1.linear";
  std::deque<Tensor> owned;  // stable addresses for the views written below
  const auto deterministic = [&](sdnq::Shape shape, float scale, int salt) -> const Tensor& {
    Tensor t = Tensor::empty(shape, DType::f32);
    for (std::int64_t i = 0; i < t.numel(); ++i)
      t.data_as<float>()[i] = scale * static_cast<float>(std::sin(0.61 * static_cast<double>(i) + salt));
    owned.push_back(std::move(t));
    return owned.back();
  };
  // norm1 with 9 chunks: the stored 6 first, so the first attention and the MLP see the same modulation.
  Tensor weight9 = Tensor::empty({9 * dim, dim}, DType::f32), bias9 = Tensor::empty({9 * dim}, DType::f32);
  const Tensor weight6 = sdnq::nn::detail::to_f32(original.tensor(norm1 + ".weight"), "norm1 weight");
  const Tensor bias6 = sdnq::nn::detail::to_f32(original.tensor(norm1 + ".bias"), "norm1 bias");
  const Tensor& extra_weight = deterministic({3 * dim, dim}, 0.05f, 1);
  const Tensor& extra_bias = deterministic({3 * dim}, 0.3f, 2);
  std::memcpy(weight9.data(), weight6.data(), weight6.nbytes());
  std::memcpy(static_cast<char*>(weight9.data()) + weight6.nbytes(), extra_weight.data(), extra_weight.nbytes());
  std::memcpy(bias9.data(), bias6.data(), bias6.nbytes());
  std::memcpy(static_cast<char*>(bias9.data()) + bias6.nbytes(), extra_bias.data(), extra_bias.nbytes());
  std::vector<sdnq::io::NamedTensor> tensors{{norm1 + ".weight", weight9}, {norm1 + ".bias", bias9}};
  int salt = 3;
  for (const char* projection : {"to_q", "to_k", "to_v", "to_out.0"}) {
    const float scale = std::string(projection) == "to_out.0" ? 0.2f * out_scale : 0.2f;
    const std::string prefix = std::string("transformer_blocks.0.attn2.") + projection;
    tensors.push_back({prefix + ".weight", deterministic({dim, dim}, scale, salt++)});
    tensors.push_back({prefix + ".bias", deterministic({dim}, scale, salt++)});
  }
  for (const auto& stored : original.names())
    if (stored.rfind(norm1, 0) != 0) tensors.push_back({stored, original.tensor(stored)});
  sdnq::io::write_safetensors(folder / "diffusion_pytorch_model.safetensors", tensors);
  return folder;
}

}  // namespace

TEST_CASE("SD3Transformer2DModel: dual attention reads chunks 6..8 and adds attn2 after the first attention",
          "[nn][sd3]") {
  const auto reference = sdnq::io::SafetensorsFile::open(bundled_bf16 / "reference.safetensors");
  const auto run = [&](const fs::path& folder) {
    const SD3Transformer2DModel model = SD3Transformer2DModel::load(folder);
    REQUIRE(model.config().dual_attention(0));
    return model.forward(reference.tensor("input.hidden_states"), reference.tensor("input.encoder_hidden_states"),
                         reference.tensor("input.pooled_projections"), reference.tensor("input.timestep"));
  };
  // attn2 with a zero output projection adds nothing: the 9-chunk modulation must leave chunks 0..5
  // where AdaLayerNormZero has them, and the output stays the reference's.
  const fs::path silent = with_dual_attention_block("dual-silent", 0.0f);
  CHECK(sdnq::nn::relative_l2(run(silent), reference.tensor("output_fp32.output")) < 1e-5);
  // With a live output projection the same checkpoint must change the output.
  const fs::path live = with_dual_attention_block("dual-live", 1.0f);
  CHECK(sdnq::nn::relative_l2(run(live), reference.tensor("output_fp32.output")) > 1e-3);
  fs::remove_all(silent);
  fs::remove_all(live);
}

TEST_CASE("SD3Transformer2DModel: the fixture copies in tests/data match the reference", "[nn][sd3][fixtures]") {
  const auto cases = cases_named(sdnq::test::data_dir() / "models", "sd3-");
  REQUIRE(cases.size() >= 2);
  for (const auto& folder : cases) check_case(folder);
}

TEST_CASE("SD3Transformer2DModel: every sd3-* case of the full reference fixtures, when present",
          "[nn][sd3][fixtures]") {
  const auto cases = cases_named(full_fixture_models(), "sd3-");
  if (cases.empty()) {
    WARN("reference fixtures not found at " << full_fixture_models().string() << "; ran the tests/data copies only");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, int8, uint4-svd, fp8, int8-qmm
  for (const auto& folder : cases) check_case(folder);
}

TEST_CASE("SD3Transformer2DModel: every sample of a batch gets its own conditioning", "[nn][sd3]") {
  const SD3Transformer2DModel model = SD3Transformer2DModel::load(bundled_bf16);
  const auto reference = sdnq::io::SafetensorsFile::open(bundled_bf16 / "reference.safetensors");
  const TensorView hidden = reference.tensor("input.hidden_states");
  const TensorView context = reference.tensor("input.encoder_hidden_states");
  const TensorView pooled = reference.tensor("input.pooled_projections");
  const TensorView expected = reference.tensor("output_fp32.output");
  // Sample 0 is the reference input; sample 1 has another timestep, so it must come out different.
  Tensor timesteps = Tensor::empty({2}, DType::f32);
  timesteps.data_as<float>()[0] = reference.tensor("input.timestep").data_as<const float>()[0];
  timesteps.data_as<float>()[1] = timesteps.data_as<float>()[0] * 0.5f + 3.0f;
  const Tensor out =
      model.forward(repeat_batch(hidden, 2), repeat_batch(context, 2), repeat_batch(pooled, 2), timesteps);
  REQUIRE(out.shape() == sdnq::Shape{2, 16, 16, 16});
  CHECK(sdnq::nn::relative_l2(out.view()[0], expected[0]) < 1e-4);
  CHECK(sdnq::nn::relative_l2(out.view()[1], expected[0]) > 1e-3);
}

TEST_CASE("SD3Transformer2DModel: config values it cannot run are refused by name", "[nn][sd3][errors]") {
  const std::vector<std::pair<std::string, nlohmann::json>> unsupported{
      {"qk_norm", "layer_norm"},
      {"pos_embed_max_size", nullptr},
      {"caption_projection_dim", 32},
      {"dual_attention_layers", {0, 5}},
  };
  for (const auto& [key, value] : unsupported) {
    const fs::path folder = copy_with_config("unsupported", [&](auto& c) { c[key] = value; });
    CHECK_MENTIONS(message_of<sdnq::UnsupportedError>([&] { SD3Transformer2DModel::load(folder); }), key);
    fs::remove_all(folder);
  }
  const fs::path wrong_class = copy_with_config("class", [](auto& c) { c["_class_name"] = "HunyuanDiT2DModel"; });
  CHECK_MENTIONS(message_of<sdnq::UnsupportedError>([&] { SD3Transformer2DModel::load(wrong_class); }),
                 "HunyuanDiT2DModel");
  fs::remove_all(wrong_class);
}

TEST_CASE("SD3Transformer2DModel: missing or mis-shaped tensors name the model and the tensor", "[nn][sd3][errors]") {
  // QK-norm asked for, but the checkpoint has no norm_q weights.
  const fs::path qk_norm = copy_with_config("qk", [](auto& c) { c["qk_norm"] = "rms_norm"; });
  const std::string missing_norm = message_of<sdnq::FormatError>([&] { SD3Transformer2DModel::load(qk_norm); });
  CHECK_MENTIONS(missing_norm, "SD3Transformer2DModel");
  CHECK_MENTIONS(missing_norm, "transformer_blocks.0.attn.norm_q.weight");

  // Three layers: block 1 is no longer the last one, so its text-stream norm must be AdaLayerNormZero (6·D
  // outputs), but the checkpoint holds the last block's AdaLayerNormContinuous (2·D).
  const fs::path more_layers = copy_with_config("more", [](auto& c) { c["num_layers"] = 3; });
  const std::string wrong_shape = message_of<sdnq::ShapeError>([&] { SD3Transformer2DModel::load(more_layers); });
  CHECK_MENTIONS(wrong_shape, "SD3Transformer2DModel");
  CHECK_MENTIONS(wrong_shape, "transformer_blocks.1.norm1_context.linear.weight");
  fs::remove_all(qk_norm);
  fs::remove_all(more_layers);
}

TEST_CASE("SD3Transformer2DModel: bad forward arguments are ShapeErrors naming the argument", "[nn][sd3][errors]") {
  const SD3Transformer2DModel model = SD3Transformer2DModel::load(bundled_bf16);
  const auto reference = sdnq::io::SafetensorsFile::open(bundled_bf16 / "reference.safetensors");
  const TensorView hidden = reference.tensor("input.hidden_states");           // [1, 16, 16, 16]
  const TensorView context = reference.tensor("input.encoder_hidden_states");  // [1, 6, 48]
  const TensorView pooled = reference.tensor("input.pooled_projections");      // [1, 32]
  const TensorView timestep = reference.tensor("input.timestep");              // [1]
  const auto forward_message = [&](const TensorView& h, const TensorView& c, const TensorView& p, const TensorView& t) {
    return message_of<sdnq::ShapeError>([&] { (void)model.forward(h, c, p, t); });
  };

  const Tensor odd_height = Tensor::zeros({1, 16, 15, 16}, DType::f32);
  const std::string patch_message = forward_message(odd_height, context, pooled, timestep);
  CHECK_MENTIONS(patch_message, "SD3Transformer2DModel.forward: hidden_states");
  CHECK_MENTIONS(patch_message, "patch_size 2");
  CHECK_MENTIONS(forward_message(hidden.reshaped({16, 16, 16}), context, pooled, timestep), "hidden_states");
  const Tensor wrong_channels = Tensor::zeros({1, 4, 16, 16}, DType::f32);
  CHECK_MENTIONS(forward_message(wrong_channels, context, pooled, timestep), "in_channels");
  const Tensor too_large = Tensor::zeros({1, 16, 18, 18}, DType::f32);  // 9×9 patches, table 8×8
  CHECK_MENTIONS(forward_message(too_large, context, pooled, timestep), "pos_embed_max_size");
  const Tensor wrong_batch = Tensor::zeros({2, 6, 48}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, wrong_batch, pooled, timestep), "encoder_hidden_states");
  CHECK_MENTIONS(forward_message(hidden, context.reshaped({6, 48}), pooled, timestep), "encoder_hidden_states");
  const Tensor wrong_pooled = Tensor::zeros({1, 48}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, context, wrong_pooled, timestep), "pooled_projections");
  const Tensor three_timesteps = Tensor::zeros({3}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, context, pooled, three_timesteps), "timestep");
  const Tensor f64_hidden = Tensor::zeros({1, 16, 16, 16}, DType::f64);
  CHECK_MENTIONS(forward_message(f64_hidden, context, pooled, timestep), "hidden_states");
}
