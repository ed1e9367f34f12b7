#pragma once
// An int8 matmul operand kept at 5-6 bits a weight instead of 8.
//
// The layers the reference re-quantizes on every call (§5.1 step 1: uint4 g128 + SVD saved with quantized
// matmul and friends) multiply q = round(dequant(code) / s_row): within one group of a row's inputs
// (one scale, one zero point) q depends on the stored code alone. So the operand is exactly the codes as
// 4-bit indices plus one 16-entry int8 table per row group. cuda::expand_w8a8_codes turns it back into the
// int8 operand on the GPU for each call (nn::RequantizedMatmul::int8_tables_at_load); expand_code_tables
// does the same on the host.
//
// The tables are read off the operand itself (whatever the dequantization arithmetic was) and checked:
// an index that meets two values in one group means no tables, never a wrong operand.
// Bytes a row: K/2 for the indices + 16 a group, i.e. 5 bits a weight at 128-input groups, 6 at 64.
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/quant/dequantize.hpp"

namespace sdnq::quant {

inline constexpr std::int64_t code_table_entries = 16;

struct Int8CodeTables {
  std::int64_t rows = 0, columns = 0;  // N, K of the operand
  std::int64_t group = 0;              // inputs a table covers: divides K, a multiple of 16
  Tensor indices;                      // U8 [N, K / 2]: input 2j in the low nibble of byte j, 2j + 1 in the high
  Tensor tables;                       // I8 [N, K / group, 16]

  std::int64_t groups_per_row() const { return columns / group; }
  std::size_t bytes() const { return indices.nbytes() + tables.nbytes(); }
};

// The group a layer's tables would cover: its scale group (a row when row-wise), where that is a multiple
// of 16 dividing K and the tables come out smaller than int8 codes (16 table bytes < group / 2 index
// bytes saved, i.e. groups above 32 inputs); else nullopt.
inline std::optional<std::int64_t> code_table_group(const LayerLayout& layout) {
  if (layout.original_shape.rank() != 2) return std::nullopt;
  const std::int64_t k = layout.original_shape[1];
  const std::int64_t group = layout.group_size > 0 ? layout.group_size : k;
  if (k % 16 != 0 || group % 16 != 0 || k % group != 0 || group <= 2 * code_table_entries) return std::nullopt;
  return group;
}

// The stored codes of `layer` as indices in Int8CodeTables' layout (U8 [out, in / 2], two a byte, the even
// input in the low nibble): bit-packed weights of at most 4 bits, not stored transposed, with K a multiple
// of 16 (whole packer blocks a row). Otherwise nullopt (the codes do not fit 4-bit indices, or are laid out
// otherwise). Rows are unpacked in parallel, each from its own packer blocks.
inline std::optional<Tensor> stored_code_indices(const QuantizedWeight& layer) {
  const LayerLayout& layout = layer.layout;
  if (layout.weights_type == nullptr || !layout.weights_type->uses_bit_packer() || layout.weights_type->bits > 4 ||
      layout.transposed || layout.original_shape.rank() != 2)
    return std::nullopt;
  const int bits = layout.weights_type->bits;
  const std::int64_t rows = layout.original_shape[0], columns = layout.original_shape[1];
  const std::int64_t block = format::pack_block_size(bits), words = format::pack_block_words(bits);
  if (layout.quantized_shape.numel() != rows * columns || columns % 16 != 0 || columns % block != 0)
    return std::nullopt;
  const TensorView packed = layer.weight;
  if (!packed.device().is_cpu() || !packed.is_contiguous() || packed.dtype() != format::packed_dtype(bits) ||
      packed.numel() != rows * columns / block * words)
    return std::nullopt;
  const auto row_bytes = static_cast<std::size_t>(columns / block * words) * dtype_size(packed.dtype());
  const auto* source = static_cast<const std::uint8_t*>(packed.data());
  Tensor indices = Tensor::empty(Shape{rows, columns / 2}, DType::u8);
  auto* target = indices.data_as<std::uint8_t>();
  parallel_for(0, rows, 16, [&](std::int64_t first, std::int64_t last) {
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(columns));
    for (std::int64_t row = first; row < last; ++row) {
      format::detail::dispatch_packed_width(
          bits, [&](auto width) { format::unpack<width()>(source + row * row_bytes, codes); });
      std::uint8_t* out = target + row * (columns / 2);
      for (std::int64_t j = 0; j < columns / 2; ++j)
        out[j] = static_cast<std::uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
    }
  });
  return indices;
}

