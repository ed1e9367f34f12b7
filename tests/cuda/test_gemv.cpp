// The small-M weight-only GEMM (repack + kernels) against x · Ŵᵀ + b computed in double on the CPU,
// Ŵ being the dense weight the test derived from the codes it packed itself.
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_gemv_support.hpp"
#include "sdnq/format/custom_float.hpp"
#include "sdnq/format/storage_type.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::cuda::CodeValue;

template <class T>
double run_and_compare(const sdnq::test::RandomLinear& linear, std::int64_t tokens, bool with_bias, std::uint64_t seed) {
  const std::int64_t n = linear.codes.out_features, k = linear.codes.in_features;
  const sdnq::cuda::GemvWeightsHost repacked = sdnq::cuda::repack_for_gemv<T>(linear.codes);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  sdnq::Tensor x = sdnq::Tensor::empty(sdnq::Shape{tokens, k}, sdnq::dtype_of_v<T>);
  sdnq::Tensor bias = sdnq::Tensor::empty(sdnq::Shape{n}, sdnq::dtype_of_v<T>);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<T>()[i] = T(dist(rng));
  for (std::int64_t i = 0; i < n; ++i) bias.data_as<T>()[i] = T(dist(rng));

  const sdnq::Tensor y = sdnq::test::run_gemv_kernel(
      repacked, x, with_bias ? std::optional<sdnq::TensorView>(bias) : std::nullopt);
  std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
  for (std::int64_t m = 0; m < tokens; ++m)
    for (std::int64_t o = 0; o < n; ++o) {
      double sum = with_bias ? bias.data_as<T>()[o].to_float() : 0.0;
      for (std::int64_t c = 0; c < k; ++c) sum += double(x.data_as<T>()[m * k + c].to_float()) * linear.dense[o * k + c];
      expected[m * n + o] = sum;
      actual[m * n + o] = y.data_as<T>()[m * n + o].to_float();
      REQUIRE(std::isfinite(actual[m * n + o]));  // poisoned with NaN before the launch: every element written
    }
  return sdnq::test::relative_l2(actual, expected);
}

}  // namespace

TEST_CASE("gemv: uint4 with zero points, groups 32/64/128, odd token counts", "[cuda][gemv]") {
  const std::int64_t group = GENERATE(32, 64, 128);
  const std::int64_t tokens = GENERATE(1, 3, 7, 16, 33, 64);
  INFO("group " << group << ", tokens " << tokens);
  const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 203, 512, group, 0, 11);
  CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 12) <= 1e-2);
}

TEST_CASE("gemv: int8 row-wise, grouped and transposed", "[cuda][gemv]") {
  const std::int64_t tokens = GENERATE(1, 4, 9);
  SECTION("row-wise") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 101, 384, -1, 0, 21);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 22) <= 1e-2);
  }
  SECTION("groups of 128") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 64, 384, 128, 0, 23);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, false, 24) <= 1e-2);
  }
  SECTION("transposed direct-matmul layout, uint8 tensor-wise, fp16") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 96, 256, -1, 0, 25, true);
    CHECK(run_and_compare<sdnq::fp16>(linear, tokens, true, 26) <= 1e-2);
    const auto tensorwise = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::unsigned_integer, 80, 256, -2, 0, 27);
    CHECK(run_and_compare<sdnq::fp16>(tensorwise, tokens, true, 28) <= 1e-2);
  }
}

TEST_CASE("gemv: generic path for the other packed widths", "[cuda][gemv]") {
  const int bits = GENERATE(1, 2, 3, 5, 6, 7);
  const bool is_signed = GENERATE(false, true);
  if (bits == 1 && is_signed) return;
  const std::int64_t tokens = GENERATE(1, 3, 5);  // 3: a tile of 4 tokens at 5 and 6 bits, of 8 at the others
  INFO("bits " << bits << (is_signed ? " signed" : " unsigned") << ", tokens " << tokens);
  const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(
      bits, is_signed ? CodeValue::signed_integer : CodeValue::unsigned_integer, 77, 320, 64, 0, 30 + bits);
  CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 31) <= 1e-2);
}

