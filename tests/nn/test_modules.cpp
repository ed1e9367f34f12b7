// nn modules over a dense component folder written here, and over an SDNQ fixture folder.
#include <unistd.h>
#include <cmath>
#include <fstream>
#include <vector>

#include "nn_test_support.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/io/safetensors.hpp"
#include "sdnq/nn/model_conformance.hpp"
#include "sdnq/nn/modules/conv2d.hpp"
#include "sdnq/nn/modules/embedding.hpp"
#include "sdnq/nn/modules/linear.hpp"
#include "sdnq/nn/modules/norms.hpp"

using namespace sdnq;
using sdnq::test::random_tensor;

namespace {

template <class Scalar>
Tensor narrowed(const Tensor& values) {
  Tensor out = Tensor::empty(values.shape(), dtype_of_v<Scalar>);
  for (std::int64_t i = 0; i < values.numel(); ++i) out.data_as<Scalar>()[i] = Scalar(values.data_as<float>()[i]);
  return out;
}
template <class Scalar>
double widened(const Tensor& narrow, std::int64_t i) {
  return narrow.data_as<Scalar>()[i].to_float();
}

struct DenseFolder {
  std::filesystem::path folder;
  Tensor linear_weight, linear_bias, conv_weight, conv_bias, table, norm_weight, norm_bias, extra;
  DenseFolder() {
    folder = std::filesystem::temp_directory_path() / ("sdnq_nn_modules_" + std::to_string(::getpid()));
    std::filesystem::create_directories(folder);
    std::ofstream(folder / "config.json") << R"({"_class_name": "Probe", "dim": 8})";
    linear_weight = narrowed<bf16>(random_tensor({5, 8}, 1));  // [out, in] bf16 as in the file
    linear_bias = random_tensor({5}, 2);
    conv_weight = narrowed<fp16>(random_tensor({4, 2, 3, 3}, 3));
    conv_bias = random_tensor({4}, 4);
    table = narrowed<bf16>(random_tensor({10, 8}, 5));
    norm_weight = random_tensor({8}, 6);
    norm_bias = random_tensor({8}, 7);
    extra = random_tensor({3}, 8);
    io::write_safetensors(folder / "model.safetensors", {{"lin.weight", linear_weight},
                                                         {"lin.bias", linear_bias},
                                                         {"conv.weight", conv_weight},
                                                         {"conv.bias", conv_bias},
                                                         {"emb.weight", table},
                                                         {"norm.weight", norm_weight},
                                                         {"norm.bias", norm_bias},
                                                         {"extra.weight", extra}});
  }
  ~DenseFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(folder, ignored);
  }
};

}  // namespace

TEST_CASE("Linear over a bf16 weight computes x·Wᵀ + b with the exact widened weight", "[nn][modules]") {
  DenseFolder files;
  nn::WeightLoader weights = nn::WeightLoader::open(files.folder);
  CHECK_FALSE(weights.is_sdnq());
  CHECK(weights.config().at("dim") == 8);
  const nn::Linear linear = nn::Linear::load(weights, "lin", 8, 5);
  CHECK(linear.in_features() == 8);
  CHECK(linear.out_features() == 5);
  const Tensor x = random_tensor({3, 8}, 9);
  const Tensor y = linear.forward(x);
  std::vector<double> expected;
  for (int r = 0; r < 3; ++r)
    for (int o = 0; o < 5; ++o) {
      double sum = files.linear_bias.data_as<float>()[o];
      for (int i = 0; i < 8; ++i)
        sum += double(x.data_as<float>()[r * 8 + i]) * widened<bf16>(files.linear_weight, o * 8 + i);
      expected.push_back(sum);
    }
  CHECK(test::max_scaled_error(y, expected) < 1e-6);
  CHECK_THROWS_AS(linear.forward(random_tensor({3, 7}, 10)), ShapeError);
}

