#pragma once
// CPU reference dequantizer (format doc §4): stored codes + scale (+ zero point, + SVD factors) ->
// the dense weight in PyTorch layout, bit-exact with the reference where the reference is
// deterministic. Steps: decode codes, affine map per group (zero point by one exact fma), un-transpose,
// un-group, SVD add-back, cast, inverse Hadamard.
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/quant/detail/cpu_products.hpp"
#include "sdnq/quant/detail/read_decode.hpp"
#include "sdnq/quant/hadamard.hpp"
#include "sdnq/quant/layout.hpp"

namespace sdnq::quant {

// Stored tensors of one layer (views into a checkpoint or owned elsewhere).
struct QuantizedWeight {
  LayerLayout layout;
  TensorView weight, scale;  // scale: the codebook levels when layout.use_codebook
  std::optional<TensorView> zero_point, svd_up, svd_down;
  std::string name = "layer";  // parameter prefix (e.g. "blocks.0.attn.to_q"), for error messages
};

// How scale and zero point enter the arithmetic. reference_compatible: rounded to the output (model)
// dtype first, as diffusers' from_pretrained does before SDNQ widens them back to fp32 (fixture
// README) — reproduces a loaded reference model bit-exactly. as_stored: the file's values as they are.
enum class ScalePrecision { reference_compatible, as_stored };

namespace detail {

inline void require_host_contiguous(const QuantizedWeight& layer, TensorView tensor, std::string_view key) {
  SDNQ_REQUIRE(tensor.device().is_cpu() && tensor.is_contiguous(), FormatError,
               "{}.{}: the CPU dequantizer needs a contiguous host tensor, got shape {} on {}", layer.name, key,
               tensor.shape().to_string(), tensor.device().to_string());
}

inline void require_float_tensor(const QuantizedWeight& layer, TensorView tensor, std::string_view key,
                                 const Shape& expected_shape) {
  require_host_contiguous(layer, tensor, key);
  const DType dtype = tensor.dtype();
  SDNQ_REQUIRE(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16 || dtype == DType::f64, FormatError,
               "{}.{} has dtype {}, expected a float tensor (F32, BF16, F16 or F64) for {}", layer.name, key,
               dtype_name(dtype), describe(layer.layout));
  SDNQ_REQUIRE(tensor.shape() == expected_shape, FormatError, "{}.{} has shape {}, expected {} for {}", layer.name,
               key, tensor.shape().to_string(), expected_shape.to_string(), describe(layer.layout));
}

inline void require_presence(const QuantizedWeight& layer, bool present, bool expected, std::string_view key) {
  SDNQ_REQUIRE(present == expected, FormatError, "{}.{} is {}, but {} {} it", layer.name, key,
               present ? "present" : "missing", describe(layer.layout), expected ? "needs" : "has no place for");
}

// Element types the dequantizer writes.
template <class Out>
Out narrow_to(float value) {
  if constexpr (std::is_same_v<Out, float>)
    return value;
  else
    return Out(value);
}

inline float round_to_dtype(float value, DType dtype) {
  switch (dtype) {
    case DType::bf16: return bf16(value).to_float();
    case DType::f16: return fp16(value).to_float();
    default: return value;
  }
}

// round_to_dtype over a span, the dtype switch hoisted out of the loop.
inline void round_values_to(float* values, std::int64_t count, DType dtype) {
  switch (dtype) {
    case DType::bf16:
      for (std::int64_t i = 0; i < count; ++i) values[i] = bf16(values[i]).to_float();
      return;
    case DType::f16:
      for (std::int64_t i = 0; i < count; ++i) values[i] = fp16(values[i]).to_float();
      return;
    default: return;
  }
}

// A small float tensor (scale, zero point, SVD factor) widened to fp32, optionally via `round_dtype`.
inline std::vector<float> widen_small(TensorView tensor, std::optional<DType> round_dtype) {
  std::vector<float> values(static_cast<std::size_t>(tensor.numel()));
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    const float value = load_float_element(tensor.data(), tensor.dtype(), i);
    values[i] = round_dtype ? round_to_dtype(value, *round_dtype) : value;
  }
  return values;
}

// Strides of `scale_shape` broadcast against `value_shape` (0 where the scale has extent 1), rank aligned.
inline std::vector<std::int64_t> broadcast_strides(const Shape& scale_shape, const Shape& value_shape) {
  std::vector<std::int64_t> strides(static_cast<std::size_t>(value_shape.rank()), 0);
  const Shape contiguous = contiguous_strides(scale_shape);
  for (int axis = 0; axis < value_shape.rank(); ++axis)
    strides[axis] = scale_shape[axis] == 1 && value_shape[axis] != 1 ? 0 : contiguous[axis];
  return strides;
}

// Step 2 (§4): r = q·scale (symmetric), fma(q, scale, zero_point) (asymmetric), levels[...] (codebook),
// row by row of the layout's quantized_shape (rows = all but the last axis), with the dispatch made once.
class AffineMap {
 public:
  AffineMap(const LayerLayout& layout, const std::vector<float>& scale, const std::vector<float>* zero_point,
            std::optional<DType> intermediate_dtype)
      : layout_(layout), scale_(scale), zero_point_(zero_point), intermediate_dtype_(intermediate_dtype) {
    const Shape& shape = layout.quantized_shape;
    rank_ = shape.rank();
    row_length_ = shape[rank_ - 1];
    if (layout.use_codebook) {
      strides_.assign(static_cast<std::size_t>(rank_), 0);
      if (layout.reduction_axis >= 0) {
        strides_ = broadcast_strides(layout.scale_shape, shape);
        code_stride_ = contiguous_strides(layout.scale_shape)[layout.reduction_axis];
        strides_[layout.reduction_axis] = 0;
      } else {
        code_stride_ = 1;
      }
    } else {
      strides_ = broadcast_strides(layout.scale_shape, shape);
    }
  }

