// The Hopper wgmma weight-only GEMM (gemm_weight_only_sm90.cuh, gemm_tc's repacked layout) against
// x · Ŵᵀ + b computed in double on the CPU, Ŵ being the dense weight (SVD term included) derived from
// the codes test_gemv_support.hpp's independent packer produced. Relative L2 ≤ 1e-2; y is NaN-poisoned
// before the launch, so every element must come back finite, and it lies inside a larger poisoned
// buffer whose guard rows must stay untouched (TMA stores clip tokens past M). The persistent grid
// must agree bit for bit with one block per output tile. Without an sm_90a build on a Hopper GPU the
// call must refuse with a clear error (checked) and the numeric cases are skipped.
#include <cstdint>
#include <optional>
#include <vector>

#include "cuda/cuda_test_support.hpp"
#include "cuda/test_gemm_tc_support.hpp"
#include "cuda/test_gemm_weight_only_sm90_support.hpp"
#include "cuda/test_gemv_support.hpp"
#include "sdnq_catch.hpp"

namespace {

using sdnq::cuda::CodeValue;

template <class T>
double run_and_compare(const sdnq::test::RandomLinear& linear, std::int64_t tokens, bool with_bias, std::uint64_t seed,
                       int tokens_per_block = 0) {
  std::int64_t guard_writes = 0;
  const auto run = [&](const sdnq::cuda::GemmTcWeightsHost& weights, sdnq::TensorView x,
                       std::optional<sdnq::TensorView> bias) {
    auto out = sdnq::test::run_gemm_weight_only_sm90_guarded(weights, x, bias, {tokens_per_block, false});
    guard_writes = out.guard_writes;
    return std::move(out.y);
  };
  const auto result = sdnq::test::compare_repacked_gemm<T>(linear, tokens, with_bias, seed, run);
  REQUIRE(result.non_finite == 0);  // every element written
  REQUIRE(guard_writes == 0);       // and nothing outside y
  return result.relative_l2;
}

// Both grids on the same input: each must write all of y and nothing around it, and they must agree bit
// for bit (a tile's outputs may depend neither on the block that computes it nor on that block's
// earlier tiles: ring phases, staging buffer reuse).
template <class T>
double run_both_grids_and_compare(const sdnq::test::RandomLinear& linear, std::int64_t tokens, bool with_bias,
                                  std::uint64_t seed, int tokens_per_block) {
  std::int64_t guard_writes = 0, differing = 0;
  const auto run = [&](const sdnq::cuda::GemmTcWeightsHost& weights, sdnq::TensorView x,
                       std::optional<sdnq::TensorView> bias) {
    auto persistent = sdnq::test::run_gemm_weight_only_sm90_guarded(weights, x, bias, {tokens_per_block, false});
    const auto per_tile = sdnq::test::run_gemm_weight_only_sm90_guarded(weights, x, bias, {tokens_per_block, true});
    guard_writes = persistent.guard_writes + per_tile.guard_writes;
    const auto* a = static_cast<const std::uint16_t*>(persistent.y.data());
    const auto* b = static_cast<const std::uint16_t*>(per_tile.y.data());
    for (std::int64_t i = 0; i < persistent.y.numel(); ++i) differing += a[i] != b[i];
    return std::move(persistent.y);
  };
  const auto result = sdnq::test::compare_repacked_gemm<T>(linear, tokens, with_bias, seed, run);
  REQUIRE(result.non_finite == 0);
  REQUIRE(guard_writes == 0);
  REQUIRE(differing == 0);
  return result.relative_l2;
}

// The default grid, whose last partial wave runs split along K (2 chunks for the shapes used), against
// the reference and against the whole-tile persistent grid: apart only by the split tiles' fp32 summation
// order, i.e. at most an output rounding in some elements.
template <class T>
double run_split_and_compare(const sdnq::test::RandomLinear& linear, bool with_bias, std::uint64_t seed) {
  constexpr std::int64_t tokens = 4196;
  REQUIRE(sdnq::test::weight_only_sm90_splits(sdnq::cuda::repack_for_gemm_tc<T>(linear.codes), tokens, 256) == 2);
  std::int64_t guard_writes = 0;
  double split_vs_whole = 0.0;
  const auto run = [&](const sdnq::cuda::GemmTcWeightsHost& weights, sdnq::TensorView x,
                       std::optional<sdnq::TensorView> bias) {
    auto split = sdnq::test::run_gemm_weight_only_sm90_guarded(weights, x, bias, {256, false, false});
    const auto whole = sdnq::test::run_gemm_weight_only_sm90_guarded(weights, x, bias, {256, false, true});
    guard_writes = split.guard_writes + whole.guard_writes;
    std::vector<double> a(static_cast<std::size_t>(split.y.numel())), b(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      a[i] = split.y.data_as<T>()[i].to_float();
      b[i] = whole.y.data_as<T>()[i].to_float();
    }
    split_vs_whole = sdnq::test::relative_l2(a, b);
    return std::move(split.y);
  };
  const auto result = sdnq::test::compare_repacked_gemm<T>(linear, tokens, with_bias, seed, run);
  REQUIRE(result.non_finite == 0);
  REQUIRE(guard_writes == 0);
  CHECK(split_vs_whole <= 4e-3);
  return result.relative_l2;
}

// Catch2 v2 (CI) has no SKIP: warn and leave the case.
#define SDNQ_REQUIRE_WO_SM90()                                                   \
  if (!sdnq::test::weight_only_sm90_runs()) {                                    \
    WARN("skipped: the wgmma weight-only GEMM needs an sm_90a build on Hopper"); \
    return;                                                                      \
  }

}  // namespace

