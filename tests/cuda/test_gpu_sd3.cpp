// GPU SD3Transformer2DModel against the reference fixtures' bf16 output (fixtures/sdnq-reference/models/
// sd3-*, README "models": bf16 compute within relative L2 3e-2), an SD3.5-style variant of the bf16 case
// (qk_norm and dual attention, which no fixture case has) against the CPU float32 model, and the
// bad-input errors.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda_test_support.hpp"
#include "fixture_paths.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/detail/safetensors_writer.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq_catch.hpp"
#include "test_gpu_sd3_support.hpp"

namespace {

namespace fs = std::filesystem;
using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;
using sdnq::TensorView;

constexpr double bf16_tolerance = 3e-2;  // fixture README, "models"

fs::path sd3_fixture_models() { return sdnq::test::reference_fixtures_dir() / "models"; }

std::vector<fs::path> sd3_cases() { return sdnq::test::model_fixture_cases("sd3-"); }

Tensor filled(const Shape& shape, float value) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = value;
  return t;
}

// The bf16 case turned into an SD3.5-style checkpoint: qk_norm "rms_norm" (RMS weights near 1 on
// every q and k) and dual attention in every block, the last (context_pre_only) one included. norm1
// grows to 9 chunks, the stored 6 first; attn2 gets deterministic projections.
fs::path sd35_style_checkpoint(const fs::path& bf16_case) {
  const fs::path folder = fs::temp_directory_path() / "sdnq-test-gpu-sd35-style";
  fs::remove_all(folder);
  fs::create_directories(folder);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(bf16_case / "config.json"));
  const int layers = config["num_layers"].get<int>();
  const std::int64_t head_dim = config["attention_head_dim"].get<std::int64_t>();
  const std::int64_t dim = config["num_attention_heads"].get<std::int64_t>() * head_dim;
  config["qk_norm"] = "rms_norm";
  config["dual_attention_layers"] = nlohmann::json::array();
  for (int i = 0; i < layers; ++i) config["dual_attention_layers"].push_back(i);
  std::ofstream(folder / "config.json") << config.dump(2);

  const auto original = sdnq::io::SafetensorsFile::open(bf16_case / "diffusion_pytorch_model.safetensors");
  std::deque<Tensor> owned;  // stable addresses for the views written below
  int salt = 0;
  const auto deterministic = [&](const Shape& shape, float offset, float scale) -> const Tensor& {
    Tensor t = Tensor::empty(shape, DType::f32);
    ++salt;
    for (std::int64_t i = 0; i < t.numel(); ++i)
      t.data_as<float>()[i] = offset + scale * static_cast<float>(std::sin(0.61 * static_cast<double>(i) + salt));
    owned.push_back(std::move(t));
    return owned.back();
  };
  std::vector<sdnq::io::NamedTensor> tensors;  // new f32 tensors first, then the stored bf16 ones
  std::vector<std::string> replaced;
  for (int i = 0; i < layers; ++i) {
    const std::string block = "transformer_blocks." + std::to_string(i);
    const std::string norm1 = block + ".norm1.linear";
    for (const char* part : {".weight", ".bias"}) {
      const TensorView stored = original.tensor(norm1 + part);
      const Shape shape = std::string(part) == ".weight" ? Shape{9 * dim, dim} : Shape{9 * dim};
      Tensor grown = Tensor::empty(shape, DType::f32);
      const Tensor widened = sdnq::nn::detail::to_f32(stored, norm1 + part);
      std::memcpy(grown.data(), widened.data(), widened.nbytes());
      const Tensor& extra = deterministic(Shape{grown.numel() - stored.numel()}, 0.0f, 0.1f);
      std::memcpy(grown.data_as<float>() + stored.numel(), extra.data(), extra.nbytes());
      owned.push_back(std::move(grown));
      tensors.push_back({norm1 + part, owned.back()});
      replaced.push_back(norm1 + part);
    }
    for (const char* projection : {"to_q", "to_k", "to_v", "to_out.0"}) {
      const std::string prefix = block + ".attn2." + projection;
      tensors.push_back({prefix + ".weight", deterministic(Shape{dim, dim}, 0.0f, 0.2f)});
      tensors.push_back({prefix + ".bias", deterministic(Shape{dim}, 0.0f, 0.2f)});
    }
    for (const char* norm :
         {"attn.norm_q", "attn.norm_k", "attn.norm_added_q", "attn.norm_added_k", "attn2.norm_q", "attn2.norm_k"})
      tensors.push_back({block + "." + norm + ".weight", deterministic(Shape{head_dim}, 1.0f, 0.3f)});
  }
  for (const auto& stored : original.names())
    if (std::find(replaced.begin(), replaced.end(), stored) == replaced.end())
      tensors.push_back({stored, original.tensor(stored)});
  sdnq::io::write_safetensors(folder / "diffusion_pytorch_model.safetensors", tensors);
  return folder;
}

}  // namespace

