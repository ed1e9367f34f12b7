// quantized_linear (linear.cuh) on every route against x · Ŵᵀ + b computed in double on the CPU, Ŵ
// being the dense weight (SVD term included) derived from codes the test packed itself
// (test_gemv_support.hpp's independent packer). y and the workspace are NaN-poisoned before each call.
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_gemv_support.hpp"
#include "cuda/test_linear_support.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::cuda::CodeValue;
using sdnq::test::TestRoute;

struct Outcome {
  double relative_error = 0.0;
  std::int64_t non_finite = 0;
  std::string route;
};

template <class T>
Outcome run_and_compare(const sdnq::test::RandomLinear& linear, std::int64_t tokens, TestRoute route,
                        std::uint64_t seed, std::size_t dense_limit = std::size_t{64} << 20, bool with_bias = true) {
  const std::int64_t n = linear.codes.out_features, k = linear.codes.in_features;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  sdnq::Tensor x = sdnq::Tensor::empty(sdnq::Shape{tokens, k}, sdnq::dtype_of_v<T>);
  sdnq::Tensor bias = sdnq::Tensor::empty(sdnq::Shape{n}, sdnq::dtype_of_v<T>);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<T>()[i] = T(dist(rng));
  for (std::int64_t i = 0; i < n; ++i) bias.data_as<T>()[i] = T(dist(rng));
  const sdnq::test::LinearRun run =
      sdnq::test::run_quantized_linear(linear.codes, sdnq::dtype_of_v<T>, x,
                                       with_bias ? std::optional<sdnq::TensorView>(bias) : std::nullopt, route,
                                       dense_limit);

  std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
  Outcome outcome;
  outcome.route = run.route;
  for (std::int64_t m = 0; m < tokens; ++m)
    for (std::int64_t o = 0; o < n; ++o) {
      double sum = with_bias ? bias.data_as<T>()[o].to_float() : 0.0;
      for (std::int64_t c = 0; c < k; ++c)
        sum += double(x.data_as<T>()[m * k + c].to_float()) * linear.dense[o * k + c];
      expected[m * n + o] = sum;
      actual[m * n + o] = run.y.data_as<T>()[m * n + o].to_float();
      if (!std::isfinite(actual[m * n + o])) ++outcome.non_finite;
    }
  outcome.relative_error = sdnq::test::relative_l2(actual, expected);
  return outcome;
}

#define SDNQ_CHECK_LINEAR(outcome)                                       \
  do {                                                                   \
    const Outcome& o_ = (outcome);                                       \
    INFO("route " << o_.route << ", relative L2 " << o_.relative_error); \
    REQUIRE(o_.non_finite == 0);                                         \
    REQUIRE(o_.relative_error <= 1e-2);                                  \
  } while (false)

// float4_e2m1fn (§1.3): sign, 2 exponent bits (bias 1), 1 mantissa bit; written out here.
std::vector<float> float4_e2m1_table() {
  std::vector<float> table(16);
  for (int code = 0; code < 16; ++code) {
    const int sign = code >> 3, exponent = (code >> 1) & 3, mantissa = code & 1;
    const double magnitude = exponent > 0 ? std::ldexp(1.0 + mantissa / 2.0, exponent - 1) : mantissa / 2.0;
    table[code] = static_cast<float>(sign ? -magnitude : magnitude);
  }
  return table;
}

}  // namespace

TEST_CASE("quantized_linear: uint4 g128 with SVD rank 0/32 on every route, bf16", "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 32);
  const std::int64_t tokens = GENERATE(1, 3, 16, 33, 257);
  const auto linear =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 512, 128, rank, 21);
  INFO("rank " << rank << ", tokens " << tokens);
  SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 1));
  if (tokens <= 64) SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::small_m, 2));
  SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::tensor_core, 3));
  SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 4));
}

TEST_CASE("quantized_linear: int8 row-wise and uint4 g64 + SVD in fp16 on every route", "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 7, 64, 300);
  INFO("tokens " << tokens);
  SECTION("int8 row-wise") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 320, 256, -1, 0, 22);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::automatic, 5));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::tensor_core, 6));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::dequantize_cublas, 7));
    if (tokens <= 64) SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::small_m, 8));
  }
  SECTION("uint4 g64 + SVD r32") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 128, 384, 64, 32, 23);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::automatic, 9));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::dequantize_cublas, 10));
  }
}

