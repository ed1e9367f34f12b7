#pragma once
// Re-derivation of one layer's stored layout from its original shape and resolved options
// (format doc §3.1–§3.10, summarized in §6.4): nothing of this is in the checkpoint file, so the
// loader recomputes exactly what the reference quantizer decided, and then checks the tensors against it.
#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/quant/config.hpp"
#include "sdnq/quant/hadamard.hpp"
#include "sdnq/quant/layer_options.hpp"

namespace sdnq::quant {

// The SDNQDequantizer record (§3.12), re-derived (§6.4).
struct LayerLayout {
  LayerKind kind = LayerKind::linear;
  const format::StorageType* weights_type = nullptr;
  const format::StorageType* matmul_type = nullptr;  // §1.6
  Shape original_shape;   // PyTorch layout, e.g. Linear [out, in]
  Shape quantized_shape;  // logical shape of the codes after grouping / transposition
  Shape result_shape;     // shape the dequantized codes are viewed to before SVD; rank 0 = none
  Shape scale_shape;      // also zero_point's; codebook: the levels
  std::int64_t group_size = -1;  // final: -1 row-wise, -2 tensor-wise, or > 0
  std::int64_t num_groups = 1;
  int hadamard_size = 0;      // 0 = no rotation
  std::int64_t svd_rank = 0;  // 0 = no SVD branch
  bool use_quantized_matmul = false, re_quantize_for_matmul = false, transposed = false, has_zero_point = false,
       use_codebook = false;
  // Additions beyond the reference record, needed to read the tensors:
  int reduction_axis = -1;       // axis of the (untransposed) grouped shape that a scale spans; -1 = all (tensor-wise)
  bool dequantize_fp32 = true;   // scale / zero point / SVD factors computed in fp32 (else in the model dtype)
  Shape stored_weight_shape;     // the `weight` tensor in the file (packed shape for packed types)
  Shape svd_up_shape, svd_down_shape;  // rank 0 when svd_rank == 0