TEST_CASE("wo_sm90: uint4 with zero points, groups 32/64/128, odd M", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  const std::int64_t group = GENERATE(32, 64, 128);
  const std::int64_t tokens = GENERATE(1, 7, 129, 256, 333);
  const int block = GENERATE(128, 256);
  INFO("group " << group << ", tokens " << tokens << ", tokens per block " << block);
  // N = 192: the second consumer warpgroup of the last row block lies past N.
  const auto linear =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 512, group, 0, 11);
  CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 12, block) <= 1e-2);
}

TEST_CASE("wo_sm90: fp16 activations, uint4 and signed int4", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  const std::int64_t tokens = GENERATE(5, 200, 300);
  INFO("tokens " << tokens);
  const auto unsigned4 =
      sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 128, 384, 64, 0, 13);
  CHECK(run_and_compare<sdnq::fp16>(unsigned4, tokens, true, 14) <= 1e-2);
  const auto signed4 = sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::signed_integer, 64, 256, 128, 0, 15);
  CHECK(run_and_compare<sdnq::fp16>(signed4, tokens, false, 16) <= 1e-2);
  const auto signed4_bf16 =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::signed_integer, 320, 256, 128, 0, 17);
  CHECK(run_and_compare<sdnq::bf16>(signed4_bf16, tokens, true, 18, 256) <= 1e-2);
}

TEST_CASE("wo_sm90: int8 row-wise and grouped, uint8 tensor-wise, bf16 and fp16", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  const std::int64_t tokens = GENERATE(3, 257, 700);
  INFO("tokens " << tokens);
  const auto rowwise = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 320, 384, -1, 0, 21);
  CHECK(run_and_compare<sdnq::bf16>(rowwise, tokens, true, 22) <= 1e-2);
  CHECK(run_and_compare<sdnq::bf16>(rowwise, tokens, true, 22, 256) <= 1e-2);
  const auto g128 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 192, 384, 128, 0, 23);
  CHECK(run_and_compare<sdnq::fp16>(g128, tokens, false, 24) <= 1e-2);
  const auto g32 = sdnq::test::make_random_linear<sdnq::bf16>(8, CodeValue::signed_integer, 128, 256, 32, 0, 25);
  CHECK(run_and_compare<sdnq::bf16>(g32, tokens, true, 26, 256) <= 1e-2);
  const auto tensorwise =
      sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::unsigned_integer, 128, 256, -2, 0, 29);
  CHECK(run_and_compare<sdnq::fp16>(tensorwise, tokens, true, 30) <= 1e-2);
}

