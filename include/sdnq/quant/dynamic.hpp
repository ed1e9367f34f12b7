#pragma once
// Dynamic per-layer dtype selection (§3.11, `sdnq_quantize_layer_weight_dynamic`): climb
// format::weights_dtype_order() from the configured dtype and keep the first candidate whose
// normalized loss mean((W - Ŵ)²) / max(var(W), 1e-8) is at most the threshold. Hadamard and SVD are
// applied once up front (so SVD counts as active in every candidate's group size). The choice is
// recorded in the config the way the reference records it, so a loader never re-runs the search.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "sdnq/format/storage_type.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq::quant {

struct DynamicChoice {
  std::optional<std::string> weights_dtype;  // nullopt: no candidate passed, leave the layer unquantized
  bool disable_quantized_matmul = false;     // append the layer to modules_to_not_use_matmul
  double loss = 0.0;                          // of the accepted candidate (or of the last one tried)
  double threshold = 0.0;
  std::optional<QuantizedTensors> tensors;   // the accepted quantization
};

// τ of §3.11: the configured threshold, or 10^(-bits/2) of the starting dtype when unset or negative.
inline double dynamic_loss_threshold(std::optional<double> configured, const format::StorageType& start) {
  if (configured && *configured >= 0) return *configured;
  return std::pow(10.0, -static_cast<double>(start.bits) / 2.0);
}

namespace detail {

// §3.11: the reasons a candidate cannot keep quantized matmul.
inline bool candidate_disables_matmul(const format::StorageType& candidate, const format::StorageType& matmul,
                                      const format::StorageType& start, const format::StorageType& start_matmul,
                                      bool fp8_matmul_supported) {
  const bool matmul_is_fp8 = matmul.name == "float8_e4m3fn";
  if (!fp8_matmul_supported && matmul_is_fp8) return true;
  if (!candidate.is_integer && matmul.is_integer) return true;
  if (candidate.bits == matmul.bits && candidate.is_unsigned && !matmul.is_integer) return true;
  if (candidate.bits > matmul.bits && !(start.bits > start_matmul.bits)) return true;
  return false;
}

inline double weight_variance(const std::vector<float>& values) {  // torch.std (unbiased), squared
  double mean = 0.0;
  for (float v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double sum = 0.0;
  for (float v : values) sum += (v - mean) * (v - mean);
  return values.size() > 1 ? sum / static_cast<double>(values.size() - 1) : 0.0;
}

}  // namespace detail

// `options` are the layer's resolved options with the configured (starting) dtype.
inline DynamicChoice choose_dynamic_dtype(TensorView weight, LayerKind kind, const LayerOptions& options,
                                          DType model_dtype, std::optional<double> configured_threshold,
                                          const QuantizeControls& controls, bool fp8_matmul_supported = true) {
  detail::require_quantizable_input(weight, model_dtype, options, controls.layer_name);
  const format::StorageType& start = *options.weights_type;
  DynamicChoice choice;
  choice.threshold = dynamic_loss_threshold(configured_threshold, start);

  LayerLayout start_layout;
  try {
    start_layout = derive_layout(weight.shape(), kind, options);
  } catch (const Error&) {
    detail::rethrow_with_layer(controls.layer_name);
  }
  const PreparedWeight prepared = prepare_weight(weight, start_layout, options, model_dtype, controls);
  std::vector<float> original(static_cast<std::size_t>(weight.numel()));
  {
    Tensor contiguous = Tensor::empty(weight.shape(), weight.dtype());
    copy(contiguous, weight);
    for (std::int64_t i = 0; i < weight.numel(); ++i)
      original[i] = static_cast<float>(detail::load_float_from(weight.dtype(), contiguous.data(), i));
  }
  const double variance = std::max(detail::weight_variance(original), 1e-8);
  const format::StorageType& start_matmul = *start_layout.matmul_type;

  const auto ladder = format::weights_dtype_order();
  auto position = std::find(ladder.begin(), ladder.end(), start.name);
  SDNQ_REQUIRE(position != ladder.end(), ConfigError,
               "{}: weights_dtype {} is not on the dynamic quantization ladder", controls.layer_name, start.name);
  for (; position != ladder.end(); ++position) {
    const format::StorageType& candidate = format::storage_type(*position);
    if (options.use_codebook && !(candidate.is_integer && candidate.is_unsigned)) continue;
    LayerOptions candidate_options = options;
    candidate_options.weights_type = &candidate;
    const format::StorageType& matmul = format::storage_type(
        options.quantized_matmul_dtype.value_or(std::string(candidate.default_matmul_dtype)));
    const bool disable_matmul = options.use_quantized_matmul &&
        detail::candidate_disables_matmul(candidate, matmul, start, start_matmul, fp8_matmul_supported);
    if (disable_matmul) candidate_options.use_quantized_matmul = false;
    // Hadamard and SVD were applied once: the candidate keeps them (and SVD counts in its group size).
    const LayerLayout layout = derive_layout(weight.shape(), kind, candidate_options);
    QuantizedTensors tensors = quantize_prepared(prepared, layout, candidate_options, model_dtype, controls);
    const Tensor dense = dequantize(tensors.view(), DType::f32, ScalePrecision::as_stored);
    double squared = 0.0;
    const float* approximation = dense.data_as<const float>();
    for (std::size_t i = 0; i < original.size(); ++i)
      squared += (double(original[i]) - approximation[i]) * (double(original[i]) - approximation[i]);
    choice.loss = squared / static_cast<double>(original.size()) / variance;
    if (choice.loss <= choice.threshold) {
      choice.weights_dtype = std::string(candidate.name);
      choice.disable_quantized_matmul = disable_matmul;
      choice.tensors = std::move(tensors);
      return choice;
    }
  }
  return choice;
}

// Appends the choice to the config as the reference does: modules_dtype_dict[dtype] (and
// modules_to_not_use_matmul), or modules_to_not_convert when the layer stays unquantized.
inline void record_dynamic_choice(SdnqConfig& config, const std::string& param_name, const DynamicChoice& choice) {
  if (!choice.weights_dtype) {
    config.modules_to_not_convert.push_back(param_name);
    return;
  }
  auto entry = std::find_if(config.modules_dtype_dict.begin(), config.modules_dtype_dict.end(),
                            [&](const auto& item) { return item.first == *choice.weights_dtype; });
  if (entry == config.modules_dtype_dict.end())
    config.modules_dtype_dict.emplace_back(*choice.weights_dtype, std::vector<std::string>{param_name});
  else
    entry->second.push_back(param_name);
  if (choice.disable_quantized_matmul) config.modules_to_not_use_matmul.push_back(param_name);
}

// One layer as save_sdnq_checkpoint and sdnq-quantize quantize it: with `options`, or with dynamic
// quantization on, with the dtype the search accepts, recorded into `config` as the reference records it.
// nullopt: no candidate passed the threshold; the layer stays dense (and is in modules_to_not_convert).
inline std::optional<QuantizedTensors> quantize_layer(SdnqConfig& config, const std::string& param_name,
                                                      TensorView weight, LayerKind kind, const LayerOptions& options,
                                                      DType model_dtype, const QuantizeControls& controls) {
  if (!config.use_dynamic_quantization) return quantize_weight(weight, kind, options, model_dtype, controls);
  DynamicChoice choice =
      choose_dynamic_dtype(weight, kind, options, model_dtype, config.dynamic_loss_threshold, controls);
  record_dynamic_choice(config, param_name, choice);
  return std::move(choice.tensors);
}

}  // namespace sdnq::quant