TEST_CASE("quantized_linear: odd shapes without a tensor-core layout", "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 5, 40, 129);
  INFO("tokens " << tokens);
  SECTION("N = 200, K = 96, uint4 g32 + SVD r16: GEMV layout, dense route in several chunks") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 200, 96, 32, 16, 24);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 11));
    // A 12 KB chunk limit: five chunks of 40 rows.
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 12, 96 * 2 * 64));
  }
  SECTION("K = 75, group 25: checkpoint layout only (no GEMV, no tensor core)") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 34, 75, 25, 0, 25);
    const Outcome outcome = run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::automatic, 13, 75 * 2 * 8);
    CHECK(outcome.route == "dequantize_cublas");
    SDNQ_CHECK_LINEAR(outcome);
  }
  SECTION("signed 3-bit g32, N = 72: GEMV for small M, chunked checkpoint layout for the dense route") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(3, CodeValue::signed_integer, 72, 128, 32, 0, 26);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 14));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 15, 128 * 2 * 16));
  }
  SECTION("float4_e2m1fn codes through the lookup table, with SVD r32") {
    const std::vector<float> table = float4_e2m1_table();
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::lookup, 96, 256, 32, 32, 27, false, &table);
    const Outcome outcome = run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 16);
    CHECK(outcome.route == "dequantize_cublas");
    SDNQ_CHECK_LINEAR(outcome);
  }
}

// The dense route at M > 128: without SVD x goes to cuBLAS as is and a bias is accumulated onto y with
// beta = 1; with SVD the rank (and bias) columns are padded to 64 (rank 64 + bias needs a second 64).
template <class T>
void check_dense_bias_case(std::int64_t rank, bool with_bias, std::int64_t tokens) {
  INFO("rank " << rank << ", bias " << with_bias << ", tokens " << tokens);
  const auto linear = sdnq::test::make_random_linear<T>(4, CodeValue::unsigned_integer, 256, 320, 64, rank, 30);
  SDNQ_CHECK_LINEAR(run_and_compare<T>(linear, tokens, TestRoute::automatic, 17, std::size_t{64} << 20, with_bias));
  // A chunk limit of 89600 bytes: two or three chunks (by the row width E) accumulate onto the broadcast bias.
  SDNQ_CHECK_LINEAR(
      run_and_compare<T>(linear, tokens, TestRoute::dequantize_cublas, 18, (320 + 128) * 2 * 100, with_bias));
}

TEST_CASE("quantized_linear: dense route at M > 128 with/without bias and SVD, bf16", "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 32, 64);
  const bool with_bias = GENERATE(true, false);
  const std::int64_t tokens = GENERATE(129, 300);
  check_dense_bias_case<sdnq::bf16>(rank, with_bias, tokens);
}

TEST_CASE("quantized_linear: dense route at M > 128 with/without bias and SVD, fp16", "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 32, 64);
  const bool with_bias = GENERATE(true, false);
  const std::int64_t tokens = GENERATE(129, 300);
  check_dense_bias_case<sdnq::fp16>(rank, with_bias, tokens);
}

TEST_CASE("quantized_linear: dense route on the checkpoint layout with SVD and without bias", "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 16);
  INFO("rank " << rank);
  // Signed 3-bit, K = 96: no tensor-core layout; a 16-row chunk limit cuts the checkpoint layout in pieces.
  const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(3, CodeValue::signed_integer, 72, 96, 32, rank, 31);
  SDNQ_CHECK_LINEAR(
      run_and_compare<sdnq::fp16>(linear, 200, TestRoute::dequantize_cublas, 19, (96 + 64) * 2 * 16, false));
  SDNQ_CHECK_LINEAR(
      run_and_compare<sdnq::fp16>(linear, 200, TestRoute::dequantize_cublas, 20, (96 + 64) * 2 * 16, true));
}

TEST_CASE("quantized_linear: bad calls are rejected before launching", "[cuda][linear]") {
  const auto uint4 = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 64, 128, 32, 0, 28);
  SECTION("x claims the GPU but points to host memory") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_quantized_linear_misuse(uint4.codes, "host_x"); });
    CHECK(sdnq::test::contains(message, "test.linear x"));
  }
  SECTION("workspace too small") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_quantized_linear_misuse(uint4.codes, "short_workspace"); });
    CHECK(sdnq::test::contains(message, "test.linear"));
    CHECK(sdnq::test::contains(message, "bytes of 16-byte aligned workspace"));
  }
  SECTION("x of the wrong width") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_quantized_linear_misuse(uint4.codes, "wrong_width"); });
    CHECK(sdnq::test::contains(message, "[M, 128]"));
  }
  SECTION("the dense route without a cuBLAS handle") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_quantized_linear_misuse(uint4.codes, "no_cublas"); });
    CHECK(sdnq::test::contains(message, "cuBLAS handle"));
  }
  SECTION("the small-M route forced on float codes") {
    const std::vector<float> table = float4_e2m1_table();
    const auto float4 =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::lookup, 64, 128, 32, 0, 29, false, &table);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { sdnq::test::run_quantized_linear_misuse(float4.codes, "forced_small_m_float"); });
    CHECK(sdnq::test::contains(message, "route small_m"));
  }
  SECTION("a weight whose group size does not divide in_features") {
    sdnq::cuda::LinearCodes broken = uint4.codes;
    broken.group_size = 48;
    CHECK_THROWS_AS(sdnq::test::run_quantized_linear_misuse(broken, "wrong_width"), sdnq::ShapeError);
  }
}
