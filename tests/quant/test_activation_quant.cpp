// Per-row activation quantization (§5.1 step 4) against values computed by hand / in double here.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "sdnq/quant/activation_quant.hpp"
#include "sdnq_catch.hpp"

namespace {
using namespace sdnq;
using namespace sdnq::quant;

Tensor matrix(std::int64_t rows, std::int64_t cols, const std::vector<float>& values) {
  Tensor tensor = Tensor::empty({rows, cols}, DType::f32);
  std::copy(values.begin(), values.end(), tensor.data_as<float>());
  return tensor;
}
}  // namespace

TEST_CASE("int8 activation quantization: scale amax/127, round half even, per row", "[quant][activation]") {
  // row 0: amax 127 -> scale exactly 1; 2.5 -> 2 and 3.5 -> 4 (half even), -126.6 -> -127
  // row 1: amax 254 -> scale 2; 5 / 2 = 2.5 -> 2, -3 / 2 = -1.5 -> -2
  const Tensor x = matrix(2, 4, {2.5f, 3.5f, -126.6f, 127.0f, 5.0f, -3.0f, 254.0f, 0.0f});
  const RowQuantized q = quantize_activations(x, MatmulDType::int8, DType::f32);
  REQUIRE(q.scale == std::vector<float>{1.0f, 2.0f});
  const auto* codes = q.values.data_as<std::int8_t>();
  CHECK(std::vector<int>(codes, codes + 8) == std::vector<int>{2, 4, -127, 127, 2, -2, 127, 0});
}

TEST_CASE("uint8-path activation quantization is asymmetric in the int8 range", "[quant][activation]") {
  // min 0, max 255 -> scale 1, zero point 0 + 128 = 128; q = x - 128
  const Tensor x = matrix(1, 4, {0.0f, 255.0f, 128.0f, 100.0f});
  const RowQuantized q = quantize_activations(x, MatmulDType::uint8, DType::f32);
  CHECK(q.scale[0] == 1.0f);
  CHECK(q.zero_point[0] == 128.0f);
  const auto* codes = q.values.data_as<std::int8_t>();
  CHECK(std::vector<int>(codes, codes + 4) == std::vector<int>{-128, 127, 0, -28});
}

TEST_CASE("fp8 activation quantization maps the row maximum to 448", "[quant][activation]") {
  const Tensor x = matrix(1, 3, {-8.0f, 1.0f, 0.3f});
  const RowQuantized q = quantize_activations(x, MatmulDType::float8_e4m3fn, DType::f32);
  CHECK(q.scale[0] == 8.0f / 448.0f);
  const auto* codes = q.values.data_as<fp8_e4m3fn>();
  CHECK(static_cast<float>(codes[0]) == -448.0f);
  CHECK(static_cast<float>(codes[1]) == static_cast<float>(fp8_e4m3fn(1.0f / (8.0f / 448.0f))));
  CHECK(static_cast<float>(codes[2]) == static_cast<float>(fp8_e4m3fn(0.3f / (8.0f / 448.0f))));
}

TEST_CASE("bf16 scale dtype rounds every op to bf16", "[quant][activation]") {
  // amax 1 -> 1/127 rounded to bf16 (0.0078735...), x / s rounded to bf16 before rounding to int
  const Tensor x = matrix(1, 2, {1.0f, 0.5f});
  const RowQuantized q = quantize_activations(x, MatmulDType::int8, DType::bf16);
  const float scale = static_cast<float>(bf16(1.0f / 127.0f));
  CHECK(q.scale[0] == scale);
  const auto* codes = q.values.data_as<std::int8_t>();
  CHECK(codes[0] == static_cast<std::int8_t>(std::nearbyint(static_cast<float>(bf16(1.0f / scale)))));
  CHECK(codes[1] == static_cast<std::int8_t>(std::nearbyint(static_cast<float>(bf16(0.5f / scale)))));
}