TEST_CASE("gemv: float codes through a table of their values, or converted by the hardware (fp8)", "[cuda][gemv]") {
  const std::int64_t tokens = GENERATE(1, 3, 4, 8, 17);
  INFO("tokens " << tokens);
  SECTION("float4_e2m1fn, groups of 32, odd N") {
    const std::vector<float> table = sdnq::test::float4_e2m1_table();
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::lookup, 203, 512, 32, 0, 60, false, &table);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 61) <= 1e-2);
  }
  SECTION("float4_e2m1fn, groups of 128, SVD r32, long K: several K splits") {
    const std::vector<float> table = sdnq::test::float4_e2m1_table();
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::lookup, 48, 4096, 128, 32, 62, false, &table);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, false, 63) <= 1e-2);
  }
  SECTION("e4m3 values with the NaN codes read as 0 (not the native table: read through it), fp16") {
    const std::vector<float> table = sdnq::test::float8_e4m3_table_without_nan();
    const auto rows =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::lookup, 101, 384, -1, 0, 64, false, &table);
    CHECK(sdnq::cuda::repack_for_gemv<sdnq::fp16>(rows.codes).float_decode == sdnq::cuda::FloatDecode::table);
    CHECK(run_and_compare<sdnq::fp16>(rows, tokens, true, 65) <= 1e-2);
    const auto transposed =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::lookup, 96, 256, -1, 16, 66, true, &table);
    CHECK(run_and_compare<sdnq::fp16>(transposed, tokens, true, 67) <= 1e-2);
  }
  SECTION("native float8_e4m3fn converted, row-wise in bf16, transposed (direct quantized matmul) + SVD in fp16") {
    const std::vector<float> table = sdnq::test::float8_e4m3fn_table();
    const auto rows =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 101, 384, -1, 0, 68, false, &table);
    CHECK(sdnq::cuda::repack_for_gemv<sdnq::bf16>(rows.codes).float_decode == sdnq::cuda::FloatDecode::fp8_e4m3fn);
    CHECK(run_and_compare<sdnq::bf16>(rows, tokens, true, 69) <= 1e-2);
    const auto transposed =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::lookup, 96, 256, -1, 16, 70, true, &table);
    CHECK(run_and_compare<sdnq::fp16>(transposed, tokens, true, 71) <= 1e-2);
  }
  SECTION("native float8_e5m2 converted, groups of 64, long K") {
    const std::vector<float> table = sdnq::test::float8_e5m2_table();
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 72, 4096, 64, 0, 72, false, &table);
    CHECK(sdnq::cuda::repack_for_gemv<sdnq::bf16>(linear.codes).float_decode == sdnq::cuda::FloatDecode::fp8_e5m2);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 73) <= 1e-2);
  }
  SECTION("custom floats of 2, 3, 5, 6 and 7 bits (float5_e3m1fn, float6_e3m2fn, ...), signed and unsigned") {
    struct Format {
      int exponent, mantissa;
      bool is_signed;
    };
    for (const Format f : {Format{1, 0, true}, Format{1, 1, true}, Format{3, 1, true}, Format{3, 2, true},
                           Format{4, 2, true}, Format{3, 2, false}, Format{4, 3, false}}) {
      const int bits = f.exponent + f.mantissa + (f.is_signed ? 1 : 0);
      INFO(bits << "-bit e" << f.exponent << "m" << f.mantissa << (f.is_signed ? "fn" : "fnu (zero point)"));
      const std::vector<float> table = sdnq::test::custom_float_table(f.exponent, f.mantissa, f.is_signed);
      const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(bits, CodeValue::lookup, 77, 320, 32, 16,
                                                                     74 + bits, false, &table);
      CHECK(linear.codes.zero_point.has_value() == !f.is_signed);
      CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 75) <= 1e-2);
    }
  }
}

