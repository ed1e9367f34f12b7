#pragma once
// Host-side helpers of the dequantize and GEMV kernel tests: random quantized Linear weights written
// in the reference packer's layout by a packer coded here from sdnq-format.md §1.5 (independent of
// the unpacker under test), their dense values in double, and the launchers defined in the .cu files.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "sdnq/core/scalar.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/repack.hpp"

namespace sdnq::test {

// Packs unsigned codes (row-major [N, K]) the way the reference packer does, one byte per packer word
// (int64 words for 1 bit).
inline Tensor pack_reference_codes(int bits, const std::vector<std::uint32_t>& c) {
  const std::int64_t numel = static_cast<std::int64_t>(c.size());
  if (bits == 8) {
    Tensor out = Tensor::empty(Shape{numel}, DType::u8);
    for (std::int64_t i = 0; i < numel; ++i) out.data_as<std::uint8_t>()[i] = static_cast<std::uint8_t>(c[i]);
    return out;
  }
  if (bits == 1) {
    Tensor out = Tensor::zeros(Shape{numel / 8}, DType::i64);
    for (std::int64_t i = 0; i < numel; ++i) out.data_as<std::int64_t>()[i / 8] |= std::int64_t(c[i]) << (i % 8);
    return out;
  }
  const int block = bits == 2 ? 4 : bits == 4 ? 2 : bits == 6 ? 4 : 8;
  const int words = bits == 6 ? 3 : (bits == 2 || bits == 4) ? 1 : bits;
  Tensor out = Tensor::zeros(Shape{numel / block * words}, DType::u8);
  auto* w = out.data_as<std::uint8_t>();
  for (std::int64_t b = 0; b < numel / block; ++b) {
    const std::uint32_t* k = c.data() + b * block;
    std::uint32_t o[8] = {};
    switch (bits) {
      case 2: o[0] = k[0] | k[1] << 2 | k[2] << 4 | k[3] << 6; break;
      case 4: o[0] = k[0] | k[1] << 4; break;
      case 3:
        o[0] = k[0] | k[3] << 3 | (k[6] & 3) << 6;
        o[1] = k[1] | k[4] << 3 | (k[7] & 3) << 6;
        o[2] = k[2] | k[5] << 3 | (k[6] >> 2 & 1) << 6 | (k[7] >> 2 & 1) << 7;
        break;
      case 5:
        for (int j = 0; j < 3; ++j) o[j] = k[j] | (k[5 + j] & 7) << 5;
        o[3] = k[3] | (k[5] >> 3 & 3) << 5 | (k[7] >> 4 & 1) << 7;
        o[4] = k[4] | (k[6] >> 3 & 3) << 5 | (k[7] >> 3 & 1) << 7;
        break;
      case 6:
        o[0] = k[0] | (k[3] >> 4 & 3) << 6;
        o[1] = k[1] | (k[3] >> 2 & 3) << 6;
        o[2] = k[2] | (k[3] & 3) << 6;
        break;
      default:  // 7
        for (int j = 0; j < 7; ++j) o[j] = k[j] | (k[7] >> (6 - j) & 1) << 7;
        break;
    }
    for (int j = 0; j < words; ++j) w[b * words + j] = static_cast<std::uint8_t>(o[j]);
  }
  return out;
}

// float4_e2m1fn (§1.3): sign, 2 exponent bits (bias 1), 1 mantissa bit; written out here.
inline std::vector<float> float4_e2m1_table() {
  std::vector<float> table(16);
  for (int code = 0; code < 16; ++code) {
    const int sign = code >> 3, exponent = (code >> 1) & 3, mantissa = code & 1;
    const double magnitude = exponent > 0 ? std::ldexp(1.0 + mantissa / 2.0, exponent - 1) : mantissa / 2.0;
    table[code] = static_cast<float>(sign ? -magnitude : magnitude);
  }
  return table;
}

// A custom float of exponent + mantissa bits, plus a sign bit unless `is_signed` is false (fnu) (§1.3: bias
// 2^(E−1) − 1, subnormals at e' = 0, every code finite, both zero codes +0.0), written out here.
inline std::vector<float> custom_float_table(int exponent_bits, int mantissa_bits, bool is_signed = true) {
  const int bits = exponent_bits + mantissa_bits + (is_signed ? 1 : 0), bias = (1 << (exponent_bits - 1)) - 1;
  std::vector<float> table(std::size_t{1} << bits);
  for (int code = 0; code < (1 << bits); ++code) {
    const int mantissa = code & ((1 << mantissa_bits) - 1);
    const int exponent = (code >> mantissa_bits) & ((1 << exponent_bits) - 1);
    const double fraction = static_cast<double>(mantissa) / (1 << mantissa_bits);
    const double magnitude =
        exponent > 0 ? std::ldexp(1.0 + fraction, exponent - bias) : std::ldexp(fraction, 1 - bias);
    const bool negative = is_signed && (code >> (bits - 1)) != 0 && magnitude != 0.0;
    table[code] = static_cast<float>(negative ? -magnitude : magnitude);
  }
  return table;
}

// The native fp8 formats' value of every code (NaN codes included: random codes skip them).
inline std::vector<float> float8_e4m3fn_table() {
  std::vector<float> table(256);
  for (int code = 0; code < 256; ++code)
    table[code] = fp8_e4m3fn::from_bits(static_cast<std::uint8_t>(code)).to_float();
  return table;
}
inline std::vector<float> float8_e5m2_table() {
  std::vector<float> table(256);
  for (int code = 0; code < 256; ++code) table[code] = fp8_e5m2::from_bits(static_cast<std::uint8_t>(code)).to_float();
  return table;
}

// float8_e4m3fn's value of every code, its two NaN codes read as 0: not the native table, so the GEMV reads it
// through shared memory.
inline std::vector<float> float8_e4m3_table_without_nan() {
  std::vector<float> table(256);
  for (int code = 0; code < 256; ++code) {
    const float value = fp8_e4m3fn::from_bits(static_cast<std::uint8_t>(code)).to_float();
    table[code] = std::isnan(value) ? 0.0f : value;
  }
  return table;
}

// A random quantized Linear weight with its host tensors, and its dense value in double.
struct RandomLinear {
  cuda::LinearCodes codes;           // views into the tensors below
  Tensor packed, scale, zero_point, lookup_table, svd_up, svd_down;
  std::vector<double> dense;         // [N, K]: what the kernels must reproduce
};

// bits/value as in LinearCodes; group_size > 0, -1 or -2. Parameters are stored as F32; `dense` uses
// them rounded to T (ScaleRounding::to_output_dtype). SVD factors are stored in T.
template <class T>
RandomLinear make_random_linear(int bits, cuda::CodeValue value, std::int64_t n, std::int64_t k, std::int64_t group_size,
                                std::int64_t rank, std::uint64_t seed, bool transposed = false,
                                const std::vector<float>* table = nullptr) {
  std::mt19937_64 rng(seed);
  RandomLinear out;
  const std::int64_t groups = group_size > 0 ? k / group_size : 1;
  const std::int64_t params = group_size == -2 ? 1 : n * groups;
  // Unsigned formats have a zero point: integers, and floats without a sign bit (fnu, §1.3: no negative value).
  const bool has_zero = value == cuda::CodeValue::unsigned_integer ||
                        (value == cuda::CodeValue::lookup &&
                         std::none_of(table->begin(), table->end(), [](float v) { return v < 0.0f; }));
  std::vector<std::uint32_t> codes(static_cast<std::size_t>(n * k));
  std::uniform_int_distribution<std::uint32_t> code_dist(0, (1u << bits) - 1);
  for (auto& c : codes)  // codes whose table value is not finite (fp8 NaN and Inf) are drawn again
    do c = code_dist(rng);
    while (table != nullptr && !std::isfinite((*table)[c]));

  out.scale = Tensor::empty(Shape{params, 1}, DType::f32);
  out.zero_point = Tensor::empty(Shape{params, 1}, DType::f32);
  std::uniform_real_distribution<float> scale_dist(0.002f, 0.03f), zero_dist(-0.2f, 0.05f);
  for (std::int64_t i = 0; i < params; ++i) {
    out.scale.data_as<float>()[i] = scale_dist(rng);
    out.zero_point.data_as<float>()[i] = zero_dist(rng);
  }
  if (value == cuda::CodeValue::lookup) {
    out.lookup_table = Tensor::empty(Shape{std::int64_t{1} << bits}, DType::f32);
    for (std::int64_t i = 0; i < (std::int64_t{1} << bits); ++i) out.lookup_table.data_as<float>()[i] = (*table)[i];
  }

  out.dense.resize(codes.size());
  for (std::int64_t o = 0; o < n; ++o)
    for (std::int64_t c = 0; c < k; ++c) {
      const std::int64_t p = group_size == -2 ? 0 : o * groups + (group_size > 0 ? c / group_size : 0);
      const double s = static_cast<float>(T(out.scale.data_as<float>()[p]));
      const double z = static_cast<float>(T(out.zero_point.data_as<float>()[p]));
      const std::uint32_t code = codes[o * k + c];
      double q = value == cuda::CodeValue::lookup ? (*table)[code]
                 : value == cuda::CodeValue::signed_integer ? double(code) - double(1 << (bits - 1))
                                                            : double(code);
      out.dense[o * k + c] = has_zero ? q * s + z : q * s;
    }

  // Stored codes: offset binary when packed, two's complement for native int8, [K, N] when transposed.
  std::vector<std::uint32_t> stored(codes.size());
  for (std::int64_t o = 0; o < n; ++o)
    for (std::int64_t c = 0; c < k; ++c) {
      std::uint32_t code = codes[o * k + c];
      if (bits == 8 && value == cuda::CodeValue::signed_integer) code ^= 0x80u;
      stored[transposed ? c * n + o : o * k + c] = code;
    }
  out.packed = pack_reference_codes(bits, stored);
  if (bits == 8 && value == cuda::CodeValue::signed_integer)
    out.packed = [&] {
      Tensor t = Tensor::empty(Shape{n * k}, DType::i8);
      std::memcpy(t.data(), out.packed.data(), static_cast<std::size_t>(n * k));
      return t;
    }();

  if (rank > 0) {
    out.svd_up = Tensor::empty(Shape{n, rank}, dtype_of_v<T>);
    out.svd_down = Tensor::empty(Shape{rank, k}, dtype_of_v<T>);
    std::normal_distribution<float> factor(0.0f, 0.05f);
    for (std::int64_t i = 0; i < n * rank; ++i) out.svd_up.data_as<T>()[i] = T(factor(rng));
    for (std::int64_t i = 0; i < rank * k; ++i) out.svd_down.data_as<T>()[i] = T(factor(rng));
    for (std::int64_t o = 0; o < n; ++o)
      for (std::int64_t c = 0; c < k; ++c) {
        double sum = 0.0;
        for (std::int64_t r = 0; r < rank; ++r)
          sum += double(out.svd_up.data_as<T>()[o * rank + r].to_float()) *
                 double(out.svd_down.data_as<T>()[r * k + c].to_float());
        out.dense[o * k + c] += sum;
      }
  }

  cuda::LinearCodes& w = out.codes;
  w.name = "test.linear";
  w.bits = bits;
  w.value = value;
  w.out_features = n;
  w.in_features = k;
  w.group_size = group_size;
  w.transposed = transposed;
  w.codes = out.packed;
  w.scale = out.scale;
  if (has_zero) w.zero_point = TensorView(out.zero_point);
  if (value == cuda::CodeValue::lookup) w.lookup_table = TensorView(out.lookup_table);
  if (rank > 0) {
    w.svd_up = TensorView(out.svd_up);
    w.svd_down = TensorView(out.svd_down);
  }
  return out;
}

// ||a − b|| / ||b||.
inline double relative_l2(const std::vector<double>& actual, const std::vector<double>& expected) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    diff += (actual[i] - expected[i]) * (actual[i] - expected[i]);
    norm += expected[i] * expected[i];
  }
  return std::sqrt(diff / norm);
}

// Launchers (tests/cuda/test_dequantize_kernel.cu, test_gemv.cu): copy host inputs to the GPU, fill
// the output with NaN, run the kernel, return the output on the host.
Tensor run_dequantize_kernel(const cuda::LinearCodes& host_weight, DType output, cuda::ScaleRounding rounding);
// y [M, N] for x [M, K] (host, dtype of the repacked weights), bias [N] or empty.
Tensor run_gemv_kernel(const cuda::GemvWeightsHost& weights, TensorView x, std::optional<TensorView> bias);

}  // namespace sdnq::test
