// Conv1d / Conv3d / ConvTranspose1d-3d quantization layouts (format doc §3.2, §3.6–§3.8): which axis
// the scales reduce over, the scale shapes, grouping (including the reference's strided ConvTranspose
// groups), and the flattened, transposed conv quantized-matmul layout. Expected scales, codes and
// dequantized values are computed here from those rules, independently of the quantizer.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;
using quant::LayerKind;

// The element at flat index `index` of a [d0, d1, *kernel] weight.
struct Position {
  std::int64_t d0, d1, kernel;  // kernel = flat index within prod(kernel)
};

struct LayoutCase {
  std::string name;
  LayerKind kind;
  Shape shape;
  const char* type;
  std::int64_t group_size;
  bool quantized_matmul;
  Shape scale_shape;  // expected, as §3.7 lists them
  // index into the expected scale tensor (C order) of the slice that owns an element
  std::function<std::int64_t(const Position&)> slice_of;
};

Tensor random_weight(const Shape& shape, std::uint32_t seed) {
  Tensor weight = Tensor::empty(shape, DType::f32);
  auto* values = static_cast<float*>(weight.data());
  std::uint32_t state = seed;
  for (std::int64_t i = 0; i < weight.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    values[i] = static_cast<float>(static_cast<std::int32_t>(state >> 8) - (1 << 23)) / static_cast<float>(1 << 23);
  }
  return weight;
}

