// FluxTransformer2DModel against the reference fixtures (float32 compute, rel L2 < 1e-4 against
// output_fp32.output), plus the errors for bad configs, missing tensors and bad forward arguments.
// The copies in tests/data/models run everywhere; every flux-* case runs where the full fixtures are
// (../shared beside the checkout, or SDNQ_FIXTURES).
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/io/safetensors.hpp"
#include "sdnq/nn/models/flux.hpp"
#include "sdnq_catch.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Tensor;
using sdnq::nn::FluxTransformer2DModel;

fs::path full_fixture_models() {
  const char* configured = std::getenv("SDNQ_FIXTURES");
  const fs::path root =
      configured != nullptr ? fs::path(configured) : sdnq::test::data_dir() / "../../../shared/fixtures/sdnq-reference";
  return root / "models";
}

std::vector<fs::path> cases_named(const fs::path& folder, const std::string& prefix) {
  std::vector<fs::path> cases;
  if (!fs::exists(folder)) return cases;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

void check_case(const fs::path& folder) {
  const sdnq::nn::ModelCaseResult result = sdnq::nn::run_model_case(folder);
  INFO(folder.filename().string());
  REQUIRE(result.outputs.size() == 1);
  INFO("output rel L2 " << result.outputs[0].rel_l2);
  CHECK(result.outputs[0].name == "output");
  CHECK(result.outputs[0].rel_l2 < 1e-4);
}

const fs::path bundled_bf16 = sdnq::test::data_dir() / "models" / "flux-bf16";

// A copy of the bundled bf16 case in a fresh temporary folder, its config.json changed by `edit`.
template <class Edit>
fs::path copy_with_config(const std::string& name, Edit&& edit) {
  const fs::path folder = fs::temp_directory_path() / ("sdnq-test-flux-" + name);
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

}  // namespace

TEST_CASE("FluxTransformer2DModel: the fixture copies in tests/data match the reference", "[nn][flux][fixtures]") {
  const auto cases = cases_named(sdnq::test::data_dir() / "models", "flux-");
  REQUIRE(cases.size() >= 2);
  for (const auto& folder : cases) check_case(folder);
}

TEST_CASE("FluxTransformer2DModel: every flux-* case of the full reference fixtures, when present",
          "[nn][flux][fixtures]") {
  const auto cases = cases_named(full_fixture_models(), "flux-");
  if (cases.empty()) {
    WARN("reference fixtures not found at " << full_fixture_models().string() << "; ran the tests/data copies only");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, int8, uint4-svd, fp8, int8-qmm
  for (const auto& folder : cases) check_case(folder);
}

TEST_CASE("FluxTransformer2DModel: config values it cannot run are refused by name", "[nn][flux][errors]") {
  const fs::path wrong_class = copy_with_config("class", [](auto& c) { c["_class_name"] = "FluxKontextModel"; });
  CHECK_MENTIONS(message_of<sdnq::UnsupportedError>([&] { FluxTransformer2DModel::load(wrong_class); }),
                 "FluxKontextModel");

  const fs::path wrong_rope = copy_with_config("rope", [](auto& c) { c["axes_dims_rope"] = {4, 6, 8}; });
  CHECK_MENTIONS(message_of<sdnq::UnsupportedError>([&] { FluxTransformer2DModel::load(wrong_rope); }),
                 "axes_dims_rope");

  const fs::path wrong_type = copy_with_config("type", [](auto& c) { c["num_layers"] = "two"; });
  CHECK_MENTIONS(message_of<sdnq::ConfigError>([&] { FluxTransformer2DModel::load(wrong_type); }), "num_layers");
  for (const auto& folder : {wrong_class, wrong_rope, wrong_type}) fs::remove_all(folder);
}

TEST_CASE("FluxTransformer2DModel: missing and unused tensors name the model and the tensor", "[nn][flux][errors]") {
  // One layer more than the checkpoint holds: the third block's weights are missing.
  const fs::path more_layers = copy_with_config("more", [](auto& c) { c["num_layers"] = 3; });
  const std::string missing = message_of<sdnq::FormatError>([&] { FluxTransformer2DModel::load(more_layers); });
  CHECK_MENTIONS(missing, "FluxTransformer2DModel");
  CHECK_MENTIONS(missing, "transformer_blocks.2.");

  // One single block fewer: its tensors are left over.
  const fs::path fewer_layers = copy_with_config("fewer", [](auto& c) { c["num_single_layers"] = 1; });
  const std::string unused = message_of<sdnq::FormatError>([&] { FluxTransformer2DModel::load(fewer_layers); });
  CHECK_MENTIONS(unused, "single_transformer_blocks.1.");

  // guidance_embeds false under a checkpoint with a guidance embedder: leftovers too.
  const fs::path no_guidance = copy_with_config("guidance", [](auto& c) { c["guidance_embeds"] = false; });
  CHECK_MENTIONS(message_of<sdnq::FormatError>([&] { FluxTransformer2DModel::load(no_guidance); }),
                 "guidance_embedder");
  for (const auto& folder : {more_layers, fewer_layers, no_guidance}) fs::remove_all(folder);
}

TEST_CASE("FluxTransformer2DModel: bad forward arguments are ShapeErrors naming the argument", "[nn][flux][errors]") {
  const FluxTransformer2DModel model = FluxTransformer2DModel::load(bundled_bf16);
  const auto reference = sdnq::io::SafetensorsFile::open(bundled_bf16 / "reference.safetensors");
  const auto hidden = reference.tensor("input.hidden_states");           // [1, 16, 16]
  const auto context = reference.tensor("input.encoder_hidden_states");  // [1, 6, 48]
  const auto pooled = reference.tensor("input.pooled_projections");      // [1, 32]
  const auto timestep = reference.tensor("input.timestep");              // [1]
  const auto img_ids = reference.tensor("input.img_ids");                // [16, 3]
  const auto txt_ids = reference.tensor("input.txt_ids");                // [6, 3]
  const auto guidance = reference.tensor("input.guidance");              // [1]
  const auto forward_message = [&](const sdnq::TensorView& h, const sdnq::TensorView& c, const sdnq::TensorView& p,
                                   const sdnq::TensorView& t, const sdnq::TensorView& img, const sdnq::TensorView& txt,
                                   const sdnq::TensorView* g) {
    return message_of<sdnq::ShapeError>([&] { (void)model.forward(h, c, p, t, img, txt, g); });
  };

  CHECK_MENTIONS(forward_message(hidden.reshaped({16, 16}), context, pooled, timestep, img_ids, txt_ids, &guidance),
                 "FluxTransformer2DModel.forward: hidden_states");
  const Tensor wrong_channels = Tensor::zeros({1, 16, 8}, DType::f32);
  CHECK_MENTIONS(forward_message(wrong_channels, context, pooled, timestep, img_ids, txt_ids, &guidance),
                 "hidden_states");
  const Tensor wrong_joint = Tensor::zeros({1, 6, 40}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, wrong_joint, pooled, timestep, img_ids, txt_ids, &guidance),
                 "encoder_hidden_states");
  const Tensor wrong_pooled = Tensor::zeros({1, 31}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, context, wrong_pooled, timestep, img_ids, txt_ids, &guidance),
                 "pooled_projections");
  const Tensor two_timesteps = Tensor::zeros({2}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, context, pooled, two_timesteps, img_ids, txt_ids, &guidance), "timestep");

  // Sequence lengths that disagree with the ids, and ids with the wrong number of axes.
  const Tensor short_img_ids = Tensor::zeros({15, 3}, DType::f32);
  const std::string length_message =
      forward_message(hidden, context, pooled, timestep, short_img_ids, txt_ids, &guidance);
  CHECK_MENTIONS(length_message, "img_ids");
  CHECK_MENTIONS(length_message, "hidden_states");
  CHECK_MENTIONS(forward_message(hidden, context, pooled, timestep, img_ids, img_ids, &guidance), "txt_ids");
  const Tensor two_axes = Tensor::zeros({16, 2}, DType::f32);
  CHECK_MENTIONS(forward_message(hidden, context, pooled, timestep, two_axes, txt_ids, &guidance), "img_ids");

  // guidance_embeds is true: guidance is required.
  CHECK_MENTIONS(forward_message(hidden, context, pooled, timestep, img_ids, txt_ids, nullptr), "guidance");

  // A leading batch axis on the ids (the deprecated diffusers form) is accepted and gives the same output.
  const Tensor expected = model.forward(hidden, context, pooled, timestep, img_ids, txt_ids, &guidance);
  const Tensor batched = model.forward(hidden, context, pooled, timestep, img_ids.reshaped({1, 16, 3}),
                                       txt_ids.reshaped({1, 6, 3}), &guidance);
  CHECK(sdnq::nn::relative_l2(batched, expected) == 0.0);
}
