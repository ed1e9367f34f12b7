#pragma once
// A quantized Conv2d weight [O, C, kh, kw] rewritten as the equivalent quantized Linear [O, kh·kw·C]
// whose input columns run position-major: column (ky·kw + kx)·C + c. A conv then runs on its codes
// as im2row (that column order) times this Linear, through every GEMM kernel that reads Linears.
//
// Why position-major: a conv's scale groups span channels at one kernel position (§3.6/§3.7: the
// grouped shape is [O, groups, group_size, kh, kw] reduced over group_size; a row-wise conv scale is
// [O, 1, kh, kw]). In (c, ky, kx) order — PyTorch's flattening — such a group is strided; in
// (ky, kx, c) order it is a contiguous run of C/groups columns, which is what a Linear group is.
// The rewrite moves the codes (unpacked and repacked for bit-packed types), the scales, zero points
// and svd_down columns; svd_up stays as it is. Values are unchanged: dequantizing the result equals
// the conv's dequantized weight with its columns permuted, bit for bit, where the dequantizer rounds
// no intermediate to the model dtype (dequantize_fp32, the default; otherwise the conv's separately
// rounded low-rank product is not reproduced).
//
// nullopt for what has no Linear form: Hadamard rotations (they mix the channels of one position
// differently from a Linear's rotation) and codebooks. Host tensors only.
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/quant/dequantize.hpp"
#include "sdnq/quant/quantize.hpp"

namespace sdnq::quant {

namespace detail {

// dst[outer][p][c] = src[outer][c][p] for blocks of `block_bytes` bytes (channel-major to position-major).
inline void channels_to_position_major(const std::byte* src, std::byte* dst, std::int64_t outer, std::int64_t channels,
                                       std::int64_t positions, std::size_t block_bytes) {
  for (std::int64_t o = 0; o < outer; ++o) {
    const std::byte* from = src + static_cast<std::size_t>(o * channels * positions) * block_bytes;
    std::byte* to = dst + static_cast<std::size_t>(o * channels * positions) * block_bytes;
    for (std::int64_t c = 0; c < channels; ++c)
      for (std::int64_t p = 0; p < positions; ++p)
        std::memcpy(to + static_cast<std::size_t>(p * channels + c) * block_bytes,
                    from + static_cast<std::size_t>(c * positions + p) * block_bytes, block_bytes);
  }
}

// A contiguous host tensor of `shape` holding `source`'s elements permuted as above.
inline Tensor position_major_copy(const TensorView& source, const Shape& shape, std::int64_t outer,
                                  std::int64_t channels, std::int64_t positions, std::int64_t inner) {
  Tensor out = Tensor::empty(shape, source.dtype());
  channels_to_position_major(static_cast<const std::byte*>(source.data()), static_cast<std::byte*>(out.data()), outer,
                             channels, positions, static_cast<std::size_t>(inner) * source.element_size());
  return out;
}

inline Tensor contiguous_copy(const TensorView& source, const Shape& shape) {
  Tensor out = Tensor::empty(shape, source.dtype());
  std::memcpy(out.data(), source.data(), source.nbytes());
  return out;
}

}  // namespace detail

inline std::optional<QuantizedTensors> conv2d_weight_as_linear(const QuantizedWeight& conv) {
  const LayerLayout& from = conv.layout;
  if (from.kind != LayerKind::conv2d || from.hadamard_size != 0 || from.use_codebook) return std::nullopt;
  validate_quantized_weight(conv);
  SDNQ_REQUIRE(from.original_shape.rank() == 4, ShapeError, "{}: a Conv2d weight is [O, C, kh, kw], got {}",
               conv.name, from.original_shape.to_string());
  const format::StorageType& type = *from.weights_type;
  const std::int64_t out_channels = from.original_shape[0], channels = from.original_shape[1];
  const std::int64_t positions = from.original_shape[2] * from.original_shape[3];
  const std::int64_t columns = channels * positions, rank = from.svd_rank;

  QuantizedTensors out;
  out.name = conv.name;
  LayerLayout& to = out.layout;
  to = from;
  to.kind = LayerKind::linear;
  to.original_shape = Shape{out_channels, columns};
  to.result_shape = Shape{};
  if (rank > 0) to.svd_down_shape = from.use_quantized_matmul ? Shape{columns, rank} : Shape{rank, columns};

  // Codes: the flattened direct-matmul layout stores them [columns, O] (§3.8), every other layout in
  // PyTorch's [O, C, kh, kw] order (bit-packed types flattened by the packer).
  const std::int64_t outer = from.transposed ? 1 : out_channels, inner = from.transposed ? out_channels : 1;
  if (type.uses_bit_packer()) {
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(out_channels * columns)), moved(codes.size());
    if (!detail::unpack_codes_in_parallel(type.bits, conv.weight, codes))
      format::unpack_codes(type.bits, conv.weight, codes, conv.name + ".weight");  // names what is wrong
    detail::channels_to_position_major(reinterpret_cast<const std::byte*>(codes.data()),
                                       reinterpret_cast<std::byte*>(moved.data()), outer, channels, positions,
                                       static_cast<std::size_t>(inner) * sizeof(std::uint16_t));
    out.weight = Tensor::empty(format::packed_shape(type.bits, out_channels * columns), format::packed_dtype(type.bits));
    detail::pack_codes_in_parallel(type.bits, moved, out.weight.data());
  }