TEST_CASE("gpu SD3Transformer2DModel matches the reference bf16 output", "[cuda][gpu_models]") {
  const std::vector<fs::path> cases = sd3_cases();
  if (cases.empty()) {
    WARN("no sd3-* fixture cases under " << sd3_fixture_models().string() << " (../shared absent): skipped");
    return;
  }
  CHECK(cases.size() == 5);  // bf16, fp8, int8, int8-qmm, uint4-svd
  for (const fs::path& folder : cases) {
    INFO(folder.filename().string());
    const sdnq::test::GpuSd3Run run = sdnq::test::run_sd3_case_on_gpu(folder);
    std::string kinds;
    for (const auto& kind : run.linear_kinds) kinds += kind + " ";
    INFO("Linear kinds: " << kinds);
    INFO("workspace " << run.workspace_bytes << " bytes, peak " << run.workspace_peak);
    INFO("output rel L2 " << run.rel_l2);
    CHECK(run.workspace_peak <= run.workspace_bytes);
    CHECK(run.rel_l2 <= bf16_tolerance);
    WARN(folder.filename().string() << " output rel L2 " << run.rel_l2);
    const bool quantized = folder.filename().string().find("bf16") == std::string::npos;
    const bool any_quantized_kind = std::any_of(run.linear_kinds.begin(), run.linear_kinds.end(),
                                                [](const std::string& kind) { return kind != "dense"; });
    CHECK(any_quantized_kind == quantized);
    if (folder.filename().string() == "sd3-int8-qmm")
      CHECK(std::count(run.linear_kinds.begin(), run.linear_kinds.end(), "quantized_matmul") > 0);
  }
}

TEST_CASE("gpu SD3Transformer2DModel with qk_norm and dual attention matches the CPU model", "[cuda][gpu_models]") {
  const fs::path bf16_case = sd3_fixture_models() / "sd3-bf16";
  if (!fs::exists(bf16_case)) {
    WARN("no sd3-bf16 fixture case under " << sd3_fixture_models().string() << ": skipped");
    return;
  }
  const fs::path folder = sd35_style_checkpoint(bf16_case);
  const sdnq::test::GpuSd3Run run = sdnq::test::run_sd3_against_cpu_model(folder, bf16_case);
  INFO("workspace " << run.workspace_bytes << " bytes, peak " << run.workspace_peak);
  CHECK(run.workspace_peak <= run.workspace_bytes);
  CHECK(run.rel_l2 <= bf16_tolerance);
  WARN("SD3.5-style (qk_norm, dual attention) output rel L2 against the CPU float32 model " << run.rel_l2);
  fs::remove_all(folder);
}

TEST_CASE("gpu SD3Transformer2DModel: bad inputs are clear errors", "[cuda][gpu_models]") {
  const fs::path folder = sd3_fixture_models() / "sd3-bf16";
  if (!fs::exists(folder)) {
    WARN("no sd3-bf16 fixture case under " << sd3_fixture_models().string() << ": skipped");
    return;
  }
  sdnq::test::Sd3Inputs in = sdnq::test::sd3_case_inputs(folder);
  const std::int64_t channels = in.hidden_states.size(1);
  const auto error_of = [&] {
    return sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_sd3_on_gpu_with(folder, in); });
  };
  SECTION("latents not divisible by the patch size") {
    in.hidden_states = filled(Shape{1, channels, 15, 16}, 0.5f);
    const std::string message = error_of();
    CHECK(sdnq::test::contains(message, "SD3Transformer2DModel (GPU).forward: hidden_states height and width"));
    CHECK(sdnq::test::contains(message, "multiples of patch_size 2, got [1, 16, 15, 16]"));
  }
  SECTION("latents with more patches than the positional table") {
    in.hidden_states = filled(Shape{1, channels, 2 * 97, 16}, 0.5f);
    const std::string message = error_of();
    CHECK(sdnq::test::contains(message, "SD3Transformer2DModel (GPU).forward: hidden_states [1, 16, 194, 16]"));
    CHECK(sdnq::test::contains(message, "97 x 8 patches, more than the positional table's pos_embed_max_size 96"));
  }
  SECTION("latents with the wrong channel count") {
    in.hidden_states = filled(Shape{1, channels + 1, 16, 16}, 0.5f);
    CHECK(sdnq::test::contains(error_of(), "hidden_states must be [batch, 16 (in_channels), height, width]"));
  }
  SECTION("text embeddings of rank 2") {
    in.encoder_hidden_states = filled(Shape{6, 48}, 0.5f);
    CHECK(sdnq::test::contains(error_of(), "encoder_hidden_states must be [1, text tokens, 48]"));
  }
  SECTION("pooled_projections of the wrong width") {
    in.pooled_projections = filled(Shape{1, 31}, 0.5f);
    CHECK(sdnq::test::contains(error_of(), "pooled_projections must be [1, 32] (batch, pooled_projection_dim)"));
  }
  SECTION("one timestep for a batch of two") {
    in.hidden_states = filled(Shape{2, channels, 16, 16}, 0.5f);
    in.encoder_hidden_states = filled(Shape{2, 6, 48}, 0.5f);
    in.pooled_projections = filled(Shape{2, 32}, 0.5f);
    CHECK(sdnq::test::contains(error_of(), "timestep must be [2] (one value per sample), got [1]"));
  }
}
