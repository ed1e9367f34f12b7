// quantized_linear (linear.cuh) on every route against x · Ŵᵀ + b computed in double on the CPU, Ŵ
// being the dense weight (SVD term included) derived from codes the test packed itself
// (test_gemv_support.hpp's independent packer). y and the workspace are NaN-poisoned before each call.
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_gemv_support.hpp"
#include "cuda/test_linear_support.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::cuda::CodeValue;
using sdnq::test::TestLayout;
using sdnq::test::TestRoute;

struct Outcome {
  double relative_error = 0.0;
  std::int64_t non_finite = 0;
  std::string route;
};

template <class T>
Outcome run_and_compare(const sdnq::test::RandomLinear& linear, std::int64_t tokens, TestRoute route,
                        std::uint64_t seed, std::size_t dense_limit = std::size_t{64} << 20, bool with_bias = true,
                        TestLayout layout = TestLayout::automatic) {
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
                                       dense_limit, layout);

  std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
  Outcome outcome;
  outcome.route = run.route + " on the " + run.layout + " layout";
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

}  // namespace

// The default layout of a 4/8-bit weight with N, K multiples of 64 is the tensor-core one: automatic,
// tensor_core and the dense route read it; small_m needs the GEMV layout, whose dense route is run too.
// Ranks 40 and 48 (not multiples of 64 or 32): the tensor-core layout keeps rp = 48, and the dense route
// reads svd_up with a row stride (48) other than the rank (40).
TEST_CASE("quantized_linear: uint4 g128 with SVD rank 0/16/32/40/48/128 on every route and layout, bf16",
          "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 16, 32, 40, 48, 128);
  const std::int64_t tokens = GENERATE(1, 3, 16, 33, 257);
  const auto linear =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 512, 128, rank, 21);
  INFO("rank " << rank << ", tokens " << tokens);
  const std::size_t whole = std::size_t{64} << 20;
  SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 1));
  SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::tensor_core, 3));
  SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 4));
  if (tokens <= 64)
    SDNQ_CHECK_LINEAR(
        run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::small_m, 2, whole, true, TestLayout::gemv));
  SDNQ_CHECK_LINEAR(
      run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 5, whole, true, TestLayout::gemv));
  SDNQ_CHECK_LINEAR(
      run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 6, whole, true, TestLayout::gemv));
}

