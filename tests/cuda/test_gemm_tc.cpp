// The tensor-core weight-only GEMM (repack + kernels) against x · Ŵᵀ + b computed in double on the
// CPU, Ŵ being the dense weight (incl. the SVD term) the test derived from the codes it packed itself
// (test_gemv_support.hpp's independent packer).
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_gemm_tc_support.hpp"
#include "cuda/test_gemv_support.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::cuda::CodeValue;

// Relative L2 error of the GPU result against the double reference; every element must be finite
// (y is NaN-poisoned before the launch).
template <class T>
double run_and_compare(const sdnq::test::RandomLinear& linear, std::int64_t tokens, bool with_bias,
                       std::uint64_t seed, bool tiled_small_m = false) {
  const auto result = sdnq::test::compare_repacked_gemm<T>(
      linear, tokens, with_bias, seed, [&](const auto& weights, sdnq::TensorView x, auto bias) {
        return sdnq::test::run_gemm_tc_kernel(weights, x, bias, tiled_small_m);
      });
  REQUIRE(result.non_finite == 0);  // every element written
  return result.relative_l2;
}

}  // namespace

TEST_CASE("gemm_tc: uint4 with zero points, groups 32/64/128, M from 16 to 1024", "[cuda][gemm_tc]") {
  const std::int64_t group = GENERATE(32, 64, 128);
  const std::int64_t tokens = GENERATE(16, 33, 128, 257, 1024);
  INFO("group " << group << ", tokens " << tokens);
  const auto linear =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 512, group, 0, 11);
  CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 12) <= 1e-2);
}

TEST_CASE("gemm_tc: fp16 activations, uint4 and signed int4", "[cuda][gemm_tc]") {
  const std::int64_t tokens = GENERATE(16, 33, 257);
  INFO("tokens " << tokens);
  const auto unsigned4 =
      sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 128, 384, 64, 0, 13);
  CHECK(run_and_compare<sdnq::fp16>(unsigned4, tokens, true, 14) <= 1e-2);
  const auto signed4 = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::signed_integer, 64, 256, 32, 0, 15);
  CHECK(run_and_compare<sdnq::fp16>(signed4, tokens, false, 16) <= 1e-2);
  const auto signed4_bf16 =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::signed_integer, 64, 256, 128, 0, 17);
  CHECK(run_and_compare<sdnq::bf16>(signed4_bf16, tokens, true, 18) <= 1e-2);
}

TEST_CASE("gemm_tc: int8 row-wise, grouped and transposed, uint8 tensor-wise", "[cuda][gemm_tc]") {
  const std::int64_t tokens = GENERATE(16, 33, 128, 1024);
  INFO("tokens " << tokens);
  SECTION("row-wise bf16") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 320, 384, -1, 0, 21);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 22) <= 1e-2);
  }
  SECTION("groups of 32 and 128, bf16 and fp16") {
    const auto g128 = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 64, 384, 128, 0, 23);
    CHECK(run_and_compare<sdnq::bf16>(g128, tokens, false, 24) <= 1e-2);
    const auto g32 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 128, 256, 32, 0, 25);
    CHECK(run_and_compare<sdnq::fp16>(g32, tokens, true, 26) <= 1e-2);
  }
  SECTION("transposed direct-matmul layout (fp16), uint8 tensor-wise with zero point") {
    const auto transposed =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 192, 256, -1, 0, 27, true);
    CHECK(run_and_compare<sdnq::fp16>(transposed, tokens, true, 28) <= 1e-2);
    const auto tensorwise =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::unsigned_integer, 128, 256, -2, 0, 29);
    CHECK(run_and_compare<sdnq::bf16>(tensorwise, tokens, true, 30) <= 1e-2);
  }
}

