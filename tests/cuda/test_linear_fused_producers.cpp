// The fused producers of issue #5 (cuda::ops::layer_norm_to_w8a8, layer_norm_modulate_to_w8a8,
// activation_to_w8a8, geglu_to_w8a8): the 8-bit codes and scales they write must be the bits of the
// unfused composition, the plain op writing bf16/fp16 rows and cuda::quantize_w8a8_activations
// quantizing them, for int8 and e4m3, F32 scales and scales in the activation dtype, bf16 and fp16, row
// lengths at and around the register-resident limits (norms: 4096 values, activations: 16384), odd row
// counts, all-zero rows and rows holding inf / NaN. Outputs are poisoned before every launch.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_linear_support.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::Shape;
using sdnq::Tensor;
using sdnq::test::FusedProducer;

const char* producer_name(FusedProducer producer) {
  switch (producer) {
    case FusedProducer::layer_norm:
      return "layer_norm";
    case FusedProducer::layer_norm_affine:
      return "layer_norm (weight, bias)";
    case FusedProducer::layer_norm_modulate:
      return "layer_norm_modulate";
    case FusedProducer::gelu_tanh:
      return "gelu_tanh";
    default:
      return "geglu";
  }
}

// Random values of T in [-scale, scale]; row 0 (when there are 3 rows or more) all zeros, row 1 holding
// an inf and row 2 a NaN (special_rows).
template <class T>
Tensor random_tensor(const Shape& shape, std::uint64_t seed, float scale, bool special_rows) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  Tensor t = Tensor::empty(shape, sdnq::dtype_of_v<T>);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<T>()[i] = T(dist(rng));
  const std::int64_t width = shape[shape.rank() - 1], rows = t.numel() / width;
  if (special_rows && rows >= 3) {
    for (std::int64_t i = 0; i < width; ++i) t.data_as<T>()[i] = T(0.0f);
    t.data_as<T>()[width + width / 3] = T(std::numeric_limits<float>::infinity());
    t.data_as<T>()[2 * width + width - 1] = T(std::numeric_limits<float>::quiet_NaN());
  }
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// Index of the first row whose codes or scale differ, or -1.
std::int64_t first_differing_row(const sdnq::test::FusedProducerRun& run) {
  const std::int64_t rows = run.fused_scale.numel(), dim = run.fused_codes.numel() / std::max<std::int64_t>(rows, 1);
  for (std::int64_t r = 0; r < rows; ++r) {
    const bool codes = std::memcmp(static_cast<const std::uint8_t*>(run.fused_codes.data()) + r * dim,
                                   static_cast<const std::uint8_t*>(run.plain_codes.data()) + r * dim, dim) == 0;
    const bool scale = std::memcmp(run.fused_scale.data_as<float>() + r, run.plain_scale.data_as<float>() + r, 4) == 0;
    if (!codes || !scale) return r;
  }
  return -1;
}

template <class T>
void check_producer(FusedProducer producer, std::int64_t rows, std::int64_t dim, std::uint64_t seed) {
  const bool norm = producer == FusedProducer::layer_norm || producer == FusedProducer::layer_norm_affine ||
                    producer == FusedProducer::layer_norm_modulate;
  // Norms on x [B, L, D] (B = 1 or 2 samples for the per-sample modulation), activations on [R, D] / [R, 2D].
  const std::int64_t batch = norm && rows % 2 == 0 ? 2 : 1;
  const Shape x_shape =
      norm ? Shape{batch, rows / batch, dim} : Shape{rows, producer == FusedProducer::geglu ? 2 * dim : dim};
  const Tensor x = random_tensor<T>(x_shape, seed, 3.0f, true);
  const Tensor weight = random_tensor<T>(Shape{dim}, seed + 1, 1.5f, false);
  const Tensor bias = random_tensor<T>(Shape{dim}, seed + 2, 0.5f, false);
  const Tensor emb = random_tensor<T>(Shape{batch, 2 * dim}, seed + 3, 1.0f, false);
  const sdnq::TensorView weight_view = weight, bias_view = bias, emb_view = emb;
  const bool affine = producer == FusedProducer::layer_norm_affine;
  for (const auto kind : {sdnq::cuda::W8A8Kind::int8, sdnq::cuda::W8A8Kind::float8_e4m3fn})
    for (const bool in_t : {false, true}) {
      INFO(producer_name(producer) << ", " << (std::is_same_v<T, sdnq::bf16> ? "bf16" : "fp16") << ", "
                                   << (kind == sdnq::cuda::W8A8Kind::int8 ? "int8" : "e4m3") << ", "
                                   << (in_t ? "scales in T" : "F32 scales") << ", rows " << rows << ", D " << dim);
      const sdnq::test::FusedProducerRun run = sdnq::test::run_fused_producer(
          producer, x, affine ? &weight_view : nullptr, affine ? &bias_view : nullptr,
          producer == FusedProducer::layer_norm_modulate ? &emb_view : nullptr, kind, in_t);
      INFO("first differing row " << first_differing_row(run));
      CHECK(same_bytes(run.fused_codes, run.plain_codes));
      CHECK(same_bytes(run.fused_scale, run.plain_scale));
      // The special rows did what they should: the zero row (no affine: zero rows out, scale 0) and the
      // rows holding inf / NaN (a NaN scale, codes 0) are among the rows compared above.
      if (rows >= 3 && !norm) {
        CHECK(std::isnan(run.fused_scale.data_as<float>()[2]));
        CHECK(run.fused_scale.data_as<float>()[0] == 0.0f);
      }
    }
}

}  // namespace