TEST_CASE("wo_sm90: automatic block choice on a FLUX-like shape", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  // M = 2000, N = 3072: several waves of blocks, the automatic choice decides the token tile.
  const auto uint4 = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 3072, 128, 128, 32, 60);
  CHECK(run_and_compare<sdnq::bf16>(uint4, 2000, true, 61) <= 1e-2);
  const auto int8 = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 3072, 128, -1, 0, 62);
  CHECK(run_and_compare<sdnq::fp16>(int8, 2000, true, 63) <= 1e-2);
}

// Ranks 16, 32, 48: the last SVD K tile's TMA box reaches past low_rank's rp columns (zero-filled) and
// its k16 steps past rp take zero svd_up fragments; 40 runs as 48 with 8 zero columns.
TEST_CASE("wo_sm90: SVD branch of rank 0/16/32/40/48/128", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  const std::int64_t rank = GENERATE(0, 16, 32, 40, 48, 128);
  const std::int64_t tokens = GENERATE(17, 257, 520);
  INFO("rank " << rank << ", tokens " << tokens);
  SECTION("uint4 g64 bf16") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 192, 1024, 64, rank, 40);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 41) <= 1e-2);
    CHECK(run_and_compare<sdnq::bf16>(linear, tokens, true, 41, 256) <= 1e-2);
  }
  SECTION("int8 row-wise fp16") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 128, 256, -1, rank, 42);
    CHECK(run_and_compare<sdnq::fp16>(linear, tokens, false, 43) <= 1e-2);
  }
}

// N = 2112 (16.5 row blocks: the second consumer of every 17th tile lies past N) by 4196 tokens (the
// last token tile partial for 128 and 256): 561 / 289 output tiles, so on an H100 (132 SMs) each
// persistent block walks 2-5 tiles whose consumers alternate between active and idle. K = 192: three
// K tiles (odd, so the A-register double buffer ends a tile on the other set), plus 1-2 SVD tiles;
// with 4-9 stages the ring's phases wrap within and across tiles.
TEST_CASE("wo_sm90: persistent grid over more tiles than SMs, bf16 uint4 g64", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  const int block = GENERATE(128, 256);
  // (SVD rank, bias): (0, yes), (0, no), (32, yes), (128, no), (48, no): rank 48 is one partial SVD tile.
  const int variant = GENERATE(0, 1, 2, 3, 4);
  const std::int64_t rank = variant < 2 ? 0 : variant == 2 ? 32 : variant == 3 ? 128 : 48;
  const bool with_bias = variant % 2 == 0;
  INFO("tokens per block " << block << ", rank " << rank << ", bias " << with_bias);
  const auto linear =
      sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 2112, 192, 64, rank, 70);
  CHECK(run_both_grids_and_compare<sdnq::bf16>(linear, 4196, with_bias, 71, block) <= 1e-2);
}

TEST_CASE("wo_sm90: persistent grid over more tiles than SMs, fp16 int8 and uint4 g32", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  SECTION("int8 row-wise with SVD rank 128 and bias, automatic token tile") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 2112, 192, -1, 128, 72);
    CHECK(run_both_grids_and_compare<sdnq::fp16>(linear, 4196, true, 73, 0) <= 1e-2);
  }
  SECTION("uint4 g32 (two groups a K tile) without bias, 256 tokens a tile") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::fp16>(4, CodeValue::unsigned_integer, 2112, 192, 32, 0, 74);
    CHECK(run_both_grids_and_compare<sdnq::fp16>(linear, 4196, false, 75, 256) <= 1e-2);
  }
  SECTION("int8 row-wise, 128 tokens a tile, tokens a multiple of the tile") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 2048, 128, -1, 0, 76);
    CHECK(run_both_grids_and_compare<sdnq::fp16>(linear, 4096, true, 77, 128) <= 1e-2);
  }
}