// M ≤ 16 runs the weight-streaming kernel: 32 output rows a block, 16 warps taking every 16th K tile
// through rings of 6 (uint4) or 3 (8-bit) stages. K = 64 leaves 15 warps without a tile; K = 130·64
// gives warps 0 and 1 nine tiles (the uint4 ring wraps) and the others eight; tokens 1..8 use one n8
// tile of x, 9..16 two. x is staged in shared memory for 1..8 tokens at every K here and for 9..16
// tokens of uint4 with K ≤ ~3600 (K = 64 and 1024, with a 4-stage ring); uint4 at K = 130·64 with 9..16
// tokens reads x from L2.
TEST_CASE("gemm_tc: the weight-streaming kernel, M from 1 to 16", "[cuda][gemm_tc][gemm_tc_stream]") {
  const std::int64_t tokens = GENERATE(1, 2, 7, 8, 9, 16);
  INFO("tokens " << tokens);
  SECTION("uint4 with zero points, groups 32/64/128, bf16") {
    for (const std::int64_t group : {32, 64, 128}) {
      INFO("group " << group);
      const auto linear =
          sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 130 * 64, group, 0, 100);
      CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 101) <= 1e-2);
    }
  }
  SECTION("signed int4 fp16, one K tile") {
    const auto wide = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::signed_integer, 128, 1024, 64, 0, 102);
    CHECK(run_and_compare<sdnq::fp16>(wide, tokens, false, 103) <= 1e-2);
    const auto one_tile = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::signed_integer, 64, 64, 32, 0, 104);
    CHECK(run_and_compare<sdnq::fp16>(one_tile, tokens, true, 105) <= 1e-2);
  }
  SECTION("int8 row-wise bf16, groups of 32 fp16, transposed fp16, uint8 tensor-wise") {
    const auto rowwise = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 320, 1216, -1, 0, 106);
    CHECK(run_and_compare<sdnq::bf16>(rowwise, tokens, true, 107) <= 1e-2);
    const auto g32 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 128, 256, 32, 0, 108);
    CHECK(run_and_compare<sdnq::fp16>(g32, tokens, true, 109) <= 1e-2);
    const auto transposed =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 192, 256, -1, 0, 110, true);
    CHECK(run_and_compare<sdnq::fp16>(transposed, tokens, false, 111) <= 1e-2);
    const auto tensorwise =
        sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::unsigned_integer, 128, 256, -2, 0, 112);
    CHECK(run_and_compare<sdnq::bf16>(tensorwise, tokens, true, 113) <= 1e-2);
  }
}

// The up-projection runs as rank/16 extra k-steps spread over the warps (rank 128: one per warp), behind
// the down-projection; the workspace (low_rank included) is NaN-poisoned, so reading it before the
// down-projection finished would show.
TEST_CASE("gemm_tc: the weight-streaming kernel's SVD branch, rank 16 to 128", "[cuda][gemm_tc][gemm_tc_stream]") {
  const std::int64_t rank = GENERATE(16, 32, 48, 128);
  const std::int64_t tokens = GENERATE(1, 9, 16);
  INFO("rank " << rank << ", tokens " << tokens);
  const auto uint4 =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 1024, 64, rank, 120);
  CHECK(run_and_compare<sdnq::bf16>(uint4, tokens, true, 121) <= 1e-2);
  const auto int8 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 128, 512, -1, rank, 122);
  CHECK(run_and_compare<sdnq::fp16>(int8, tokens, false, 123) <= 1e-2);
  // The 16×64 tile the streaming kernel replaced stays selectable.
  CHECK(run_and_compare<sdnq::bf16>(uint4, tokens, true, 124, true) <= 1e-2);
}

// The plan alone (host, no GPU): the streaming kernel's rings and sums need 136-152 KB of shared memory,
// which an H100 (227 KB) and an A100 (163 KB) give a block and sm_86/sm_89 (99 KB) do not; those, M > 16
// and K/64 ≥ 2^16 (the group index's limit) take the tiles.
TEST_CASE("gemm_tc: M <= 16 streams only where the shared memory and K allow it", "[cuda][gemm_tc][gemm_tc_stream]") {
  using sdnq::test::gemm_tc_plan_streams;
  for (const int bits : {4, 8}) {
    INFO("bits " << bits);
    CHECK(gemm_tc_plan_streams(bits, 1, 3072, 3072, 132, 9, 232448));   // H100
    CHECK(gemm_tc_plan_streams(bits, 16, 3072, 3072, 108, 8, 166912));  // A100
    CHECK_FALSE(gemm_tc_plan_streams(bits, 17, 3072, 3072, 132, 9, 232448));
    CHECK_FALSE(gemm_tc_plan_streams(bits, 1, 3072, 3072, 128, 8, 101376));  // RTX 4090
    CHECK_FALSE(gemm_tc_plan_streams(bits, 1, 3072, std::int64_t{64} << 16, 132, 9, 232448));
  }
}

