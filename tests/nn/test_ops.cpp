// nn tensor ops against independent naive computations in double.
#include <cmath>
#include <vector>

#include "nn_test_support.hpp"
#include "sdnq/nn/tensor_ops.hpp"

using namespace sdnq;
using sdnq::test::random_tensor;
using sdnq::test::tensor_of;

TEST_CASE("nn::linear equals the explicit sum over in_features, with and without bias", "[nn][ops]") {
  const Tensor x = random_tensor({2, 3, 37}, 1), w = random_tensor({19, 37}, 2), b = random_tensor({19}, 3);
  const Tensor y = nn::linear(x, w, &b.view());
  const Tensor y_nobias = nn::linear(x, w, nullptr);
  REQUIRE(y.shape() == Shape{2, 3, 19});
  std::vector<double> expected, expected_nobias;
  for (int row = 0; row < 6; ++row)
    for (int o = 0; o < 19; ++o) {
      double sum = 0;
      for (int i = 0; i < 37; ++i) sum += double(x.data_as<float>()[row * 37 + i]) * w.data_as<float>()[o * 37 + i];
      expected_nobias.push_back(sum);
      expected.push_back(sum + b.data_as<float>()[o]);
    }
  CHECK(test::max_scaled_error(y, expected) < 1e-5);
  CHECK(test::max_scaled_error(y_nobias, expected_nobias) < 1e-5);
  const Tensor wrong = random_tensor({19, 36}, 4);
  CHECK_THROWS_AS(nn::linear(x, wrong, nullptr), ShapeError);
}

namespace {
// Explicit attention in double: softmax over keys of q·k·scale + mask, causal positions excluded.
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                                    const Tensor* mask /* [Lq, Lk] broadcast over B, H */) {
  const auto B = q.size(0), H = q.size(1), Lq = q.size(2), D = q.size(3), Lk = k.size(2), Dv = v.size(3);
  std::vector<double> out;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < Lq; ++i) {
        std::vector<double> weights(static_cast<std::size_t>(Lk));
        double max_score = -1e300, total = 0;
        for (std::int64_t j = 0; j < Lk; ++j) {
          double s = 0;
          for (std::int64_t d = 0; d < D; ++d)
            s += double(q.data_as<float>()[((b * H + h) * Lq + i) * D + d]) *
                 k.data_as<float>()[((b * H + h) * Lk + j) * D + d];
          s *= scale;
          if (mask) s += mask->data_as<float>()[i * Lk + j];
          weights[j] = (causal && j > i) ? -1e300 : s;
          max_score = std::max(max_score, weights[j]);
        }
        for (auto& w : weights) total += (w = (w <= -1e299) ? 0.0 : std::exp(w - max_score));
        for (std::int64_t d = 0; d < Dv; ++d) {
          double acc = 0;
          for (std::int64_t j = 0; j < Lk; ++j)
            acc += weights[j] / total * v.data_as<float>()[((b * H + h) * Lk + j) * Dv + d];
          out.push_back(acc);
        }
      }
  return out;
}
}  // namespace

TEST_CASE("nn::attention matches explicit softmax loops: plain, causal, additive mask", "[nn][ops]") {
  const Tensor q = random_tensor({2, 3, 5, 8}, 10, -2, 2), k = random_tensor({2, 3, 5, 8}, 11, -2, 2);
  const Tensor v = random_tensor({2, 3, 5, 6}, 12);
  const Tensor mask = random_tensor({5, 5}, 13, -3, 3);
  nn::AttentionOptions options;
  options.scale = 0.35f;
  CHECK(test::max_scaled_error(nn::attention(q, k, v, options), naive_attention(q, k, v, 0.35, false, nullptr)) < 1e-5);
  options.causal = true;
  CHECK(test::max_scaled_error(nn::attention(q, k, v, options), naive_attention(q, k, v, 0.35, true, nullptr)) < 1e-5);
  options.causal = false;
  options.additive_mask = &mask.view();
  CHECK(test::max_scaled_error(nn::attention(q, k, v, options), naive_attention(q, k, v, 0.35, false, &mask)) < 1e-5);
  // Lk != Lq (cross attention) and Dv != D.
  const Tensor k2 = random_tensor({2, 3, 7, 8}, 14), v2 = random_tensor({2, 3, 7, 4}, 15);
  nn::AttentionOptions cross;
  cross.scale = 1.0f;
  CHECK(test::max_scaled_error(nn::attention(q, k2, v2, cross), naive_attention(q, k2, v2, 1.0, false, nullptr)) <
        1e-5);
  const Tensor bad_mask = random_tensor({4, 5}, 16);
  options.additive_mask = &bad_mask.view();
  CHECK_THROWS_AS(nn::attention(q, k, v, options), ShapeError);
  CHECK_THROWS_AS(nn::attention(q, k2, v, cross), ShapeError);
}