// N = 1088 (8.5 row blocks: the second consumer of the last row block lies past N) by 4196 tokens: 153
// tiles of 256 tokens, so on an H100 (132 SMs) the 21 tiles past the first wave run as K chunks; K =
// 1024 (16 K tiles) gives 2 chunks of 8, the last with the SVD tiles. The split must agree with the
// whole-tile persistent grid up to the fp32 summation order of those tiles, and with the reference.
TEST_CASE("wo_sm90: the tiles of the last partial wave split along K", "[cuda][wo_sm90]") {
  SDNQ_REQUIRE_WO_SM90()
  SECTION("uint4 g64 bf16 with bias") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 1088, 1024, 64, 0, 80);
    CHECK(run_split_and_compare<sdnq::bf16>(linear, true, 81) <= 1e-2);
  }
  SECTION("uint4 g128 bf16 with SVD rank 32") {
    const auto linear =
        sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 1088, 1024, 128, 32, 82);
    CHECK(run_split_and_compare<sdnq::bf16>(linear, false, 83) <= 1e-2);
  }
  SECTION("int8 row-wise fp16 with SVD rank 48 and bias") {
    const auto linear = sdnq::test::make_random_linear<sdnq::fp16>(8, CodeValue::signed_integer, 1088, 1024, -1, 48, 84);
    CHECK(run_split_and_compare<sdnq::fp16>(linear, true, 85) <= 1e-2);
  }
}

TEST_CASE("wo_sm90: bad input is rejected before launch with what is required", "[cuda][wo_sm90]") {
  const auto linear = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 64, 128, 64, 0, 56);
  const auto repacked = sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(linear.codes);
  if (!sdnq::test::weight_only_sm90_runs()) {
    sdnq::Tensor x = sdnq::Tensor::zeros(sdnq::Shape{16, 128}, sdnq::DType::bf16);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { (void)sdnq::test::run_gemm_weight_only_sm90(repacked, x, std::nullopt); });
    CHECK(sdnq::test::contains(message, "sm_90a"));
    return;
  }
  SECTION("x of the wrong width") {
    sdnq::Tensor x = sdnq::Tensor::zeros(sdnq::Shape{16, 64}, sdnq::DType::bf16);
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { (void)sdnq::test::run_gemm_weight_only_sm90(repacked, x, std::nullopt); });
    CHECK(sdnq::test::contains(message, "[M, 128]"));
  }
  SECTION("x in fp16 for bf16 weights") {
    sdnq::Tensor x = sdnq::Tensor::zeros(sdnq::Shape{16, 128}, sdnq::DType::f16);
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { (void)sdnq::test::run_gemm_weight_only_sm90(repacked, x, std::nullopt); });
    CHECK(sdnq::test::contains(message, "BF16"));
  }
  SECTION("bias of the wrong length") {
    sdnq::Tensor x = sdnq::Tensor::zeros(sdnq::Shape{16, 128}, sdnq::DType::bf16);
    sdnq::Tensor bias = sdnq::Tensor::zeros(sdnq::Shape{32}, sdnq::DType::bf16);
    const auto message = sdnq::test::message_of<sdnq::ShapeError>(
        [&] { (void)sdnq::test::run_gemm_weight_only_sm90(repacked, x, sdnq::TensorView(bias)); });
    CHECK(sdnq::test::contains(message, "bias"));
  }
  SECTION("a token tile other than 128 or 256") {
    sdnq::Tensor x = sdnq::Tensor::zeros(sdnq::Shape{16, 128}, sdnq::DType::bf16);
    const auto message = sdnq::test::message_of<sdnq::UnsupportedError>(
        [&] { (void)sdnq::test::run_gemm_weight_only_sm90(repacked, x, std::nullopt, 64); });
    CHECK(sdnq::test::contains(message, "tokens_per_block"));
  }
  SECTION("N not a multiple of 64 (the repack refuses it)") {
    const auto odd = sdnq::test::make_random_linear<sdnq::bf16>(4, CodeValue::unsigned_integer, 100, 128, 64, 0, 57);
    CHECK_THROWS_AS(sdnq::cuda::repack_for_gemm_tc<sdnq::bf16>(odd.codes), sdnq::UnsupportedError);
  }
}