  std::int64_t row_length() const { return row_length_; }
  std::int64_t rows() const { return layout_.quantized_shape.numel() / row_length_; }

  // row_values [row_length]: the decoded codes of quantized row `row`, mapped in place.
  void apply(std::int64_t row, float* row_values) const {
    const Shape& shape = layout_.quantized_shape;
    std::int64_t base = 0;
    for (std::int64_t rest = row, axis = rank_ - 2; axis >= 0; --axis) {
      base += (rest % shape[static_cast<int>(axis)]) * strides_[axis];
      rest /= shape[static_cast<int>(axis)];
    }
    const std::int64_t step = strides_[rank_ - 1];
    const float* scale = scale_.data() + base;
    const float* zero_point = zero_point_ != nullptr ? zero_point_->data() + base : nullptr;
    if (layout_.use_codebook) {
      for (std::int64_t column = 0; column < row_length_; ++column)
        row_values[column] = scale[column * step + static_cast<std::int64_t>(row_values[column]) * code_stride_];
    } else if (step == 0 && zero_point != nullptr) {  // one group per row: a tight, vectorizable loop
      fused_scale_shift(row_values, row_length_, *scale, *zero_point);
    } else if (step == 0) {
      const float row_scale = *scale;
      for (std::int64_t column = 0; column < row_length_; ++column) row_values[column] *= row_scale;
    } else if (zero_point != nullptr) {
      for (std::int64_t column = 0; column < row_length_; ++column)
        row_values[column] = std::fma(row_values[column], scale[column * step], zero_point[column * step]);
    } else {
      for (std::int64_t column = 0; column < row_length_; ++column) row_values[column] *= scale[column * step];
    }
    if (intermediate_dtype_) round_values_to(row_values, row_length_, *intermediate_dtype_);
  }

