// The adaptive-norm pieces FLUX and SD3 share, against formulas written out here in double:
// emb = W·SiLU(temb) + b, split into chunks in the documented order (AdaLayerNormZero: shift_msa,
// scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp [, shift_msa2, scale_msa2, gate_msa2];
// Single: shift, scale, gate; Continuous: scale, shift), LN(x)·(1 + scale) + shift per sample, and
// the gated residual x + gate·y.
#include <cmath>
#include <cstdint>
#include <vector>

#include "sdnq/nn/models/detail/dit_modulation.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::Tensor;
namespace dit = sdnq::nn::detail;

Tensor pattern(sdnq::Shape shape, float scale, int salt) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data_as<float>()[i] = scale * static_cast<float>(std::sin(0.37 * static_cast<double>(i) + salt));
  return t;
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// emb[b, j] = Σ_k W[j, k]·SiLU(temb[b, k]) + bias[j], in double.
std::vector<double> expected_modulation(const Tensor& weight, const Tensor& bias, const Tensor& temb) {
  const std::int64_t batch = temb.size(0), dim = temb.size(1), out = weight.size(0);
  std::vector<double> emb(static_cast<std::size_t>(batch * out));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t j = 0; j < out; ++j) {
      double sum = bias.data_as<float>()[j];
      for (std::int64_t k = 0; k < dim; ++k)
        sum += weight.data_as<float>()[j * dim + k] * silu(temb.data_as<float>()[b * dim + k]);
      emb[static_cast<std::size_t>(b * out + j)] = sum;
    }
  return emb;
}

// LN(x[b, t, :]) without affine parameters, eps 1e-6, in double.
std::vector<double> layer_norm_row(const Tensor& x, std::int64_t b, std::int64_t t) {
  const std::int64_t tokens = x.size(1), dim = x.size(2);
  const float* row = x.data_as<float>() + (b * tokens + t) * dim;
  double mean = 0, variance = 0;
  for (std::int64_t d = 0; d < dim; ++d) mean += row[d];
  mean /= static_cast<double>(dim);
  for (std::int64_t d = 0; d < dim; ++d) variance += (row[d] - mean) * (row[d] - mean);
  variance /= static_cast<double>(dim);
  std::vector<double> out(static_cast<std::size_t>(dim));
  for (std::int64_t d = 0; d < dim; ++d)
    out[static_cast<std::size_t>(d)] = (row[d] - mean) / std::sqrt(variance + 1e-6);
  return out;
}

}  // namespace

TEST_CASE("DiT adaptive norms: chunk order, modulation and gated residual match the written-out formulas",
          "[nn][sd3][flux][modulation]") {
  constexpr std::int64_t batch = 2, tokens = 3, dim = 8;
  const Tensor temb = pattern({batch, dim}, 1.5f, 1);
  const Tensor x = pattern({batch, tokens, dim}, 2.0f, 2);

  // (chunks, enum value the model uses for shift, for scale, and where the documentation puts them)
  struct Named {
    int chunks, shift_enum, scale_enum, documented_shift, documented_scale;
  };
  const Named named[] = {
      {6, dit::shift_msa, dit::scale_msa, 0, 1},                // AdaLayerNormZero, attention branch
      {6, dit::shift_mlp, dit::scale_mlp, 3, 4},                // AdaLayerNormZero, MLP branch
      {9, dit::shift_msa2, dit::scale_msa2, 6, 7},              // SD35AdaLayerNormZeroX, second attention
      {3, dit::single_shift, dit::single_scale, 0, 1},          // AdaLayerNormZeroSingle
      {2, dit::continuous_shift, dit::continuous_scale, 1, 0},  // AdaLayerNormContinuous: scale first
  };
  for (const auto& c : named) {
    INFO(c.chunks << " chunks, shift chunk " << c.documented_shift << ", scale chunk " << c.documented_scale);
    CHECK(c.shift_enum == c.documented_shift);
    CHECK(c.scale_enum == c.documented_scale);

    const Tensor weight = pattern({c.chunks * dim, dim}, 0.3f, 3 + c.chunks);
    const Tensor bias = pattern({c.chunks * dim}, 0.2f, 4 + c.chunks);
    const std::vector<double> emb = expected_modulation(weight, bias, temb);
    const dit::AdaptiveNorm norm{sdnq::nn::Linear::from_tensors(weight.clone(), bias.clone()), c.chunks};
    const dit::Modulation modulation = norm.modulation(dit::silu_of(temb));
    const Tensor modulated = dit::modulated_norm(x, modulation[c.shift_enum], modulation[c.scale_enum]);

    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t t = 0; t < tokens; ++t) {
        const std::vector<double> normed = layer_norm_row(x, b, t);
        for (std::int64_t d = 0; d < dim; ++d) {
          const double shift = emb[static_cast<std::size_t>(b * c.chunks * dim + c.documented_shift * dim + d)];
          const double scale = emb[static_cast<std::size_t>(b * c.chunks * dim + c.documented_scale * dim + d)];
          const double expected = normed[static_cast<std::size_t>(d)] * (1.0 + scale) + shift;
          CHECK(std::abs(modulated.data_as<float>()[(b * tokens + t) * dim + d] - (expected)) <= 1e-5);
        }
      }
  }
}

TEST_CASE("DiT adaptive norms: the gate of each sample scales that sample's update only",
          "[nn][sd3][flux][modulation]") {
  constexpr std::int64_t batch = 2, tokens = 2, dim = 4, chunks = 3;
  const Tensor emb = pattern({batch, chunks * dim}, 1.0f, 5);
  const Tensor update = pattern({batch, tokens, dim}, 3.0f, 6);
  const Tensor start = pattern({batch, tokens, dim}, 1.0f, 7);
  Tensor residual = start.clone();
  dit::add_gated_(residual, dit::modulation_chunk(emb, chunks, dit::single_gate), update);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t d = 0; d < dim; ++d) {
        const std::int64_t at = (b * tokens + t) * dim + d;
        const double gate = emb.data_as<float>()[b * chunks * dim + 2 * dim + d];  // chunk 2 of sample b
        const double expected = start.data_as<float>()[at] + gate * update.data_as<float>()[at];
        CHECK(std::abs(residual.data_as<float>()[at] - (expected)) <= 1e-6);
      }
}
