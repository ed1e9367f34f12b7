// LayerNorm, RMSNorm, GroupNorm (+ SiLU) and softmax on the GPU against nn::layer_norm / rms_norm /
// group_norm / softmax (statistics in double on the CPU, f32 on the GPU) on the exact f32 widening of
// the same bf16/fp16 inputs. Tolerance: the output rounding u·|expected| plus 2e-5 absolute for the
// f32 statistics (outputs are O(1..10)). Rows of 8-multiple lengths take the 16-byte path, odd ones
// the scalar path.
#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda/test_ops_conv_support.hpp"
#include "cuda/test_ops_launchers.hpp"
#include "cuda/test_ops_support.hpp"
#include "sdnq/nn/models/detail/dit_ops.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;
namespace gpu = sdnq::test::ops;

void require_close(const sdnq::TensorView& actual, const sdnq::TensorView& expected, DType dtype) {
  REQUIRE(actual.shape() == expected.shape());
  const auto comparison = sdnq::test::compare(actual, expected, 2e-5, sdnq::test::unit_roundoff(dtype) * 1.01);
  INFO(comparison.describe());
  REQUIRE(comparison.mismatches == 0);
}

}  // namespace

TEST_CASE("ops: layer_norm with and without affine parameters", "[cuda][ops]") {
  const std::int64_t dim = GENERATE(3072, 768, 77, 8);
  const bool affine = GENERATE(false, true);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  INFO("dim " << dim << ", affine " << affine << ", " << sdnq::dtype_name(dtype));
  // An offset mean (1.5) checks the mean is taken out before squaring.
  const Tensor x = sdnq::test::random_tensor(Shape{3, 11, dim}, dtype, 21, 0.5f, 2.5f);
  const Tensor w = sdnq::test::random_tensor(Shape{dim}, dtype, 22, 0.5f, 1.5f);
  const Tensor b = sdnq::test::random_tensor(Shape{dim}, dtype, 23);
  const Tensor w32 = sdnq::test::widen(w), b32 = sdnq::test::widen(b);
  const sdnq::TensorView wv = w32, bv = b32, wd = w, bd = b;
  const Tensor expected =
      sdnq::nn::layer_norm(sdnq::test::widen(x), affine ? &wv : nullptr, affine ? &bv : nullptr, 1e-6f);
  require_close(gpu::layer_norm(x, affine ? &wd : nullptr, affine ? &bd : nullptr, 1e-6f), expected, dtype);
}

TEST_CASE("ops: layer_norm_modulate is FLUX's AdaLN (LayerNorm without affine, then modulate) in one pass",
          "[cuda][ops]") {
  const std::int64_t dim = GENERATE(3072, 40, 13);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  constexpr int chunks = 6;
  INFO("dim " << dim << ", " << sdnq::dtype_name(dtype));
  const Tensor x = sdnq::test::random_tensor(Shape{2, 9, dim}, dtype, 40, -1.0f, 3.0f);
  const Tensor emb = sdnq::test::random_tensor(Shape{2, chunks * dim}, dtype, 41);
  const Tensor emb32 = sdnq::test::widen(emb);
  Tensor expected = sdnq::nn::layer_norm(sdnq::test::widen(x), nullptr, nullptr, 1e-6f);
  sdnq::nn::detail::modulate_(expected, sdnq::nn::detail::modulation_chunk(emb32, chunks, 0),
                              sdnq::nn::detail::modulation_chunk(emb32, chunks, 1));
  require_close(gpu::layer_norm_modulate(x, emb, chunks, 0, 1, 1e-6f), expected, dtype);
}

TEST_CASE("ops: rms_norm with and without weight (T5, QK-norm over head_dim)", "[cuda][ops]") {
  const std::int64_t dim = GENERATE(4096, 128, 45);
  const bool weighted = GENERATE(false, true);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  INFO("dim " << dim << ", weighted " << weighted);
  const Tensor x = sdnq::test::random_tensor(Shape{37, dim}, dtype, 24, -2.0f, 2.0f);
  const Tensor w = sdnq::test::random_tensor(Shape{dim}, dtype, 25, 0.5f, 1.5f);
  const Tensor w32 = sdnq::test::widen(w);
  const sdnq::TensorView wv = w32, wd = w;
  const Tensor expected = sdnq::nn::rms_norm(sdnq::test::widen(x), weighted ? &wv : nullptr, 1e-6f);
  require_close(gpu::rms_norm(x, weighted ? &wd : nullptr, 1e-6f), expected, dtype);
}