 private:
  const LayerLayout& layout_;
  const std::vector<float>& scale_;
  const std::vector<float>* zero_point_;
  std::optional<DType> intermediate_dtype_;
  int rank_ = 0;
  std::int64_t row_length_ = 0;
  std::vector<std::int64_t> strides_;
  std::int64_t code_stride_ = 0;  // codebook: where the level index moves within the levels tensor
};

// Step 2 over the whole tensor `values`, laid out in quantized_shape order.
inline void apply_affine_map(const LayerLayout& layout, std::vector<float>& values, const std::vector<float>& scale,
                             const std::vector<float>* zero_point, std::optional<DType> intermediate_dtype) {
  const AffineMap map(layout, scale, zero_point, intermediate_dtype);
  const std::int64_t row_length = map.row_length();
  parallel_for(0, map.rows(), std::max<std::int64_t>(1, (1 << 15) / row_length),
               [&](std::int64_t begin, std::int64_t end) {
                 for (std::int64_t row = begin; row < end; ++row) map.apply(row, values.data() + row * row_length);
               });
}

// [rows, cols] row-major -> [cols, rows], in tiles that keep both sides in cache.
inline std::vector<float> transpose_matrix(const std::vector<float>& matrix, std::int64_t rows, std::int64_t cols) {
  std::vector<float> result(matrix.size());
  constexpr std::int64_t tile = 32;
  parallel_for(0, (rows + tile - 1) / tile, 4, [&](std::int64_t tile_begin, std::int64_t tile_end) {
    for (std::int64_t row0 = tile_begin * tile; row0 < std::min(rows, tile_end * tile); row0 += tile)
      for (std::int64_t col0 = 0; col0 < cols; col0 += tile)
        for (std::int64_t r = row0; r < std::min(rows, row0 + tile); ++r)
          for (std::int64_t c = col0; c < std::min(cols, col0 + tile); ++c) result[c * rows + r] = matrix[r * cols + c];
  });
  return result;
}

// Kept out of the row-blocked dequantizer's loop: inlined there, the add-back's code made the loop of layers
// without SVD 15 % slower (GCC 12, uint4 g64).
#if defined(__GNUC__) || defined(__clang__)
#define SDNQ_OUT_OF_LINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define SDNQ_OUT_OF_LINE __declspec(noinline)
#else
#define SDNQ_OUT_OF_LINE
#endif

// Step 5: r += U·D with U [rows, rank], D [rank, cols] (stored transposed for quantized-matmul layers).
struct LowRankAddBack {
  std::int64_t rows = 0, cols = 0, rank = 0;
  std::vector<float> up, down;  // [rows, rank], [rank, cols]
  bool separate_product = false;
  std::optional<DType> intermediate_dtype;

