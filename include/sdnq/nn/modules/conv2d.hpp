#pragma once
// Conv2d over a dense or SDNQ weight (quant_conv). Like Linear: the weight is materialized as f32
// [O, C/groups, kh, kw] at load; quantized-matmul conv layouts also keep the stored tensors and use
// the reference's quantized path when its size test (numel / H >= 32) passes.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"
#include "sdnq/quant/reference_layers.hpp"

namespace sdnq::nn {

class Conv2d {
 public:
  static Conv2d load(WeightLoader& weights, std::string_view prefix, std::int64_t in_channels,
                     std::int64_t out_channels, int kernel_size, Conv2dParams params, bool bias = true) {
    SDNQ_REQUIRE(params.groups >= 1 && in_channels % params.groups == 0 && out_channels % params.groups == 0,
                 ConfigError, "Conv2d '{}': groups = {} must divide in_channels = {} and out_channels = {}", prefix,
                 params.groups, in_channels, out_channels);
    Conv2d layer;
    layer.name_ = std::string(prefix);
    layer.params_ = params;
    const Shape shape{out_channels, in_channels / params.groups, kernel_size, kernel_size};
    if (auto quantized = weights.quantized(prefix, quant::LayerKind::conv2d, shape)) {
      layer.weight_ = quant::dequantize(*quantized, DType::f32, quant::ScalePrecision::reference_compatible);
      if (quantized->layout.use_quantized_matmul) {
        layer.quantized_ = std::move(quantized);
        layer.storage_ = weights.keep_alive();
      }
    } else {
      layer.weight_ = weights.dense(layer.name_ + ".weight", shape);
    }
    if (bias) layer.bias_ = weights.dense(layer.name_ + ".bias", Shape{out_channels});
    return layer;
  }

  Tensor forward(const TensorView& x) const {
    SDNQ_REQUIRE(x.rank() == 4 && x.size(1) == in_channels(), ShapeError,
                 "Conv2d '{}': input must be [N, in_channels = {}, H, W], got {}", name_, in_channels(),
                 x.shape().to_string());
    const TensorView* bias = bias_.defined() ? &bias_.view() : nullptr;
    if (quantized_ && x.numel() / std::max<std::int64_t>(x.size(2), 1) >= 32) {
      quant::Conv2dParams q;
      q.stride = {params_.stride_h, params_.stride_w};
      q.padding = {params_.pad_h, params_.pad_w};
      q.dilation = {params_.dilation_h, params_.dilation_w};
      q.groups = params_.groups;
      std::optional<TensorView> bias_view;
      if (bias != nullptr) bias_view = *bias;
      return quant::conv2d_forward(x, *quantized_, bias_view, q, quant::MatmulMode::quantized_matmul, DType::f32);
    }
    return conv2d(x, weight_, bias, params_);
  }

  std::int64_t in_channels() const { return weight_.size(1) * params_.groups; }
  std::int64_t out_channels() const { return weight_.size(0); }
  const Conv2dParams& params() const { return params_; }
  const Tensor& dense_weight() const { return weight_; }  // [O, C/groups, kh, kw] f32
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  Conv2dParams params_;
  Tensor weight_, bias_;
  std::optional<quant::QuantizedWeight> quantized_;
  std::shared_ptr<const void> storage_;
};

}  // namespace sdnq::nn
