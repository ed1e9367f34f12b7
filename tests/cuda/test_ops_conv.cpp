// cuda::ops::conv2d against the CPU float32 nn::conv2d on the exact f32 widening of the same bf16/fp16
// inputs: odd spatial sizes, channel counts that are not multiples of any tile, 1×1 (the direct path)
// and 3×3, stride 1 and 2, symmetric and bottom/right-only padding, bias or none, whole images and
// many small im2col chunks, into NaN-poisoned outputs. Tolerance: the output rounding u·|expected| (two
// roundings with a bias) plus 2e-3 absolute for the fp32 accumulation order (sums of up to 9·37
// products of magnitude ≤ 1).
#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_ops_conv_support.hpp"
#include "cuda/test_ops_support.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;
using sdnq::test::conv::ConvCall;

// x [N, C, H, W] f32 with `bottom` zero rows and `right` zero columns appended (the asymmetric padding
// of Downsample2D(padding = 0), written out here independently of the op under test).
Tensor padded_bottom_right(const Tensor& x, int bottom, int right) {
  const std::int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  Tensor out = Tensor::zeros(Shape{x.size(0), x.size(1), h + bottom, w + right}, DType::f32);
  for (std::int64_t p = 0; p < planes; ++p)
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t c = 0; c < w; ++c)
        out.data_as<float>()[(p * (h + bottom) + y) * (w + right) + c] = x.data_as<float>()[(p * h + y) * w + c];
  return out;
}

void check_against_cpu(const Shape& x_shape, std::int64_t out_channels, int kernel, const ConvCall& call, bool bias,
                       DType dtype) {
  INFO("x " << x_shape.to_string() << ", " << out_channels << " outputs, " << kernel << "x" << kernel << ", stride "
            << call.stride << ", padding " << call.pad_top << "/" << call.pad_left << "/" << call.pad_bottom << "/"
            << call.pad_right << ", bias " << bias << ", scratch " << call.scratch_bytes << ", "
            << sdnq::dtype_name(dtype));
  const Tensor x = sdnq::test::random_tensor(x_shape, dtype, 31);
  const Tensor weight = sdnq::test::random_tensor(Shape{out_channels, x_shape[1], kernel, kernel}, dtype, 32);
  const Tensor b = sdnq::test::random_tensor(Shape{out_channels}, dtype, 33);
  const Tensor actual = sdnq::test::conv::conv2d_on_gpu(x, weight, bias ? &b.view() : nullptr, call);
  // The CPU conv pads symmetrically: the extra bottom/right padding goes into the input.
  REQUIRE(call.pad_top == call.pad_left);
  const Tensor x32 = padded_bottom_right(sdnq::test::widen(x), call.pad_bottom - call.pad_top,
                                         call.pad_right - call.pad_left);
  const Tensor w32 = sdnq::test::widen(weight), b32 = sdnq::test::widen(b);
  const sdnq::nn::Conv2dParams params{.stride_h = call.stride, .stride_w = call.stride, .pad_h = call.pad_top,
                                      .pad_w = call.pad_left};
  const Tensor expected = sdnq::nn::conv2d(x32, w32, bias ? &b32.view() : nullptr, params);
  REQUIRE(actual.shape() == expected.shape());
  // With a bias the rounded products are rounded again after the bias add: 2u relative, plus u·|bias| ≤ u.
  const double u = sdnq::test::unit_roundoff(dtype);
  const auto comparison = bias ? sdnq::test::compare(actual, expected, 2e-3 + u, 2.02 * u)
                               : sdnq::test::compare(actual, expected, 2e-3, 1.01 * u);
  INFO(comparison.describe());
  CHECK(comparison.mismatches == 0);
}

}  // namespace

TEST_CASE("ops: conv2d 3x3 matches the CPU conv", "[cuda][ops][conv]") {
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const bool bias = GENERATE(true, false);
  SECTION("stride 1, padding 1, odd sizes") { check_against_cpu(Shape{2, 19, 13, 17}, 21, 3, {.stride = 1, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1}, bias, dtype); }
  SECTION("stride 2, padding 1") { check_against_cpu(Shape{2, 37, 15, 11}, 9, 3, {.stride = 2, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1}, bias, dtype); }
  SECTION("stride 2, bottom/right padding only (Downsample2D padding 0)") {
    check_against_cpu(Shape{1, 24, 16, 12}, 24, 3, {.stride = 2, .pad_bottom = 1, .pad_right = 1}, bias, dtype);
  }
  SECTION("no padding") { check_against_cpu(Shape{1, 5, 7, 9}, 3, 3, {}, bias, dtype); }
  SECTION("many small im2col chunks (8 positions' columns of scratch, 13 x 17 = 221 positions)") {
    check_against_cpu(Shape{2, 19, 13, 17}, 21, 3,
                      {.stride = 1, .pad_top = 1, .pad_left = 1, .pad_bottom = 1, .pad_right = 1,
                       .scratch_bytes = 19 * 9 * 8 * 2 + 10},
                      bias, dtype);
  }
}

TEST_CASE("ops: conv2d 1x1 matches the CPU conv", "[cuda][ops][conv]") {
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const bool bias = GENERATE(true, false);
  SECTION("stride 1 (x read as the columns)") { check_against_cpu(Shape{3, 33, 7, 5}, 17, 1, {}, bias, dtype); }
  SECTION("stride 2 (im2col)") { check_against_cpu(Shape{2, 16, 9, 9}, 8, 1, {.stride = 2}, bias, dtype); }
}