TEST_CASE("quantized_linear: int8 row-wise and uint4 g64 + SVD in fp16 on every route", "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 7, 64, 300);
  INFO("tokens " << tokens);
  SECTION("int8 row-wise") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 320, 256, -1, 0, 22);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::automatic, 5));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::tensor_core, 6));
    // A 40 KB chunk limit: the tensor-core layout is dequantized in chunks of 16-row blocks.
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::dequantize_cublas, 7, 256 * 2 * 80));
    if (tokens <= 64)
      SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::small_m, 8, std::size_t{64} << 20,
                                                    true, TestLayout::gemv));
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
    CHECK(outcome.route == "dequantize_cublas on the checkpoint layout");
    SDNQ_CHECK_LINEAR(outcome);
  }
  SECTION("signed 3-bit g32, N = 72: GEMV layout for every route, or the chunked checkpoint layout") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(3, CodeValue::signed_integer, 72, 128, 32, 0, 26);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 14));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 15, 128 * 2 * 16));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 15, 128 * 2 * 16,
                                                  true, TestLayout::checkpoint));
  }
  SECTION("unsigned 6-bit g64 and 5-bit g32 + SVD r16 from the GEMV layout, chunked") {
    const auto six = sdnq::test::make_random_linear<sdnq::fp16>(6, CodeValue::unsigned_integer, 48, 192, 64, 0, 32);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(six, tokens, TestRoute::automatic, 21));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(six, tokens, TestRoute::dequantize_cublas, 22, 192 * 2 * 16));
    const auto five = sdnq::test::make_random_linear<sdnq::bf16>(5, CodeValue::signed_integer, 40, 96, 32, 16, 33);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(five, tokens, TestRoute::dequantize_cublas, 23, (96 + 64) * 2 * 8));
  }
  SECTION("float4_e2m1fn codes through the lookup table, with SVD r32: GEMV layout, or the checkpoint layout") {
    const std::vector<float> table = sdnq::test::float4_e2m1_table();
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::lookup, 96, 256, 32, 32, 27, false, &table);
    const Outcome outcome = run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 16);
    CHECK(outcome.route == (tokens <= 8 ? "small_m on the gemv layout" : "dequantize_cublas on the gemv layout"));
    SDNQ_CHECK_LINEAR(outcome);
    // The dense route from the GEMV layout's bytes in 16-row chunks, and from the checkpoint layout.
    SDNQ_CHECK_LINEAR(
        run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 17, (256 + 64) * 2 * 16));
    const Outcome checkpoint = run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 18,
                                                           std::size_t{64} << 20, true, TestLayout::checkpoint);
    CHECK(checkpoint.route == "dequantize_cublas on the checkpoint layout");
    SDNQ_CHECK_LINEAR(checkpoint);
  }
  SECTION("float8 codes row-wise, fp16: GEMV layout, native e4m3fn converted, other values through the table") {
    const std::vector<float> without_nan = sdnq::test::float8_e4m3_table_without_nan();
    const std::vector<float> native = sdnq::test::float8_e4m3fn_table();
    for (const std::vector<float>* table : {&without_nan, &native}) {
      const auto linear =
          sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::lookup, 72, 192, -1, 0, 28, false, table);
      const Outcome outcome = run_and_compare<sdnq::fp16>(linear, tokens, TestRoute::automatic, 19);
      CHECK(outcome.route == (tokens <= 8 ? "small_m on the gemv layout" : "dequantize_cublas on the gemv layout"));
      SDNQ_CHECK_LINEAR(outcome);
    }
  }
  SECTION("float5_e3m1fn codes + SVD r16: GEMV layout (5 bits a code), dense route from it in 16-row chunks") {
    const std::vector<float> table = sdnq::test::custom_float_table(3, 1);
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(5, CodeValue::lookup, 40, 128, 32, 16, 29, false, &table);
    const Outcome outcome = run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 20);
    CHECK(outcome.route == (tokens <= 8 ? "small_m on the gemv layout" : "dequantize_cublas on the gemv layout"));
    SDNQ_CHECK_LINEAR(outcome);
    SDNQ_CHECK_LINEAR(
        run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 21, (128 + 64) * 2 * 16));
  }
  SECTION("unsigned floats with zero points (fnu), 4 and 6 bits: GEMV layout, every route") {
    for (const int exponent : {2, 3}) {
      const std::vector<float> table = sdnq::test::custom_float_table(exponent, 2, false);
      const int bits = exponent + 2;
      INFO(bits << "-bit fnu");
      const auto linear =
          sdnq::test::make_random_linear<sdnq::bf16>(bits, CodeValue::lookup, 64, 192, 64, 0, 30, false, &table);
      REQUIRE(linear.codes.zero_point.has_value());
      const Outcome outcome = run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::automatic, 22);
      CHECK(outcome.route == (tokens <= 8 ? "small_m on the gemv layout" : "dequantize_cublas on the gemv layout"));
      SDNQ_CHECK_LINEAR(outcome);
      SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(linear, tokens, TestRoute::dequantize_cublas, 23));
    }
  }
}

// Native e4m3 codes with one scale a row are the 8-bit quantized-matmul operand's bytes: up to 32 tokens the
// weight-streaming tensor-core kernel reads them in the GEMV layout (tensor_core route, 16 tokens a launch), with
// F32 row scales.
TEST_CASE("quantized_linear: native e4m3 row-wise codes in the GEMV layout take the weight-streaming kernel",
          "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 2, 9, 16, 17, 40);
  INFO("tokens " << tokens);
  const std::vector<float> table = sdnq::test::float8_e4m3fn_table();
  const std::string expected = tokens <= 32 ? "tensor_core on the gemv layout" : "dequantize_cublas on the gemv layout";
  SECTION("row-wise bf16, transposed (direct quantized-matmul layout) fp16, tensor-wise bf16") {
    const auto rows =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 96, 192, -1, 0, 80, false, &table);
    const Outcome outcome = run_and_compare<sdnq::bf16>(rows, tokens, TestRoute::automatic, 81);
    CHECK(outcome.route == expected);
    SDNQ_CHECK_LINEAR(outcome);
    const auto transposed =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::lookup, 64, 256, -1, 0, 82, true, &table);
    const Outcome t = run_and_compare<sdnq::fp16>(transposed, tokens, TestRoute::automatic, 83);
    CHECK(t.route == expected);
    SDNQ_CHECK_LINEAR(t);
    const auto tensorwise =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 128, 128, -2, 0, 84, false, &table);
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(tensorwise, tokens, TestRoute::automatic, 85));
    // Forced: the streaming kernel in 16-token slabs at any M, without a bias; the GEMV up to 64 tokens.
    SDNQ_CHECK_LINEAR(
        run_and_compare<sdnq::bf16>(rows, tokens, TestRoute::tensor_core, 86, std::size_t{64} << 20, false));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::bf16>(rows, tokens, TestRoute::small_m, 87));
  }
  SECTION("grouped codes, an SVD branch or N % 32 != 0 stay on the GEMV and the dense route") {
    const std::string other = tokens <= 8 ? "small_m on the gemv layout" : "dequantize_cublas on the gemv layout";
    const auto grouped =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 96, 192, 64, 0, 88, false, &table);
    const auto svd =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 96, 192, -1, 16, 89, false, &table);
    const auto narrow =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::lookup, 80, 192, -1, 0, 90, false, &table);
    for (const sdnq::test::RandomLinear* linear : {&grouped, &svd, &narrow}) {
      const Outcome outcome = run_and_compare<sdnq::bf16>(*linear, tokens, TestRoute::automatic, 91);
      CHECK(outcome.route == other);
      SDNQ_CHECK_LINEAR(outcome);
    }
  }
}

