#pragma once
// Element conversions for the CPU reference layers: any float tensor <-> fp32 values, and rounding
// an fp32 value to the grid of a narrower dtype. PyTorch's eager CPU ops on bf16 / fp16 tensors
// compute each op in fp32 and round the result once to the dtype; round_to() reproduces that step.
#include <cstdint>
#include <cstring>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/parallel.hpp"
#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"

namespace sdnq::quant::detail {

inline bool is_layer_float_dtype(DType dtype) {
  return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16;
}

// torch's `x.to(dtype).float()` for the dtypes layers compute in.
inline float round_to(DType dtype, float value) {
  switch (dtype) {
    case DType::f32: return value;
    case DType::bf16: return static_cast<float>(bf16(value));
    case DType::f16: return static_cast<float>(fp16(value));
    default: break;
  }
  throw UnsupportedError(::sdnq::detail::format_message("layers compute in f32, bf16 or f16, not {}", dtype_name(dtype)));
}

inline float load_element(DType dtype, const void* data, std::int64_t index) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(data)[index];
    case DType::f64: return static_cast<float>(static_cast<const double*>(data)[index]);
    case DType::bf16: return static_cast<float>(static_cast<const bf16*>(data)[index]);
    case DType::f16: return static_cast<float>(static_cast<const fp16*>(data)[index]);
    case DType::f8_e4m3fn: return static_cast<float>(static_cast<const fp8_e4m3fn*>(data)[index]);
    case DType::f8_e5m2: return static_cast<float>(static_cast<const fp8_e5m2*>(data)[index]);
    default: break;
  }
  throw UnsupportedError(::sdnq::detail::format_message("cannot read {} elements as float", dtype_name(dtype)));
}

inline void store_element(DType dtype, void* data, std::int64_t index, float value) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(data)[index] = value; return;
    case DType::bf16: static_cast<bf16*>(data)[index] = bf16(value); return;
    case DType::f16: static_cast<fp16*>(data)[index] = fp16(value); return;
    case DType::f8_e4m3fn: static_cast<fp8_e4m3fn*>(data)[index] = fp8_e4m3fn(value); return;
    default: break;
  }
  throw UnsupportedError(::sdnq::detail::format_message("cannot store float values as {}", dtype_name(dtype)));
}

// All elements of a host float tensor (any strides) as fp32, in C order. Exact for f32/bf16/f16/fp8.
inline std::vector<float> to_float_vector(TensorView tensor, const char* what) {
  SDNQ_REQUIRE(tensor.device().is_cpu(), ShapeError, "{} must be a host tensor, got {}", what,
               tensor.device().to_string());
  Tensor contiguous;
  if (!tensor.is_contiguous()) {
    contiguous = Tensor::empty(tensor.shape(), tensor.dtype());
    copy(contiguous, tensor);
    tensor = contiguous.view();
  }
  std::vector<float> values(static_cast<std::size_t>(tensor.numel()));
  const DType dtype = tensor.dtype();
  if (dtype == DType::f32) {
    if (!values.empty()) std::memcpy(values.data(), tensor.data(), values.size() * sizeof(float));
    return values;
  }
  const void* data = tensor.data();
  parallel_for(0, tensor.numel(), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) values[static_cast<std::size_t>(i)] = load_element(dtype, data, i);
  });
  return values;
}

// A new tensor of `dtype` holding `values` rounded to nearest-even.
inline Tensor tensor_from_floats(const std::vector<float>& values, Shape shape, DType dtype) {
  Tensor result = Tensor::empty(shape, dtype);
  void* data = result.data();
  parallel_for(0, shape.numel(), 1 << 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) store_element(dtype, data, i, values[static_cast<std::size_t>(i)]);
  });
  return result;
}

}  // namespace sdnq::quant::detail