// The data movement of a conv on quantized codes, computed here from the definitions: im2row row r =
// image·Ho·Wo + position, column (ky·k + kx)·C + c holds x[image, c, oy·s − pad + ky, ox·s − pad + kx]
// (0 outside); rows_to_nchw puts rows[r − first, o] (+ bias[o], rounded once more) at out[image, o, position].
// Both are exact (bias: one fp32 add and one rounding).
TEST_CASE("ops: im2row and rows_to_nchw move conv rows exactly", "[cuda][ops][conv]") {
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const int kernel = GENERATE(1, 3);
  const int stride = GENERATE(1, 2);
  INFO(sdnq::dtype_name(dtype) << " kernel " << kernel << " stride " << stride);
  const Shape x_shape{2, 37, 11, 9};  // channels span two 32-wide tiles, rows cross the image boundary
  const Tensor x = sdnq::test::random_tensor(x_shape, dtype, 41);
  const Tensor x32 = sdnq::test::widen(x);
  const int pad = kernel / 2;
  const ConvCall call{.stride = stride, .pad_top = pad, .pad_left = pad, .pad_bottom = pad, .pad_right = pad};
  const std::int64_t out_h = (11 + 2 * pad - kernel) / stride + 1, out_w = (9 + 2 * pad - kernel) / stride + 1;
  const std::int64_t positions = out_h * out_w, total = 2 * positions, columns = kernel * kernel * 37;
  const std::int64_t first = 5, count = total - 7;

  const Tensor rows = sdnq::test::widen(sdnq::test::conv::im2row_on_gpu(x, kernel, call, first, count));
  std::int64_t wrong = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t r = first + i, image = r / positions, position = r % positions;
    const std::int64_t oy = position / out_w, ox = position % out_w;
    for (int ky = 0; ky < kernel; ++ky)
      for (int kx = 0; kx < kernel; ++kx)
        for (std::int64_t c = 0; c < 37; ++c) {
          const std::int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
          const float expected = iy >= 0 && iy < 11 && ix >= 0 && ix < 9
                                     ? x32.data_as<float>()[((image * 37 + c) * 11 + iy) * 9 + ix]
                                     : 0.0f;
          wrong += rows.data_as<float>()[i * columns + (ky * kernel + kx) * 37 + c] != expected;
        }
  }
  CHECK(wrong == 0);

  const std::int64_t out_channels = 45;
  const Tensor products = sdnq::test::random_tensor(Shape{count, out_channels}, dtype, 42);
  const Tensor bias = sdnq::test::random_tensor(Shape{out_channels}, dtype, 43);
  const Shape out_shape{2, out_channels, out_h, out_w};
  for (const bool with_bias : {false, true}) {
    INFO("bias " << with_bias);
    const Tensor out = sdnq::test::widen(
        sdnq::test::conv::rows_to_nchw_on_gpu(products, with_bias ? &bias.view() : nullptr, first, out_shape));
    const Tensor p32 = sdnq::test::widen(products), b32 = sdnq::test::widen(bias);
    std::int64_t misplaced = 0, unwritten_touched = 0;
    for (std::int64_t r = 0; r < total; ++r) {
      const std::int64_t image = r / positions, position = r % positions;
      for (std::int64_t o = 0; o < out_channels; ++o) {
        const float actual = out.data_as<float>()[(image * out_channels + o) * positions + position];
        if (r < first || r >= first + count) {
          unwritten_touched += !std::isnan(actual);
          continue;
        }
        float expected = p32.data_as<float>()[(r - first) * out_channels + o];
        if (with_bias) {
          const float sum = expected + b32.data_as<float>()[o];
          expected = dtype == DType::bf16 ? sdnq::bf16(sum).to_float() : sdnq::fp16(sum).to_float();
        }
        misplaced += actual != expected;
      }
    }
    CHECK(misplaced == 0);
    CHECK(unwritten_touched == 0);
  }
}

TEST_CASE("ops: conv2d bad arguments are typed errors naming the layer", "[cuda][ops][conv]") {
  using sdnq::test::contains;
  using sdnq::test::message_of;
  const auto misuse = [](const char* which) { return [which] { sdnq::test::conv::conv2d_misuse(which); }; };
  const std::string channels = message_of<sdnq::ShapeError>(misuse("channels"));
  CHECK(contains(channels, "decoder.conv_in"));
  CHECK(contains(channels, "same C"));
  const std::string out = message_of<sdnq::ShapeError>(misuse("out shape"));
  CHECK(contains(out, "decoder.conv_in"));
  CHECK(contains(out, "[1, 4, 5, 5]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("too small")), "smaller than the 3x3 kernel"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("bias")), "bias must be BF16 [4]"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("no scratch")), "scratch must hold at least"));
  CHECK(contains(message_of<sdnq::ShapeError>(misuse("host input")), "contiguous device tensor"));
}

// Hidden (run by name or "[timing]"): the VAE decoder's top level at 1024 x 1024, 128 channels. The split
// GroupNorm must agree with the one-block kernel (both f32 statistics; bf16 outputs differ by at most a
// rounding step at |y| up to ~6).
TEST_CASE("ops: VAE top-level conv and GroupNorm at 1024x1024 (timing)", "[.][timing]") {
  const sdnq::test::conv::LargeOpTimings t = sdnq::test::conv::time_vae_top_level_ops(128, 1024);
  WARN("1 x 128 x 1024 x 1024 bf16: conv 3x3 " << t.conv_ms << " ms, group_norm+silu one block per group "
                                               << t.group_norm_one_block_ms << " ms, split " << t.group_norm_split_ms
                                               << " ms, max |split - one block| " << t.split_max_difference);
  CHECK(t.split_max_difference <= 0.05);
  CHECK(t.group_norm_split_ms < t.group_norm_one_block_ms);
}