  // dense_rows [row_end - row_begin, cols]: rows [row_begin, row_end) of the dense weight, in place.
  // fp32 fma accumulation over r ascending, as the reference's CPU GEMM, blocked over columns.
  SDNQ_OUT_OF_LINE void apply(std::int64_t row_begin, std::int64_t row_end, float* dense_rows) const {
    fused_low_rank_rows(up.data(), down.data(), row_begin, row_end, rank, cols,
                        [&](std::int64_t row, std::int64_t col0, std::int64_t width, float* sums) {
                          float* out = dense_rows + (row - row_begin) * cols + col0;
                          if (separate_product && intermediate_dtype) round_values_to(sums, width, *intermediate_dtype);
                          for (std::int64_t c = 0; c < width; ++c) out[c] = out[c] + sums[c];
                          if (intermediate_dtype) round_values_to(out, width, *intermediate_dtype);
                        });
  }
};

#undef SDNQ_OUT_OF_LINE

inline LowRankAddBack low_rank_add_back(const QuantizedWeight& layer, std::optional<DType> factor_round,
                                        std::optional<DType> intermediate_dtype) {
  const LayerLayout& layout = layer.layout;
  LowRankAddBack add_back;
  add_back.rows = layout.original_shape[0];
  add_back.cols = layout.original_shape.numel() / add_back.rows;
  add_back.rank = layout.svd_rank;
  add_back.up = widen_small(*layer.svd_up, factor_round);
  add_back.down = widen_small(*layer.svd_down, factor_round);
  if (layout.use_quantized_matmul) {  // stored as [rank, rows] and [cols, rank]
    add_back.up = transpose_matrix(add_back.up, add_back.rank, add_back.rows);
    add_back.down = transpose_matrix(add_back.down, add_back.cols, add_back.rank);
  }
  // The conv path multiplies first (rounding the product to the factors' dtype), 2-D weights add in one GEMM.
  add_back.separate_product = layout.original_shape.rank() > 2 && layout.quantized_shape.rank() > 2;
  add_back.intermediate_dtype = intermediate_dtype;
  return add_back;
}

inline void add_low_rank(const QuantizedWeight& layer, std::vector<float>& dense, std::optional<DType> factor_round,
                         std::optional<DType> intermediate_dtype) {
  const LowRankAddBack add_back = low_rank_add_back(layer, factor_round, intermediate_dtype);
  parallel_for(0, add_back.rows, 4, [&](std::int64_t begin, std::int64_t end) {
    add_back.apply(begin, end, dense.data() + begin * add_back.cols);
  });
}

// Steps 1-5 a few rows at a time, each block decoded, mapped and low-rank corrected while it is in
// cache, then handed to `sink(row_begin, row_end, values)` (values: those whole dense rows in fp32, before
// the final cast), from several host threads at once: the same per-element arithmetic as the
// whole-tensor path below, for the layouts whose quantized C order is the dense C order (not transposed,
// no codebook). Returns false, calling nothing, for the others.
template <class Sink>
bool dequantize_row_blocks(const QuantizedWeight& layer, std::optional<DType> model_round,
                           std::optional<DType> intermediate, bool include_svd, Sink&& sink) {
  const LayerLayout& layout = layer.layout;
  const std::int64_t numel = layout.quantized_shape.numel();
  if (layout.transposed || layout.use_codebook || layout.original_shape.rank() < 1 ||
      !RangeDecoder::supports(*layout.weights_type, layer.weight, numel))
    return false;
  const std::int64_t rows = layout.original_shape[0], cols = rows > 0 ? numel / rows : 0;
  if (numel == 0) return true;
  const RangeDecoder decoder(*layout.weights_type, layer.weight, false);
  const std::vector<float> scale = widen_small(layer.scale, model_round);
  std::optional<std::vector<float>> zero_point;
  if (layer.zero_point) zero_point = widen_small(*layer.zero_point, model_round);
  const AffineMap map(layout, scale, zero_point ? &*zero_point : nullptr, intermediate);
  const std::int64_t row_length = map.row_length();
  // A unit: the fewest whole dense rows that start on a quantized row and on a packed block.
  const std::int64_t alignment = std::lcm(row_length, decoder.alignment());
  const std::int64_t unit_rows = alignment / std::gcd(cols, alignment);
  const std::int64_t unit_elements = unit_rows * cols;
  if (unit_elements > (std::int64_t{1} << 22)) return false;
  std::optional<LowRankAddBack> add_back;
  if (include_svd && layout.svd_rank > 0) add_back = low_rank_add_back(layer, model_round, intermediate);
  const bool round_float_weights = model_round && is_float_dtype(layer.weight.dtype());
  const std::int64_t units = (rows + unit_rows - 1) / unit_rows;
  const std::int64_t units_per_block = std::max<std::int64_t>(1, (std::int64_t{1} << 14) / unit_elements);
  parallel_for(0, units, units_per_block, [&](std::int64_t unit_begin, std::int64_t unit_end) {
    std::vector<float> values;  // [block rows, cols]
    std::vector<std::uint16_t> codes;
    for (std::int64_t unit = unit_begin; unit < unit_end; unit += units_per_block) {
      const std::int64_t row_begin = unit * unit_rows;
      const std::int64_t row_end = std::min(rows, std::min(unit_end, unit + units_per_block) * unit_rows);
      const std::int64_t begin = row_begin * cols, end = row_end * cols;
      values.resize(static_cast<std::size_t>(end - begin));
      decoder.decode(begin, end, values.data(), codes);
      if (round_float_weights) round_values_to(values.data(), end - begin, *model_round);
      for (std::int64_t row = begin / row_length; row < end / row_length; ++row)
        map.apply(row, values.data() + row * row_length - begin);
      if (add_back) add_back->apply(row_begin, row_end, values.data());
      sink(row_begin, row_end, static_cast<const float*>(values.data()));
    }
  });
  return true;
}

// dequantize_row_blocks writing the cast rows into `output`.
template <class Out>
bool dequantize_rows_in_cache(const QuantizedWeight& layer, Out* output, std::optional<DType> model_round,
                              std::optional<DType> intermediate, bool include_svd) {
  const std::int64_t rows = layer.layout.original_shape.rank() < 1 ? 0 : layer.layout.original_shape[0];
  const std::int64_t cols = rows > 0 ? layer.layout.quantized_shape.numel() / rows : 0;
  return dequantize_row_blocks(layer, model_round, intermediate, include_svd,
                               [&](std::int64_t row_begin, std::int64_t row_end, const float* values) {
                                 Out* out = output + row_begin * cols;
                                 for (std::int64_t i = 0; i < (row_end - row_begin) * cols; ++i)
                                   out[i] = narrow_to<Out>(values[i]);
                               });
}

}  // namespace detail

