#pragma once
// LayerNorm, GroupNorm and RMSNorm modules: f32 parameters loaded from "<prefix>.weight" / ".bias".
#include <cstdint>
#include <string>
#include <string_view>

#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq/nn/weights.hpp"

namespace sdnq::nn {

class LayerNorm {
 public:
  // affine = false: no parameters (FLUX/SD3's elementwise_affine=False norms). `bias` = false: weight only.
  static LayerNorm load(WeightLoader& weights, std::string_view prefix, std::int64_t dim, float eps, bool affine,
                        bool bias = true) {
    LayerNorm norm;
    norm.dim_ = dim;
    norm.eps_ = eps;
    if (affine) {
      norm.weight_ = weights.dense(std::string(prefix) + ".weight", Shape{dim});
      if (bias) norm.bias_ = weights.dense(std::string(prefix) + ".bias", Shape{dim});
    }
    return norm;
  }
  Tensor forward(const TensorView& x) const {
    SDNQ_REQUIRE(x.rank() >= 1 && x.size(-1) == dim_, ShapeError, "LayerNorm: input must be [..., {}], got {}", dim_,
                 x.shape().to_string());
    return layer_norm(x, weight_.defined() ? &weight_.view() : nullptr, bias_.defined() ? &bias_.view() : nullptr,
                      eps_);
  }

 private:
  std::int64_t dim_ = 0;
  float eps_ = 1e-5f;
  Tensor weight_, bias_;  // [dim] f32, or undefined
};

class GroupNorm {
 public:
  static GroupNorm load(WeightLoader& weights, std::string_view prefix, int groups, std::int64_t channels, float eps,
                        bool affine = true) {
    SDNQ_REQUIRE(groups >= 1 && channels % groups == 0, ConfigError,
                 "GroupNorm '{}': {} groups must divide {} channels", prefix, groups, channels);
    GroupNorm norm;
    norm.groups_ = groups;
    norm.channels_ = channels;
    norm.eps_ = eps;
    if (affine) {
      norm.weight_ = weights.dense(std::string(prefix) + ".weight", Shape{channels});
      norm.bias_ = weights.dense(std::string(prefix) + ".bias", Shape{channels});
    }
    return norm;
  }
  Tensor forward(const TensorView& x) const {
    SDNQ_REQUIRE(x.rank() >= 2 && x.size(1) == channels_, ShapeError, "GroupNorm: input must be [N, {}, ...], got {}",
                 channels_, x.shape().to_string());
    return group_norm(x, groups_, weight_.defined() ? &weight_.view() : nullptr,
                      bias_.defined() ? &bias_.view() : nullptr, eps_);
  }

 private:
  int groups_ = 32;
  std::int64_t channels_ = 0;
  float eps_ = 1e-6f;
  Tensor weight_, bias_;
};

class RMSNorm {
 public:
  static RMSNorm load(WeightLoader& weights, std::string_view prefix, std::int64_t dim, float eps) {
    RMSNorm norm;
    norm.dim_ = dim;
    norm.eps_ = eps;
    norm.weight_ = weights.dense(std::string(prefix) + ".weight", Shape{dim});
    return norm;
  }
  Tensor forward(const TensorView& x) const {
    SDNQ_REQUIRE(x.rank() >= 1 && x.size(-1) == dim_, ShapeError, "RMSNorm: input must be [..., {}], got {}", dim_,
                 x.shape().to_string());
    return rms_norm(x, &weight_.view(), eps_);
  }

 private:
  std::int64_t dim_ = 0;
  float eps_ = 1e-6f;
  Tensor weight_;  // [dim] f32
};

}  // namespace sdnq::nn
