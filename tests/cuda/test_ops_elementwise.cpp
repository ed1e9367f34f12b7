// The element-wise CUDA ops against the CPU float32 ops (nn/tensor_ops.hpp, and the DiT helpers
// modulate_ / add_gated_ of nn/models/detail/dit_ops.hpp) run on the exact f32 widening of the same
// bf16/fp16 inputs. The GPU computes in f32 and rounds once, so each element may be off by the output
// rounding (u·|expected|, u = 2^-8 bf16 / 2^-11 fp16) plus f32 noise (1e-5 absolute, inputs are O(1)).
// Outputs are NaN-poisoned before each launch, so an element not written fails.
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_ops_launchers.hpp"
#include "cuda/test_ops_support.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/nn/models/detail/dit_ops.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;
namespace gpu = sdnq::test::ops;

void require_close(const sdnq::TensorView& actual, const sdnq::TensorView& expected, DType dtype,
                   double absolute = 1e-5) {
  REQUIRE(actual.shape() == expected.shape());
  const auto comparison = sdnq::test::compare(actual, expected, absolute, sdnq::test::unit_roundoff(dtype) * 1.01);
  INFO(comparison.describe());
  REQUIRE(comparison.mismatches == 0);
}

}  // namespace

TEST_CASE("ops: activations match nn::activate_ (vector and scalar paths, in place)", "[cuda][ops]") {
  const auto activation = GENERATE(sdnq::nn::Activation::silu, sdnq::nn::Activation::gelu,
                                   sdnq::nn::Activation::gelu_tanh, sdnq::nn::Activation::quick_gelu);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const Shape shape = GENERATE(Shape{3, 7, 13}, Shape{4, 3072});
  const bool in_place = GENERATE(false, true);
  INFO("activation " << static_cast<int>(activation) << ", " << sdnq::dtype_name(dtype) << ", shape "
                     << shape.to_string() << ", in place " << in_place);
  const Tensor x = sdnq::test::random_tensor(shape, dtype, 3, -6.0f, 6.0f);
  Tensor expected = sdnq::test::widen(x);
  sdnq::nn::activate_(expected, activation);
  require_close(gpu::activation(x, activation, in_place), expected, dtype);
}

TEST_CASE("ops: activation_rows maps a column block of one buffer into a column block of another",
          "[cuda][ops]") {
  // (rows, x width, x first column, columns, out width, out first column): vector and scalar paths.
  const std::array<std::int64_t, 6> layout = GENERATE(std::array<std::int64_t, 6>{5, 56, 24, 32, 40, 8},
                                                      std::array<std::int64_t, 6>{3, 29, 3, 11, 17, 5});
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const auto [rows, width, first, columns, out_width, out_first] = layout;
  const Tensor x = sdnq::test::random_tensor(Shape{rows, width}, dtype, 6, -6.0f, 6.0f);
  const Tensor out = gpu::activation_rows(x, first, columns, out_width, out_first, sdnq::nn::Activation::gelu_tanh);
  const Tensor wide = sdnq::test::widen(x), got = sdnq::test::widen(out);
  Tensor expected = Tensor::empty(Shape{rows, columns}, DType::f32), block = Tensor::empty(Shape{rows, columns}, DType::f32);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < columns; ++c) {
      expected.data_as<float>()[r * columns + c] = wide.data_as<float>()[r * width + first + c];
      block.data_as<float>()[r * columns + c] = got.data_as<float>()[r * out_width + out_first + c];
    }
  sdnq::nn::activate_(expected, sdnq::nn::Activation::gelu_tanh);
  require_close(block, expected, dtype);
  std::int64_t untouched_written = 0;  // the columns outside the block keep their NaN fill
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < out_width; ++c)
      if ((c < out_first || c >= out_first + columns) && !std::isnan(got.data_as<float>()[r * out_width + c]))
        ++untouched_written;
  CHECK(untouched_written == 0);
}

TEST_CASE("ops: geglu is hidden * gelu(gate) over the two halves of the last axis", "[cuda][ops]") {
  const Shape shape = GENERATE(Shape{2, 5, 2 * 1280}, Shape{3, 2 * 11});
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const Tensor x = sdnq::test::random_tensor(shape, dtype, 4, -3.0f, 3.0f);
  std::vector<Tensor> halves = sdnq::nn::chunk(sdnq::test::widen(x), 2, -1);
  sdnq::nn::activate_(halves[1], sdnq::nn::Activation::gelu);
  const Tensor expected = sdnq::nn::mul(halves[0], halves[1]);
  require_close(gpu::geglu(x), expected, dtype);
}