// The dense route at M > 128: without SVD x goes to cuBLAS as is and a bias is accumulated onto y with
// beta = 1; with SVD the rank (and bias) columns are padded to 64 (rank 64 + bias needs a second 64).
template <class T>
void check_dense_bias_case(std::int64_t rank, bool with_bias, std::int64_t tokens) {
  INFO("rank " << rank << ", bias " << with_bias << ", tokens " << tokens);
  const auto linear = sdnq::test::make_random_linear<T>(4, CodeValue::unsigned_integer, 256, 320, 64, rank, 30);
  SDNQ_CHECK_LINEAR(run_and_compare<T>(linear, tokens, TestRoute::automatic, 17, std::size_t{64} << 20, with_bias));
  // A chunk limit of 89600 bytes: two or three chunks (by the row width E) accumulate onto the broadcast bias,
  // dequantized from the tensor-core layout (16-row blocks) and from the GEMV layout.
  SDNQ_CHECK_LINEAR(
      run_and_compare<T>(linear, tokens, TestRoute::dequantize_cublas, 18, (320 + 128) * 2 * 100, with_bias));
  SDNQ_CHECK_LINEAR(run_and_compare<T>(linear, tokens, TestRoute::dequantize_cublas, 18, (320 + 128) * 2 * 100,
                                       with_bias, TestLayout::gemv));
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

// M ≥ 256 on Hopper (sm_90a build): 4-bit weights in the tensor-core layout take the wgmma kernel,
// 8-bit ones stay on dequantize + cuBLAS; elsewhere both take the dense route.
TEST_CASE("quantized_linear: the wgmma route for 4-bit weights at M >= 256", "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 16, 32, 48);
  const std::int64_t tokens = GENERATE(256, 777);
  INFO("rank " << rank << ", tokens " << tokens);
  const auto uint4 = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 320, 384, 128, rank, 32);
  const Outcome four = run_and_compare<sdnq::bf16>(uint4, tokens, TestRoute::automatic, 21);
  SDNQ_CHECK_LINEAR(four);
  CHECK((four.route == "tensor_core_sm90 on the tensor_core layout" ||
         four.route == "dequantize_cublas on the tensor_core layout"));
  const auto int8 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 192, 256, -1, rank, 33);
  const Outcome eight = run_and_compare<sdnq::fp16>(int8, tokens, TestRoute::automatic, 22);
  SDNQ_CHECK_LINEAR(eight);
  CHECK(eight.route == "dequantize_cublas on the tensor_core layout");
}

TEST_CASE("quantized_linear: dense route on the checkpoint layout with SVD and without bias", "[cuda][linear]") {
  const std::int64_t rank = GENERATE(0, 16);
  INFO("rank " << rank);
  // Signed 3-bit, K = 96: no tensor-core layout; a 16-row chunk limit cuts the checkpoint layout in pieces.
  const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(3, CodeValue::signed_integer, 72, 96, 32, rank, 31);
  for (const TestLayout layout : {TestLayout::checkpoint, TestLayout::gemv}) {
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, 200, TestRoute::dequantize_cublas, 19, (96 + 64) * 2 * 16,
                                                  false, layout));
    SDNQ_CHECK_LINEAR(run_and_compare<sdnq::fp16>(linear, 200, TestRoute::dequantize_cublas, 20, (96 + 64) * 2 * 16,
                                                  true, layout));
  }
}