  // Scales (and zero points): grouped [O, groups, 1, kh, kw] and row-wise [O, 1, kh, kw] both hold one
  // value per (o, group, position); position-major they become [O, positions·groups, 1], a Linear with
  // groups of C/groups columns (row-wise when that is a single group). Tensor-wise: one value.
  // The direct-matmul layout is row-wise over the whole flattened row: [1, O] as it is.
  Shape scale_shape = from.scale_shape;
  std::int64_t scale_outer = 1, scale_groups = 1, scale_positions = 1;
  if (from.transposed) {
    to.quantized_shape = Shape{columns, out_channels};
  } else if (from.group_size == -2) {
    to.quantized_shape = Shape{out_channels, columns};
    scale_shape = Shape{1, 1};
    to.reduction_axis = -1;
  } else {
    const std::int64_t groups = from.group_size > 0 ? from.num_groups : 1;
    const std::int64_t linear_groups = groups * positions;
    scale_outer = out_channels, scale_groups = groups, scale_positions = positions;
    if (linear_groups == 1) {
      to.group_size = -1, to.num_groups = 1, to.reduction_axis = 1;
      to.quantized_shape = Shape{out_channels, columns};
      scale_shape = Shape{out_channels, 1};
    } else {
      to.group_size = channels / groups, to.num_groups = linear_groups, to.reduction_axis = 2;
      to.quantized_shape = Shape{out_channels, linear_groups, channels / groups};
      to.result_shape = Shape{out_channels, columns};
      scale_shape = Shape{out_channels, linear_groups, 1};
    }
  }
  to.scale_shape = scale_shape;
  to.stored_weight_shape = type.uses_bit_packer() ? from.stored_weight_shape : to.quantized_shape;
  if (!type.uses_bit_packer())
    out.weight = detail::position_major_copy(conv.weight, to.quantized_shape, outer, channels, positions, inner);
  const auto move_group_parameters = [&](const TensorView& values) {
    return scale_positions > 1
               ? detail::position_major_copy(values, scale_shape, scale_outer, scale_groups, scale_positions, 1)
               : detail::contiguous_copy(values, scale_shape);
  };
  out.scale = move_group_parameters(conv.scale);
  if (conv.zero_point) out.zero_point = move_group_parameters(*conv.zero_point);
  if (rank > 0) {
    out.svd_up = detail::contiguous_copy(*conv.svd_up, from.svd_up_shape);
    out.svd_down = from.use_quantized_matmul
                       ? detail::position_major_copy(*conv.svd_down, to.svd_down_shape, 1, channels, positions, rank)
                       : detail::position_major_copy(*conv.svd_down, to.svd_down_shape, rank, channels, positions, 1);
  }
  validate_quantized_weight(out.view());
  return out;
}

}  // namespace sdnq::quant