// N = 8512 is 266 row blocks of 32: with at most one block an SM, every block of an H100 (132 SMs) runs
// two or three of them in turn, its warps' rings running on from one into the next. K = 1088 gives
// warp 0 two tiles and the others one; K = 256 leaves warps 4..15 without tiles.
TEST_CASE("gemm_tc: the weight-streaming kernel runs several row blocks in each block", "[cuda][gemm_tc][gemm_tc_stream]") {
  const std::int64_t tokens = GENERATE(1, 16);
  INFO("tokens " << tokens);
  const auto uint4 =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 8512, 1088, 64, 0, 130);
  CHECK(run_and_compare<sdnq::bf16>(uint4, tokens, true, 131) <= 1e-2);
  const auto uint4_svd =
      sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 8512, 256, 32, 32, 132);
  CHECK(run_and_compare<sdnq::fp16>(uint4_svd, tokens, false, 133) <= 1e-2);
  const auto int8_svd =
      sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 8512, 1088, -1, 16, 134);
  CHECK(run_and_compare<sdnq::bf16>(int8_svd, tokens, true, 135) <= 1e-2);
}

TEST_CASE("gemm_tc: the 128x128 tile on a wide weight", "[cuda][gemm_tc]") {
  // N = 2304: ceil(M/128)·(N/128) ≥ 132 SMs at M = 1024, so the large tile runs on an H100.
  const auto uint4 = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 2304, 256, 64, 32, 35);
  CHECK(run_and_compare<sdnq::bf16>(uint4, 1024, true, 36) <= 1e-2);
  CHECK(run_and_compare<sdnq::bf16>(uint4, 1000, false, 37) <= 1e-2);
  const auto int8 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 2304, 256, -1, 0, 38);
  CHECK(run_and_compare<sdnq::fp16>(int8, 1024, true, 39) <= 1e-2);
}

TEST_CASE("gemm_tc: the 128x256 tile on a wide weight and many rows", "[cuda][gemm_tc]") {
  // ceil(M/128)·(N/256) = 16·9 ≥ the SM count of an H100 (132) or an A100 (108): the 128x256 tile runs.
  const auto uint4 = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 2304, 256, 128, 16, 60);
  CHECK(run_and_compare<sdnq::bf16>(uint4, 2048, true, 61) <= 1e-2);
  const auto int8 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 2304, 192, 64, 0, 62);
  CHECK(run_and_compare<sdnq::fp16>(int8, 2000, true, 63) <= 1e-2);
}

// Ranks 16, 32 and 48 keep their width (the last SVD K tile is cut at 16, 32 or 48 columns), 40 runs
// as 48 with 8 zero columns; the down-projection's N is the padded rank, below its 64-wide tile.
TEST_CASE("gemm_tc: SVD branch of rank 0/16/32/40/48/128", "[cuda][gemm_tc]") {
  const std::int64_t rank = GENERATE(0, 16, 32, 40, 48, 128);
  const std::int64_t tokens = GENERATE(16, 33, 257);
  INFO("rank " << rank << ", tokens " << tokens);
  SECTION("uint4 g64 bf16") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 1024, 64, rank, 40);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 41) <= 1e-2);
  }
  SECTION("int8 row-wise fp16") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 128, 256, -1, rank, 42);
    CHECK(run_and_compare<sdnq::fp16>(linear, tokens, false, 43) <= 1e-2);
  }
}