// Bytes per layer, counted here from the layouts' definitions (repack.hpp, gemm_tc_repack.hpp). Before
// this change a 4/8-bit weight kept both repacked layouts, i.e. the sum of the first two numbers. The
// tensor-core layout keeps rank 32 at 32 (it was padded to 64) and rounds 40 up to 48.
TEST_CASE("quantized_linear: one code layout per layer, device bytes", "[cuda][linear]") {
  const std::int64_t n = 192, k = 512, groups = 4, rank = 32, padded_rank = 32, t = 2;  // bytes of bf16
  const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, n, k, 128, rank, 40);
  const std::size_t codes = n * k / 2, params = groups * n * 2 * t;
  const std::size_t gemv = codes + params + (n * rank + rank * k) * t;
  const std::size_t tensor_core = codes + params + (n * padded_rank + padded_rank * k) * t;
  CHECK(sdnq::test::quantized_linear_device_bytes(linear.codes, sdnq::DType::bf16, TestLayout::gemv) == gemv);
  CHECK(sdnq::test::quantized_linear_device_bytes(linear.codes, sdnq::DType::bf16, TestLayout::tensor_core) ==
        tensor_core);
  CHECK(sdnq::test::quantized_linear_device_bytes(linear.codes, sdnq::DType::bf16, TestLayout::automatic) ==
        tensor_core);
  // The checkpoint layout: packed bytes, F32 scale and zero point as stored, SVD factors in T.
  const std::size_t checkpoint = codes + 2 * n * groups * 4 + (n * rank + rank * k) * t;
  CHECK(sdnq::test::quantized_linear_device_bytes(linear.codes, sdnq::DType::bf16, TestLayout::checkpoint) ==
        checkpoint);
  INFO("before: both repacked layouts, " << gemv + tensor_core << " bytes");
  CHECK(tensor_core < gemv + tensor_core);
  const auto rank40 = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, n, k, 128, 40, 42);
  CHECK(sdnq::test::quantized_linear_device_bytes(rank40.codes, sdnq::DType::bf16, TestLayout::tensor_core) ==
        codes + params + (n + k) * 48 * t);
  SECTION("a layout the weight does not fit is refused, naming the weight") {
    const auto odd = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 200, 96, 32, 0, 41);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>([&] {
      (void)sdnq::test::quantized_linear_device_bytes(odd.codes, sdnq::DType::bf16, TestLayout::tensor_core);
    });
    CHECK(sdnq::test::contains(message, "test.linear"));
    CHECK(sdnq::test::contains(message, "multiples of 64"));
  }
}

TEST_CASE("QuantizedLinear::adopt_gemv refuses weights the GEMV cannot read, naming the layer",
          "[cuda][linear][host]") {
  using sdnq::test::AdoptedGemv;
  const auto refusal = [](AdoptedGemv weights) { return sdnq::test::adopt_gemv_refusal(weights); };
  struct Case {
    const char* what;
    AdoptedGemv weights;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"9-bit codes", {.bits = 9}, "1..8-bit codes"},
      {"K = 100", {.in_features = 100, .group_size = 100}, "multiples of 32"},
      {"group 48", {.in_features = 96, .group_size = 48}, "group 48"},
      {"group not dividing K", {.in_features = 160, .group_size = 64}, "group 64"},
      {"no rows", {.out_features = 0}, "[0, 128]"},
      {"F32 activations", {.dtype = sdnq::DType::f32}, "BF16 or F16"},
      {"rank 300", {.svd_rank = 300}, "SVD rank 300 not supported (0..256"},
      {"rank 16 without factors", {.svd_rank = 16, .factors = false}, "SVD rank 16 not supported"},
      {"signed float codes", {.bits = 5, .is_signed = true, .float_codes = true}, "got signed 5-bit codes"},
      {"4-bit codes read as fp8",
       {.float_codes = true, .float_decode = sdnq::cuda::FloatDecode::fp8_e4m3fn},
       "fp8_e4m3fn float codes are 8 bits wide, got 4-bit codes"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    const std::string message = refusal(c.weights);
    INFO(message);
    CHECK(sdnq::test::contains(message, "test.adopted"));
    CHECK(sdnq::test::contains(message, c.expected));
  }
}