TEST_CASE("nn::conv2d equals the direct 7-loop convolution (stride, padding, dilation, groups, bias)", "[nn][ops]") {
  struct Setting {
    int stride, pad, dilation, groups;
  };
  for (const Setting s : {Setting{1, 1, 1, 1}, Setting{2, 1, 1, 1}, Setting{1, 2, 2, 1}, Setting{2, 0, 1, 2}}) {
    const std::int64_t N = 2, C = 4, H = 7, W = 6, O = 6, K = 3;
    const Tensor x = random_tensor({N, C, H, W}, 20), w = random_tensor({O, C / s.groups, K, K}, 21);
    const Tensor b = random_tensor({O}, 22);
    nn::Conv2dParams params;
    params.stride_h = params.stride_w = s.stride;
    params.pad_h = params.pad_w = s.pad;
    params.dilation_h = params.dilation_w = s.dilation;
    params.groups = s.groups;
    const Tensor y = nn::conv2d(x, w, &b.view(), params);
    const std::int64_t OH = (H + 2 * s.pad - s.dilation * (K - 1) - 1) / s.stride + 1;
    const std::int64_t OW = (W + 2 * s.pad - s.dilation * (K - 1) - 1) / s.stride + 1;
    REQUIRE(y.shape() == Shape{N, O, OH, OW});
    std::vector<double> expected;
    const std::int64_t cg = C / s.groups, og = O / s.groups;
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t o = 0; o < O; ++o)
        for (std::int64_t oy = 0; oy < OH; ++oy)
          for (std::int64_t ox = 0; ox < OW; ++ox) {
            double sum = b.data_as<float>()[o];
            for (std::int64_t c = 0; c < cg; ++c)
              for (std::int64_t ky = 0; ky < K; ++ky)
                for (std::int64_t kx = 0; kx < K; ++kx) {
                  const std::int64_t iy = oy * s.stride - s.pad + ky * s.dilation,
                                     ix = ox * s.stride - s.pad + kx * s.dilation;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  const std::int64_t channel = (o / og) * cg + c;
                  sum += double(x.data_as<float>()[((n * C + channel) * H + iy) * W + ix]) *
                         w.data_as<float>()[((o * cg + c) * K + ky) * K + kx];
                }
            expected.push_back(sum);
          }
    CHECK(test::max_scaled_error(y, expected) < 1e-5);
  }
  const Tensor x = random_tensor({1, 4, 5, 5}, 23), w = random_tensor({2, 3, 3, 3}, 24);
  CHECK_THROWS_AS(nn::conv2d(x, w, nullptr, {}), ShapeError);
}

TEST_CASE("nn norms equal their double formulas", "[nn][ops]") {
  const Tensor x = random_tensor({3, 4, 10}, 30, -3, 5), w = random_tensor({10}, 31), b = random_tensor({10}, 32);
  std::vector<double> ln, rms;
  for (int row = 0; row < 12; ++row) {
    double mean = 0, var = 0, squares = 0;
    for (int i = 0; i < 10; ++i) mean += x.data_as<float>()[row * 10 + i] / 10.0;
    for (int i = 0; i < 10; ++i) {
      const double v = x.data_as<float>()[row * 10 + i];
      var += (v - mean) * (v - mean) / 10.0;
      squares += v * v / 10.0;
    }
    for (int i = 0; i < 10; ++i) {
      const double v = x.data_as<float>()[row * 10 + i];
      ln.push_back((v - mean) / std::sqrt(var + 1e-5) * w.data_as<float>()[i] + b.data_as<float>()[i]);
      rms.push_back(v / std::sqrt(squares + 1e-6) * w.data_as<float>()[i]);
    }
  }
  CHECK(test::max_scaled_error(nn::layer_norm(x, &w.view(), &b.view(), 1e-5f), ln) < 1e-5);
  CHECK(test::max_scaled_error(nn::rms_norm(x, &w.view(), 1e-6f), rms) < 1e-5);

  const Tensor g = random_tensor({2, 6, 3, 2}, 33, -2, 4), gw = random_tensor({6}, 34), gb = random_tensor({6}, 35);
  std::vector<double> gn;
  const int groups = 3, per_group = 2 * 3 * 2;
  for (int n = 0; n < 2; ++n)
    for (int group = 0; group < groups; ++group) {
      const float* base = g.data_as<float>() + (n * 6 + group * 2) * 6;
      double mean = 0, var = 0;
      for (int i = 0; i < per_group; ++i) mean += base[i] / double(per_group);
      for (int i = 0; i < per_group; ++i) var += (base[i] - mean) * (base[i] - mean) / per_group;
      for (int i = 0; i < per_group; ++i) {
        const int channel = group * 2 + i / 6;
        gn.push_back((base[i] - mean) / std::sqrt(var + 1e-6) * gw.data_as<float>()[channel] +
                     gb.data_as<float>()[channel]);
      }
    }
  CHECK(test::max_scaled_error(nn::group_norm(g, groups, &gw.view(), &gb.view(), 1e-6f), gn) < 1e-5);
  CHECK_THROWS_AS(nn::group_norm(g, 4, nullptr, nullptr, 1e-6f), ShapeError);
  CHECK_THROWS_AS(nn::layer_norm(x, &gw.view(), nullptr, 1e-5f), ShapeError);
}

