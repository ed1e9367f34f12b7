#pragma once
// Element access of the float tensors the writer reads and produces (fp32/fp64/bf16/fp16/fp8), with
// PyTorch's conversion semantics (round-to-nearest-even) from sdnq/core/scalar.hpp.
#include <cstdint>

#include <fmt/format.h>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/scalar.hpp"

namespace sdnq::quant::detail {

// fp32 value -> element `index` of a float tensor of `dtype` at `destination` (RNE).
inline void store_float_as(DType dtype, void* destination, std::int64_t index, float value) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(destination)[index] = value; return;
    case DType::f64: static_cast<double*>(destination)[index] = value; return;
    case DType::bf16: static_cast<bf16*>(destination)[index] = bf16(value); return;
    case DType::f16: static_cast<fp16*>(destination)[index] = fp16(value); return;
    case DType::f8_e4m3fn: static_cast<fp8_e4m3fn*>(destination)[index] = fp8_e4m3fn(value); return;
    case DType::f8_e5m2: static_cast<fp8_e5m2*>(destination)[index] = fp8_e5m2(value); return;
    default: break;
  }
  throw UnsupportedError(fmt::format("cannot store float values as {}", dtype_name(dtype)));
}

// Element `index` of a float tensor of `dtype`, widened to double (exact for every dtype here).
inline double load_float_from(DType dtype, const void* source, std::int64_t index) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(source)[index];
    case DType::f64: return static_cast<const double*>(source)[index];
    case DType::bf16: return static_cast<const bf16*>(source)[index].to_float();
    case DType::f16: return static_cast<const fp16*>(source)[index].to_float();
    case DType::f8_e4m3fn: return static_cast<const fp8_e4m3fn*>(source)[index].to_float();
    case DType::f8_e5m2: return static_cast<const fp8_e5m2*>(source)[index].to_float();
    default: break;
  }
  throw UnsupportedError(fmt::format("cannot read {} elements as float", dtype_name(dtype)));
}

// `x.to(dtype).float()` for the model / scale dtypes fp32, bf16 and fp16.
inline float round_float_to(float value, DType dtype) {
  switch (dtype) {
    case DType::f32: return value;
    case DType::bf16: return bf16(value).to_float();
    case DType::f16: return fp16(value).to_float();
    default: break;
  }
  throw UnsupportedError(fmt::format("rounding to {} is not supported here (fp32, bf16, fp16)", dtype_name(dtype)));
}

}  // namespace sdnq::quant::detail