// The small-M path of a quantized-matmul layer on weights packed by test_gemv_support.hpp's packer,
// against the double product (K = 8192, N = 1096: a long K loop per warp).
TEST_CASE("w8a8_dequantized_linear: int8 row-wise weights at small M, bf16 and fp16", "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 5, 31);
  const bool with_bias = GENERATE(true, false);
  INFO("tokens " << tokens << ", bias " << with_bias);
  const auto check = [&](auto tag, std::int64_t n, std::int64_t k, bool transposed) {
    using T = decltype(tag);
    const auto linear = sdnq::test::make_random_linear<T>(8, CodeValue::signed_integer, n, k, -1, 0, 42, transposed);
    std::mt19937_64 rng(43);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    sdnq::Tensor x = sdnq::Tensor::empty(sdnq::Shape{tokens, k}, sdnq::dtype_of_v<T>);
    sdnq::Tensor bias = sdnq::Tensor::empty(sdnq::Shape{n}, sdnq::dtype_of_v<T>);
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<T>()[i] = T(dist(rng));
    for (std::int64_t i = 0; i < n; ++i) bias.data_as<T>()[i] = T(dist(rng));
    const sdnq::Tensor y = sdnq::test::run_w8a8_dequantized_linear(
        linear.codes, sdnq::dtype_of_v<T>, x, with_bias ? std::optional<sdnq::TensorView>(bias) : std::nullopt);
    std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
    std::int64_t non_finite = 0;
    for (std::int64_t m = 0; m < tokens; ++m)
      for (std::int64_t o = 0; o < n; ++o) {
        double sum = with_bias ? bias.data_as<T>()[o].to_float() : 0.0;
        for (std::int64_t c = 0; c < k; ++c) sum += double(x.data_as<T>()[m * k + c].to_float()) * linear.dense[o * k + c];
        expected[m * n + o] = sum;
        actual[m * n + o] = y.data_as<T>()[m * n + o].to_float();
        if (!std::isfinite(actual[m * n + o])) ++non_finite;
      }
    REQUIRE(non_finite == 0);
    REQUIRE(sdnq::test::relative_l2(actual, expected) <= 1e-2);
  };
  check(sdnq::bf16(0.0f), 1096, 8192, true);
  check(sdnq::fp16(0.0f), 200, 96, false);
}

namespace {

// A random 8-bit quantized-matmul weight as the checkpoint stores it (codes [K, N] when transposed,
// else [N, K]; F32 scale [1, N]), and the CPU reference of w8a8_dequantized_linear computed from it
// independently of the kernel: w = T(decode(code) · T(scale)) (or · the F32 scale when the repack keeps
// it unrounded), acc = Σ x · w in double, y = T(acc + bias).
struct W8A8Case {
  sdnq::Tensor codes, scale, table;
  std::vector<std::uint8_t> code_bytes;  // [N, K]
  sdnq::cuda::LinearCodes view(std::int64_t n, std::int64_t k, bool e4m3, bool transposed) const {
    sdnq::cuda::LinearCodes w;
    w.name = "test.w8a8_dequantized";
    w.bits = 8;
    w.value = e4m3 ? CodeValue::lookup : CodeValue::signed_integer;
    w.out_features = n;
    w.in_features = k;
    w.group_size = -1;
    w.transposed = transposed;
    w.codes = codes;
    w.scale = scale;
    if (e4m3) w.lookup_table = sdnq::TensorView(table);
    return w;
  }
};

W8A8Case make_w8a8_case(std::int64_t n, std::int64_t k, bool e4m3, bool transposed, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  W8A8Case out;
  out.code_bytes.resize(static_cast<std::size_t>(n * k));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : out.code_bytes) {
    b = static_cast<std::uint8_t>(byte(rng));
    if (e4m3 && (b & 0x7F) == 0x7F) b = static_cast<std::uint8_t>(b - 1);  // no NaN codes: ±448 instead
  }
  out.codes = sdnq::Tensor::empty(transposed ? sdnq::Shape{k, n} : sdnq::Shape{n, k},
                                  e4m3 ? sdnq::DType::f8_e4m3fn : sdnq::DType::i8);
  auto* stored = static_cast<std::uint8_t*>(out.codes.data());
  for (std::int64_t o = 0; o < n; ++o)
    for (std::int64_t c = 0; c < k; ++c) stored[transposed ? c * n + o : o * k + c] = out.code_bytes[o * k + c];
  out.scale = sdnq::Tensor::empty(sdnq::Shape{1, n}, sdnq::DType::f32);
  // int8: |w| up to ~1.3; e4m3 (codes up to 448): up to ~1.3 as well.
  std::uniform_real_distribution<float> scale(e4m3 ? 0.0002f : 0.001f, e4m3 ? 0.003f : 0.01f);
  for (std::int64_t o = 0; o < n; ++o) out.scale.data_as<float>()[o] = scale(rng);
  out.table = sdnq::Tensor::empty(sdnq::Shape{256}, sdnq::DType::f32);
  for (int c = 0; c < 256; ++c)
    out.table.data_as<float>()[c] = sdnq::fp8_e4m3fn::from_bits(static_cast<std::uint8_t>(c)).to_float();
  return out;
}

struct W8A8Comparison {
  double relative_error = 0.0;  // against the T-rounded reference
  std::int64_t non_finite = 0, differing = 0;
};

