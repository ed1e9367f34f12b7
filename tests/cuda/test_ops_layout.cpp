// Position encodings and data movement on the GPU against the CPU: FLUX's RoPE against
// nn::detail::apply_rotary_embedding_ with the tables of nn::detail::rotary_embedding (real FLUX axes
// 16/56/56), the timestep embedding against nn::timestep_embedding, nearest 2× upsampling against
// nn::upsample_nearest2x, and patch packing against nn::permute of the [B, C, H/p, p, W/p, p] view
// (pure data movement: exact).
#include <array>
#include <cstdint>
#include <vector>

#include "cuda/test_ops_launchers.hpp"
#include "cuda/test_ops_support.hpp"
#include "sdnq/nn/models/detail/dit_embeddings.hpp"
#include "sdnq/nn/tensor_ops.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::DType;
using sdnq::Shape;
using sdnq::Tensor;
namespace gpu = sdnq::test::ops;

void require_close(const sdnq::TensorView& actual, const sdnq::TensorView& expected, double absolute, double relative) {
  REQUIRE(actual.shape() == expected.shape());
  const auto comparison = sdnq::test::compare(actual, expected, absolute, relative);
  INFO(comparison.describe());
  REQUIRE(comparison.mismatches == 0);
}

// FLUX's position ids: text tokens at 0, image tokens (row, column) on the latent grid.
Tensor flux_ids(std::int64_t text, std::int64_t rows, std::int64_t columns) {
  Tensor ids = Tensor::zeros(Shape{text + rows * columns, 3}, DType::f32);
  float* p = ids.data_as<float>();
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < columns; ++c) {
      p[(text + r * columns + c) * 3 + 1] = static_cast<float>(r);
      p[(text + r * columns + c) * 3 + 2] = static_cast<float>(c);
    }
  return ids;
}

}  // namespace

TEST_CASE("ops: FLUX's 3-axis RoPE on the [B, H, L, D] view of [B, L, H, D] activations", "[cuda][ops]") {
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const bool small = GENERATE(false, true);
  // D 128 with FLUX's axes (16, 56, 56); D 6 = axes (2, 2, 2) takes the scalar path.
  const std::vector<std::int64_t> axes =
      small ? std::vector<std::int64_t>{2, 2, 2} : std::vector<std::int64_t>{16, 56, 56};
  const std::int64_t head_dim = small ? 6 : 128, heads = 3, batch = 2;
  const Tensor ids = flux_ids(5, 4, 6);
  const std::int64_t tokens = ids.size(0);
  const auto rope = sdnq::nn::detail::rotary_embedding(ids, axes);
  const Tensor x = sdnq::test::random_tensor(Shape{batch, tokens, heads, head_dim}, dtype, 31, -2.0f, 2.0f);
  Tensor expected = sdnq::test::widen(x);
  sdnq::nn::detail::apply_rotary_embedding_(expected, rope);
  INFO(sdnq::dtype_name(dtype) << ", D " << head_dim);
  require_close(gpu::rope(x, rope.cos, rope.sin), expected, 1e-5, sdnq::test::unit_roundoff(dtype) * 1.01);
}

TEST_CASE("ops: sinusoidal timestep embedding like diffusers' get_timestep_embedding", "[cuda][ops]") {
  struct Settings {
    int dim;
    bool flip;
    float shift;
  };
  // FLUX / SD3 (256, flip, 0), SDXL (320, flip, 0), SD 1.5 time_proj (320, flip, shift 0), odd dim.
  const Settings s = GENERATE(Settings{256, true, 0.0f}, Settings{320, false, 1.0f}, Settings{7, true, 0.5f});
  const DType out_dtype = GENERATE(DType::f32, DType::bf16);
  Tensor t = Tensor::empty(Shape{4}, DType::f32);
  const std::array<float, 4> steps{0.0f, 1.0f, 500.5f, 999.0f};
  for (int i = 0; i < 4; ++i) t.data_as<float>()[i] = steps[static_cast<std::size_t>(i)];
  const Tensor expected = sdnq::nn::timestep_embedding(t, s.dim, s.flip, s.shift, 1.0f, 10000);
  // f32 angles up to 1000 rad: expf/std::exp may differ by an ulp of the frequency (≤ 1e-4 in the angle).
  const double relative = out_dtype == DType::f32 ? 0.0 : sdnq::test::unit_roundoff(out_dtype) * 1.01;
  INFO("dim " << s.dim << ", out " << sdnq::dtype_name(out_dtype));
  require_close(gpu::timestep_embedding(t, s.dim, s.flip, s.shift, 1.0f, 10000, out_dtype), expected, 2e-4, relative);
}

TEST_CASE("ops: nearest 2x upsampling", "[cuda][ops]") {
  const Shape shape = GENERATE(Shape{2, 3, 8, 16}, Shape{1, 2, 5, 7});
  const DType dtype = GENERATE(DType::bf16, DType::f16);
  const Tensor x = sdnq::test::random_tensor(shape, dtype, 32);
  INFO("shape " << shape.to_string());
  require_close(gpu::upsample_nearest2x(x), sdnq::nn::upsample_nearest2x(sdnq::test::widen(x)), 0.0, 0.0);
}

TEST_CASE("ops: patchify / unpatchify (FLUX's 2x2 packing, SD3's channel-last order)", "[cuda][ops]") {
  const bool channel_major = GENERATE(true, false);
  const Shape shape = GENERATE(Shape{2, 16, 8, 12}, Shape{1, 3, 4, 2});
  const int patch = 2;
  const Tensor image = sdnq::test::random_tensor(shape, DType::bf16, 33);
  const std::int64_t b = shape[0], c = shape[1], h = shape[2], w = shape[3];
  // [B, C, H/p, p, W/p, p] permuted to (b, h', w', c, dy, dx) or (b, h', w', dy, dx, c).
  Tensor split = sdnq::test::widen(image);
  split.reshape(Shape{b, c, h / patch, patch, w / patch, patch});
  const std::array<int, 6> major{0, 2, 4, 1, 3, 5}, minor{0, 2, 4, 3, 5, 1};
  Tensor expected = sdnq::nn::permute(split, channel_major ? major : minor);
  expected.reshape(Shape{b, (h / patch) * (w / patch), c * patch * patch});
  INFO("shape " << shape.to_string() << ", channel major " << channel_major);
  const Tensor tokens = gpu::patchify(image, patch, channel_major);
  require_close(tokens, expected, 0.0, 0.0);
  require_close(gpu::unpatchify(tokens, patch, channel_major, shape), sdnq::test::widen(image), 0.0, 0.0);
}