TEST_CASE("ops: rms_norm with T5LayerNorm's two roundings (RmsNormRounding::t5_two_step)", "[cuda][ops]") {
  // transformers' T5LayerNorm: h = T(x · rsqrt(mean(x²) + eps)) with f32 statistics, then out = T(weight · h),
  // a product of two T values (exact in f32, so one rounding is torch's T multiply). Recomputed here with
  // the statistics in double. The GPU's f32 statistics differ from them by a relative 1e-5 at most (worst
  // case at D = 4096: 128 sequential f32 adds per lane and 5 shuffle levels, ≤ 133·2^-24 on the sum of
  // squares, half that through the square root, plus rsqrtf's 2 ulp), which moves h only where
  // x · rsqrt(...) lies within that of a rounding boundary of T: there either neighbour is accepted, and
  // out must then be exactly T(weight · h). Everywhere else the match is exact.
  const std::int64_t dim = GENERATE(4096, 768, 45, 7);
  const bool weighted = GENERATE(true, false);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  INFO("dim " << dim << ", weighted " << weighted << ", " << sdnq::dtype_name(dtype));
  constexpr std::int64_t rows = 37;
  constexpr float eps = 1e-6f;
  constexpr double statistics_slack = 1e-5;
  // Values over several binades, like T5's residual stream; weights as small as 0.05.
  const Tensor x = sdnq::test::random_tensor(Shape{rows, dim}, dtype, 31, -20.0f, 20.0f);
  const Tensor w = sdnq::test::random_tensor(Shape{dim}, dtype, 32, 0.05f, 1.5f);
  const sdnq::TensorView wd = w;
  const Tensor x32 = sdnq::test::widen(x), w32 = sdnq::test::widen(w);
  const Tensor actual = sdnq::test::widen(gpu::rms_norm(x, weighted ? &wd : nullptr, eps, true));
  const Tensor rounded_once = sdnq::test::widen(gpu::rms_norm(x, weighted ? &wd : nullptr, eps));
  const auto narrow = [dtype](double value) {
    const auto f = static_cast<float>(value);
    return dtype == DType::bf16 ? sdnq::bf16(f).to_float() : sdnq::fp16(f).to_float();
  };
  std::int64_t mismatches = 0, first_bad = -1, differs_from_rounded_once = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x32.data_as<float>() + r * dim;
    double squares = 0.0;
    for (std::int64_t i = 0; i < dim; ++i) squares += static_cast<double>(row[i]) * row[i];
    const double inverse = 1.0 / std::sqrt(squares / static_cast<double>(dim) + static_cast<double>(eps));
    for (std::int64_t i = 0; i < dim; ++i) {
      const double normalized = row[i] * inverse;
      const float weight = weighted ? w32.data_as<float>()[i] : 1.0f;
      const float low = narrow(normalized * (1.0 - statistics_slack));
      const float high = narrow(normalized * (1.0 + statistics_slack));
      const float got = actual.data_as<float>()[r * dim + i];
      if (!(got == narrow(weight * low) || got == narrow(weight * high))) {
        if (first_bad < 0) first_bad = r * dim + i;
        ++mismatches;
      }
      if (got != rounded_once.data_as<float>()[r * dim + i]) ++differs_from_rounded_once;
    }
  }
  INFO("mismatches " << mismatches << ", first at flat index " << first_bad << "; " << differs_from_rounded_once
                     << " of " << rows * dim << " elements differ from the single rounding");
  REQUIRE(mismatches == 0);
  // With a weight the second rounding shows (the data can tell the modes apart); without one T(T(h)) = T(h).
  if (weighted)
    CHECK(differs_from_rounded_once > 0);
  else
    CHECK(differs_from_rounded_once == 0);
}

