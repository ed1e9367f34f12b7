#pragma once
// The numeric steps of §3.5–§3.9 on an fp32 working copy: the SVD residual, per-slice scales with
// the reference's op order, the element codes, and their conversion to the stored tensors.
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/format/custom_float.hpp"
#include "sdnq/format/packing.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq/quant/detail/cpu_products.hpp"
#include "sdnq/quant/detail/write_float_bits.hpp"
#include "sdnq/quant/detail/write_stochastic.hpp"
#include "sdnq/quant/layout.hpp"
#include "sdnq/quant/svd.hpp"

namespace sdnq::quant::detail {

// The reduction structure of a contiguous grouped tensor: `outer` × `length` × `inner`, the scale
// spanning `length` elements at stride `inner`. Tensor-wise: one slice of every element.
struct SliceGeometry {
  std::int64_t outer = 1, length = 1, inner = 1;
  std::int64_t slices() const { return outer * inner; }
  std::int64_t element(std::int64_t slice, std::int64_t l) const {
    return (slice / inner) * length * inner + l * inner + slice % inner;
  }
};

// The grouped shape before transposition and its reduction axis, as derive_layout decided them.
inline SliceGeometry slice_geometry(const LayerLayout& layout) {
  const Shape grouped = layout.transposed ? transposed_2d(layout.quantized_shape) : layout.quantized_shape;
  SliceGeometry geometry;
  if (layout.reduction_axis < 0) {
    geometry.length = grouped.numel();
    return geometry;
  }
  for (int axis = 0; axis < grouped.rank(); ++axis) {
    if (axis < layout.reduction_axis) geometry.outer *= grouped[axis];
    if (axis == layout.reduction_axis) geometry.length = grouped[axis];
    if (axis > layout.reduction_axis) geometry.inner *= grouped[axis];
  }
  return geometry;
}

// SVD product in the model dtype as a torch GEMM there: bf16/fp16 products are exact in fp32,
// accumulated in fp32 and rounded once; fp32 accumulates in double and rounds once.
inline float model_dtype_dot(const std::vector<float>& up, const std::vector<float>& down, std::int64_t row,
                             std::int64_t column, std::int64_t rank, std::int64_t cols, DType model_dtype) {
  if (model_dtype == DType::f32) {
    double sum = 0.0;
    for (std::int64_t k = 0; k < rank; ++k) sum += double(up[row * rank + k]) * down[k * cols + column];
    return static_cast<float>(sum);
  }
  float sum = 0.0f;
  for (std::int64_t k = 0; k < rank; ++k) sum += up[row * rank + k] * down[k * cols + column];
  return round_float_to(sum, model_dtype);
}

struct SvdSplit {
  Tensor up, down;  // model dtype, [rows, rank] and [rank, cols]
};

// §3.5 on the fp32 working copy `values` viewed as [rows, cols] = W.flatten(1): factors rounded to the
// model dtype, their product taken in the model dtype and subtracted from the fp32 values in place.
inline SvdSplit split_low_rank(std::vector<float>& values, std::int64_t rows, std::int64_t cols, std::int64_t rank,
                               std::int64_t power_iterations, DType model_dtype, std::uint64_t seed) {
  const LowRankFactors factors = svd_lowrank(values, rows, cols, rank, power_iterations, seed);
  std::vector<float> up(factors.up.size()), down(factors.down.size());  // exact model-dtype values
  for (std::size_t i = 0; i < up.size(); ++i) up[i] = round_float_to(static_cast<float>(factors.up[i]), model_dtype);
  for (std::size_t i = 0; i < down.size(); ++i)
    down[i] = round_float_to(static_cast<float>(factors.down[i]), model_dtype);
  // values -= U·D, blocked (detail/cpu_products.hpp) with model_dtype_dot's per-element order.
  if (model_dtype == DType::f32) {
    plain_low_rank_product<double>(up, down, rows, rank, cols,
                                   [&](std::int64_t row, std::int64_t col0, std::int64_t width, const double* sums) {
                                     float* out = values.data() + row * cols + col0;
                                     for (std::int64_t c = 0; c < width; ++c) out[c] -= static_cast<float>(sums[c]);
                                   });
  } else {
    plain_low_rank_product<float>(up, down, rows, rank, cols,
                                  [&](std::int64_t row, std::int64_t col0, std::int64_t width, const float* sums) {
                                    float* out = values.data() + row * cols + col0;
                                    for (std::int64_t c = 0; c < width; ++c)
                                      out[c] -= round_float_to(sums[c], model_dtype);
                                  });
  }
  SvdSplit split{Tensor::empty({rows, rank}, model_dtype), Tensor::empty({rank, cols}, model_dtype)};
  for (std::size_t i = 0; i < up.size(); ++i) store_float_as(model_dtype, split.up.data(), std::int64_t(i), up[i]);
  for (std::size_t i = 0; i < down.size(); ++i) store_float_as(model_dtype, split.down.data(), std::int64_t(i), down[i]);
  return split;
}

// The factors in the orientation a layer stores them: transposed ([r, rows], [cols, r]) for quantized matmul.
inline Tensor oriented_factor(const Tensor& factor, bool transpose) {
  if (!transpose) return factor.clone();
  const std::int64_t rows = factor.shape()[0], cols = factor.shape()[1];
  Tensor result = Tensor::empty({cols, rows}, factor.dtype());
  const std::size_t size = factor.view().element_size();
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j)
      std::memcpy(static_cast<char*>(result.data()) + (j * rows + i) * size,
                  static_cast<const char*>(factor.data()) + (i * cols + j) * size, size);
  return result;
}

