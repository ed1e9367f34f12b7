// The quantized-matmul path (§5.1) on real stored layouts (the fixture weights) with 40 random tokens,
// against an independent double-precision computation: each token quantized and dequantized by the
// test's own code, multiplied with the dense weight of the dequantizer, plus the SVD term and bias.
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdnq/format/packing.hpp"  // layout.hpp needs it (not yet included there)
#include "sdnq/io/safetensors.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/detail/layers_qmm.hpp"
#include "sdnq/quant/layer_options.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq/quant/reference_layers.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;
using namespace sdnq::quant;

std::vector<double> doubles_of(TensorView tensor) {
  std::vector<double> values(static_cast<std::size_t>(tensor.numel()));
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    switch (tensor.dtype()) {
      case DType::f32: values[i] = static_cast<const float*>(tensor.data())[i]; break;
      case DType::bf16: values[i] = static_cast<float>(static_cast<const bf16*>(tensor.data())[i]); break;
      default: FAIL("unexpected dtype in test");
    }
  }
  return values;
}

// The test's own per-token quantize -> dequantize of a float row (fp32 arithmetic, as the reference).
std::vector<double> fake_quantized_row(const float* row, std::int64_t K, const std::string& matmul) {
  std::vector<double> result(static_cast<std::size_t>(K));
  if (matmul == "uint8") {
    float low = row[0], high = row[0];
    for (std::int64_t k = 0; k < K; ++k) low = std::min(low, row[k]), high = std::max(high, row[k]);
    const float scale = (high - low) / 255.0f, zero = low + 128.0f * scale;
    for (std::int64_t k = 0; k < K; ++k) {
      const float q = std::min(127.0f, std::max(-128.0f, std::nearbyint((row[k] - zero) / scale)));
      result[k] = static_cast<double>(q) * scale + zero;
    }
    return result;
  }
  float amax = 0;
  for (std::int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
  const float scale = amax / (matmul == "int8" ? 127.0f : 448.0f);
  for (std::int64_t k = 0; k < K; ++k) {
    const float quotient = row[k] / scale;
    const float q = matmul == "int8" ? std::min(127.0f, std::max(-128.0f, std::nearbyint(quotient)))
                                     : static_cast<float>(fp8_e4m3fn(std::min(448.0f, std::max(-448.0f, quotient))));
    result[k] = static_cast<double>(q) * scale;
  }
  return result;
}

}  // namespace

