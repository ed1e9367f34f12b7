// quant::Int8CodeTables: the int8 quantized-matmul operand of a layer (quant::detail::weight_operand, the
// reference's arithmetic) held as 4-bit indices and 16-entry tables per row group must expand back to
// that operand byte for byte, for every layout it accepts; everything else gets no tables.
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "sdnq/format/packing.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/quant/code_tables.hpp"
#include "sdnq/quant/detail/layers_qmm.hpp"
#include "sdnq/quant/quantize.hpp"
#include "sdnq_catch.hpp"

namespace {

using namespace sdnq;

Tensor random_weight(std::int64_t rows, std::int64_t columns, std::uint32_t seed) {
  Tensor weight = Tensor::empty(Shape{rows, columns}, DType::f32);
  std::uint32_t state = seed;
  for (std::int64_t i = 0; i < weight.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    weight.data_as<float>()[i] =
        0.05f * static_cast<float>(static_cast<std::int32_t>(state >> 8) - (1 << 23)) / static_cast<float>(1 << 23);
  }
  return weight;
}

quant::QuantizedTensors quantized_matmul_layer(const char* storage, std::int64_t rows, std::int64_t columns,
                                               std::int64_t group_size, int rank, bool dequantize_fp32) {
  quant::LayerOptions options;
  options.weights_type = &format::storage_type(storage);
  options.group_size = group_size;
  options.use_svd = rank > 0;
  options.svd_rank = rank;
  options.use_quantized_matmul = true;
  options.dequantize_fp32 = dequantize_fp32;
  const Tensor weight = random_weight(rows, columns, static_cast<std::uint32_t>(rows * 31 + columns));
  return quant::quantize_weight(weight.view(), quant::LayerKind::linear, options, DType::bf16, 5);
}

// The layer's tables where it takes them (else nullopt), and its reference operand.
struct Tabled {
  std::optional<quant::Int8CodeTables> tables;
  quant::detail::WeightOperand operand;
};

Tabled tabulate(const quant::QuantizedWeight& layer) {
  Tabled out;
  out.operand = quant::detail::weight_operand(layer, DType::bf16);
  REQUIRE(out.operand.matmul == quant::MatmulDType::int8);
  const auto group = quant::code_table_group(layer.layout);
  std::optional<Tensor> indices = quant::stored_code_indices(layer);
  if (!group || !indices) return out;
  out.tables = quant::tabulate_int8_operand(out.operand.int_values, std::move(*indices), out.operand.out_features,
                                            out.operand.in_features, *group);
  return out;
}

// Input c's index in stored_code_indices' layout.
unsigned index_at(const Tensor& indices, std::int64_t c) {
  const unsigned byte = indices.data_as<std::uint8_t>()[c / 2];
  return c % 2 == 0 ? byte & 0xFu : byte >> 4;
}

}  // namespace

TEST_CASE("code tables: the re-quantized int8 operand of 4-bit and narrower layers, byte for byte",
          "[quant][code_tables]") {
  struct Case {
    const char* storage;
    std::int64_t rows, columns, group_size;
    int rank;
    bool dequantize_fp32;
    std::int64_t expected_group;
  };
  // uint4 + SVD takes 128-input groups by default (§3.6), uint4 alone 64; int4 row-wise is used directly
  // (one table a row); uint2 / uint3 codes are indices below 16 too; scales in the model dtype change the
  // arithmetic, not the rule.
  const Case cases[] = {{"uint4", 96, 384, 0, 32, true, 128}, {"uint4", 80, 256, 0, 0, true, 64},
                        {"uint4", 64, 320, 64, 0, false, 64}, {"int4", 48, 192, -1, 0, true, 192},
                        {"uint2", 40, 256, 64, 0, true, 64},  {"uint3", 32, 512, 128, 8, true, 128}};
  for (const Case& c : cases) {
    INFO(c.storage << " [" << c.rows << ", " << c.columns << "] group " << c.group_size << " rank " << c.rank
                   << (c.dequantize_fp32 ? "" : ", scales in bf16"));
    const quant::QuantizedTensors quantized =
        quantized_matmul_layer(c.storage, c.rows, c.columns, c.group_size, c.rank, c.dequantize_fp32);
    const Tabled tabled = tabulate(quantized.view());
    REQUIRE(tabled.tables.has_value());
    const quant::Int8CodeTables& tables = *tabled.tables;
    CHECK(tables.group == c.expected_group);
    CHECK(tables.indices.shape() == Shape{c.rows, c.columns / 2});
    CHECK(tables.tables.shape() == Shape{c.rows, c.columns / c.expected_group, 16});
    CHECK(tables.bytes() < static_cast<std::size_t>(c.rows * c.columns));  // smaller than int8 codes
    std::vector<std::int8_t> expanded(static_cast<std::size_t>(c.rows * c.columns), 99);
    quant::expand_code_tables(tables, expanded);
    CHECK(std::memcmp(expanded.data(), tabled.operand.int_values.data(), expanded.size()) == 0);
  }
}

TEST_CASE(
    "code tables: none where they would not be smaller, the codes are wider, or the operand is not a "
    "function of them",
    "[quant][code_tables]") {
  // 32-input groups: 16 table bytes a group save nothing over 32 int8 codes.
  const quant::QuantizedTensors small_groups = quantized_matmul_layer("uint4", 32, 256, 32, 0, true);
  CHECK_FALSE(quant::code_table_group(small_groups.view().layout).has_value());
  // 5-bit codes are not 4-bit indices.
  const quant::QuantizedTensors five_bits = quantized_matmul_layer("int5", 32, 256, 128, 0, true);
  CHECK_FALSE(quant::stored_code_indices(five_bits.view()).has_value());
  // int8 codes are not bit-packed.
  const quant::QuantizedTensors eight_bits = quantized_matmul_layer("int8", 32, 256, -1, 0, true);
  CHECK_FALSE(quant::stored_code_indices(eight_bits.view()).has_value());

  const quant::QuantizedTensors layer = quantized_matmul_layer("uint4", 16, 128, 64, 0, true);
  const Tabled tabled = tabulate(layer.view());
  REQUIRE(tabled.tables.has_value());
  // The stored codes as indices: the packer's codes, two a byte.
  const Tensor indices = *quant::stored_code_indices(layer.view());
  std::vector<std::uint16_t> codes(16 * 128);
  format::unpack_codes(4, layer.view().weight, codes);
  for (std::int64_t c = 0; c < 16 * 128; ++c) REQUIRE(index_at(indices, c) == codes[static_cast<std::size_t>(c)]);
  // One value changed where its index appears elsewhere in the group: two values for one index.
  std::vector<std::int8_t> operand = tabled.operand.int_values;
  std::int64_t twin = 0;
  for (std::int64_t c = 1; c < 64 && twin == 0; ++c)
    if (index_at(indices, c) == index_at(indices, 0)) twin = c;
  REQUIRE(twin != 0);
  operand[static_cast<std::size_t>(twin)] = static_cast<std::int8_t>(
      operand[static_cast<std::size_t>(twin)] == 127 ? 126 : operand[static_cast<std::size_t>(twin)] + 1);
  CHECK_FALSE(quant::tabulate_int8_operand(operand, indices.clone(), 16, 128, 64).has_value());
  // Shapes that do not add up are an error, not a guess.
  CHECK_THROWS_AS(quant::tabulate_int8_operand(tabled.operand.int_values, indices.clone(), 16, 128, 48), ShapeError);
  CHECK_THROWS_AS(quant::tabulate_int8_operand(tabled.operand.int_values, indices.clone(), 15, 128, 64), ShapeError);
}
