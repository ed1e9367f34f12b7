#pragma once
// Running one reference fixture model case (fixtures/sdnq-reference/models/<kind>-<quant>/: config.json,
// weights, reference.safetensors) and comparing every `output_fp32.*` with the C++ float32 forward.
//
// Convention for model headers (nn/models/<x>.hpp), e.g. for the VAE:
//     #define SDNQ_NN_RUN_CASE_VAE 1                      // before the include below
//     #include "sdnq/nn/model_conformance.hpp"
//     ...
//     inline ModelCaseResult run_case_vae(const ModelCase& model_case) { ... }
// run_case_<x> loads the model from model_case.folder, runs its forward on the case's `input.*` tensors
// (named as in the Python forward) and returns compare_outputs(model_case, {{"<output>", tensor}, ...}).
// run_model_case() dispatches by the config's `_class_name` (diffusers) or `architectures[0]`
// (transformers) to the header this build has:
//     AutoencoderKL -> vae.hpp run_case_vae (SDNQ_NN_RUN_CASE_VAE)
//     UNet2DConditionModel -> unet.hpp run_case_unet (SDNQ_NN_RUN_CASE_UNET)
//     FluxTransformer2DModel -> flux.hpp run_case_flux (SDNQ_NN_RUN_CASE_FLUX)
//     SD3Transformer2DModel -> sd3.hpp run_case_sd3 (SDNQ_NN_RUN_CASE_SD3)
//     CLIPTextModel, CLIPTextModelWithProjection -> clip.hpp run_case_clip (SDNQ_NN_RUN_CASE_CLIP)
//     T5EncoderModel -> t5.hpp run_case_t5 (SDNQ_NN_RUN_CASE_T5)
// This file includes every model header that exists (__has_include) between its types and the
// dispatcher; the macro tells the dispatcher the header defines its runner, so a header still being
// written (no macro yet) gives an UnsupportedError at run time instead of a link error.
#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn {

// ||actual - expected||₂ / ||expected||₂ in double (inputs of any float dtype, equal shapes).
inline double relative_l2(const TensorView& actual, const TensorView& expected) {
  SDNQ_REQUIRE(actual.shape() == expected.shape(), ShapeError, "relative_l2: shapes differ, {} vs {}",
               actual.shape().to_string(), expected.shape().to_string());
  const Tensor a = detail::to_f32(actual, "relative_l2 actual"), e = detail::to_f32(expected, "relative_l2 expected");
  double difference = 0.0, norm = 0.0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double d = static_cast<double>(a.data_as<float>()[i]) - e.data_as<float>()[i];
    difference += d * d;
    norm += static_cast<double>(e.data_as<float>()[i]) * e.data_as<float>()[i];
  }
  if (norm == 0.0) return difference == 0.0 ? 0.0 : INFINITY;
  return std::sqrt(difference / norm);
}

struct ModelCase {
  std::filesystem::path folder;
  std::string class_name;  // `_class_name` or `architectures[0]`
  nlohmann::json config;
  io::SafetensorsFile reference;

  bool has_input(std::string_view name) const { return reference.contains("input." + std::string(name)); }
  TensorView input(std::string_view name) const {
    const std::string key = "input." + std::string(name);
    SDNQ_REQUIRE(reference.contains(key), FormatError, "{}: reference.safetensors has no '{}'", folder.string(), key);
    return reference.tensor(key);
  }
  // Output names with an `output_fp32.` entry, in file order.
  std::vector<std::string> expected_outputs() const {
    std::vector<std::string> names;
    for (const auto& key : reference.names())
      if (key.rfind("output_fp32.", 0) == 0) names.push_back(key.substr(12));
    return names;
  }
  TensorView expected(std::string_view name) const { return reference.tensor("output_fp32." + std::string(name)); }
};

struct OutputComparison {
  std::string name;
  Shape shape;
  double rel_l2 = 0.0;
};

struct ModelCaseResult {
  std::string case_name, class_name;
  std::vector<OutputComparison> outputs;
  double worst_rel_l2() const {
    double worst = 0.0;
    for (const auto& output : outputs) worst = std::max(worst, output.rel_l2);
    return worst;
  }
  bool passed(double tolerance = 1e-4) const { return !outputs.empty() && worst_rel_l2() <= tolerance; }
};

// The class name a component config declares.
inline std::string model_class_name(const nlohmann::json& config, const std::filesystem::path& config_path) {
  if (auto it = config.find("_class_name"); it != config.end() && it->is_string()) return it->get<std::string>();
  if (auto it = config.find("architectures");
      it != config.end() && it->is_array() && !it->empty() && it->front().is_string())
    return it->front().get<std::string>();
  throw ConfigError(
      fmt::format("{}: neither \"_class_name\" nor \"architectures\" names the model class", config_path.string()));
}

inline ModelCase load_model_case(const std::filesystem::path& folder) {
  nlohmann::json config = detail::read_component_config(folder);
  std::string class_name = model_class_name(config, folder / "config.json");
  return ModelCase{folder, std::move(class_name), std::move(config),
                   io::SafetensorsFile::open(folder / "reference.safetensors")};
}