TEST_CASE("fused producers: LayerNorm (plain and affine) to 8-bit codes equals layer_norm then quantization",
          "[cuda][ops][linear][fused]") {
  // 4096 = 32 lanes × 16 words × 8: the largest row a warp keeps in registers; 4112 takes the re-reading kernel.
  const std::vector<std::int64_t> dims = {16, 48, 1024, 1280, 3072, 4080, 4096, 4112, 8192};
  const std::vector<std::int64_t> row_counts = {1, 7, 37, 130};
  std::uint64_t seed = 11;
  for (const std::int64_t dim : dims)
    for (const std::int64_t rows : row_counts) {
      if (dim >= 4096 && rows > 37) continue;  // keep the test short
      for (const auto producer : {FusedProducer::layer_norm, FusedProducer::layer_norm_affine}) {
        check_producer<sdnq::bf16>(producer, rows, dim, seed++);
        check_producer<sdnq::fp16>(producer, rows, dim, seed++);
      }
    }
}

TEST_CASE("fused producers: AdaLN (layer_norm_modulate) to 8-bit codes equals the op then quantization",
          "[cuda][ops][linear][fused]") {
  const std::vector<std::int64_t> dims = {16, 64, 1536, 2432, 3072, 4096, 4112};
  std::uint64_t seed = 1001;
  for (const std::int64_t dim : dims)
    for (const std::int64_t rows : {2, 9, 38, 130}) {
      check_producer<sdnq::bf16>(FusedProducer::layer_norm_modulate, rows, dim, seed++);
      check_producer<sdnq::fp16>(FusedProducer::layer_norm_modulate, rows, dim, seed++);
    }
}

TEST_CASE("fused producers: GELU (tanh) and GEGLU to 8-bit codes equal the op then quantization",
          "[cuda][ops][linear][fused]") {
  // 16384 = 128 threads × 16 words × 8: the largest row a block keeps in registers; 16400 takes the
  // warp-per-row kernel that computes every value twice. 2048, 4096, 8192: the 2-, 4- and 8-word variants.
  const std::vector<std::int64_t> dims = {16, 32, 1040, 2048, 4096, 5120, 8192, 12288, 16384, 16400};
  std::uint64_t seed = 2001;
  for (const std::int64_t dim : dims)
    for (const std::int64_t rows : {1, 5, 33}) {
      for (const auto producer : {FusedProducer::gelu_tanh, FusedProducer::geglu}) {
        check_producer<sdnq::bf16>(producer, rows, dim, seed++);
        check_producer<sdnq::fp16>(producer, rows, dim, seed++);
      }
    }
}

TEST_CASE("fused producers: bad views are refused before launching", "[cuda][ops][linear][fused]") {
  const auto message = [](const std::string& what, bool unsupported) {
    if (unsupported)
      return sdnq::test::message_of<sdnq::UnsupportedError>([&] { sdnq::test::run_fused_producer_misuse(what); });
    return sdnq::test::message_of<sdnq::ShapeError>([&] { sdnq::test::run_fused_producer_misuse(what); });
  };
  SECTION("a row length that is not a multiple of 16") {
    const std::string m = message("norm_dim_40", true);
    CHECK(sdnq::test::contains(m, "layer_norm_to_w8a8"));
    CHECK(sdnq::test::contains(m, "multiple of 16"));
  }
  SECTION("codes of the wrong shape") {
    const std::string m = message("norm_codes_shape", false);
    CHECK(sdnq::test::contains(m, "codes must be"));
    CHECK(sdnq::test::contains(m, "[6, 64]"));
  }
  SECTION("BF16 scales") { CHECK(sdnq::test::contains(message("norm_scale_dtype", false), "scale must be")); }
  SECTION("x not 16-byte aligned") { CHECK(sdnq::test::contains(message("norm_unaligned_x", true), "16-byte")); }
  SECTION("codes in host memory") { CHECK(sdnq::test::contains(message("norm_host_codes", false), "device")); }
  SECTION("activation_to_w8a8 on x of rank 3") {
    CHECK(sdnq::test::contains(message("gelu_rank3", false), "activation_to_w8a8: x must be [rows, C]"));
  }
  SECTION("geglu_to_w8a8 on an odd width") { CHECK(sdnq::test::contains(message("geglu_odd", false), "2N")); }
  SECTION("geglu_to_w8a8 with codes for another row count") {
    CHECK(sdnq::test::contains(message("geglu_codes_rows", false), "[4, 32]"));
  }
}
