#pragma once
// The activation functions of the models, one definition for the CPU ops (nn::activate_) and the CUDA
// kernels (cuda::ops::activation): same enum, same float formulas on host and device.
#include <cmath>
#include <optional>
#include <string_view>

#include "sdnq/core/detail/scalar_bits.hpp"  // SDNQ_HOST_DEVICE

namespace sdnq {

enum class Activation { silu, gelu, gelu_tanh, quick_gelu, relu };

SDNQ_HOST_DEVICE inline float activation_value(float x, Activation activation) {
  switch (activation) {
    case Activation::silu:
      return x / (1.0f + expf(-x));
    case Activation::gelu:
      return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case Activation::gelu_tanh:
      // PyTorch's gelu(approximate="tanh") and transformers' gelu_new / gelu_pytorch_tanh.
      return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Activation::quick_gelu:
      return x / (1.0f + expf(-1.702f * x));
    case Activation::relu:
      return x > 0.0f ? x : 0.0f;
  }
  return x;
}

// The activation a transformers / diffusers config names ("quick_gelu", "gelu", "gelu_new", ...).
inline std::optional<Activation> activation_from_name(std::string_view name) {
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_tanh" || name == "gelu-approximate")
    return Activation::gelu_tanh;
  if (name == "quick_gelu") return Activation::quick_gelu;
  if (name == "relu") return Activation::relu;
  return std::nullopt;
}

}  // namespace sdnq