template <class T>
W8A8Comparison compare_w8a8_dequantized(const W8A8Case& weight, std::int64_t n, std::int64_t k, bool e4m3,
                                        bool round_scale, const sdnq::Tensor& x, const sdnq::Tensor* bias,
                                        const sdnq::Tensor& y) {
  const std::int64_t tokens = x.size(0);
  std::vector<double> dense(static_cast<std::size_t>(n * k));
  for (std::int64_t o = 0; o < n; ++o) {
    const float stored = weight.scale.data_as<float>()[o];
    const float s = round_scale ? T(stored).to_float() : stored;
    for (std::int64_t c = 0; c < k; ++c) {
      const std::uint8_t b = weight.code_bytes[o * k + c];
      const float q = e4m3 ? sdnq::fp8_e4m3fn::from_bits(b).to_float()
                           : static_cast<float>(static_cast<std::int8_t>(b));
      dense[o * k + c] = T(q * s).to_float();  // one fp32 product, rounded to T
    }
  }
  W8A8Comparison out;
  std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
  for (std::int64_t m = 0; m < tokens; ++m)
    for (std::int64_t o = 0; o < n; ++o) {
      double sum = bias != nullptr ? bias->data_as<T>()[o].to_float() : 0.0;
      for (std::int64_t c = 0; c < k; ++c) sum += double(x.data_as<T>()[m * k + c].to_float()) * dense[o * k + c];
      expected[m * n + o] = T(static_cast<float>(sum)).to_float();
      actual[m * n + o] = y.data_as<T>()[m * n + o].to_float();
      if (!std::isfinite(actual[m * n + o])) ++out.non_finite;
      if (actual[m * n + o] != expected[m * n + o]) ++out.differing;
    }
  out.relative_error = sdnq::test::relative_l2(actual, expected);
  return out;
}

template <class T>
sdnq::Tensor random_activations(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  sdnq::Tensor t = sdnq::Tensor::empty(sdnq::Shape{rows, cols}, sdnq::dtype_of_v<T>);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<T>()[i] = T(dist(rng));
  return t;
}

template <class T>
sdnq::Tensor random_bias(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  sdnq::Tensor t = sdnq::Tensor::empty(sdnq::Shape{n}, sdnq::dtype_of_v<T>);
  for (std::int64_t i = 0; i < n; ++i) t.data_as<T>()[i] = T(dist(rng));
  return t;
}

// A random case repacked with its scales rounded to T (or kept in F32), run through w8a8_dequantized_linear
// twice (the bits must agree) and compared with the CPU reference.
template <class T>
W8A8Comparison run_w8a8_dequantized_case(std::int64_t tokens, bool e4m3, std::int64_t n, std::int64_t k,
                                         bool with_bias, bool transposed, bool round_scale, std::uint64_t seed) {
  const W8A8Case weight = make_w8a8_case(n, k, e4m3, transposed, seed);
  const sdnq::Tensor x = random_activations<T>(tokens, k, seed + 1);
  const sdnq::Tensor bias = random_bias<T>(n, seed + 2);
  const auto rounding = round_scale ? sdnq::cuda::ScaleRounding::to_output_dtype : sdnq::cuda::ScaleRounding::none;
  const sdnq::Tensor y = sdnq::test::run_w8a8_dequantized_linear_repacked(
      sdnq::cuda::repack_for_w8a8<T>(weight.view(n, k, e4m3, transposed), true, rounding), x,
      with_bias ? std::optional<sdnq::TensorView>(bias) : std::nullopt, 2);
  return compare_w8a8_dequantized<T>(weight, n, k, e4m3, round_scale, x, with_bias ? &bias : nullptr, y);
}

}  // namespace

// The weight-streaming kernel (detail/w8a8_gemv.cuh) on every token tile (1, 4, 16, 32 and two slabs
// of 32), feature counts that leave a partial block (37, 203), K of one chunk (16), of less than one
// warp step (48) and of several steps (3072), with and without bias. Only the summation order
// differs from the reference, so the T-rounded outputs agree to relative L2 1e-3 (in practice almost
// all bits equal). The second run of each call must give the same bits (fixed reduction order).
TEST_CASE("w8a8_dequantized_linear: streaming kernel against the CPU reference, int8 and e4m3, bf16 and fp16",
          "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 3, 16, 31, 33);
  const auto check = [&](auto tag, bool e4m3, std::int64_t n, std::int64_t k, bool with_bias, bool transposed) {
    using T = decltype(tag);
    INFO("tokens " << tokens << ", N " << n << ", K " << k << (e4m3 ? ", e4m3" : ", int8")
                   << (std::is_same_v<T, sdnq::bf16> ? ", bf16" : ", fp16") << ", bias " << with_bias);
    const std::uint64_t seed = static_cast<std::uint64_t>(tokens * 1000003 + n * 1009 + k * 7 + e4m3);
    const W8A8Comparison result =
        run_w8a8_dequantized_case<T>(tokens, e4m3, n, k, with_bias, transposed, true, seed);
    INFO(result.differing << " of " << tokens * n << " outputs differ from the reference");
    CHECK(result.non_finite == 0);
    CHECK(result.relative_error <= 1e-3);
  };
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {{37, 16}, {203, 48}, {200, 3072}, {37, 3072}};
  for (const bool e4m3 : {false, true})
    for (const auto& [n, k] : shapes)
      for (const bool with_bias : {true, false}) {
        const bool transposed = (n + k) % 2 == 0;
        check(sdnq::bf16(0.0f), e4m3, n, k, with_bias, transposed);
        check(sdnq::fp16(0.0f), e4m3, n, k, with_bias, !transposed);
      }
}

