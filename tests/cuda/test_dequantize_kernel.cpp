// The dequantize kernel against dense values computed in double from the codes the test packed itself.
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_gemv_support.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::cuda::CodeValue;
using sdnq::cuda::ScaleRounding;

template <class T>
std::vector<double> widen(const sdnq::Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  for (std::int64_t i = 0; i < t.numel(); ++i) out[i] = t.data_as<T>()[i].to_float();
  return out;
}

// Without SVD the kernel must give exactly T(float(q·s + z)) (fp32 fma, one rounding to T).
template <class T>
void require_bit_exact(const sdnq::test::RandomLinear& linear, DType output) {
  const sdnq::Tensor out = sdnq::test::run_dequantize_kernel(linear.codes, output, ScaleRounding::to_output_dtype);
  std::int64_t mismatches = 0;
  for (std::size_t i = 0; i < linear.dense.size(); ++i) {
    const T expected(static_cast<float>(linear.dense[i]));
    if (out.data_as<T>()[i].bits != expected.bits) ++mismatches;
  }
  REQUIRE(mismatches == 0);
}

// §1.3 value of a signed e3m2 code (6 bits, bias 3), written out here independently.
std::vector<float> float6_e3m2_table() {
  std::vector<float> table(64);
  for (int code = 0; code < 64; ++code) {
    const int sign = code >> 5, exponent = (code >> 2) & 7, mantissa = code & 3;
    const double magnitude =
        exponent > 0 ? std::ldexp(1.0 + mantissa / 4.0, exponent - 3) : std::ldexp(mantissa / 4.0, 1 - 3);
    table[code] = static_cast<float>(sign ? -magnitude : magnitude);
  }
  return table;
}

}  // namespace

TEST_CASE("dequantize kernel: packed integers of every width are bit-exact", "[cuda][dequantize]") {
  const int bits = GENERATE(1, 2, 3, 4, 5, 6, 7);
  const bool is_signed = GENERATE(false, true);
  if (bits == 1 && is_signed) return;  // there is no signed 1-bit format
  const CodeValue value = is_signed ? CodeValue::signed_integer : CodeValue::unsigned_integer;
  INFO("bits " << bits << (is_signed ? " signed" : " unsigned"));
  const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(bits, value, 37, 96, 32, 0, 100 + bits);
  require_bit_exact<sdnq::bf16>(linear, DType::bf16);
}

TEST_CASE("dequantize kernel: 8-bit row-wise, tensor-wise, transposed and fp16", "[cuda][dequantize]") {
  SECTION("int8 row-wise, bf16") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 33, 70, -1, 0, 1);
    require_bit_exact<sdnq::bf16>(linear, DType::bf16);
  }
  SECTION("uint8 tensor-wise, fp16") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::unsigned_integer, 19, 64, -2, 0, 2);
    require_bit_exact<sdnq::fp16>(linear, DType::f16);
  }
  SECTION("int8 in the transposed direct-matmul layout") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 48, 40, -1, 0, 3, true);
    require_bit_exact<sdnq::bf16>(linear, DType::bf16);
  }
  SECTION("uint4 rows of 75 codes: odd rows start in the high nibble of a byte") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 8, 75, 25, 0, 4);
    require_bit_exact<sdnq::fp16>(linear, DType::f16);
  }
}

TEST_CASE("dequantize kernel: custom float codes through the lookup table", "[cuda][dequantize]") {
  const std::vector<float> table = float6_e3m2_table();
  const auto linear =
      sdnq::test::make_random_linear<sdnq::bf16>(6, CodeValue::lookup, 24, 128, 64, 0, 5, false, &table);
  require_bit_exact<sdnq::bf16>(linear, DType::bf16);
}

TEST_CASE("dequantize kernel: SVD add-back within one ulp", "[cuda][dequantize]") {
  const int rank = GENERATE(16, 32, 128);
  const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 40, 256, 64, rank, 6);
  const sdnq::Tensor out = sdnq::test::run_dequantize_kernel(linear.codes, DType::bf16, ScaleRounding::to_output_dtype);
  const std::vector<double> actual = widen<sdnq::bf16>(out);
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double expected = linear.dense[i];
    const double ulp = std::ldexp(1.0, std::ilogb(std::fabs(expected) > 1e-30 ? expected : 1e-30) - 7);
    INFO("element " << i << " expected " << expected << " got " << actual[i]);
    REQUIRE(std::fabs(actual[i] - expected) <= ulp);
  }
}

