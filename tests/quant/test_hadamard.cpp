// Hadamard construction (§3.4) against an independent definition, orthogonality, and the rotation's
// arithmetic (fp32 accumulation for bf16/fp16, one rounding).
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "sdnq/quant/hadamard.hpp"
#include "sdnq_catch.hpp"

namespace {

// Independent definition of the ±1 pattern: for the Sylvester family entry (i, j) is
// (-1)^popcount(i & j); for the H4 family, with i and j written in base 4 (most significant digit
// first = the first Kronecker factor), the product of H4[i_d][j_d] over the digits.
int expected_sign(int size, int row, int column) {
  const bool power_of_four = (std::countr_zero(static_cast<unsigned>(size)) % 2) == 0;
  if (!power_of_four) return (std::popcount(static_cast<unsigned>(row & column)) % 2) ? -1 : 1;
  static const int h4[4][4] = {{1, 1, 1, -1}, {1, 1, -1, 1}, {1, -1, 1, 1}, {-1, 1, 1, 1}};
  int sign = 1;
  for (int rest = size; rest > 1; rest /= 4) {
    sign *= h4[row % 4][column % 4];
    row /= 4;
    column /= 4;
  }
  return sign;
}

std::uint16_t bf16_bits(float value) {  // RNE, finite values only (test inputs)
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return static_cast<std::uint16_t>(bits >> 16);
}
float from_bf16(std::uint16_t bits) {
  std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}

}  // namespace

TEST_CASE("hadamard_group_size follows §3.4", "[quant][hadamard]") {
  using sdnq::quant::hadamard_group_size;
  CHECK(hadamard_group_size(3072, 256) == 256);
  CHECK(hadamard_group_size(256, 64) == 64);
  CHECK(hadamard_group_size(96, 256) == 32);    // next_pow2(96) = 128, halved until it divides 96
  CHECK(hadamard_group_size(3000, 256) == 8);   // 3000 = 8 * 375
  CHECK(hadamard_group_size(100, 256) == 4);
  CHECK(hadamard_group_size(30, 256) == 0);     // 2 < 4: rotation disabled
  CHECK(hadamard_group_size(7, 256) == 0);
  CHECK(hadamard_group_size(64, 48) == 64);     // next_pow2(48) = 64 divides 64
  CHECK(hadamard_group_size(3, 256) == 0);
}

TEST_CASE("Hadamard matrices are the H4 / Sylvester Kronecker powers", "[quant][hadamard]") {
  for (int size : {4, 8, 16, 32, 64, 128}) {
    const auto matrix = sdnq::quant::hadamard_matrix(size, sdnq::DType::f32);
    const float magnitude = 1.0f / static_cast<float>(std::sqrt(static_cast<double>(size)));
    INFO("h = " << size);
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j)
        REQUIRE(matrix[static_cast<std::size_t>(i) * size + j] == expected_sign(size, i, j) * double(magnitude));
  }
  // h = 4 written out: H4 / 2
  const auto h4 = sdnq::quant::hadamard_matrix(4, sdnq::DType::bf16);
  const std::vector<double> expected = {.5, .5, .5, -.5, .5, .5, -.5, .5, .5, -.5, .5, .5, -.5, .5, .5, .5};
  CHECK(h4 == expected);
  // h = 8 in bf16: 1/sqrt(8) rounded to bf16 is 0.353515625
  CHECK(sdnq::quant::hadamard_matrix(8, sdnq::DType::bf16)[0] == 0.353515625);
}

TEST_CASE("H·H = I and H is orthogonal", "[quant][hadamard]") {
  for (int size : {4, 8, 16, 32, 64, 256}) {
    const auto matrix = sdnq::quant::hadamard_matrix(size, sdnq::DType::f64);
    const bool exact = (std::countr_zero(static_cast<unsigned>(size)) % 2) == 0;  // 1/sqrt(h) a power of 2
    INFO("h = " << size);
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j) {
        double product = 0, gram = 0;
        for (int k = 0; k < size; ++k) {
          product += matrix[i * size + k] * matrix[k * size + j];
          gram += matrix[k * size + i] * matrix[k * size + j];  // HᵀH
        }
        const double identity = i == j ? 1.0 : 0.0;
        if (exact) {
          REQUIRE(product == identity);
          REQUIRE(gram == identity);
        } else {
          REQUIRE(std::abs(product - identity) < 1e-14);
          REQUIRE(std::abs(gram - identity) < 1e-14);
        }
      }
  }
}

TEST_CASE("rotate_hadamard: fp32 rotation twice is the identity, conv rows are flattened", "[quant][hadamard]") {
  // [out=3, C=16, k=2]: rows of 32 elements, chunks of 16
  std::vector<float> values(3 * 16 * 2);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.37f * float(i)) * 3.0f;
  const auto original = values;
  sdnq::TensorView view(values.data(), sdnq::DType::f32, {3, 16, 2});
  sdnq::quant::rotate_hadamard(view, 16);
  // first chunk by hand: x·H with H = kron(H4, H4)/4
  for (int column = 0; column < 16; ++column) {
    double sum = 0;
    for (int k = 0; k < 16; ++k) sum += double(original[k]) * expected_sign(16, k, column) * 0.25;
    REQUIRE(values[column] == static_cast<float>(sum));
  }
  sdnq::quant::rotate_hadamard(view, 16);
  for (std::size_t i = 0; i < values.size(); ++i) REQUIRE(std::abs(values[i] - original[i]) < 1e-5f);
}

TEST_CASE("rotate_hadamard in bf16 accumulates in fp32 and rounds once", "[quant][hadamard]") {
  const int size = 8;
  std::vector<std::uint16_t> values(2 * size);
  std::vector<float> exact_inputs(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = bf16_bits(std::cos(1.3f * float(i)) * 5.0f);
    exact_inputs[i] = from_bf16(values[i]);
  }
  sdnq::quant::rotate_hadamard(sdnq::TensorView(values.data(), sdnq::DType::bf16, {2, size}), size);
  const float entry = from_bf16(bf16_bits(1.0f / static_cast<float>(std::sqrt(8.0))));
  for (int row = 0; row < 2; ++row)
    for (int column = 0; column < size; ++column) {
      float sum = 0;
      for (int k = 0; k < size; ++k) sum += exact_inputs[row * size + k] * (expected_sign(size, k, column) * entry);
      REQUIRE(values[row * size + column] == bf16_bits(sum));
    }
}

TEST_CASE("rotate_hadamard rejects sizes that do not divide the row", "[quant][hadamard]") {
  std::vector<float> values(3 * 24);
  sdnq::TensorView view(values.data(), sdnq::DType::f32, {3, 24});
  CHECK_THROWS_AS(sdnq::quant::rotate_hadamard(view, 16), sdnq::ShapeError);
  CHECK_THROWS_AS(sdnq::quant::rotate_hadamard(view, 12), sdnq::ShapeError);
  std::vector<std::int32_t> integers(16);
  CHECK_THROWS_AS(sdnq::quant::rotate_hadamard(sdnq::TensorView(integers.data(), sdnq::DType::i32, {1, 16}), 16),
                  sdnq::UnsupportedError);
}