TEST_CASE("float_decode_of: the native fp8 conversion only where it reproduces every value of the table",
          "[cuda][gemv][host]") {
  using sdnq::cuda::float_decode_of;
  using sdnq::cuda::FloatDecode;
  std::vector<float> e4m3 = sdnq::test::float8_e4m3fn_table(), e5m2 = sdnq::test::float8_e5m2_table();
  CHECK(float_decode_of(e4m3.data(), 8) == FloatDecode::fp8_e4m3fn);
  CHECK(float_decode_of(e5m2.data(), 8) == FloatDecode::fp8_e5m2);
  CHECK(float_decode_of(sdnq::test::float8_e4m3_table_without_nan().data(), 8) == FloatDecode::table);
  CHECK(float_decode_of(sdnq::test::float4_e2m1_table().data(), 4) == FloatDecode::table);
  const std::vector<float> e4m3_sdnq = [&] {  // float8_e4m3fn_sdnq: 0x7F is 480, not NaN
    std::vector<float> t = e4m3;
    t[0x7F] = 480.0f, t[0xFF] = -480.0f;
    return t;
  }();
  CHECK(float_decode_of(e4m3_sdnq.data(), 8) == FloatDecode::table);
  e4m3[0x80] = 0.0f;  // +0 where the format has −0
  CHECK(float_decode_of(e4m3.data(), 8) == FloatDecode::table);
  e5m2[0x7C] = 65536.0f;  // a finite value where the format has +Inf
  CHECK(float_decode_of(e5m2.data(), 8) == FloatDecode::table);
}

TEST_CASE("the GEMV tests' custom float tables are the format library's decode tables", "[cuda][gemv][host]") {
  struct Case {
    const char* name;
    int exponent, mantissa;
    bool is_signed;
  };
  for (const Case c :
       {Case{"float4_e2m1fn", 2, 1, true}, Case{"float5_e3m1fn", 3, 1, true}, Case{"float6_e3m2fn", 3, 2, true},
        Case{"float2_e1m0fn", 1, 0, true}, Case{"float6_e3m3fnu", 3, 3, false}, Case{"float7_e4m3fnu", 4, 3, false}}) {
    INFO(c.name);
    const sdnq::format::StorageType* type = sdnq::format::find_storage_type(c.name);
    REQUIRE(type != nullptr);
    CHECK(sdnq::test::custom_float_table(c.exponent, c.mantissa, c.is_signed) ==
          sdnq::format::custom_float_decode_table(sdnq::format::custom_float_of(*type)));
  }
  CHECK(sdnq::test::custom_float_table(2, 1) == sdnq::test::float4_e2m1_table());
}

TEST_CASE("gemv: SVD branch of rank 0/16/32/128 and split-K", "[cuda][gemv]") {
  const std::int64_t rank = GENERATE(0, 16, 32, 128);
  const std::int64_t tokens = GENERATE(1, 4, 17);
  INFO("rank " << rank << ", tokens " << tokens);
  SECTION("few rows, long K: several K splits") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 48, 4096, 128, rank, 40);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 41) <= 1e-2);
  }
  SECTION("odd rows, one split") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 131, 256, 64, rank, 42);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, false, 43) <= 1e-2);
  }
}

TEST_CASE("gemv: unsupported input is rejected with a typed error", "[cuda][gemv]") {
  SECTION("in_features not a multiple of 32") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 16, 100, 50, 0, 50);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { (void)sdnq::cuda::repack_for_gemv<sdnq::bf16>(linear.codes); });
    CHECK(sdnq::test::contains(message, "multiples of 32"));
  }
  SECTION("more than 64 tokens") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 16, 64, 32, 0, 52);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { run_and_compare<sdnq::bf16>(linear, 65, false, 53); });
    CHECK(sdnq::test::contains(message, "65 tokens"));
  }
}
