// quant::conv2d_weight_as_linear: a quantized Conv2d rewritten as a position-major Linear dequantizes to
// the conv's own dequantized weight with its columns permuted to (ky, kx, c), bit for bit, for every
// layout family a conv can have (grouped, row-wise per kernel position, tensor-wise, bit-packed,
// float codes, zero points, SVD, the flattened direct-matmul layout).
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "sdnq/quant/conv_as_linear.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;

Tensor random_conv_weight(const Shape& shape, std::uint32_t seed) {
  Tensor weight = Tensor::empty(shape, DType::f32);
  std::uint32_t state = seed;
  for (std::int64_t i = 0; i < weight.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    weight.data_as<float>()[i] =
        static_cast<float>(static_cast<std::int32_t>(state >> 8) - (1 << 23)) / static_cast<float>(1 << 23);
  }
  return weight;
}

// dense [O, C, kh, kw] as [O, kh·kw·C] with column (ky·kw + kx)·C + c, computed from PyTorch's layout.
template <class T>
std::vector<T> position_major(const Tensor& dense) {
  const std::int64_t out = dense.size(0), channels = dense.size(1), positions = dense.size(2) * dense.size(3);
  std::vector<T> result(static_cast<std::size_t>(dense.numel()));
  for (std::int64_t o = 0; o < out; ++o)
    for (std::int64_t c = 0; c < channels; ++c)
      for (std::int64_t p = 0; p < positions; ++p)
        result[(o * positions + p) * channels + c] = dense.data_as<T>()[(o * channels + c) * positions + p];
  return result;
}

struct ConvCase {
  const char* type;
  Shape shape;
  std::int64_t group_size = 0;
  bool svd = false, quantized_matmul = false;
};

void check_conv_case(const ConvCase& c) {
  INFO(c.type << " " << c.shape.to_string() << " group " << c.group_size << (c.svd ? " svd" : "")
               << (c.quantized_matmul ? " qmm" : ""));
  quant::LayerOptions options;
  options.weights_type = &format::storage_type(c.type);
  options.group_size = c.group_size;
  options.use_svd = c.svd;
  options.svd_rank = 8;
  options.use_quantized_matmul = c.quantized_matmul;
  const Tensor weight = random_conv_weight(c.shape, 77);
  const quant::QuantizedTensors conv =
      quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options, DType::bf16, 5);
  const auto linear = quant::conv2d_weight_as_linear(conv.view());
  REQUIRE(linear.has_value());
  const std::int64_t columns = c.shape.numel() / c.shape[0];
  CHECK(linear->layout.kind == quant::LayerKind::linear);
  CHECK(linear->layout.original_shape == Shape{c.shape[0], columns});
  CHECK(linear->layout.transposed == conv.layout.transposed);
  // A Linear group is a contiguous run of channels at one kernel position.
  if (linear->layout.group_size > 0) CHECK(c.shape[1] % linear->layout.group_size == 0);

  const Tensor conv_f32 = quant::dequantize(conv.view(), DType::f32, quant::ScalePrecision::as_stored);
  const Tensor linear_f32 = quant::dequantize(linear->view(), DType::f32, quant::ScalePrecision::as_stored);
  const std::vector<float> expected = position_major<float>(conv_f32);
  REQUIRE(linear_f32.numel() == static_cast<std::int64_t>(expected.size()));
  std::int64_t differing = 0;
  for (std::int64_t i = 0; i < linear_f32.numel(); ++i)
    differing += std::bit_cast<std::uint32_t>(linear_f32.data_as<float>()[i]) !=
                 std::bit_cast<std::uint32_t>(expected[static_cast<std::size_t>(i)]);
  CHECK(differing == 0);

  const Tensor conv_bf16 = quant::dequantize(conv.view(), DType::bf16, quant::ScalePrecision::reference_compatible);
  const Tensor linear_bf16 =
      quant::dequantize(linear->view(), DType::bf16, quant::ScalePrecision::reference_compatible);
  const std::vector<bf16> expected_bf16 = position_major<bf16>(conv_bf16);
  differing = 0;
  for (std::int64_t i = 0; i < linear_bf16.numel(); ++i)
    differing += linear_bf16.data_as<bf16>()[i].bits != expected_bf16[static_cast<std::size_t>(i)].bits;
  CHECK(differing == 0);
}

}  // namespace

TEST_CASE("conv2d_weight_as_linear: every conv layout dequantizes to the permuted conv weight", "[quant][conv]") {
  const Shape k3{48, 64, 3, 3}, k1{40, 96, 1, 1}, odd{24, 20, 3, 3};
  const std::vector<ConvCase> cases = {
      {"uint4", k3},                            // default groups of 32 channels
      {"uint4", k3, 16},                        // smaller groups
      {"uint4", k3, 0, true},                   // zero point + SVD
      {"int8", k3},                             // row-wise: one scale per (o, ky, kx)
      {"int8", k3, -2},                         // tensor-wise
      {"int8", k3, 0, false, true},             // flattened, transposed direct-matmul layout
      {"int8", k3, 0, true, true},              // ... with SVD factors stored transposed
      {"int6", k3},                             // bit-packed, 4 codes in 3 bytes
      {"uint2", k1},                            // 1x1 kernel
      {"float8_e4m3fn", k3},                    // float codes
      {"float4_e2m1fn", k3, 0, true},           // packed float codes + SVD
      {"int5", odd},                            // channels not a multiple of 8
  };
  for (const ConvCase& c : cases) check_conv_case(c);
}

TEST_CASE("conv2d_weight_as_linear: layouts without a Linear form are declined", "[quant][conv]") {
  const Tensor weight = random_conv_weight(Shape{32, 64, 3, 3}, 3);
  quant::LayerOptions options;
  options.weights_type = &format::storage_type("uint4");
  options.use_codebook = true;
  const auto codebook = quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options, DType::bf16);
  CHECK_FALSE(quant::conv2d_weight_as_linear(codebook.view()).has_value());

  options.use_codebook = false;
  const auto linear_weight = quant::quantize_weight(random_conv_weight(Shape{32, 64}, 4).view(),
                                                    quant::LayerKind::linear, options, DType::bf16);
  CHECK_FALSE(quant::conv2d_weight_as_linear(linear_weight.view()).has_value());

  options.use_hadamard = true;
  const auto rotated = quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options, DType::bf16);
  CHECK_FALSE(quant::conv2d_weight_as_linear(rotated.view()).has_value());
}

TEST_CASE("conv2d_weight_as_linear: a damaged weight is a typed error naming the layer", "[quant][conv]") {
  const Tensor weight = random_conv_weight(Shape{32, 64, 3, 3}, 6);
  quant::LayerOptions options;
  options.weights_type = &format::storage_type("uint4");
  quant::QuantizedTensors conv = quant::quantize_weight(weight.view(), quant::LayerKind::conv2d, options, DType::bf16);
  conv.name = "down_blocks.0.resnets.0.conv1";
  conv.weight = Tensor::empty(Shape{conv.weight.numel() - 1}, conv.weight.dtype());
  CHECK_THROWS_AS(quant::conv2d_weight_as_linear(conv.view()), FormatError);
  CHECK_THROWS_WITH(quant::conv2d_weight_as_linear(conv.view()),
                    Catch::Matchers::Contains("down_blocks.0.resnets.0.conv1"));
}