TEST_CASE("Conv2d, Embedding and LayerNorm load dense weights of any float dtype", "[nn][modules]") {
  DenseFolder files;
  nn::WeightLoader weights = nn::WeightLoader::open(files.folder);
  nn::Conv2dParams params;
  params.pad_h = params.pad_w = 1;
  const nn::Conv2d conv = nn::Conv2d::load(weights, "conv", 2, 4, 3, params);
  const Tensor x = random_tensor({1, 2, 4, 5}, 11);
  const Tensor y = conv.forward(x);
  REQUIRE(y.shape() == Shape{1, 4, 4, 5});
  std::vector<double> expected;
  for (int o = 0; o < 4; ++o)
    for (int oy = 0; oy < 4; ++oy)
      for (int ox = 0; ox < 5; ++ox) {
        double sum = files.conv_bias.data_as<float>()[o];
        for (int c = 0; c < 2; ++c)
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              const int iy = oy + ky - 1, ix = ox + kx - 1;
              if (iy < 0 || iy >= 4 || ix < 0 || ix >= 5) continue;
              sum += double(x.data_as<float>()[(c * 4 + iy) * 5 + ix]) *
                     widened<fp16>(files.conv_weight, ((o * 2 + c) * 3 + ky) * 3 + kx);
            }
        expected.push_back(sum);
      }
  CHECK(test::max_scaled_error(y, expected) < 1e-6);

  const nn::Embedding embedding = nn::Embedding::load(weights, "emb", 10, 8);
  Tensor ids = Tensor::empty({2}, DType::i64);
  ids.data_as<std::int64_t>()[0] = 7;
  ids.data_as<std::int64_t>()[1] = 0;
  const Tensor rows = embedding.forward(ids);
  REQUIRE(rows.shape() == Shape{2, 8});
  for (int i = 0; i < 8; ++i) {
    CHECK(rows.data_as<float>()[i] == widened<bf16>(files.table, 7 * 8 + i));
    CHECK(rows.data_as<float>()[8 + i] == widened<bf16>(files.table, i));
  }
  ids.data_as<std::int64_t>()[1] = 10;
  CHECK_THROWS_AS(embedding.forward(ids), ShapeError);

  const nn::LayerNorm norm = nn::LayerNorm::load(weights, "norm", 8, 1e-5f, true);
  const Tensor z = random_tensor({8}, 12);
  double mean = 0, var = 0;
  for (int i = 0; i < 8; ++i) mean += z.data_as<float>()[i] / 8.0;
  for (int i = 0; i < 8; ++i) var += (z.data_as<float>()[i] - mean) * (z.data_as<float>()[i] - mean) / 8.0;
  std::vector<double> normalized;
  for (int i = 0; i < 8; ++i)
    normalized.push_back((z.data_as<float>()[i] - mean) / std::sqrt(var + 1e-5) *
                             files.norm_weight.data_as<float>()[i] +
                         files.norm_bias.data_as<float>()[i]);
  CHECK(test::max_scaled_error(norm.forward(z), normalized) < 1e-6);

  // Everything but extra.weight was taken once the linear layer is loaded too.
  CHECK(weights.unused_tensors() == std::vector<std::string>{"lin.weight", "lin.bias", "extra.weight"});
  (void)nn::Linear::load(weights, "lin", 8, 5);
  REQUIRE(weights.unused_tensors() == std::vector<std::string>{"extra.weight"});
  CHECK_THROWS_WITH(weights.require_all_used("Probe"), Catch::Matchers::Contains("extra.weight"));
  CHECK_NOTHROW(weights.require_all_used("Probe", [](std::string_view name) { return name == "extra.weight"; }));
}

TEST_CASE("Module loading names the missing tensor or the shape the config implies", "[nn][modules]") {
  DenseFolder files;
  nn::WeightLoader weights = nn::WeightLoader::open(files.folder);
  CHECK_THROWS_AS(nn::Linear::load(weights, "absent", 8, 5), FormatError);
  CHECK_THROWS_WITH(nn::Linear::load(weights, "absent", 8, 5), Catch::Matchers::Contains("absent.weight"));
  CHECK_THROWS_AS(nn::Linear::load(weights, "lin", 7, 5), ShapeError);
  CHECK_THROWS_WITH(nn::Linear::load(weights, "lin", 7, 5), Catch::Matchers::Contains("lin.weight") &&
                                                                Catch::Matchers::Contains("[5, 7]") &&
                                                                Catch::Matchers::Contains("[5, 8]"));
  CHECK_THROWS_AS(nn::RMSNorm::load(weights, "norm", 9, 1e-6f), ShapeError);
  CHECK_THROWS_AS(nn::WeightLoader::open(files.folder / "nowhere"), IoError);
}