// Checks every tensor of `layer` against its layout: presence, dtype and shape. Throws FormatError
// naming the layer, the tensor and what the layout expects.
inline void validate_quantized_weight(const QuantizedWeight& layer) {
  const LayerLayout& layout = layer.layout;
  SDNQ_REQUIRE(layout.weights_type != nullptr, FormatError, "{}: the layout has no weights type", layer.name);
  const format::StorageType& type = *layout.weights_type;
  detail::require_host_contiguous(layer, layer.weight, "weight");
  const DType stored = layer.weight.dtype();
  const bool one_bit_bytes = type.bits == 1 && (stored == DType::u8 || stored == DType::boolean);
  SDNQ_REQUIRE(stored == type.stored_dtype || one_bit_bytes, FormatError,
               "{}.weight has dtype {}, expected {} for weights_dtype {} ({})", layer.name, dtype_name(stored),
               dtype_name(type.stored_dtype), type.name, describe(layout));
  SDNQ_REQUIRE(layer.weight.shape() == layout.stored_weight_shape, FormatError,
               "{}.weight has shape {} ({} elements), expected {} for {}", layer.name, layer.weight.shape().to_string(),
               layer.weight.numel(), layout.stored_weight_shape.to_string(), describe(layout));
  detail::require_float_tensor(layer, layer.scale, layout.use_codebook ? "scale (codebook levels)" : "scale",
                               layout.scale_shape);
  detail::require_presence(layer, layer.zero_point.has_value(), layout.has_zero_point, "zero_point");
  if (layer.zero_point) detail::require_float_tensor(layer, *layer.zero_point, "zero_point", layout.scale_shape);
  const bool has_svd = layout.svd_rank > 0;
  detail::require_presence(layer, layer.svd_up.has_value(), has_svd, "svd_up");
  detail::require_presence(layer, layer.svd_down.has_value(), has_svd, "svd_down");
  if (has_svd) {
    detail::require_float_tensor(layer, *layer.svd_up, "svd_up", layout.svd_up_shape);
    detail::require_float_tensor(layer, *layer.svd_down, "svd_down", layout.svd_down_shape);
  }
}