// With N % 32 == 0 and K % 64 == 0 (every model layer) the route is the tensor-core weight-streaming
// kernel on row-major codes (StreamCodes::*_rows in detail/gemm_tc_stream_kernel.cuh), one launch per 16
// tokens (31 tokens: 16 + 15):
// one K tile (K = 64: 15 of 16 warps idle), K = 3072, N = 4288 (134 row blocks of 32: on an H100 some
// blocks run two in turn) with K = 1088 (warp 0 has two tiles), and K = 8192 at 8 tokens (x too wide to
// stage in shared memory: read from L2, as for 9..16 tokens). Scales rounded to T (the packed multiply)
// and kept in F32 (fp32 products rounded to T); only the summation order differs from the reference.
TEST_CASE("w8a8_dequantized_linear: 16 tokens a launch on the tensor-core weight-streaming kernel", "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 3, 8, 9, 16, 31);
  const auto check = [&](auto tag, bool e4m3, std::int64_t n, std::int64_t k, bool with_bias, bool transposed,
                         bool round_scale) {
    using T = decltype(tag);
    INFO("tokens " << tokens << ", N " << n << ", K " << k << (e4m3 ? ", e4m3" : ", int8")
                   << (std::is_same_v<T, sdnq::bf16> ? ", bf16" : ", fp16") << ", bias " << with_bias
                   << ", scales " << (round_scale ? "rounded to T" : "F32"));
    REQUIRE(sdnq::test::w8a8_dequantized_streams(tokens, n, k));
    const std::uint64_t seed = static_cast<std::uint64_t>(tokens * 7919 + n * 31 + k * 3 + e4m3);
    const W8A8Comparison result =
        run_w8a8_dequantized_case<T>(tokens, e4m3, n, k, with_bias, transposed, round_scale, seed);
    INFO(result.differing << " of " << tokens * n << " outputs differ from the reference");
    CHECK(result.non_finite == 0);
    CHECK(result.relative_error <= 1e-3);
  };
  for (const bool e4m3 : {false, true}) {
    check(sdnq::bf16(0.0f), e4m3, 96, 64, true, false, true);
    check(sdnq::fp16(0.0f), e4m3, 192, 3072, false, true, true);
    check(sdnq::bf16(0.0f), e4m3, 4288, 1088, true, true, true);
    check(sdnq::fp16(0.0f), e4m3, 128, 1024, true, false, false);
    check(sdnq::bf16(0.0f), e4m3, 64, 192, false, false, false);
  }
  if (tokens == 8) check(sdnq::bf16(0.0f), false, 64, 8192, true, false, true);
}

// Scales kept in F32 (repack_for_w8a8 with ScaleRounding::none): the kernel then multiplies in fp32 and
// rounds the product to T, as the dequantize kernel does.
TEST_CASE("w8a8_dequantized_linear: unrounded F32 scales give fp32 products rounded to T", "[cuda][linear]") {
  const std::int64_t tokens = GENERATE(1, 5);
  const auto check = [&](auto tag, bool e4m3, std::int64_t n, std::int64_t k) {
    using T = decltype(tag);
    INFO("tokens " << tokens << ", N " << n << ", K " << k << (e4m3 ? ", e4m3" : ", int8")
                   << (std::is_same_v<T, sdnq::bf16> ? ", bf16" : ", fp16"));
    const W8A8Case weight = make_w8a8_case(n, k, e4m3, true, 77 + n + e4m3);
    const sdnq::Tensor x = random_activations<T>(tokens, k, 78);
    const auto repacked =
        sdnq::cuda::repack_for_w8a8<T>(weight.view(n, k, e4m3, true), true, sdnq::cuda::ScaleRounding::none);
    const sdnq::Tensor y = sdnq::test::run_w8a8_dequantized_linear_repacked(repacked, x, std::nullopt);
    const W8A8Comparison result = compare_w8a8_dequantized<T>(weight, n, k, e4m3, false, x, nullptr, y);
    INFO(result.differing << " of " << tokens * n << " outputs differ from the reference");
    CHECK(result.non_finite == 0);
    CHECK(result.relative_error <= 1e-3);
  };
  for (const bool e4m3 : {false, true}) {
    check(sdnq::bf16(0.0f), e4m3, 37, 48);
    check(sdnq::fp16(0.0f), e4m3, 200, 3072);
  }
}