// GPU-free: the repack keeps the SVD factors at the rank rounded up to 16 (rank 32 stays 32, 40 takes
// 48), zero-filled past r, so the factor bytes on the GPU are (N + K)·rp·2 instead of (N + K)·64·2 for
// rank 32; gemm_w8a8's factors (padded_svd_factors' default) keep the padding to 64.
TEST_CASE("gemm_tc: the repack pads the SVD rank to a multiple of 16 only", "[cuda][gemm_tc]") {
  const std::int64_t n = 192, k = 512;
  const std::pair<std::int64_t, std::int64_t> ranks[] = {{16, 16}, {32, 32}, {40, 48}, {48, 48}, {128, 128}};
  for (const auto& [rank, padded] : ranks) {
    INFO("rank " << rank);
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, n, k, 64, rank, 80 + rank);
    const auto repacked = sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes);
    CHECK(repacked.svd_rank == rank);
    CHECK(repacked.svd_rank_padded == padded);
    CHECK(repacked.svd_up.shape() == sdnq::Shape{n, padded});
    CHECK(repacked.svd_down.shape() == sdnq::Shape{padded, k});
    CHECK(repacked.svd_up.nbytes() + repacked.svd_down.nbytes() == static_cast<std::size_t>((n + k) * padded * 2));
    // The first r columns of svd_up and rows of svd_down are the factors (stored in bf16), the rest zeros.
    std::int64_t wrong = 0;
    const auto* up = repacked.svd_up.data_as<sdnq::bf16>();
    const auto* source_up = linear.svd_up.data_as<sdnq::bf16>();
    for (std::int64_t row = 0; row < n; ++row)
      for (std::int64_t r = 0; r < padded; ++r)
        wrong += up[row * padded + r].bits != (r < rank ? source_up[row * rank + r].bits : sdnq::bf16(0.0f).bits);
    const auto* down = repacked.svd_down.data_as<sdnq::bf16>();
    const auto* source_down = linear.svd_down.data_as<sdnq::bf16>();
    for (std::int64_t i = 0; i < padded * k; ++i)
      wrong += down[i].bits != (i < rank * k ? source_down[i].bits : sdnq::bf16(0.0f).bits);
    CHECK(wrong == 0);
    const auto w8a8 = sdnq::cuda::detail::padded_svd_factors<sdnq::bf16>(*linear.codes.svd_up, *linear.codes.svd_down);
    CHECK(w8a8.rank_padded == (rank + 63) / 64 * 64);
  }
  // FLUX.1's published rank 32: half of the former factor bytes.
  const auto flux_like = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, n, k, 64, 32, 90);
  const auto repacked = sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(flux_like.codes);
  CHECK(2 * (repacked.svd_up.nbytes() + repacked.svd_down.nbytes()) == static_cast<std::size_t>((n + k) * 64 * 2));
}

TEST_CASE("gemm_tc: unsupported weights are rejected before launch with what is required", "[cuda][gemm_tc]") {
  SECTION("out_features not a multiple of 64") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 100, 128, 64, 0, 50);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { (void)sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes); });
    CHECK(sdnq::test::contains(message, "multiples of 64"));
    CHECK(sdnq::test::contains(message, "test.linear"));
  }
  SECTION("in_features not a multiple of 64") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 64, 96, 32, 0, 51);
    CHECK_THROWS_AS(sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes), sdnq::UnsupportedError);
  }
  SECTION("group size 96") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 64, 192, 96, 0, 52);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { (void)sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes); });
    CHECK(sdnq::test::contains(message, "group size 32 or a multiple of 64"));
  }
  SECTION("3-bit codes and float codes") {
    const auto three = sdnq::test::make_random_linear<sdnq::bf16>(3, CodeValue::unsigned_integer, 64, 128, 64, 0, 53);
    CHECK_THROWS_AS(sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(three.codes), sdnq::UnsupportedError);
    const std::vector<float> table(16, 1.0f);
    const auto lookup =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::lookup, 64, 128, 64, 0, 54, false, &table);
    CHECK_THROWS_AS(sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(lookup.codes), sdnq::UnsupportedError);
  }
  SECTION("SVD rank above 128") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 64, 128, 64, 160, 55);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { (void)sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes); });
    CHECK(sdnq::test::contains(message, "rank 160"));
  }
  SECTION("x of the wrong width") {
    const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 64, 128, 64, 0, 56);
    const auto repacked = sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes);
    sdnq::Tensor x = sdnq::Tensor::zeros(sdnq::Shape{16, 64}, sdnq::DType::bf16);
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { (void)sdnq::test::run_gemm_tc_kernel(repacked, x, std::nullopt); });
    CHECK(sdnq::test::contains(message, "[M, 128]"));
  }
}