// Writes the dense weight [original_shape] into `output` (contiguous, element type Out).
// Instantiated for float, bf16 and fp16 through dequantize() below.
template <class Out>
void dequantize_into(const QuantizedWeight& layer, Out* output, ScalePrecision precision, bool include_svd,
                     bool undo_hadamard) {
  validate_quantized_weight(layer);
  const LayerLayout& layout = layer.layout;
  constexpr DType output_dtype = dtype_of_v<Out>;
  const std::optional<DType> model_round =
      precision == ScalePrecision::reference_compatible ? std::optional<DType>(output_dtype) : std::nullopt;
  // dequantize_fp32 = false: the reference computes steps 2-5 in the model dtype, rounding after each.
  const std::optional<DType> intermediate =
      layout.dequantize_fp32 ? std::nullopt : std::optional<DType>(output_dtype);

  const std::int64_t numel = layout.quantized_shape.numel();
  if (!detail::dequantize_rows_in_cache(layer, output, model_round, intermediate, include_svd)) {
    std::vector<float> values = detail::decode_weight_values(*layout.weights_type, layer.weight, numel,
                                                             layout.use_codebook, layer.name + ".weight");
    if (layout.use_codebook) {
      const std::int64_t levels = layout.levels();
      for (float index : values)
        SDNQ_REQUIRE(index >= 0 && index < static_cast<float>(levels), FormatError,
                     "{}.weight holds codebook index {} outside the {} levels", layer.name, index, levels);
    }
    // diffusers also casts float-dtype weights (float16 / bfloat16 / float32 storage) to the model dtype
    // on load; fp8 -> bf16/fp16 is exact, wider ones round (float32 codes near fp32 max even become inf).
    if (model_round && detail::is_float_dtype(layer.weight.dtype()))
      for (float& value : values) value = detail::round_to_dtype(value, *model_round);
    const std::vector<float> scale = detail::widen_small(layer.scale, model_round);
    std::optional<std::vector<float>> zero_point;
    if (layer.zero_point) zero_point = detail::widen_small(*layer.zero_point, model_round);
    detail::apply_affine_map(layout, values, scale, zero_point ? &*zero_point : nullptr, intermediate);

    // Step 3: transposed layers hold [in, out]; the dense weight is [out, in]. Step 4 (un-group) is a
    // row-major view, so nothing moves.
    if (layout.transposed) {
      const std::int64_t in = layout.quantized_shape[0], out = layout.quantized_shape[1];
      values = detail::transpose_matrix(values, in, out);
    }
    if (include_svd && layout.svd_rank > 0) detail::add_low_rank(layer, values, model_round, intermediate);

    parallel_for(0, numel, 1 << 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) output[i] = detail::narrow_to<Out>(values[i]);
    });
  }
  if (undo_hadamard && layout.hadamard_size > 0) {
    const std::int64_t rows = layout.original_shape[0];
    rotate_hadamard(TensorView(output, output_dtype, Shape{rows, numel / rows}), layout.hadamard_size);
  }
}

// The dense weight [original_shape] in `output_dtype` (F32, BF16 or F16).
inline Tensor dequantize(const QuantizedWeight& layer, DType output_dtype, ScalePrecision precision,
                         bool include_svd = true, bool undo_hadamard = true) {
  Tensor output = Tensor::empty(layer.layout.original_shape, output_dtype);
  switch (output_dtype) {
    case DType::f32:
      dequantize_into(layer, output.data_as<float>(), precision, include_svd, undo_hadamard);
      break;
    case DType::bf16:
      dequantize_into(layer, output.data_as<bf16>(), precision, include_svd, undo_hadamard);
      break;
    case DType::f16:
      dequantize_into(layer, output.data_as<fp16>(), precision, include_svd, undo_hadamard);
      break;
    default:
      throw UnsupportedError(fmt::format("{}: dequantize to {} is not supported (F32, BF16 or F16)", layer.name,
                                         dtype_name(output_dtype)));
  }
  return output;
}

}  // namespace sdnq::quant