TEST_CASE("quantized-matmul linear equals an independent fake-quantized computation", "[quant][layers][qmm]") {
  for (const char* name : {"int8-qmm", "uint8-qmm", "float8_e4m3fn-qmm", "int4-qmm", "int8-svd-qmm", "uint4-svd-qmm"}) {
    INFO("case " << name);
    const auto folder = test::data_dir() / "layers" / name;
    const SdnqConfig config = SdnqConfig::from_json(
        nlohmann::json::parse(std::ifstream(folder / "config.json"))["quantization_config"], name);
    const auto model = io::SafetensorsFile::open(folder / "diffusion_pytorch_model.safetensors");
    QuantizedWeight weight;
    weight.layout = derive_layout({64, 256}, LayerKind::linear, resolve_layer_options(config, "linear.weight", LayerKind::linear));
    REQUIRE(weight.layout.use_quantized_matmul);
    weight.weight = model.tensor("linear.weight");
    weight.scale = model.tensor("linear.scale");
    bool has_svd = false;
    for (const auto& tensor : model.names()) {
      if (tensor == "linear.zero_point") weight.zero_point = model.tensor(tensor);
      if (tensor == "linear.svd_up") weight.svd_up = model.tensor(tensor), has_svd = true;
      if (tensor == "linear.svd_down") weight.svd_down = model.tensor(tensor);
    }
    const std::string matmul(weight.layout.matmul_type->name);
    const std::int64_t M = 40, K = 256, N = 64;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Tensor input = Tensor::empty({M, K}, DType::f32);
    for (std::int64_t i = 0; i < M * K; ++i) input.data_as<float>()[i] = normal(rng) * (i % 7 == 0 ? 3.0f : 1.0f);
    Tensor bias = Tensor::empty({N}, DType::f32);
    for (std::int64_t n = 0; n < N; ++n) bias.data_as<float>()[n] = normal(rng);

    const Tensor output = linear_forward(input, weight, bias.view(), MatmulMode::quantized_matmul, DType::f32);

    auto dense = doubles_of(dequantize(weight, DType::f32, ScalePrecision::as_stored, false));  // [N, K]
    if (weight.layout.re_quantize_for_matmul) {  // grouped int4: each output row re-quantized per call
      for (std::int64_t n = 0; n < N; ++n) {
        std::vector<float> dense_row(dense.begin() + n * K, dense.begin() + (n + 1) * K);
        const auto requantized = fake_quantized_row(dense_row.data(), K, matmul);
        std::copy(requantized.begin(), requantized.end(), dense.begin() + n * K);
      }
    }
    std::vector<double> down, up;
    if (has_svd) down = doubles_of(*weight.svd_down), up = doubles_of(*weight.svd_up);  // [K, r], [r, N]
    const std::int64_t rank = has_svd ? weight.svd_down->size(1) : 0;
    double error = 0, norm = 0;
    for (std::int64_t m = 0; m < M; ++m) {
      const float* row = input.data_as<float>() + m * K;
      const auto x_hat = fake_quantized_row(row, K, matmul);
      for (std::int64_t n = 0; n < N; ++n) {
        double expected = bias.data_as<float>()[n];
        for (std::int64_t k = 0; k < K; ++k) expected += x_hat[k] * dense[n * K + k];
        for (std::int64_t r = 0; r < rank; ++r) {
          double low_rank = 0;
          for (std::int64_t k = 0; k < K; ++k) low_rank += static_cast<double>(row[k]) * down[k * rank + r];
          expected += low_rank * up[r * N + n];
        }
        const double actual = output.data_as<float>()[m * N + n];
        error += (actual - expected) * (actual - expected);
        norm += expected * expected;
      }
    }
    CHECK(std::sqrt(error / norm) < 2e-6);
  }
}

TEST_CASE("layers reject wrong input and bias shapes with the expected dimension", "[quant][layers]") {
  const auto folder = test::data_dir() / "layers" / "int8-qmm";
  const SdnqConfig config = SdnqConfig::from_json(
      nlohmann::json::parse(std::ifstream(folder / "config.json"))["quantization_config"], "int8-qmm");
  const auto model = io::SafetensorsFile::open(folder / "diffusion_pytorch_model.safetensors");
  QuantizedWeight weight;
  weight.layout = derive_layout({64, 256}, LayerKind::linear, resolve_layer_options(config, "linear.weight", LayerKind::linear));
  weight.weight = model.tensor("linear.weight");
  weight.scale = model.tensor("linear.scale");
  weight.name = "blocks.0.proj";
  Tensor wrong_input = Tensor::zeros({3, 255}, DType::f32);
  REQUIRE_THROWS_AS(linear_forward(wrong_input, weight, std::nullopt, MatmulMode::quantized_matmul, DType::f32),
                    ShapeError);
  REQUIRE_THROWS_WITH(linear_forward(wrong_input, weight, std::nullopt, MatmulMode::quantized_matmul, DType::f32),
                      Catch::Matchers::Contains("in_features = 256") && Catch::Matchers::Contains("blocks.0.proj"));
  Tensor input = Tensor::zeros({3, 256}, DType::f32), wrong_bias = Tensor::zeros({63}, DType::f32);
  REQUIRE_THROWS_WITH(linear_forward(input, weight, wrong_bias.view(), MatmulMode::dequantize_then_matmul, DType::f32),
                      Catch::Matchers::Contains("out_features = 64"));
  Tensor ids = Tensor::zeros({2}, DType::i64);
  REQUIRE_THROWS_AS(embedding_forward(ids, weight, DType::f32), ShapeError);
  REQUIRE_THROWS_AS(conv2d_forward(Tensor::zeros({1, 256, 4, 4}, DType::f32), weight, std::nullopt, {},
                                   MatmulMode::quantized_matmul, DType::f32),
                    ShapeError);
}