TEST_CASE("dequantize kernel: bad input is rejected before launching", "[cuda][dequantize]") {
  auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 8, 64, 32, 0, 7);
  SECTION("float32 output") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_dequantize_kernel(linear.codes, DType::f32, ScaleRounding::to_output_dtype); });
    CHECK(sdnq::test::contains(message, "test.linear"));
  }
  SECTION("group size that does not divide in_features") {
    linear.codes.group_size = 48;
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_dequantize_kernel(linear.codes, DType::bf16, ScaleRounding::to_output_dtype); });
    CHECK(sdnq::test::contains(message, "group size 48"));
  }
  SECTION("nine-bit codes") {
    linear.codes.bits = 9;
    CHECK_THROWS_AS(sdnq::test::run_dequantize_kernel(linear.codes, DType::bf16, ScaleRounding::to_output_dtype),
                    sdnq::UnsupportedError);
  }
}

namespace {

// float8_e4m3fn (§1.3): sign, 4 exponent bits (bias 7), 3 mantissa bits, S.1111.111 is NaN; written out here.
std::vector<float> float8_e4m3fn_table() {
  std::vector<float> table(256);
  for (int code = 0; code < 256; ++code) {
    const int sign = code >> 7, exponent = (code >> 3) & 15, mantissa = code & 7;
    double magnitude = exponent > 0 ? std::ldexp(1.0 + mantissa / 8.0, exponent - 7) : std::ldexp(mantissa / 8.0, -6);
    if (exponent == 15 && mantissa == 7) magnitude = std::nan("");
    table[code] = static_cast<float>(sign ? -magnitude : magnitude);
  }
  return table;
}

// Bit-exact, except that a NaN expected value only needs a NaN (the NaN payload is not specified).
template <class T>
std::int64_t mismatches_allowing_nan(const sdnq::test::RandomLinear& linear, DType output) {
  const sdnq::Tensor out = sdnq::test::run_dequantize_kernel(linear.codes, output, ScaleRounding::to_output_dtype);
  std::int64_t mismatches = 0;
  for (std::size_t i = 0; i < linear.dense.size(); ++i) {
    const T actual = out.data_as<T>()[i];
    if (std::isnan(linear.dense[i])) {
      if (!std::isnan(actual.to_float())) ++mismatches;
    } else if (actual.bits != T(static_cast<float>(linear.dense[i])).bits) {
      ++mismatches;
    }
  }
  return mismatches;
}

}  // namespace

TEST_CASE("dequantize kernel: the vector path (2/4/8 bits, aligned K and groups) is bit-exact", "[cuda][dequantize]") {
  SECTION("uint4 g128, bf16 and fp16") {
    const auto bf = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 45, 384, 128, 0, 30);
    require_bit_exact<sdnq::bf16>(bf, DType::bf16);
    const auto half = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 45, 384, 128, 0, 31);
    require_bit_exact<sdnq::fp16>(half, DType::f16);
  }
  SECTION("signed int4 g32 and uint2 g32") {
    require_bit_exact<sdnq::bf16>(
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::signed_integer, 17, 64, 32, 0, 32), DType::bf16);
    require_bit_exact<sdnq::bf16>(
        sdnq::test::make_random_linear<sdnq::bf16>(2, CodeValue::unsigned_integer, 17, 96, 32, 0, 33), DType::bf16);
  }
  SECTION("int8 row-wise and g16 (fp16), uint8 tensor-wise") {
    require_bit_exact<sdnq::bf16>(
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 29, 256, -1, 0, 34), DType::bf16);
    require_bit_exact<sdnq::fp16>(
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 29, 48, 16, 0, 35), DType::f16);
    require_bit_exact<sdnq::bf16>(
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::unsigned_integer, 29, 64, -2, 0, 36), DType::bf16);
  }
  SECTION("int8 with more chunks than one wave of threads (grid-stride loop): 1056 x 8448") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 1056, 8448, 128, 0, 37);
    require_bit_exact<sdnq::bf16>(linear, DType::bf16);
  }
  SECTION("float8_e4m3fn through the lookup table, NaN codes included") {
    const std::vector<float> table = float8_e4m3fn_table();
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 40, 512, -1, 0, 38, false, &table);
    REQUIRE(mismatches_allowing_nan<sdnq::bf16>(linear, DType::bf16) == 0);
  }
}