TEST_CASE("w8a8_dequantized_linear: bad shapes are rejected before launching", "[cuda][linear]") {
  SECTION("in_features not a multiple of 16") {
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { sdnq::test::run_w8a8_dequantized_linear_misuse("k_not_multiple_of_16"); });
    CHECK(sdnq::test::contains(message, "multiple of 16"));
  }
  SECTION("x of the wrong width") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_w8a8_dequantized_linear_misuse("wrong_width"); });
    CHECK(sdnq::test::contains(message, "w8a8_dequantized_linear x"));
  }
  SECTION("x not a matrix") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_w8a8_dequantized_linear_misuse("x_not_matrix"); });
    CHECK(sdnq::test::contains(message, "[M, 48]"));
  }
  SECTION("y of the wrong shape") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_w8a8_dequantized_linear_misuse("short_y"); });
    CHECK(sdnq::test::contains(message, "w8a8_dequantized_linear y"));
  }
  SECTION("x not 16-byte aligned") {
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { sdnq::test::run_w8a8_dequantized_linear_misuse("unaligned_x"); });
    CHECK(sdnq::test::contains(message, "16-byte aligned"));
  }
}

TEST_CASE("dense_linear: x · Wᵀ + b against a double product, and a bad shape", "[cuda][linear]") {
  std::mt19937_64 rng(44);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const std::int64_t tokens = 37, n = 72, k = 96;
  sdnq::Tensor x = sdnq::Tensor::empty(sdnq::Shape{tokens, k}, sdnq::DType::bf16);
  sdnq::Tensor w = sdnq::Tensor::empty(sdnq::Shape{n, k}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::Tensor::empty(sdnq::Shape{n}, sdnq::DType::bf16);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<sdnq::bf16>()[i] = sdnq::bf16(dist(rng));
  for (std::int64_t i = 0; i < w.numel(); ++i) w.data_as<sdnq::bf16>()[i] = sdnq::bf16(dist(rng));
  for (std::int64_t i = 0; i < n; ++i) bias.data_as<sdnq::bf16>()[i] = sdnq::bf16(dist(rng));
  const sdnq::Tensor y = sdnq::test::run_dense_linear(x, w, bias);
  std::vector<double> actual(static_cast<std::size_t>(tokens * n)), expected(actual.size());
  for (std::int64_t m = 0; m < tokens; ++m)
    for (std::int64_t o = 0; o < n; ++o) {
      double sum = bias.data_as<sdnq::bf16>()[o].to_float();
      for (std::int64_t c = 0; c < k; ++c)
        sum += double(x.data_as<sdnq::bf16>()[m * k + c].to_float()) * w.data_as<sdnq::bf16>()[o * k + c].to_float();
      expected[m * n + o] = sum;
      actual[m * n + o] = y.data_as<sdnq::bf16>()[m * n + o].to_float();
    }
  CHECK(sdnq::test::relative_l2(actual, expected) <= 1e-2);
  sdnq::Tensor short_bias = sdnq::Tensor::empty(sdnq::Shape{n - 8}, sdnq::DType::bf16);
  const auto message =
      sdnq::test::message_of<sdnq::ShapeError>([&] { (void)sdnq::test::run_dense_linear(x, w, short_bias); });
  CHECK(sdnq::test::contains(message, "dense_linear bias"));
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
  SECTION("the small-M route forced on a layer kept in the checkpoint layout (K = 80, group 40)") {
    const auto odd = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 64, 80, 40, 0, 29);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { sdnq::test::run_quantized_linear_misuse(odd.codes, "forced_small_m"); });
    CHECK(sdnq::test::contains(message, "route small_m"));
  }
  SECTION("a weight whose group size does not divide in_features") {
    sdnq::cuda::LinearCodes broken = uint4.codes;
    broken.group_size = 48;
    CHECK_THROWS_AS(sdnq::test::run_quantized_linear_misuse(broken, "wrong_width"), sdnq::ShapeError);
  }
}