TEST_CASE("all-zero rows quantize to zeros and non-finite rows stay confined", "[quant][activation]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // rows: all zero | holds NaN | holds -inf | finite, amax 127
  const Tensor x = matrix(4, 3, {0, 0, 0, 1, nan, 2, -inf, 1, 0, 127, -127, 63.5f});
  for (MatmulDType dtype : {MatmulDType::int8, MatmulDType::uint8, MatmulDType::float8_e4m3fn, MatmulDType::float16}) {
    INFO("matmul dtype " << static_cast<int>(dtype));
    const RowQuantized q = quantize_activations(x, dtype, DType::f32);
    const auto code = [&](std::int64_t i) -> float {
      switch (q.values.dtype()) {
        case DType::i8: return q.values.data_as<std::int8_t>()[i];
        case DType::f8_e4m3fn: return static_cast<float>(q.values.data_as<fp8_e4m3fn>()[i]);
        default: return static_cast<float>(q.values.data_as<fp16>()[i]);
      }
    };
    CHECK(q.scale[0] == 0.0f);
    for (int k = 0; k < 3; ++k) CHECK(code(k) == 0.0f);
    CHECK_FALSE(std::isfinite(q.scale[1]));
    CHECK_FALSE(std::isfinite(q.scale[2]));
    // the finite row is untouched by its neighbours
    if (dtype == MatmulDType::int8) {
      CHECK(q.scale[3] == 1.0f);
      CHECK(code(9) == 127.0f);
      CHECK(code(10) == -127.0f);
      CHECK(code(11) == 64.0f);  // 63.5 rounds half to even
    } else {
      CHECK(std::isfinite(q.scale[3]));
      CHECK(q.scale[3] > 0.0f);
    }
  }
}

TEST_CASE("weight re-quantization works per output row of the dequantized weight", "[quant][activation]") {
  const Tensor weight = matrix(2, 2, {0.5f, -1.0f, 2.0f, 0.0f});
  const RowQuantized q = re_quantize_int_mm(weight);
  CHECK(q.scale[0] == 1.0f / 127.0f);
  CHECK(q.scale[1] == 2.0f / 127.0f);
  const auto* codes = q.values.data_as<std::int8_t>();
  CHECK(codes[0] == static_cast<std::int8_t>(std::nearbyint(0.5f / (1.0f / 127.0f))));
  CHECK(codes[1] == -127);
  CHECK(codes[2] == 127);
  CHECK(codes[3] == 0);
  const RowQuantized fp8 = re_quantize_fp_mm(weight, MatmulDType::float8_e4m3fn);
  CHECK(fp8.scale[1] == 2.0f / 448.0f);
  CHECK(static_cast<float>(fp8.values.data_as<fp8_e4m3fn>()[2]) == 448.0f);
  REQUIRE_THROWS_AS(matmul_dtype_from_name("int4"), ConfigError);
}

TEST_CASE("the vectorizable int8 rounding equals nearbyint + clamp on ties, bounds and non-finite quotients",
          "[quant][activation]") {
  using sdnq::quant::detail::round_clamp_int8;
  const auto reference = [](float quotient) -> std::int8_t {  // the library-call form; NaN has no code: 0
    if (std::isnan(quotient)) return 0;
    return static_cast<std::int8_t>(std::clamp(std::nearbyint(quotient), -128.0f, 127.0f));
  };
  std::int64_t differences = 0;
  for (int step = -300 * 1024; step <= 300 * 1024; ++step) {  // every 1/1024 in [-300, 300]: all .5 ties
    const float quotient = static_cast<float>(step) / 1024.0f;
    differences += round_clamp_int8(quotient) != reference(quotient);
    const float next = std::nextafter(quotient, 1000.0f), previous = std::nextafter(quotient, -1000.0f);
    differences += round_clamp_int8(next) != reference(next);
    differences += round_clamp_int8(previous) != reference(previous);
  }
  CHECK(differences == 0);
  for (const float quotient : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -127.5f, 126.5f, 127.5f, -128.5f, -0.0f, 1e-30f, 3e9f,
                               -3e9f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max()}) {
    INFO(quotient);
    CHECK(round_clamp_int8(quotient) == reference(quotient));
  }
  CHECK(round_clamp_int8(2.5f) == 2);  // half to even
  CHECK(round_clamp_int8(-1.5f) == -2);
  CHECK(round_clamp_int8(127.5f) == 127);
  CHECK(round_clamp_int8(std::numeric_limits<float>::quiet_NaN()) == 0);
}