TEST_CASE("Linear over an SDNQ uint4+SVD layer uses the dequantized weight and rejects a wrong shape",
          "[nn][modules]") {
  const auto folder = test::data_dir() / "models" / "t5-uint4-svd";
  nn::WeightLoader weights = nn::WeightLoader::open(folder);
  REQUIRE(weights.is_sdnq());
  const nn::Linear q = nn::Linear::load(weights, "encoder.block.0.layer.0.SelfAttention.q", 64, 64, false);
  CHECK_FALSE(q.uses_quantized_matmul());
  // An independent dequantization of the stored codes: uint4 packed two per byte (low nibble first),
  // w = code·scale + zero_point per output row, plus svd_up·svd_down (bf16 factors, widened exactly).
  const TensorView codes = weights.raw("encoder.block.0.layer.0.SelfAttention.q.weight");
  const TensorView scale = weights.raw("encoder.block.0.layer.0.SelfAttention.q.scale");
  const TensorView zero = weights.raw("encoder.block.0.layer.0.SelfAttention.q.zero_point");
  const TensorView up = weights.raw("encoder.block.0.layer.0.SelfAttention.q.svd_up");
  const TensorView down = weights.raw("encoder.block.0.layer.0.SelfAttention.q.svd_down");
  REQUIRE(codes.numel() == 64 * 64 / 2);
  std::vector<double> expected;
  for (int o = 0; o < 64; ++o)
    for (int i = 0; i < 64; ++i) {
      const int flat = o * 64 + i;
      const std::uint8_t byte = codes.data_as<std::uint8_t>()[flat / 2];
      const int code = flat % 2 == 0 ? (byte & 0xF) : (byte >> 4);
      double w = code * double(scale.data_as<float>()[o]) + zero.data_as<float>()[o];
      for (int r = 0; r < 8; ++r)
        w += double(up.data_as<bf16>()[o * 8 + r].to_float()) * down.data_as<bf16>()[r * 64 + i].to_float();
      expected.push_back(w);
    }
  CHECK(test::max_scaled_error(q.dense_weight(), expected) < 1e-5);

  CHECK_THROWS_AS(nn::Linear::load(weights, "encoder.block.0.layer.0.SelfAttention.k", 64, 32, false), Error);
}

TEST_CASE("Linear keeps the quantized-matmul path for int8-qmm layers with 32 tokens or more", "[nn][modules]") {
  const auto fixtures = test::shared_fixtures_dir();
  if (!fixtures) {
    WARN("the shared reference fixtures are not on this machine; set SDNQ_FIXTURES to run this test");
    return;
  }
  nn::WeightLoader weights = nn::WeightLoader::open(*fixtures / "models" / "clip_g-int8-qmm");
  const nn::Linear fc1 = nn::Linear::load(weights, "text_model.encoder.layers.0.mlp.fc1", 64, 128);
  REQUIRE(fc1.uses_quantized_matmul());
  const Tensor few = random_tensor({31, 64}, 13), many = random_tensor({40, 64}, 14);
  // Below 32 tokens: exactly the dense result.
  const Tensor dense_few = nn::linear(few, fc1.dense_weight(), &fc1.bias().view());
  const Tensor out_few = fc1.forward(few);
  for (std::int64_t i = 0; i < out_few.numel(); ++i)
    REQUIRE(out_few.data_as<float>()[i] == dense_few.data_as<float>()[i]);
  // 32+ tokens: int8 activations, so close to but not equal to the dense result.
  const Tensor dense_many = nn::linear(many, fc1.dense_weight(), &fc1.bias().view());
  const double difference = nn::relative_l2(fc1.forward(many), dense_many);
  CHECK(difference > 0.0);
  CHECK(difference < 2e-2);
}
