#pragma once
// Hadamard rotation of weight rows (§3.4 of the format): the quantizer rotates the weight before
// quantizing, the dequantizer rotates the dense result back with the same matrix (H is symmetric and
// orthogonal, so H·H = I). Arithmetic follows PyTorch's eager CPU semantics: H is built in the
// tensor's dtype and divided there by sqrt(h); the product x·H multiplies exact dtype values,
// accumulates in fp32 (bf16 / fp16) and rounds once to the dtype. fp32 / fp64 tensors accumulate in
// double and round once, the correctly rounded result that a BLAS with any summation order
// approximates most closely.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/quant/detail/write_float_bits.hpp"

namespace sdnq::quant {

// §3.4 `get_hadamard_group_size`: h = next_pow2(min(channels, requested)), halved until it divides
// `channels`; rotation only when h >= 4. Returns 0 when disabled.
inline int hadamard_group_size(std::int64_t channels, std::int64_t requested) {
  if (channels <= 0 || requested <= 0) return 0;
  const std::int64_t limit = std::min(channels, requested);
  std::int64_t size = 1;
  while (size < limit) size *= 2;
  while (size > 1 && channels % size != 0) size /= 2;
  return size >= 4 ? static_cast<int>(size) : 0;
}

namespace detail {

inline bool is_power_of_four(int size) {
  if (size <= 0 || (size & (size - 1)) != 0) return false;
  return (std::countr_zero(static_cast<unsigned>(size)) % 2) == 0;
}

// The ±1 pattern of H_h before scaling, row-major [h, h]: Kronecker powers of H4 (h a power of 4)
// or of the Sylvester H2, built as H <- kron(H, base) starting from the base.
inline std::vector<signed char> hadamard_signs(int size) {
  static constexpr signed char h4[16] = {1, 1, 1, -1, 1, 1, -1, 1, 1, -1, 1, 1, -1, 1, 1, 1};
  static constexpr signed char h2[4] = {1, 1, 1, -1};
  SDNQ_REQUIRE(size >= 2 && (size & (size - 1)) == 0, ShapeError,
               "Hadamard size {} must be a power of two >= 2", size);
  const bool use_h4 = is_power_of_four(size);
  const int base_size = use_h4 ? 4 : 2;
  const signed char* base = use_h4 ? h4 : h2;
  std::vector<signed char> matrix(base, base + base_size * base_size);
  for (int current = base_size; current < size; current *= base_size) {
    const int next = current * base_size;
    std::vector<signed char> product(static_cast<std::size_t>(next) * next);
    // kron(A, B)[i*b + k, j*b + l] = A[i, j] * B[k, l]
    for (int i = 0; i < current; ++i)
      for (int j = 0; j < current; ++j)
        for (int k = 0; k < base_size; ++k)
          for (int l = 0; l < base_size; ++l)
            product[static_cast<std::size_t>(i * base_size + k) * next + j * base_size + l] =
                static_cast<signed char>(matrix[i * current + j] * base[k * base_size + l]);
    matrix = std::move(product);
  }
  return matrix;
}

// The magnitude 1/sqrt(h) as torch computes `H.to(dtype) / math.sqrt(h)`: the Python float
// sqrt(h) becomes the fp32 op-math scalar (fp64 for fp64 tensors), the division runs there and the
// quotient rounds to the dtype.
inline double hadamard_entry_magnitude(int size, DType dtype) {
  const double root = std::sqrt(static_cast<double>(size));
  if (dtype == DType::f64) return 1.0 / root;
  const float quotient = 1.0f / static_cast<float>(root);
  return round_float_to(quotient, dtype);
}

}  // namespace detail

// H_h in `dtype` as a dense row-major [h, h] fp64 matrix of the exact dtype values (for tests and
// for callers that want the matrix itself).
inline std::vector<double> hadamard_matrix(int size, DType dtype) {
  const auto signs = detail::hadamard_signs(size);
  const double magnitude = detail::hadamard_entry_magnitude(size, dtype);
  std::vector<double> matrix(signs.size());
  for (std::size_t i = 0; i < signs.size(); ++i) matrix[i] = signs[i] * magnitude;
  return matrix;
}

// In place: every consecutive chunk of `hadamard_size` elements of each row is replaced by chunk·H.
// A row is everything after the first axis (Linear/Embedding [out, in]; convs [out, C·prod(k)] in
// C order), so for a contiguous tensor the chunks are simply consecutive in memory.
inline void rotate_hadamard(TensorView values, int hadamard_size) {
  if (hadamard_size == 0) return;
  SDNQ_REQUIRE(values.device().is_cpu(), ShapeError, "rotate_hadamard runs on host tensors, got {}",
               values.device().to_string());
  SDNQ_REQUIRE(values.is_contiguous(), ShapeError, "rotate_hadamard needs a contiguous tensor, got shape {}",
               values.shape().to_string());
  const DType dtype = values.dtype();
  SDNQ_REQUIRE(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16 || dtype == DType::f16,
               UnsupportedError, "Hadamard rotation of {} tensors is not supported (fp32/fp64/bf16/fp16)",
               dtype_name(dtype));
  const std::int64_t row_length = values.rank() >= 2 ? values.numel() / values.size(0) : values.numel();
  SDNQ_REQUIRE(hadamard_size >= 2 && (hadamard_size & (hadamard_size - 1)) == 0 && row_length % hadamard_size == 0,
               ShapeError, "Hadamard size {} must be a power of two dividing the row length {} of tensor {}",
               hadamard_size, row_length, values.shape().to_string());

  const int size = hadamard_size;
  const auto signs = detail::hadamard_signs(size);
  const double magnitude = detail::hadamard_entry_magnitude(size, dtype);
  const bool accumulate_in_fp32 = dtype == DType::bf16 || dtype == DType::f16;
  std::vector<double> chunk(static_cast<std::size_t>(size));
  void* data = values.data();
  for (std::int64_t start = 0, total = values.numel(); start < total; start += size) {
    for (int k = 0; k < size; ++k) chunk[k] = detail::load_float_from(dtype, data, start + k);
    for (int column = 0; column < size; ++column) {
      // products of two dtype values are exact in fp32 for bf16/fp16 and exact in double for fp32
      double sum = 0.0;
      float sum_fp32 = 0.0f;
      for (int k = 0; k < size; ++k) {
        const double product = chunk[k] * (signs[static_cast<std::size_t>(k) * size + column] * magnitude);
        if (accumulate_in_fp32)
          sum_fp32 += static_cast<float>(product);
        else
          sum += product;
      }
      if (dtype == DType::f64)
        static_cast<double*>(data)[start + column] = sum;
      else
        detail::store_float_as(dtype, data, start + column, accumulate_in_fp32 ? sum_fp32 : static_cast<float>(sum));
    }
  }
}

}  // namespace sdnq::quant