// Compares the forward's outputs with every `output_fp32.*` of the case; an output the reference
// recorded but the model did not produce (or of another shape) is a ShapeError.
inline ModelCaseResult compare_outputs(const ModelCase& model_case,
                                       const std::vector<std::pair<std::string, Tensor>>& outputs) {
  ModelCaseResult result;
  result.case_name = model_case.folder.filename().string();
  result.class_name = model_case.class_name;
  for (const auto& name : model_case.expected_outputs()) {
    const Tensor* produced = nullptr;
    for (const auto& [output_name, tensor] : outputs)
      if (output_name == name) produced = &tensor;
    SDNQ_REQUIRE(produced != nullptr, ShapeError, "{}: the {} forward produced no output '{}'",
                 model_case.folder.string(), model_case.class_name, name);
    const TensorView expected = model_case.expected(name);
    SDNQ_REQUIRE(produced->shape() == expected.shape(), ShapeError, "{}: output '{}' has shape {}, the reference {}",
                 model_case.folder.string(), name, produced->shape().to_string(), expected.shape().to_string());
    result.outputs.push_back({name, expected.shape(), relative_l2(*produced, expected)});
  }
  return result;
}

}  // namespace sdnq::nn

// The model headers present in this build (each includes this file first; #pragma once ends the cycle).
#if __has_include("sdnq/nn/models/vae.hpp")
#include "sdnq/nn/models/vae.hpp"
#endif
#if __has_include("sdnq/nn/models/unet.hpp")
#include "sdnq/nn/models/unet.hpp"
#endif
#if __has_include("sdnq/nn/models/flux.hpp")
#include "sdnq/nn/models/flux.hpp"
#endif
#if __has_include("sdnq/nn/models/sd3.hpp")
#include "sdnq/nn/models/sd3.hpp"
#endif
#if __has_include("sdnq/nn/models/clip.hpp")
#include "sdnq/nn/models/clip.hpp"
#endif
#if __has_include("sdnq/nn/models/t5.hpp")
#include "sdnq/nn/models/t5.hpp"
#endif

namespace sdnq::nn {

#if defined(SDNQ_NN_RUN_CASE_VAE)
inline ModelCaseResult run_case_vae(const ModelCase&);
#endif
#if defined(SDNQ_NN_RUN_CASE_UNET)
inline ModelCaseResult run_case_unet(const ModelCase&);
#endif
#if defined(SDNQ_NN_RUN_CASE_FLUX)
inline ModelCaseResult run_case_flux(const ModelCase&);
#endif
#if defined(SDNQ_NN_RUN_CASE_SD3)
inline ModelCaseResult run_case_sd3(const ModelCase&);
#endif
#if defined(SDNQ_NN_RUN_CASE_CLIP)
inline ModelCaseResult run_case_clip(const ModelCase&);
#endif
#if defined(SDNQ_NN_RUN_CASE_T5)
inline ModelCaseResult run_case_t5(const ModelCase&);
#endif

// Loads the case, runs the model its config names, and compares every output_fp32.* (rel L2).
inline ModelCaseResult run_model_case(const std::filesystem::path& case_folder) {
  const ModelCase model_case = load_model_case(case_folder);
  const std::string& name = model_case.class_name;
  const auto missing = [&](const char* header, const char* runner) {
    return UnsupportedError(
        fmt::format("{}: model class {} needs sdnq/nn/models/{} defining {}, which this build "
                    "does not have",
                    case_folder.string(), name, header, runner));
  };
  (void)missing;  // unused once every model header defines its runner
  if (name == "AutoencoderKL") {
#if defined(SDNQ_NN_RUN_CASE_VAE)
    return run_case_vae(model_case);
#else
    throw missing("vae.hpp", "run_case_vae");
#endif
  }
  if (name == "UNet2DConditionModel") {
#if defined(SDNQ_NN_RUN_CASE_UNET)
    return run_case_unet(model_case);
#else
    throw missing("unet.hpp", "run_case_unet");
#endif
  }
  if (name == "FluxTransformer2DModel") {
#if defined(SDNQ_NN_RUN_CASE_FLUX)
    return run_case_flux(model_case);
#else
    throw missing("flux.hpp", "run_case_flux");
#endif
  }
  if (name == "SD3Transformer2DModel") {
#if defined(SDNQ_NN_RUN_CASE_SD3)
    return run_case_sd3(model_case);
#else
    throw missing("sd3.hpp", "run_case_sd3");
#endif
  }
  if (name == "CLIPTextModel" || name == "CLIPTextModelWithProjection") {
#if defined(SDNQ_NN_RUN_CASE_CLIP)
    return run_case_clip(model_case);
#else
    throw missing("clip.hpp", "run_case_clip");
#endif
  }
  if (name == "T5EncoderModel") {
#if defined(SDNQ_NN_RUN_CASE_T5)
    return run_case_t5(model_case);
#else
    throw missing("t5.hpp", "run_case_t5");
#endif
  }
  throw UnsupportedError(
      fmt::format("{}: unknown model class {} (known: AutoencoderKL, UNet2DConditionModel, "
                  "FluxTransformer2DModel, SD3Transformer2DModel, CLIPTextModel, "
                  "CLIPTextModelWithProjection, T5EncoderModel)",
                  case_folder.string(), name));
}

}  // namespace sdnq::nn