TEST_CASE("ops: group_norm with affine parameters, optionally fused with SiLU", "[cuda][ops]") {
  const Shape shape = GENERATE(Shape{2, 64, 16, 16}, Shape{2, 12, 5, 7}, Shape{1, 32, 3});
  const int groups = GENERATE(4, 32);
  const bool silu = GENERATE(false, true);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  if (shape[1] % groups != 0) return;
  INFO("shape " << shape.to_string() << ", groups " << groups << ", silu " << silu);
  const Tensor x = sdnq::test::random_tensor(shape, dtype, 26, -1.0f, 3.0f);
  const Tensor w = sdnq::test::random_tensor(Shape{shape[1]}, dtype, 27, 0.5f, 1.5f);
  const Tensor b = sdnq::test::random_tensor(Shape{shape[1]}, dtype, 28);
  const Tensor w32 = sdnq::test::widen(w), b32 = sdnq::test::widen(b);
  const sdnq::TensorView wv = w32, bv = b32, wd = w, bd = b;
  Tensor expected = sdnq::nn::group_norm(sdnq::test::widen(x), groups, &wv, &bv, 1e-5f);
  if (silu) sdnq::nn::activate_(expected, sdnq::nn::Activation::silu);
  require_close(gpu::group_norm(x, groups, &wd, &bd, 1e-5f, silu), expected, dtype);
}

TEST_CASE("ops: group_norm without affine parameters", "[cuda][ops]") {
  const Tensor x = sdnq::test::random_tensor(Shape{2, 32, 8, 8}, DType::bf16, 29);
  const Tensor expected = sdnq::nn::group_norm(sdnq::test::widen(x), 8, nullptr, nullptr, 1e-6f);
  require_close(gpu::group_norm(x, 8, nullptr, nullptr, 1e-6f, false), expected, DType::bf16);
}

TEST_CASE("ops: group_norm split over several blocks per group (few groups, many positions)", "[cuda][ops]") {
  // N·G = 2 or 8 pairs over ≥ 12k positions: the split kernel (slices of ≥ 4096 elements); 97 x 127 and
  // 5 x 7 x 401 positions take its scalar path. An offset mean (1.0) checks the partials' merge.
  const Shape shape = GENERATE(Shape{1, 8, 128, 96}, Shape{2, 8, 97, 127}, Shape{1, 4, 5, 7, 401});
  const int groups = GENERATE(1, 4);
  const bool silu = GENERATE(false, true);
  const bool in_place = GENERATE(false, true);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  INFO("shape " << shape.to_string() << ", groups " << groups << ", silu " << silu << ", in place " << in_place);
  const Tensor x = sdnq::test::random_tensor(shape, dtype, 41, -1.0f, 3.0f);
  const Tensor w = sdnq::test::random_tensor(Shape{shape[1]}, dtype, 42, 0.5f, 1.5f);
  const Tensor b = sdnq::test::random_tensor(Shape{shape[1]}, dtype, 43);
  const Tensor w32 = sdnq::test::widen(w), b32 = sdnq::test::widen(b);
  const sdnq::TensorView wv = w32, bv = b32, wd = w, bd = b;
  Tensor expected = sdnq::nn::group_norm(sdnq::test::widen(x), groups, &wv, &bv, 1e-6f);
  if (silu) sdnq::nn::activate_(expected, sdnq::nn::Activation::silu);
  std::int64_t scratch_bytes = 0;
  const Tensor actual = sdnq::test::conv::group_norm_split_on_gpu(x, groups, &wd, &bd, 1e-6f, silu, in_place,
                                                                  scratch_bytes);
  CHECK(scratch_bytes > 0);  // the split kernel ran
  require_close(actual, expected, dtype);
}

TEST_CASE("ops: softmax over the last axis, incl. -inf entries and an all -inf row", "[cuda][ops]") {
  const std::int64_t dim = GENERATE(77, 4608, 16);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  Tensor x = sdnq::test::random_tensor(Shape{5, dim}, dtype, 30, -8.0f, 8.0f);
  const auto set = [&](std::int64_t i, float value) {
    if (dtype == DType::bf16)
      x.data_as<sdnq::bf16>()[i] = sdnq::bf16(value);
    else
      x.data_as<sdnq::fp16>()[i] = sdnq::fp16(value);
  };
  const float negative_infinity = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < dim; i += 3) set(dim + i, negative_infinity);   // row 1: masked entries
  for (std::int64_t i = 0; i < dim; ++i) set(2 * dim + i, negative_infinity);  // row 2: fully masked
  INFO("dim " << dim << ", " << sdnq::dtype_name(dtype));
  require_close(gpu::softmax(x), sdnq::nn::softmax(sdnq::test::widen(x)), dtype);
}