// §3.3 / §3.8: the dtype scale and zero point are rounded to before computing q, or none (fp32).
inline std::optional<DType> scale_dtype_for(const LayerLayout& layout, bool dequantize_fp32, DType model_dtype,
                                            bool tensorwise_fp8_matmul) {
  const format::StorageType& weights = *layout.weights_type;
  const format::StorageType& matmul = *layout.matmul_type;
  const bool matmul_is_float = !matmul.is_integer;
  if (dequantize_fp32 || weights.max > 16384) return std::nullopt;
  if (layout.use_quantized_matmul && matmul_is_float && (!tensorwise_fp8_matmul || matmul.bits == 16))
    return std::nullopt;
  const bool cast_scale = !(layout.transposed && !tensorwise_fp8_matmul && matmul_is_float);
  if (!cast_scale) return std::nullopt;
  return model_dtype;
}

// Per-slice affine parameters in fp32 (already rounded to the scale dtype when there is one).
struct SliceScales {
  std::vector<float> scale, zero_point;  // zero_point empty for symmetric types
};

inline SliceScales compute_scales(const std::vector<float>& values, const SliceGeometry& geometry,
                                  const format::StorageType& type, std::optional<DType> scale_dtype) {
  SliceScales result;
  const std::int64_t slices = geometry.slices();
  result.scale.resize(static_cast<std::size_t>(slices));
  if (type.is_unsigned) result.zero_point.resize(static_cast<std::size_t>(slices));
  const auto divisor = static_cast<float>(type.max - type.min);  // exact: integers and custom-float maxima
  const auto signed_max = static_cast<float>(type.max);
  auto compute_slice = [&](std::int64_t s) {
    if (type.is_unsigned) {
      float low = values[geometry.element(s, 0)], high = low;
      for (std::int64_t l = 1; l < geometry.length; ++l) {
        const float x = values[geometry.element(s, l)];
        low = std::min(low, x);
        high = std::max(high, x);
      }
      float scale = (high - low) / divisor;
      float zero_point = low;
      if (type.min != 0) zero_point = low - static_cast<float>(type.min) * scale;
      if (scale_dtype) {
        scale = round_float_to(scale, *scale_dtype);
        zero_point = round_float_to(zero_point, *scale_dtype);
      }
      result.scale[s] = scale;
      result.zero_point[s] = zero_point;
    } else {
      float amax = 0.0f;
      for (std::int64_t l = 0; l < geometry.length; ++l) amax = std::max(amax, std::fabs(values[geometry.element(s, l)]));
      float scale = amax / signed_max;
      if (scale_dtype) scale = round_float_to(scale, *scale_dtype);
      result.scale[s] = scale;
    }
  };
  parallel_for(0, slices, std::max<std::int64_t>(1, (1 << 14) / geometry.length),
               [&](std::int64_t slice_begin, std::int64_t slice_end) {
                 for (std::int64_t s = slice_begin; s < slice_end; ++s) compute_slice(s);
               });
  return result;
}

// §3.7 for one element: q before the dtype conversion (rounded and clamped for integers, sanitized
// and clamped for floats). An integer q of NaN (a constant group: 0/0) becomes 0, so such a group
// decodes to its zero point (or 0): the reference leaves that case undefined. With `stochastic`, the
// reference's stochastic rounding draws element `element`'s noise (write_stochastic.hpp).
inline float quantized_value(float x, float scale, const float* zero_point, const format::StorageType& type,
                             const StochasticRounding* stochastic = nullptr, std::int64_t element = 0) {
  float q = zero_point ? (x - *zero_point) / scale : x / scale;
  const auto low = static_cast<float>(type.min), high = static_cast<float>(type.max);
  if (type.is_integer) {
    if (std::isnan(q)) return 0.0f;
    if (stochastic) q = dither_integer(q, *stochastic, element);
    q = std::nearbyint(q);  // round half to even
    return std::min(std::max(q, low), high);
  }
  if (stochastic) q = stochastic_float(q, type.mantissa, *stochastic, element);  // before nan_to_num, as the reference
  if (std::isnan(q))
    q = 0.0f;
  else if (std::isinf(q))
    q = q > 0 ? std::numeric_limits<float>::max() : -std::numeric_limits<float>::max();
  return std::min(std::max(q, low), high);
}

// The integer q after torch's float -> integer conversion, which goes through int64: the callers'
// narrowing casts then wrap. That matters only for int32 / uint32, whose max rounds up to 2^31 / 2^32
// in fp32 and is stored as -2^31 / 0 by the reference (reproduced, as the fixtures show).
inline std::int64_t integer_of(float q, const format::StorageType&) { return static_cast<std::int64_t>(q); }

}  // namespace sdnq::quant::detail
