#pragma once
// LayerNorm on the GPU: the parameters of the CPU nn::LayerNorm ("<prefix>.weight" / ".bias", same shape
// checks) as bf16 device tensors; forward runs cuda::ops::layer_norm (f32 statistics).
#include <cstdint>
#include <string>
#include <string_view>

#include "sdnq/cuda/ops/normalization.cuh"
#include "sdnq/nn/gpu/detail/device_weights.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn::gpu {

class LayerNorm {
 public:
  // affine = false: no parameters. `bias` = false: weight only.
  static LayerNorm load(WeightLoader& weights, std::string_view prefix, std::int64_t dim, float eps, bool affine,
                        int device, bool bias = true) {
    LayerNorm norm;
    norm.name_ = std::string(prefix);
    norm.dim_ = dim;
    norm.eps_ = eps;
    if (affine) {
      norm.weight_ = detail::upload_bf16(weights.stored_float(norm.name_ + ".weight", Shape{dim}), device, norm.name_);
      if (bias) norm.bias_ = detail::upload_bf16(weights.stored_float(norm.name_ + ".bias", Shape{dim}), device, norm.name_);
    }
    return norm;
  }

  // x [..., dim] bf16 -> out (same shape; may be x).
  void forward(const TensorView& x, const TensorView& out, cudaStream_t stream) const {
    SDNQ_REQUIRE(x.rank() >= 1 && x.size(-1) == dim_, ShapeError, "LayerNorm '{}': input must be [..., {}], got {}",
                 name_, dim_, x.shape().to_string());
    const TensorView weight = weight_.defined() ? weight_.view() : TensorView();
    const TensorView bias = bias_.defined() ? bias_.view() : TensorView();
    cuda::ops::layer_norm(x, weight_.defined() ? &weight : nullptr, bias_.defined() ? &bias : nullptr, eps_, out,
                          stream);
  }

  std::int64_t dim() const { return dim_; }

 private:
  std::string name_;
  std::int64_t dim_ = 0;
  float eps_ = 1e-5f;
  Tensor weight_, bias_;  // [dim] bf16 on the device, or undefined
};

}  // namespace sdnq::nn::gpu