void check_layout_case(const LayoutCase& layout_case) {
  INFO(layout_case.name);
  const format::StorageType& type = format::storage_type(layout_case.type);
  const Shape& shape = layout_case.shape;
  const Tensor weight = random_weight(shape, 1234);
  const auto* w = static_cast<const float*>(weight.data());
  quant::LayerOptions options;
  options.weights_type = &type;
  options.group_size = layout_case.group_size;
  options.use_quantized_matmul = layout_case.quantized_matmul;
  const auto quantized = quant::quantize_weight(weight.view(), layout_case.kind, options, DType::f32);
  REQUIRE(quantized.scale.shape() == layout_case.scale_shape);
  // Quantized matmul (flattened, transposed storage) only for ConvNd, never for ConvTranspose (§3.2).
  const bool transposed = layout_case.quantized_matmul && quant::is_conv(layout_case.kind);
  REQUIRE(quantized.layout.transposed == transposed);
  REQUIRE(quantized.zero_point.has_value() == type.is_unsigned);

  // Per slice: amax (symmetric) or min / max (asymmetric), then the scale as the reference computes it.
  const std::int64_t kernel = shape.numel() / (shape[0] * shape[1]);
  const auto position = [&](std::int64_t i) {
    return Position{i / (shape[1] * kernel), (i / kernel) % shape[1], i % kernel};
  };
  const std::int64_t slices = layout_case.scale_shape.numel();
  std::vector<float> low(slices, INFINITY), high(slices, -INFINITY), amax(slices, 0.0f);
  std::vector<std::int64_t> members(slices, 0);
  for (std::int64_t i = 0; i < shape.numel(); ++i) {
    const std::int64_t s = layout_case.slice_of(position(i));
    REQUIRE((s >= 0 && s < slices));
    low[s] = std::min(low[s], w[i]), high[s] = std::max(high[s], w[i]), amax[s] = std::max(amax[s], std::fabs(w[i]));
    ++members[s];
  }
  const std::int64_t slice_length = shape.numel() / slices;
  std::vector<float> scale(slices), zero_point(slices);
  for (std::int64_t s = 0; s < slices; ++s) {
    CHECK(members[s] == slice_length);  // every slice reduces over the same number of elements
    scale[s] =
        type.is_unsigned ? (high[s] - low[s]) / static_cast<float>(type.max) : amax[s] / static_cast<float>(type.max);
    zero_point[s] = low[s];
  }
  const auto* stored_scale = static_cast<const float*>(quantized.scale.data());
  for (std::int64_t s = 0; s < slices; ++s) REQUIRE(stored_scale[s] == scale[s]);
  if (type.is_unsigned) {
    const auto* stored_zero_point = static_cast<const float*>(quantized.zero_point->data());
    for (std::int64_t s = 0; s < slices; ++s) REQUIRE(stored_zero_point[s] == zero_point[s]);
  }

  // Codes (round half to even, clamped) and the dequantized weight (fp32 scales: q * s, or fma(q, s, z)).
  const Tensor dense = quant::dequantize(quantized.view(), DType::f32, quant::ScalePrecision::as_stored);
  REQUIRE(dense.shape() == shape);
  const auto* ours = static_cast<const float*>(dense.data());
  const std::int64_t out_channels = shape[0], columns = shape.numel() / shape[0];
  std::int64_t wrong = 0;
  for (std::int64_t i = 0; i < shape.numel(); ++i) {
    const std::int64_t s = layout_case.slice_of(position(i));
    const float shifted = type.is_unsigned ? (w[i] - zero_point[s]) / scale[s] : w[i] / scale[s];
    const float q = std::clamp(std::nearbyint(shifted), static_cast<float>(type.min), static_cast<float>(type.max));
    const float expected = type.is_unsigned ? std::fma(q, scale[s], zero_point[s]) : q * scale[s];
    wrong += ours[i] != expected;
    if (transposed) {  // stored transposed: file[c, o] = q[o, c] over the flattened C * prod(k)
      const std::int64_t o = i / columns, c = i % columns;
      wrong +=
          static_cast<const std::int8_t*>(quantized.weight.data())[c * out_channels + o] != static_cast<std::int8_t>(q);
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("Conv1d and Conv3d weights reduce over the input channels, per output channel and kernel position",
          "[quant][quantize][conv]") {
  std::vector<LayoutCase> cases;
  // ConvNd [out, C, *k]: row-wise scales [out, 1, *k]; grouped [out, G, 1, *k] with contiguous channel groups.
  cases.push_back({"conv1d int8 row-wise", LayerKind::conv1d, Shape{64, 32, 3}, "int8", -1, false, Shape{64, 1, 3},
                   [](const Position& p) { return p.d0 * 3 + p.kernel; }});
  cases.push_back({"conv1d uint4 group 16", LayerKind::conv1d, Shape{64, 64, 3}, "uint4", 16, false, Shape{64, 4, 1, 3},
                   [](const Position& p) { return (p.d0 * 4 + p.d1 / 16) * 3 + p.kernel; }});
  cases.push_back({"conv3d int8 row-wise", LayerKind::conv3d, Shape{32, 32, 2, 3, 2}, "int8", -1, false,
                   Shape{32, 1, 2, 3, 2}, [](const Position& p) { return p.d0 * 12 + p.kernel; }});
  cases.push_back({"conv3d uint4 group 32", LayerKind::conv3d, Shape{48, 64, 2, 2, 2}, "uint4", 32, false,
                   Shape{48, 2, 1, 2, 2, 2}, [](const Position& p) { return (p.d0 * 2 + p.d1 / 32) * 8 + p.kernel; }});
  // Auto group size for convs has no Linear term: int8 -> 2^(1+8) = 512 >= C, so row-wise.
  cases.push_back({"conv3d int8 auto", LayerKind::conv3d, Shape{32, 64, 2, 2, 2}, "int8", 0, false,
                   Shape{32, 1, 2, 2, 2}, [](const Position& p) { return p.d0 * 8 + p.kernel; }});
  // Quantized matmul (int8, direct): flattened to [out, C * prod(k)], one scale per output channel,
  // stored transposed [C * prod(k), out] with the scale [1, out].
  cases.push_back({"conv1d int8 quantized matmul", LayerKind::conv1d, Shape{32, 32, 3}, "int8", 0, true, Shape{1, 32},
                   [](const Position& p) { return p.d0; }});
  cases.push_back({"conv3d int8 quantized matmul", LayerKind::conv3d, Shape{48, 32, 2, 2, 2}, "int8", 0, true,
                   Shape{1, 48}, [](const Position& p) { return p.d0; }});
  for (const auto& layout_case : cases) check_layout_case(layout_case);
}

TEST_CASE("ConvTranspose weights reduce over axis 0, with the reference's strided groups", "[quant][quantize][conv]") {
  std::vector<LayoutCase> cases;
  // ConvTransposeNd [C = in, out, *k]: row-wise scales [1, out, *k] (reduction over the input channels).
  cases.push_back({"conv_transpose1d int8 row-wise", LayerKind::conv_transpose1d, Shape{32, 48, 3}, "int8", -1, false,
                   Shape{1, 48, 3}, [](const Position& p) { return p.d1 * 3 + p.kernel; }});
  cases.push_back({"conv_transpose2d uint4 row-wise", LayerKind::conv_transpose2d, Shape{64, 40, 3, 3}, "uint4", -1,
                   false, Shape{1, 40, 3, 3}, [](const Position& p) { return p.d1 * 9 + p.kernel; }});
  // Never quantized matmul: the option changes nothing.
  cases.push_back({"conv_transpose3d int8 with quantized matmul", LayerKind::conv_transpose3d, Shape{32, 32, 2, 2, 2},
                   "int8", -1, true, Shape{1, 32, 2, 2, 2}, [](const Position& p) { return p.d1 * 8 + p.kernel; }});
  // Grouped (square only): W.unflatten(1, (gs, G)) reduced over axis 1, so output channel j = a * G + b
  // belongs to group b: scales [C, 1, G, *k], each over the gs output channels a * G + b.
  cases.push_back({"conv_transpose3d int8 group 16", LayerKind::conv_transpose3d, Shape{32, 32, 2, 2, 2}, "int8", 16,
                   false, Shape{32, 1, 2, 2, 2, 2},
                   [](const Position& p) { return (p.d0 * 2 + p.d1 % 2) * 8 + p.kernel; }});
  cases.push_back({"conv_transpose1d uint4 group 8", LayerKind::conv_transpose1d, Shape{32, 32, 3}, "uint4", 8, false,
                   Shape{32, 1, 4, 3}, [](const Position& p) { return (p.d0 * 4 + p.d1 % 4) * 3 + p.kernel; }});
  for (const auto& layout_case : cases) check_layout_case(layout_case);
}

TEST_CASE("Grouped non-square ConvTranspose is refused as the reference cannot produce it", "[quant][quantize][conv]") {
  const Tensor weight = random_weight(Shape{64, 32, 3, 3}, 5);
  quant::LayerOptions options;
  options.weights_type = &format::storage_type("int8");
  options.group_size = 16;
  CHECK_THROWS_AS(quant::quantize_weight(weight.view(), LayerKind::conv_transpose2d, options, DType::f32),
                  UnsupportedError);
}