  std::int64_t levels() const { return static_cast<std::int64_t>(weights_type->max) + 1; }  // codebook size
};

namespace detail {

inline std::int64_t power_of_two_int(std::int64_t exponent) { return std::int64_t{1} << exponent; }

// §3.1: true when the stored codes cannot feed the matmul dtype's GEMM directly.
inline bool requantize_predicate(const format::StorageType& weights, const format::StorageType& matmul,
                                 bool use_codebook) {
  return use_codebook || weights.bits > matmul.bits || weights.is_integer != matmul.is_integer ||
         (weights.is_unsigned && !matmul.is_integer) ||
         (weights.is_packed && !weights.is_integer && !matmul.is_integer &&
          (weights.bits >= matmul.bits || weights.max > matmul.max));
}

// §3.6 divisor search: returns {group_size, groups}; group_size == channels when no split exists.
inline std::pair<std::int64_t, std::int64_t> split_into_groups(std::int64_t channels, std::int64_t group_size) {
  if (group_size >= channels) return {channels, 1};
  std::int64_t groups = channels / group_size;
  while (groups * group_size != channels) {
    --groups;
    if (groups <= 1) return {channels, 1};
    group_size = channels / groups;
  }
  return {group_size, groups};
}

inline Shape transposed_2d(const Shape& shape) { return Shape{shape[1], shape[0]}; }

}  // namespace detail

// Throws ShapeError for a shape the layer kind cannot have, ConfigError for options the reference
// rejects, UnsupportedError for layouts the reference itself cannot produce (grouped non-square
// ConvTranspose, §3.6).
inline LayerLayout derive_layout(const Shape& original_shape, LayerKind kind, const LayerOptions& options) {
  SDNQ_REQUIRE(options.weights_type != nullptr, ConfigError, "derive_layout: LayerOptions.weights_type is not set");
  const format::StorageType& weights = *options.weights_type;
  LayerLayout layout;
  layout.kind = kind;
  layout.weights_type = &weights;
  layout.original_shape = original_shape;
  layout.dequantize_fp32 = options.dequantize_fp32;
  layout.use_codebook = options.use_codebook;

  const int expected_rank = 2 + kernel_rank(kind);
  SDNQ_REQUIRE(original_shape.rank() == expected_rank, ShapeError, "a {} weight has rank {}, got shape {}",
               layer_kind_name(kind), expected_rank, original_shape.to_string());
  for (std::int64_t extent : original_shape)
    SDNQ_REQUIRE(extent > 0, ShapeError, "{} weight shape {} has an empty axis", layer_kind_name(kind),
                 original_shape.to_string());
  SDNQ_REQUIRE(!options.use_codebook || (weights.is_integer && weights.is_unsigned), ConfigError,
               "use_codebook needs an unsigned integer weights_dtype, got {}", weights.name);
  SDNQ_REQUIRE(options.group_size >= -2, ConfigError, "group_size {} is invalid (0 auto, -1 row-wise, -2 tensor-wise, "
               "or a positive group size)", options.group_size);

  const format::StorageType& matmul =
      format::storage_type(options.quantized_matmul_dtype.value_or(std::string(weights.default_matmul_dtype)));
  layout.matmul_type = &matmul;
  bool requant = detail::requantize_predicate(weights, matmul, options.use_codebook);

  // §3.2 geometry: `work_shape` is the weight as quantized (before grouping), `channels` the axis groups run along.
  const bool is_linear = kind == LayerKind::linear;
  std::int64_t out_channels = 0, channels = 0;
  Shape work_shape = original_shape;
  int reduction_axis = 0;
  bool use_qmm = false, flattened = false;
  const auto qmm_allowed = [](std::int64_t out, std::int64_t in) {
    return out >= 32 && in >= 32 && out % 16 == 0 && in % 16 == 0;
  };
  if (is_conv(kind)) {
    out_channels = original_shape[0], channels = original_shape[1];
    reduction_axis = 1;
    use_qmm = options.use_quantized_matmul && qmm_allowed(out_channels, channels);
    if (use_qmm && !requant && !weights.is_packed) {
      flattened = true;
      work_shape = Shape{out_channels, original_shape.numel() / out_channels};
      layout.result_shape = original_shape;
      reduction_axis = 1;
    }
  } else if (is_conv_transpose(kind)) {
    channels = original_shape[0], out_channels = original_shape[1];
    reduction_axis = 0;
  } else {
    out_channels = original_shape[0], channels = original_shape[1];
    reduction_axis = 1;
    use_qmm = is_linear && options.use_quantized_matmul && qmm_allowed(out_channels, channels);
  }
  layout.use_quantized_matmul = use_qmm;

  // §3.4: the rotation's channel count is W.shape[1] for every kind (for ConvTranspose its output channels).
  if (options.use_hadamard)
    layout.hadamard_size = hadamard_group_size(original_shape[1], options.hadamard_group_size);

  // §3.5: torch.svd_lowrank's reduced QR yields at most min(rows, cols) of W.flatten(1) components, so
  // the stored rank is min(svd_rank, rows, cols) (the reference fixtures hold rank 3 for a [3, 288] view
  // quantized with svd_rank 8; the format doc's "SVD is dropped" does not match them).
  const std::int64_t svd_rows = original_shape[0], svd_cols = original_shape.numel() / original_shape[0];
  const bool svd_active = options.use_svd && options.svd_rank >= 1;
  if (svd_active) {
    const std::int64_t rank = std::min({options.svd_rank, svd_rows, svd_cols});
    layout.svd_rank = rank;
    layout.svd_up_shape = use_qmm ? Shape{rank, svd_rows} : Shape{svd_rows, rank};
    layout.svd_down_shape = use_qmm ? Shape{svd_cols, rank} : Shape{rank, svd_cols};
  }

  // §3.6 group size.
  std::int64_t group_size = options.group_size;
  if (group_size == 0) {
    if (use_qmm && !requant && weights.bits >= 6)
      group_size = -1;
    else
      group_size = detail::power_of_two_int(1 + weights.bits + (is_linear ? 1 : 0) + (svd_active ? 1 : 0) +
                                            3 * (options.use_codebook ? 1 : 0));
  }
  std::int64_t groups = 1;
  if (group_size > 0) {
    std::tie(group_size, groups) = detail::split_into_groups(channels, group_size);
    if (groups == 1) group_size = -1;
  }
  requant = requant || groups > 1;
  layout.group_size = group_size;
  layout.num_groups = groups;
  layout.re_quantize_for_matmul = requant;

  // Grouped shapes (reduction axis = the group-size axis); result_shape keeps the ungrouped shape.
  Shape grouped_shape = work_shape;
  if (groups > 1) {
    const Shape ungrouped = flattened ? original_shape : work_shape;  // a flattened conv regroups its 4-D shape
    if (layout.result_shape.rank() == 0) layout.result_shape = ungrouped;
    Shape shape;
    if (is_conv_transpose(kind)) {
      // The reference splits axis 1 into (group_size, groups) although the channels are axis 0 (quirk §9.5).
      SDNQ_REQUIRE(ungrouped[0] == ungrouped[1], UnsupportedError,
                   "grouped {} quantization of weight {} is not possible: the reference splits axis 1 into groups of "
                   "axis 0 and fails unless both are equal, so no SDNQ checkpoint can hold this layer",
                   layer_kind_name(kind), original_shape.to_string());
      shape.push_back(ungrouped[0]), shape.push_back(group_size), shape.push_back(groups);
      for (int axis = 2; axis < ungrouped.rank(); ++axis) shape.push_back(ungrouped[axis]);
      reduction_axis = 1;
    } else {
      shape.push_back(ungrouped[0]), shape.push_back(groups), shape.push_back(group_size);
      for (int axis = 2; axis < ungrouped.rank(); ++axis) shape.push_back(ungrouped[axis]);
      reduction_axis = 2;
    }
    grouped_shape = shape;
  }
  layout.reduction_axis = group_size == -2 ? -1 : reduction_axis;

  // §3.7 / §3.10 scale (and zero point) shape: the grouped shape with the reduction axis collapsed
  // to 1 (codebook: replaced by the number of levels); tensor-wise: all ones (codebook: [levels]).
  if (options.use_codebook && group_size == -2) {
    layout.scale_shape = Shape{layout.levels()};
  } else {
    Shape scale = grouped_shape;
    for (int axis = 0; axis < scale.rank(); ++axis)
      if (group_size == -2 || axis == reduction_axis) scale[axis] = options.use_codebook ? layout.levels() : 1;
    layout.scale_shape = scale;
  }
  layout.has_zero_point = weights.is_unsigned && !options.use_codebook;

  // §3.8 transposition for direct quantized matmul (2-D shapes only: Linear or a flattened conv).
  layout.transposed = use_qmm && !requant && !weights.is_packed;
  layout.quantized_shape = grouped_shape;
  if (layout.transposed) {
    layout.quantized_shape = detail::transposed_2d(grouped_shape);
    layout.scale_shape = detail::transposed_2d(layout.scale_shape);
  }

  // §3.9 stored weight: packed types are flattened by the packer, all others keep the logical shape.
  const std::int64_t numel = original_shape.numel();
  if (weights.uses_bit_packer()) {
    const std::int64_t block = format::pack_block_size(weights.bits);
    SDNQ_REQUIRE(numel % block == 0, UnsupportedError,
                 "{} weight {} has {} elements, not a multiple of the {}-code block of the {} packer; the reference "
                 "cannot store it",
                 layer_kind_name(kind), original_shape.to_string(), numel, block, weights.name);
    layout.stored_weight_shape = format::packed_shape(weights.bits, numel);
  } else {
    layout.stored_weight_shape = layout.quantized_shape;
  }
  return layout;
}

// Human-readable summary for error messages and tools.
inline std::string describe(const LayerLayout& layout) {
  return fmt::format("{} {} as {} (group_size {}, {} groups{}{}{}{}{})", layer_kind_name(layout.kind),
                     layout.original_shape.to_string(), layout.weights_type->name, layout.group_size,
                     layout.num_groups, layout.transposed ? ", transposed" : "",
                     layout.svd_rank ? fmt::format(", svd rank {}", layout.svd_rank) : std::string(),
                     layout.hadamard_size ? fmt::format(", hadamard {}", layout.hadamard_size) : std::string(),
                     layout.use_codebook ? ", codebook" : "", layout.use_quantized_matmul ? ", quantized matmul" : "");
}

}  // namespace sdnq::quant
