#pragma once
// Small host loops the diffusion transformers (FLUX, SD3) apply to [batch, tokens, dim] activations:
// token slices, AdaLN modulation with per-sample [batch, dim] vectors, gated residual adds, and the
// checks that turn a wrong forward argument into an error naming the model and the argument.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"

namespace sdnq::nn::detail {

// One [batch, dim] chunk of a modulation vector [batch, chunks * dim] (chunk k of torch.chunk(emb, chunks, 1)):
// row b starts at data + b * row_stride.
struct ModulationChunk {
  const float* data = nullptr;
  std::int64_t row_stride = 0;
  std::int64_t dim = 0;
  const float* row(std::int64_t batch) const { return data + batch * row_stride; }
};

// Chunk `index` of `emb` [batch, chunks * dim].
inline ModulationChunk modulation_chunk(const Tensor& emb, int chunks, int index) {
  const std::int64_t dim = emb.size(1) / chunks;
  return {emb.data_as<float>() + index * dim, emb.size(1), dim};
}

// In place: x [batch, tokens, dim] = x * (1 + scale) + shift, with shift/scale per sample.
inline void modulate_(Tensor& x, const ModulationChunk& shift, const ModulationChunk& scale) {
  const std::int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2);
  float* values = x.data_as<float>();
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* shift_row = shift.row(b);
    const float* scale_row = scale.row(b);
    for (std::int64_t t = 0; t < tokens; ++t) {
      float* token = values + (b * tokens + t) * dim;
      for (std::int64_t d = 0; d < dim; ++d) token[d] = token[d] * (1.0f + scale_row[d]) + shift_row[d];
    }
  }
}

// In place: residual [batch, tokens, dim] += gate * update, with the gate per sample.
inline void add_gated_(Tensor& residual, const ModulationChunk& gate, const TensorView& update) {
  const std::int64_t batch = residual.size(0), tokens = residual.size(1), dim = residual.size(2);
  float* values = residual.data_as<float>();
  const float* updates = update.data_as<const float>();
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* gate_row = gate.row(b);
    for (std::int64_t t = 0; t < tokens; ++t) {
      const std::int64_t offset = (b * tokens + t) * dim;
      for (std::int64_t d = 0; d < dim; ++d) values[offset + d] += gate_row[d] * updates[offset + d];
    }
  }
}

// Tokens [begin, begin + count) of x [batch, tokens, ...] as a new contiguous tensor.
inline Tensor slice_tokens(const TensorView& x, std::int64_t begin, std::int64_t count) {
  Shape shape = x.shape();
  const std::int64_t tokens = shape[1];
  const std::int64_t row = x.numel() / (shape[0] * tokens);  // elements per token
  shape[1] = count;
  Tensor out = Tensor::empty(shape, DType::f32);
  const float* source = x.data_as<const float>();
  float* destination = out.data_as<float>();
  for (std::int64_t b = 0; b < shape[0]; ++b)
    std::memcpy(destination + b * count * row, source + (b * tokens + begin) * row,
                static_cast<std::size_t>(count * row) * sizeof(float));
  return out;
}

// A forward argument must be a contiguous host f32 tensor of the given rank.
inline void require_argument(const TensorView& x, int rank, std::string_view model, std::string_view argument,
                             std::string_view expected) {
  SDNQ_REQUIRE(x.device().is_cpu() && x.dtype() == DType::f32 && x.is_contiguous(), ShapeError,
               "{}.forward: {} must be a contiguous host F32 tensor, got {} {} on {}", model, argument,
               dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  SDNQ_REQUIRE(x.rank() == rank, ShapeError, "{}.forward: {} must be {}, got {}", model, argument, expected,
               x.shape().to_string());
}

// The timestep-like argument: one value per sample, or a single value for the whole batch, as [batch].
inline Tensor per_sample_values(const TensorView& values, std::int64_t batch, std::string_view model,
                                std::string_view argument) {
  SDNQ_REQUIRE(values.device().is_cpu() && values.dtype() == DType::f32 && values.is_contiguous(), ShapeError,
               "{}.forward: {} must be a contiguous host F32 tensor, got {} {}", model, argument,
               dtype_name(values.dtype()), values.shape().to_string());
  SDNQ_REQUIRE(values.rank() <= 1 && (values.numel() == batch || values.numel() == 1), ShapeError,
               "{}.forward: {} must be [{}] (one value per sample) or a single value, got {}", model, argument, batch,
               values.shape().to_string());
  Tensor out = Tensor::empty({batch}, DType::f32);
  const float* source = values.data_as<const float>();
  for (std::int64_t b = 0; b < batch; ++b) out.data_as<float>()[b] = source[values.numel() == 1 ? 0 : b];
  return out;
}

}  // namespace sdnq::nn::detail