TEST_CASE("nn::timestep_embedding equals the sinusoid formula", "[nn][ops]") {
  const Tensor t = tensor_of({3}, {0.0f, 1.5f, 999.0f});
  for (const bool flip : {false, true})
    for (const float shift : {0.0f, 1.0f}) {
      const int dim = 9, half = 4;  // odd: zero padded
      const Tensor e = nn::timestep_embedding(t, dim, flip, shift, 1.0f, 10000);
      REQUIRE(e.shape() == Shape{3, 9});
      std::vector<double> expected;
      for (int n = 0; n < 3; ++n) {
        std::vector<double> sines, cosines;
        for (int i = 0; i < half; ++i) {
          const double arg = t.data_as<float>()[n] * std::exp(-std::log(10000.0) * i / (half - shift));
          sines.push_back(std::sin(arg));
          cosines.push_back(std::cos(arg));
        }
        for (double v : flip ? cosines : sines) expected.push_back(v);
        for (double v : flip ? sines : cosines) expected.push_back(v);
        expected.push_back(0.0);
      }
      // fp32 arguments up to ~1000 carry ~1e-4 absolute phase error, as the reference's fp32 math does.
      CHECK(test::max_scaled_error(e, expected) < 2e-4);
    }
}

TEST_CASE("nn activations, broadcasting add/mul and softmax equal their formulas", "[nn][ops]") {
  const std::vector<float> values{-3.0f, -0.5f, 0.0f, 0.7f, 2.5f};
  const auto apply = [&](nn::Activation a) {
    Tensor t = tensor_of({5}, values);
    nn::activate_(t, a);
    return t;
  };
  std::vector<double> silu, gelu, tanh_gelu, quick, relu;
  for (double v : values) {
    silu.push_back(v / (1 + std::exp(-v)));
    gelu.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
    tanh_gelu.push_back(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
    quick.push_back(v / (1 + std::exp(-1.702 * v)));
    relu.push_back(v > 0 ? v : 0);
  }
  CHECK(test::max_scaled_error(apply(nn::Activation::silu), silu) < 1e-6);
  CHECK(test::max_scaled_error(apply(nn::Activation::gelu), gelu) < 1e-6);
  CHECK(test::max_scaled_error(apply(nn::Activation::gelu_tanh), tanh_gelu) < 1e-6);
  CHECK(test::max_scaled_error(apply(nn::Activation::quick_gelu), quick) < 1e-6);
  CHECK(test::max_scaled_error(apply(nn::Activation::relu), relu) < 1e-7);

  const Tensor a = random_tensor({2, 1, 4}, 40), b = random_tensor({3, 1}, 41);
  const Tensor sum = nn::add(a, b), product = nn::mul(a, b);
  REQUIRE(sum.shape() == Shape{2, 3, 4});
  std::vector<double> expected_sum, expected_product;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        expected_sum.push_back(double(a.data_as<float>()[i * 4 + k]) + b.data_as<float>()[j]);
        expected_product.push_back(double(a.data_as<float>()[i * 4 + k]) * b.data_as<float>()[j]);
      }
  CHECK(test::max_scaled_error(sum, expected_sum) < 1e-7);
  CHECK(test::max_scaled_error(product, expected_product) < 1e-7);
  CHECK_THROWS_AS(nn::add(a, random_tensor({3, 3}, 42)), ShapeError);

  const Tensor s = random_tensor({3, 7}, 43, -5, 5);
  std::vector<double> expected_softmax;
  for (int r = 0; r < 3; ++r) {
    double total = 0;
    for (int i = 0; i < 7; ++i) total += std::exp(double(s.data_as<float>()[r * 7 + i]));
    for (int i = 0; i < 7; ++i) expected_softmax.push_back(std::exp(double(s.data_as<float>()[r * 7 + i])) / total);
  }
  CHECK(test::max_scaled_error(nn::softmax(s), expected_softmax) < 1e-6);
}