// The re-quantization of §5.1 step 1 runs on each block of rows as the row-blocked dequantizer produces
// it (no dense copy of the weight); it must give the bits of the two-step computation it replaced:
// dequantize() in the scale dtype, then re_quantize_*_mm on the dense [out, in] weight. Packed and
// grouped codes, zero points, F32 / BF16 / F16 scale dtypes, and every product dtype.
TEST_CASE("re_quantized_rows equals dequantize then re-quantize, bit for bit", "[quant][qmm]") {
  struct Case {
    const char* storage;
    std::int64_t group_size;
    bool dequantize_fp32;
    DType model_dtype;
    MatmulDType matmul;
  };
  const Case cases[] = {
      {"uint4", 64, true, DType::bf16, MatmulDType::int8},
      {"uint4", 64, false, DType::bf16, MatmulDType::int8},
      {"int5", 32, false, DType::f16, MatmulDType::int8},
      {"uint6", 64, true, DType::f32, MatmulDType::uint8},
      {"int4", 64, true, DType::bf16, MatmulDType::float8_e4m3fn},
      {"uint3", 32, true, DType::bf16, MatmulDType::float16},
  };
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  Tensor weight = Tensor::empty({72, 320}, DType::f32);
  for (std::int64_t i = 0; i < weight.numel(); ++i) weight.data_as<float>()[i] = normal(rng);
  for (const Case& c : cases) {
    INFO(c.storage << " group " << c.group_size << " model " << dtype_name(c.model_dtype)
                   << (c.dequantize_fp32 ? "" : ", dequantize_fp32 off"));
    LayerOptions options;
    options.weights_type = &format::storage_type(c.storage);
    options.group_size = c.group_size;
    options.dequantize_fp32 = c.dequantize_fp32;
    const QuantizedTensors quantized = quantize_weight(weight.view(), LayerKind::linear, options, c.model_dtype, 6);
    const QuantizedWeight layer = quantized.view();
    const RowQuantized rows = quant::detail::re_quantized_rows(layer, c.model_dtype, c.matmul);

    QuantizedWeight rounded = layer;
    const Tensor scale = quant::detail::rounded_to_model_dtype(layer.scale, c.model_dtype, "scale");
    rounded.scale = scale.view();
    Tensor zero_point;
    if (layer.zero_point) {
      zero_point = quant::detail::rounded_to_model_dtype(*layer.zero_point, c.model_dtype, "zero_point");
      rounded.zero_point = zero_point.view();
    }
    const DType scale_dtype = quant::detail::loaded_scale_dtype(layer.layout, c.model_dtype);
    Tensor dense = dequantize(rounded, scale_dtype, ScalePrecision::as_stored, false, false);
    dense.reshape({72, 320});
    const RowQuantized expected = c.matmul == MatmulDType::int8    ? re_quantize_int_mm(dense)
                                  : c.matmul == MatmulDType::uint8 ? re_quantize_uint_mm(dense)
                                                                   : re_quantize_fp_mm(dense, c.matmul);
    REQUIRE(rows.values.nbytes() == expected.values.nbytes());
    CHECK(std::memcmp(rows.values.data(), expected.values.data(), rows.values.nbytes()) == 0);
    CHECK(rows.scale == expected.scale);
    CHECK(rows.zero_point == expected.zero_point);
    CHECK(rows.scale_dtype == expected.scale_dtype);
    CHECK(rows.rows == expected.rows);
    CHECK(rows.cols == expected.cols);
  }
}