TEST_CASE("ops: add, and bias-like vectors along the last axis and along channels", "[cuda][ops]") {
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  SECTION("add of two tensors, 8-multiple and odd sizes") {
    const Shape shape = GENERATE(Shape{2, 64, 40}, Shape{3, 5, 7});
    const Tensor a = sdnq::test::random_tensor(shape, dtype, 5), b = sdnq::test::random_tensor(shape, dtype, 6);
    require_close(gpu::add(a, b), sdnq::nn::add(sdnq::test::widen(a), sdnq::test::widen(b)), dtype);
  }
  SECTION("add_vector / mul_vector with one shared vector and with per-sample vectors") {
    const std::int64_t channels = GENERATE(64, 3072, 13);
    const bool per_sample = GENERATE(false, true);
    const Tensor x = sdnq::test::random_tensor(Shape{2, 9, channels}, dtype, 7);
    const Tensor v = per_sample ? sdnq::test::random_tensor(Shape{2, channels}, dtype, 8)
                                : sdnq::test::random_tensor(Shape{channels}, dtype, 8);
    Tensor v_broadcast = sdnq::test::widen(v);
    if (per_sample) v_broadcast.reshape(Shape{2, 1, channels});
    INFO("channels " << channels << ", per sample " << per_sample);
    require_close(gpu::add_vector(x, v), sdnq::nn::add(sdnq::test::widen(x), v_broadcast), dtype);
    require_close(gpu::mul_vector(x, v), sdnq::nn::mul(sdnq::test::widen(x), v_broadcast), dtype);
  }
  SECTION("add_channel_vector: x [N, C, H, W] + temb [N, C] (UNet) and + bias [C]") {
    const Shape shape = GENERATE(Shape{2, 320, 8, 8}, Shape{2, 5, 3, 7});
    const bool per_sample = GENERATE(false, true);
    const Tensor x = sdnq::test::random_tensor(shape, dtype, 9);
    const Tensor v = per_sample ? sdnq::test::random_tensor(Shape{2, shape[1]}, dtype, 10)
                                : sdnq::test::random_tensor(Shape{shape[1]}, dtype, 10);
    Tensor v_broadcast = sdnq::test::widen(v);
    v_broadcast.reshape(per_sample ? Shape{2, shape[1], 1, 1} : Shape{shape[1], 1, 1});
    INFO("shape " << shape.to_string() << ", per sample " << per_sample);
    require_close(gpu::add_channel_vector(x, v), sdnq::nn::add(sdnq::test::widen(x), v_broadcast), dtype);
  }
}

TEST_CASE("ops: AdaLN modulation and gated residual add read chunks of the modulation vector", "[cuda][ops]") {
  const std::int64_t dim = GENERATE(3072, 24, 13);
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  constexpr int chunks = 6;
  const Tensor x = sdnq::test::random_tensor(Shape{2, 17, dim}, dtype, 11, -2.0f, 2.0f);
  const Tensor emb = sdnq::test::random_tensor(Shape{2, chunks * dim}, dtype, 12);
  const Tensor update = sdnq::test::random_tensor(Shape{2, 17, dim}, dtype, 13, -2.0f, 2.0f);
  const Tensor emb32 = sdnq::test::widen(emb);
  INFO("dim " << dim << ", " << sdnq::dtype_name(dtype));

  Tensor modulated = sdnq::test::widen(x);
  sdnq::nn::detail::modulate_(modulated, sdnq::nn::detail::modulation_chunk(emb32, chunks, 3),
                              sdnq::nn::detail::modulation_chunk(emb32, chunks, 4));
  require_close(gpu::modulate(x, emb, chunks, 3, 4), modulated, dtype);

  Tensor gated = sdnq::test::widen(x);
  sdnq::nn::detail::add_gated_(gated, sdnq::nn::detail::modulation_chunk(emb32, chunks, 5), sdnq::test::widen(update));
  require_close(gpu::gated_add(x, emb, chunks, 5, update), gated, dtype);
}

TEST_CASE("ops: bad arguments are refused before launch with messages naming the op", "[cuda][ops]") {
  using sdnq::test::contains;
  using sdnq::test::message_of;
  const auto shape_error = [](const std::string& which) {
    return message_of<sdnq::ShapeError>([&] { gpu::call_with_bad_argument(which); });
  };
  CHECK(contains(message_of<sdnq::UnsupportedError>([] { gpu::call_with_bad_argument("activation dtype"); }),
                 "cuda::ops::activation: x must be BF16 or F16"));
  CHECK(contains(shape_error("activation out shape"), "cuda::ops::activation: out must be BF16 [2, 5, 24]"));
  CHECK(contains(shape_error("activation out dtype"), "out must be BF16"));
  CHECK(contains(shape_error("geglu odd"), "cuda::ops::geglu: x must be [..., 2N]"));
  CHECK(contains(shape_error("add_vector length"), "cuda::ops::add_vector: v must be [24] or [2, 24]"));
  CHECK(contains(shape_error("modulate batch"), "cuda::ops::modulate: scale must be [24] or [2, 24]"));
  CHECK(contains(shape_error("modulation_chunk"), "cuda::ops::modulation_chunk"));
  CHECK(contains(shape_error("layer_norm weight"), "cuda::ops::layer_norm: weight must be BF16 [24]"));
  CHECK(contains(shape_error("layer_norm_modulate shift"),
                 "cuda::ops::layer_norm_modulate: shift must be [24] or [2, 24]"));
  CHECK(contains(shape_error("group_norm groups"), "2 groups must divide the 5 channels"));
  CHECK(contains(shape_error("rope table"), "cos and sin must be contiguous device F32 [L, D] = [5, 24]"));
  CHECK(contains(shape_error("patchify odd"), "divisible by the patch size 2"));
  CHECK(contains(shape_error("upsample out"), "cuda::ops::upsample_nearest2x: out must be BF16 [1, 2, 10, 48]"));
}
