// FLUX's rotary position embedding against an independent formulation: each interleaved pair
// (x[2i], x[2i+1]) of a head is the complex number x[2i] + i·x[2i+1], multiplied by e^{i·angle} with
// angle = position · theta^(-2i/d) for the axis the pair belongs to (computed here in double with
// std::polar, not through the library's cos/sin tables).
#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::Tensor;

Tensor filled(sdnq::Shape shape, float start, float step) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data_as<float>()[i] = start + step * static_cast<float>(i % 37) - 0.01f * static_cast<float>(i / 37);
  return t;
}

}  // namespace

TEST_CASE("FLUX RoPE: per-axis frequencies and interleaved rotation match complex multiplication", "[nn][flux][rope]") {
  const std::vector<std::int64_t> axes_dims{4, 6, 6};  // the fixtures' head_dim 16
  constexpr std::int64_t tokens = 5, heads = 2, head_dim = 16, batch = 2;
  // (a, h, w) ids as FLUX's pipeline builds them: text rows zero, image rows (0, row, column).
  const float id_values[tokens * 3] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 3, 2, 7};
  Tensor ids = Tensor::empty({tokens, 3}, DType::f32);
  for (int i = 0; i < tokens * 3; ++i) ids.data_as<float>()[i] = id_values[i];

  const sdnq::nn::detail::RotaryEmbedding rope = sdnq::nn::detail::rotary_embedding(ids, axes_dims);
  REQUIRE(rope.cos.shape() == sdnq::Shape{tokens, head_dim});

  const Tensor input = filled({batch, tokens, heads, head_dim}, -0.7f, 0.043f);
  Tensor rotated = input.clone();
  sdnq::nn::detail::apply_rotary_embedding_(rotated, rope);

  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t h = 0; h < heads; ++h) {
        std::int64_t channel = 0;
        for (std::size_t axis = 0; axis < axes_dims.size(); ++axis)
          for (std::int64_t pair = 0; pair < axes_dims[axis] / 2; ++pair, channel += 2) {
            const double position = id_values[t * 3 + static_cast<std::int64_t>(axis)];
            const double angle =
                position * std::pow(10000.0, -2.0 * static_cast<double>(pair) / static_cast<double>(axes_dims[axis]));
            const std::int64_t at = ((b * tokens + t) * heads + h) * head_dim + channel;
            const std::complex<double> z(input.data_as<float>()[at], input.data_as<float>()[at + 1]);
            const std::complex<double> expected = z * std::polar(1.0, angle);
            INFO("batch " << b << " token " << t << " head " << h << " channel " << channel);
            CHECK(std::abs(rotated.data_as<float>()[at] - (expected.real())) <= 1e-6);
            CHECK(std::abs(rotated.data_as<float>()[at + 1] - (expected.imag())) <= 1e-6);
          }
      }
}

TEST_CASE("FLUX RoPE: position zero leaves a head unchanged and the table repeats each frequency twice",
          "[nn][flux][rope]") {
  const std::vector<std::int64_t> axes_dims{2, 4};
  Tensor ids = Tensor::zeros({2, 2}, DType::f32);
  ids.data_as<float>()[2] = 5.0f;  // token 1: axis 0 at 5, axis 1 at 0
  const auto rope = sdnq::nn::detail::rotary_embedding(ids, axes_dims);
  const float* cos = rope.cos.data_as<float>();
  const float* sin = rope.sin.data_as<float>();
  for (int i = 0; i < 6; ++i) {
    CHECK(cos[i] == 1.0f);  // token 0 sits at the origin on every axis
    CHECK(sin[i] == 0.0f);
  }
  CHECK(std::abs(cos[6] - (std::cos(5.0))) <= 1e-7);  // axis 0, frequency 1
  CHECK(cos[7] == cos[6]);
  CHECK(std::abs(sin[6] - (std::sin(5.0))) <= 1e-7);
  CHECK(sin[7] == sin[6]);
  for (int i = 8; i < 12; ++i) CHECK(cos[i] == 1.0f);  // axis 1 at position 0

  Tensor head = Tensor::empty({1, 2, 1, 6}, DType::f32);
  for (int i = 0; i < 12; ++i) head.data_as<float>()[i] = static_cast<float>(i) - 3.5f;
  Tensor rotated = head.clone();
  sdnq::nn::detail::apply_rotary_embedding_(rotated, rope);
  for (int i = 0; i < 6; ++i) CHECK(rotated.data_as<float>()[i] == head.data_as<float>()[i]);
}
