#pragma once
// Linear over any weight: dense (F32/BF16/F16 in the file) or any SDNQ format.
//
// CPU path: the weight is materialized once, at load, as an f32 [out, in] tensor (dense weights
// widened exactly; SDNQ weights dequantized with quant::dequantize in fp32 — for a float32 model the
// reference rounds scales to fp32, i.e. not at all). That costs 4 bytes per weight, which is fine for
// the reference path and the tiny conformance models; the GPU path will keep the packed codes.
// Layers whose SDNQ layout uses quantized matmul (§5.1) also keep their stored tensors and, like the
// reference, run the quantized matmul for inputs of at least 32 tokens (fewer tokens fall back to the
// dense weight, as the reference does).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/reference_layers.hpp"

namespace sdnq::nn {

class Linear {
 public:
  static Linear load(WeightLoader& weights, std::string_view prefix, std::int64_t in_features,
                     std::int64_t out_features, bool bias = true) {
    Linear layer;
    layer.name_ = std::string(prefix);
    const Shape shape{out_features, in_features};
    if (auto quantized = weights.quantized(prefix, quant::LayerKind::linear, shape)) {
      layer.weight_ = quant::dequantize(*quantized, DType::f32, quant::ScalePrecision::reference_compatible);
      if (quantized->layout.use_quantized_matmul) {
        layer.quantized_ = std::move(quantized);
        layer.storage_ = weights.keep_alive();
      }
    } else {
      layer.weight_ = weights.dense(layer.name_ + ".weight", shape);
    }
    if (bias) layer.bias_ = weights.dense(layer.name_ + ".bias", Shape{out_features});
    return layer;
  }

  // From tensors already in memory (tests, fused weights): weight [out, in], bias [out] or undefined.
  static Linear from_tensors(Tensor weight, Tensor bias = {}, std::string name = "linear") {
    SDNQ_REQUIRE(weight.rank() == 2, ShapeError, "Linear '{}': weight must be [out, in], got {}", name,
                 weight.shape().to_string());
    SDNQ_REQUIRE(!bias.defined() || (bias.rank() == 1 && bias.size(0) == weight.size(0)), ShapeError,
                 "Linear '{}': bias must be [{}], got {}", name, weight.size(0), bias.shape().to_string());
    Linear layer;
    layer.name_ = std::move(name);
    layer.weight_ = detail::to_f32(weight, "Linear weight");
    if (bias.defined()) layer.bias_ = detail::to_f32(bias, "Linear bias");
    return layer;
  }

  Tensor forward(const TensorView& x) const {
    SDNQ_REQUIRE(x.rank() >= 1 && x.size(-1) == in_features(), ShapeError,
                 "Linear '{}': input must be [..., in_features = {}], got {}", name_, in_features(),
                 x.shape().to_string());
    const TensorView* bias = bias_.defined() ? &bias_.view() : nullptr;
    const std::int64_t tokens = x.numel() / std::max<std::int64_t>(in_features(), 1);
    if (quantized_ && tokens >= 32) {
      std::optional<TensorView> bias_view;
      if (bias != nullptr) bias_view = *bias;
      return quant::linear_forward(x, *quantized_, bias_view, quant::MatmulMode::quantized_matmul, DType::f32);
    }
    return linear(x, weight_, bias);
  }

  std::int64_t in_features() const { return weight_.size(1); }
  std::int64_t out_features() const { return weight_.size(0); }
  const std::string& name() const { return name_; }
  const Tensor& dense_weight() const { return weight_; }  // [out, in] f32
  const Tensor& bias() const { return bias_; }            // [out] f32, or undefined
  bool uses_quantized_matmul() const { return quantized_.has_value(); }

 private:
  std::string name_;
  Tensor weight_;                                    // [out, in] f32
  Tensor bias_;                                      // [out] f32 or undefined
  std::optional<quant::QuantizedWeight> quantized_;  // views into storage_, for quantized-matmul layouts
  std::shared_ptr<const void> storage_;
};

}  // namespace sdnq::nn
