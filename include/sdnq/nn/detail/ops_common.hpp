#pragma once
// Shared machinery of the CPU tensor ops: argument checks, f32 conversion, broadcasting shapes.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"

namespace sdnq::nn::detail {

inline void require_host_f32(const TensorView& x, std::string_view op, std::string_view what) {
  SDNQ_REQUIRE(x.device().is_cpu(), ShapeError, "nn::{}: {} must be a host tensor, got {}", op, what,
               x.device().to_string());
  SDNQ_REQUIRE(x.dtype() == DType::f32, ShapeError, "nn::{}: {} must be F32, got {} {}", op, what,
               dtype_name(x.dtype()), x.shape().to_string());
}

// A contiguous f32 view of `x`: `x` itself when it already is one, else a copy kept in `storage`.
inline const float* contiguous_f32(const TensorView& x, Tensor& storage, std::string_view op, std::string_view what) {
  require_host_f32(x, op, what);
  if (x.is_contiguous()) return static_cast<const float*>(x.data());
  storage = Tensor::empty(x.shape(), DType::f32);
  copy(storage, x);
  return storage.data_as<float>();
}

// A host tensor's elements in row-major order: `x` itself when contiguous, else a copy kept in `storage`.
inline TensorView contiguous_host_source(const TensorView& x, Tensor& storage, std::string_view what) {
  SDNQ_REQUIRE(x.device().is_cpu(), ShapeError, "{} must be a host tensor, got {}", what, x.device().to_string());
  if (x.is_contiguous()) return x;
  storage = Tensor::empty(x.shape(), x.dtype());
  copy(storage, x);
  return storage.view();
}

// Any float tensor (F32, BF16, F16, F8) as a new contiguous f32 tensor: exact widening.
inline Tensor to_f32(const TensorView& x, std::string_view what) {
  Tensor source_copy;
  const TensorView source = contiguous_host_source(x, source_copy, what);
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  float* values = out.data_as<float>();
  const std::int64_t n = x.numel();
  const void* data = source.data();
  switch (x.dtype()) {
    case DType::f32:
      std::memcpy(values, data, static_cast<std::size_t>(n) * sizeof(float));
      break;
    case DType::f64:
      for (std::int64_t i = 0; i < n; ++i) values[i] = static_cast<float>(static_cast<const double*>(data)[i]);
      break;
    case DType::bf16:
      for (std::int64_t i = 0; i < n; ++i) values[i] = static_cast<const bf16*>(data)[i].to_float();
      break;
    case DType::f16:
      for (std::int64_t i = 0; i < n; ++i) values[i] = static_cast<const fp16*>(data)[i].to_float();
      break;
    case DType::f8_e4m3fn:
      for (std::int64_t i = 0; i < n; ++i) values[i] = static_cast<const fp8_e4m3fn*>(data)[i].to_float();
      break;
    case DType::f8_e5m2:
      for (std::int64_t i = 0; i < n; ++i) values[i] = static_cast<const fp8_e5m2*>(data)[i].to_float();
      break;
    default:
      throw ShapeError(fmt::format("{} must be a float tensor (F32, F64, BF16, F16, F8), got {} {}", what,
                                   dtype_name(x.dtype()), x.shape().to_string()));
  }
  return out;
}

// Any float tensor as a new contiguous bf16 tensor, each value rounded once from its f32 value (F64
// through f32, as to_f32 does), on all host threads: what the GPU modules upload for an F32 or F16
// checkpoint, in one pass instead of an f32 copy and a narrowing loop.
inline Tensor to_bf16(const TensorView& x, std::string_view what) {
  Tensor source_copy;
  const TensorView source = contiguous_host_source(x, source_copy, what);
  Tensor out = Tensor::empty(x.shape(), DType::bf16);
  bf16* to = out.data_as<bf16>();
  const auto narrow = [&](const auto* from) {
    parallel_for(0, x.numel(), std::int64_t{1} << 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        if constexpr (std::is_floating_point_v<std::remove_cv_t<std::remove_pointer_t<decltype(from)>>>)
          to[i] = bf16(static_cast<float>(from[i]));
        else
          to[i] = bf16(from[i].to_float());
      }
    });
  };
  switch (x.dtype()) {
    case DType::f32: narrow(static_cast<const float*>(source.data())); break;
    case DType::f64: narrow(static_cast<const double*>(source.data())); break;
    case DType::bf16: std::memcpy(to, source.data(), out.nbytes()); break;
    case DType::f16: narrow(static_cast<const fp16*>(source.data())); break;
    case DType::f8_e4m3fn: narrow(static_cast<const fp8_e4m3fn*>(source.data())); break;
    case DType::f8_e5m2: narrow(static_cast<const fp8_e5m2*>(source.data())); break;
    default:
      throw ShapeError(fmt::format("{} must be a float tensor (F32, F64, BF16, F16, F8), got {} {}", what,
                                   dtype_name(x.dtype()), x.shape().to_string()));
  }
  return out;
}

// The shape of `a` and `b` broadcast together the numpy way, or a ShapeError naming both.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  const int rank = std::max(a.rank(), b.rank());
  Shape out;
  for (int axis = 0; axis < rank; ++axis) {
    const int ia = axis - (rank - a.rank()), ib = axis - (rank - b.rank());
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    SDNQ_REQUIRE(da == db || da == 1 || db == 1, ShapeError, "nn::{}: shapes {} and {} do not broadcast", op,
                 a.to_string(), b.to_string());
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

// Element strides of `shape` (contiguous) seen as `target` (rank >= shape's): 0 on broadcast axes.
inline Shape broadcast_strides(const Shape& shape, const Shape& target) {
  const Shape own = contiguous_strides(shape);
  Shape out;
  for (int axis = 0; axis < target.rank(); ++axis) {
    const int source_axis = axis - (target.rank() - shape.rank());
    out.push_back(source_axis >= 0 && shape[source_axis] != 1 ? own[source_axis] : 0);
  }
  return out;
}

// Product of the extents in [first, last).
inline std::int64_t extent_product(const Shape& shape, int first, int last) {
  std::int64_t n = 1;
  for (int axis = first; axis < last; ++axis) n *= shape[axis];
  return n;
}

inline int normalize_axis(int axis, int rank, std::string_view op) {
  const int normalized = axis < 0 ? axis + rank : axis;
  SDNQ_REQUIRE(normalized >= 0 && normalized < rank, ShapeError, "nn::{}: axis {} is out of range for rank {}", op,
               axis, rank);
  return normalized;
}

}  // namespace sdnq::nn::detail
