#pragma once
// Host helpers shared by the CUDA op tests (test_ops_*.cpp, test_attention.cpp): random bf16/fp16
// tensors, their exact f32 widening (the input of the CPU float32 oracle in nn/tensor_ops.hpp), and an
// element-wise comparison whose tolerance is derived from the precision of the output dtype.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/tensor_ops.hpp"

namespace sdnq::test {

// Unit roundoff of the 16-bit dtype: half an ulp at 1 (bf16 keeps 8 significant bits, fp16 11).
inline double unit_roundoff(DType dtype) { return dtype == DType::bf16 ? 0x1p-8 : 0x1p-11; }

// A host tensor of `dtype` (bf16, f16 or f32) with values uniform in [low, high), rounded to dtype.
inline Tensor random_tensor(const Shape& shape, DType dtype, std::uint64_t seed, float low = -1.0f, float high = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(low, high);
  Tensor out = Tensor::empty(shape, dtype);
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    const float value = dist(rng);
    if (dtype == DType::bf16)
      out.data_as<bf16>()[i] = bf16(value);
    else if (dtype == DType::f16)
      out.data_as<fp16>()[i] = fp16(value);
    else
      out.data_as<float>()[i] = value;
  }
  return out;
}

inline Tensor widen(const TensorView& x) { return nn::detail::to_f32(x, "test tensor"); }

struct Comparison {
  std::int64_t mismatches = 0;  // elements outside the tolerance, NaN included
  std::int64_t first_bad = -1;
  double worst_excess = 0.0;  // max |actual − expected| / tolerance
  std::string describe() const {
    return "mismatches " + std::to_string(mismatches) + ", first at flat index " + std::to_string(first_bad) +
           ", worst |error| / tolerance " + std::to_string(worst_excess);
  }
};

// |actual − expected| ≤ absolute + relative · |expected| for every element; `actual` any float dtype,
// `expected` f32, same shape.
inline Comparison compare(const TensorView& actual, const TensorView& expected, double absolute, double relative) {
  const Tensor a = widen(actual), e = widen(expected);
  Comparison result;
  for (std::int64_t i = 0; i < e.numel(); ++i) {
    const double x = a.data_as<float>()[i], y = e.data_as<float>()[i];
    const double tolerance = absolute + relative * std::fabs(y);
    const double error = std::fabs(x - y);
    const double excess = tolerance > 0.0 ? error / tolerance : (error > 0.0 ? INFINITY : 0.0);
    if (!(error <= tolerance)) {
      if (result.first_bad < 0) result.first_bad = i;
      ++result.mismatches;
    }
    if (!(excess <= result.worst_excess)) result.worst_excess = std::isnan(excess) ? INFINITY : excess;
  }
  return result;
}

inline float max_abs(const TensorView& x) {
  const Tensor w = widen(x);
  float m = 0.0f;
  for (std::int64_t i = 0; i < w.numel(); ++i) m = std::max(m, std::fabs(w.data_as<float>()[i]));
  return m;
}

}  // namespace sdnq::test