TEST_CASE("nn concat, chunk, permute and nearest upsampling move the right elements", "[nn][ops]") {
  const Tensor a = random_tensor({2, 3, 4}, 50), b = random_tensor({2, 5, 4}, 51);
  const TensorView parts[] = {a, b};
  const Tensor joined = nn::concat(parts, 1);
  REQUIRE(joined.shape() == Shape{2, 8, 4});
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 4; ++k) {
        const float expected =
            j < 3 ? a.data_as<float>()[(i * 3 + j) * 4 + k] : b.data_as<float>()[(i * 5 + j - 3) * 4 + k];
        REQUIRE(joined.data_as<float>()[(i * 8 + j) * 4 + k] == expected);
      }
  const auto pieces = nn::chunk(joined, 2, -1);
  REQUIRE(pieces.size() == 2);
  REQUIRE(pieces[1].shape() == Shape{2, 8, 2});
  CHECK(pieces[1].data_as<float>()[(1 * 8 + 5) * 2 + 1] == joined.data_as<float>()[(1 * 8 + 5) * 4 + 3]);
  CHECK_THROWS_AS(nn::chunk(joined, 3, 2), ShapeError);

  const int axes[] = {2, 0, 1};
  const Tensor permuted = nn::permute(a, axes);
  REQUIRE(permuted.shape() == Shape{4, 2, 3});
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k)
        REQUIRE(permuted.data_as<float>()[(k * 2 + i) * 3 + j] == a.data_as<float>()[(i * 3 + j) * 4 + k]);

  const Tensor image = random_tensor({1, 2, 2, 3}, 52);
  const Tensor up = nn::upsample_nearest2x(image);
  REQUIRE(up.shape() == Shape{1, 2, 4, 6});
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x)
        REQUIRE(up.data_as<float>()[(c * 4 + y) * 6 + x] == image.data_as<float>()[(c * 2 + y / 2) * 3 + x / 2]);
}

TEST_CASE("nn::detail::to_bf16 rounds each value once to nearest even, for every float dtype and strided views",
          "[nn][ops]") {
  // Halfway cases (bf16 keeps 8 significant bits): 1 + 2^-8 lies between 1 and 1 + 2^-7 (even: 1);
  // 1 + 3·2^-8 between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6); -(1 + 2^-9) rounds to -1.
  const Tensor ties = tensor_of({4}, {1.00390625f, 1.01171875f, -1.001953125f, 0.0f});
  const Tensor rounded = nn::detail::to_bf16(ties, "ties");
  REQUIRE(rounded.dtype() == DType::bf16);
  const std::uint16_t expected_bits[] = {0x3F80, 0x3F82, 0xBF80, 0x0000};
  for (int i = 0; i < 4; ++i) CHECK(rounded.data_as<bf16>()[i].bits == expected_bits[i]);

  // F16 and F64 sources go through their f32 value; 1 + 2^-10 (exact in f16) rounds down to 1.
  Tensor half = Tensor::empty({2}, DType::f16);
  half.data_as<fp16>()[0] = fp16(1.0009765625f);
  half.data_as<fp16>()[1] = fp16(-3.0f);
  const Tensor from_half = nn::detail::to_bf16(half, "half");
  CHECK(from_half.data_as<bf16>()[0].bits == 0x3F80);
  CHECK(from_half.data_as<bf16>()[1].bits == 0xC040);
  Tensor wide = Tensor::empty({1}, DType::f64);
  wide.data_as<double>()[0] = 1.01171875;
  CHECK(nn::detail::to_bf16(wide, "wide").data_as<bf16>()[0].bits == 0x3F82);

  // A tensor over several parallel chunks, read through a transposed view, against per-element rounding.
  const Tensor big = random_tensor({300, 700}, 11);
  const TensorView transposed(big.data(), DType::f32, Shape{700, 300}, Shape{1, 700}, Device::cpu());
  const Tensor narrowed = nn::detail::to_bf16(transposed, "big");
  REQUIRE(narrowed.shape() == Shape{700, 300});
  std::int64_t mismatches = 0;
  for (std::int64_t r = 0; r < 700; ++r)
    for (std::int64_t c = 0; c < 300; ++c)
      mismatches += narrowed.data_as<bf16>()[r * 300 + c].bits != bf16(big.data_as<float>()[c * 700 + r]).bits;
  CHECK(mismatches == 0);

  const Tensor integers = Tensor::zeros({3}, DType::i32);
  CHECK_THROWS_AS(nn::detail::to_bf16(integers, "integers"), ShapeError);
}