// The tables of an int8 operand [rows, columns] (row-major) whose inputs carry `indices` (U8 [rows,
// columns / 2] as stored_code_indices gives them; kept as the result's indices), one table per `group`
// inputs of a row. nullopt where an index meets two values in one group; entries no input uses are 0.
inline std::optional<Int8CodeTables> tabulate_int8_operand(std::span<const std::int8_t> operand, Tensor indices,
                                                           std::int64_t rows, std::int64_t columns,
                                                           std::int64_t group) {
  SDNQ_REQUIRE(rows > 0 && columns > 0 && group > 0 && columns % group == 0 && group % 2 == 0 &&
                   static_cast<std::int64_t>(operand.size()) == rows * columns && indices.dtype() == DType::u8 &&
                   indices.numel() * 2 == rows * columns,
               ShapeError,
               "tabulate_int8_operand: needs an operand of {}x{} values, U8 indices two a byte and a group dividing "
               "{}, got {} values, {} {} indices, group {}",
               rows, columns, columns, operand.size(), dtype_name(indices.dtype()), indices.numel(), group);
  Int8CodeTables out;
  out.rows = rows;
  out.columns = columns;
  out.group = group;
  out.indices = std::move(indices);
  out.indices.reshape({rows, columns / 2});
  out.tables = Tensor::zeros(Shape{rows, columns / group, code_table_entries}, DType::i8);
  const auto* packed = out.indices.data_as<std::uint8_t>();
  auto* tables = out.tables.data_as<std::int8_t>();
  std::atomic<bool> consistent{true};
  parallel_for(0, rows, 16, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t row = first; row < last && consistent.load(std::memory_order_relaxed); ++row) {
      const std::int8_t* values = operand.data() + row * columns;
      const std::uint8_t* codes = packed + row * (columns / 2);
      for (std::int64_t g = 0; g < columns / group; ++g) {
        std::int8_t* table = tables + (row * (columns / group) + g) * code_table_entries;
        std::uint32_t seen = 0, clash = 0;
        for (std::int64_t c = g * group; c < (g + 1) * group; c += 2) {
          const unsigned byte = codes[c / 2], low = byte & 0xFu, high = byte >> 4;
          clash |= ((seen >> low) & 1u) & static_cast<std::uint32_t>(table[low] != values[c]);
          seen |= 1u << low;
          table[low] = values[c];
          clash |= ((seen >> high) & 1u) & static_cast<std::uint32_t>(table[high] != values[c + 1]);
          seen |= 1u << high;
          table[high] = values[c + 1];
        }
        if (clash != 0) return consistent.store(false);
      }
    }
  });
  if (!consistent.load()) return std::nullopt;
  return out;
}

// The int8 operand [rows, columns] back from its tables, into `out` (row-major).
inline void expand_code_tables(const Int8CodeTables& tables, std::span<std::int8_t> out) {
  SDNQ_REQUIRE(static_cast<std::int64_t>(out.size()) == tables.rows * tables.columns, ShapeError,
               "expand_code_tables: the operand has {}x{} values, the output {}", tables.rows, tables.columns,
               out.size());
  const auto* packed = tables.indices.data_as<std::uint8_t>();
  const auto* table = tables.tables.data_as<std::int8_t>();
  const std::int64_t k = tables.columns, groups = tables.groups_per_row();
  parallel_for(0, tables.rows, 16, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t row = first; row < last; ++row)
      for (std::int64_t c = 0; c < k; ++c) {
        const unsigned byte = packed[row * (k / 2) + c / 2];
        const unsigned index = c % 2 == 0 ? byte & 0xFu : byte >> 4;
        out[static_cast<std::size_t>(row * k + c)] =
            table[(row * groups + c / tables.group) * code_table_entries + index];
      }
  });
}

}  // namespace sdnq::quant
