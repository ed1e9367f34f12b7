#pragma once
// Weight-only GEMM for large M on Hopper (sm_90a):  y[M, N] = x[M, K] · dequant(W)ᵀ
// (+ (x·svd_downᵀ)·svd_upᵀ) (+ b), bf16/fp16 activations, uint4/int4 (grouped, zero point) and 8-bit
// weights in gemm_tc's repacked layout (the same GemmTcWeights, no second copy of the codes).
// The kernel (detail/weight_only_sm90_kernel.cuh) computes yᵀ = W·xᵀ on wgmma with the weight
// dequantized in registers as the A operand and x streamed by TMA, on a persistent grid (one block per
// SM walking the output tiles, whose outputs leave by TMA stores under the next tile's MMAs); the SVD
// branch is fused as extra K steps over low_rank = x·svd_downᵀ, which gemm_tc's dense tensor-core
// launch computes first into the workspace. Requirements as gemm_tc (N % 64, K % 64, group size 32 or
// a multiple of 64, rank padded to a multiple of 16 up to 128), contiguous 16-byte aligned x and y
// (TMA's), plus an sm_90a build running on a compute capability 9.x GPU; all checked before launch
// (UnsupportedError / ShapeError naming what is required).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/shared_memory_opt_in.cuh"
#include "sdnq/cuda/detail/weight_only_sm90_kernel.cuh"
#include "sdnq/cuda/detail/wgmma.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_tc.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN

// The grid of gemm_weight_only_sm90: one block per SM walking the output tiles, the tiles of a last
// partial wave split along K so that it fills the SMs (the default); the same without the split; or one
// block per output tile (the earlier launch). The last two are kept for comparison in tests and
// benchmarks; the split changes only the fp32 summation order of the split tiles.
enum class WeightOnlySm90Grid { persistent, persistent_whole_tiles, one_block_per_tile };

namespace kernel_detail {

// Stages as fit beside the 64 / 32 KB of output staging buffers (4 / 8 bits): 256 tokens 4 / 3 stages
// of 37 / 41 KB, 128 tokens 9 / 7 stages of 21 / 25 KB.
using WeightOnlySm90Tile256 = WeightOnlySm90Tile<256>;
using WeightOnlySm90Tile128 = WeightOnlySm90Tile<128>;
static_assert(WeightOnlySm90Tile256::stages<4>() == 4 && WeightOnlySm90Tile256::stages<8>() == 3 &&
              WeightOnlySm90Tile128::stages<4>() == 9 && WeightOnlySm90Tile128::stages<8>() == 7);

// 256 tokens a block unless the 128-token blocks take less time in all. A 128-token block does half
// the MMAs but the same dequantization of its 128 weight rows, so it takes about three quarters of a
// 256-token block's time (FLUX.1, M = 4608, N = 3072: 7 waves of 128-token blocks ran 1.3× slower
// than 4 waves of 256-token blocks would). The wave count decides: a last partial wave costs a whole one.
inline bool weight_only_sm90_wide(std::int64_t tokens, std::int64_t out_features, int multiprocessors) {
  const std::int64_t row_blocks = (out_features + 127) / 128;
  const std::int64_t waves256 = ((tokens + 255) / 256 * row_blocks + multiprocessors - 1) / multiprocessors;
  const std::int64_t waves128 = ((tokens + 127) / 128 * row_blocks + multiprocessors - 1) / multiprocessors;
  return 4 * waves256 <= 3 * waves128;
}

// A split tile's K chunk has at least this many K tiles (the ring fills and drains once a chunk).
inline constexpr int weight_only_sm90_min_chunk_k_tiles = 8;
inline constexpr int weight_only_sm90_max_splits = 8;

struct WeightOnlySm90Plan {
  bool wide = true;
  std::int64_t tiles = 0;          // output tiles of 128 weight rows × 256 or 128 tokens
  std::int64_t blocks = 0;         // the grid: min(work units, SMs) when persistent, else one block per tile
  WeightOnlySm90Split split;       // full_tiles / splits / chunk_k_tiles (pointers set at the call)
  KSplit down;                     // K split of x · svd_downᵀ (gemm_tc's dense launch)
  std::size_t low_rank_bytes = 0;  // T [M, rp]
  std::size_t partial_floats = 0;  // fp32 split-K partial sums of the down launch
  std::size_t split_floats = 0;    // fp32 sums of the split tiles' chunks [units][2][BN/2][128]
  std::size_t split_arrivals = 0;  // int counters [split tiles][2]
  static std::size_t align16(std::size_t bytes) { return (bytes + 15) / 16 * 16; }
  std::size_t partial_offset() const { return align16(low_rank_bytes); }
  std::size_t split_offset() const { return partial_offset() + align16(partial_floats * sizeof(float)); }
  std::size_t arrivals_offset() const { return split_offset() + split_floats * sizeof(float); }
  std::size_t workspace_bytes() const {
    const std::size_t end = arrivals_offset() + split_arrivals * sizeof(int);
    return low_rank_bytes + partial_floats + split_floats == 0 ? 0 : end;
  }
};

inline WeightOnlySm90Plan plan_weight_only_sm90(const GemmTcWeights& w, std::int64_t tokens, const GemmTcDevice& device,
                                                int tokens_per_block,
                                                WeightOnlySm90Grid grid = WeightOnlySm90Grid::persistent) {
  WeightOnlySm90Plan plan;
  plan.wide = tokens_per_block == 0 ? weight_only_sm90_wide(tokens, w.out_features, device.multiprocessors)
                                    : tokens_per_block == 256;
  const int tile_tokens = plan.wide ? 256 : 128;
  plan.tiles = (tokens + tile_tokens - 1) / tile_tokens * ((w.out_features + 127) / 128);
  const bool persistent = grid != WeightOnlySm90Grid::one_block_per_tile;
  plan.blocks = persistent ? std::min<std::int64_t>(plan.tiles, device.multiprocessors) : plan.tiles;
  plan.split.full_tiles = static_cast<int>(plan.tiles);
  if (grid == WeightOnlySm90Grid::persistent) {
    // The tiles past the last full wave of the SMs, split along K into as many chunks as fill the wave
    // (a 3.27-wave problem, e.g. FLUX's M = 4608, N = 3072, ran 4 waves: 18 % of the SMs idle).
    const std::int64_t sms = device.multiprocessors, full = plan.tiles / sms * sms, tail = plan.tiles - full;
    const int weight_k_tiles = static_cast<int>(w.in_features / 64);
    std::int64_t splits = tail > 0 ? sms / tail : 1;
    splits = std::min<std::int64_t>({splits, weight_k_tiles / weight_only_sm90_min_chunk_k_tiles,
                                      std::int64_t{weight_only_sm90_max_splits}});
    if (splits >= 2) {
      const int chunk = static_cast<int>((weight_k_tiles + splits - 1) / splits);
      plan.split.full_tiles = static_cast<int>(full);
      plan.split.splits = (weight_k_tiles + chunk - 1) / chunk;
      plan.split.chunk_k_tiles = chunk;
      const std::int64_t units = full + tail * plan.split.splits;
      plan.blocks = std::min<std::int64_t>(units, sms);
      plan.split_floats = static_cast<std::size_t>(tail * plan.split.splits) * 2 * (tile_tokens / 2) * 128;
      plan.split_arrivals = static_cast<std::size_t>(tail) * 2;
    }
  }
  if (w.svd_rank_padded > 0) {
    plan.down = svd_down_split(tokens, w.svd_rank_padded, w.in_features, device.multiprocessors);
    plan.low_rank_bytes = static_cast<std::size_t>(tokens * w.svd_rank_padded) * 2;
    if (plan.down.splits > 1)
      plan.partial_floats = static_cast<std::size_t>(plan.down.splits * tokens * w.svd_rank_padded);
  }
  return plan;
}

template <class T, int Bits, class Tile>
void launch_weight_only_sm90(const GemmTcParams& p, const CUtensorMap& x_map, const CUtensorMap& low_rank_map,
                             const CUtensorMap& y_map, const WeightOnlySm90Split& split, std::int64_t blocks,
                             cudaStream_t stream) {
  opt_in_shared_memory<gemm_weight_only_sm90_kernel<T, Bits, Tile>>(Tile::template shared_bytes<Bits>());
  gemm_weight_only_sm90_kernel<T, Bits, Tile>
      <<<static_cast<unsigned>(blocks), Tile::threads, Tile::template shared_bytes<Bits>(), stream>>>(
          p, x_map, low_rank_map, y_map, split);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void run_weight_only_sm90(const GemmTcWeights& w, const GemmTcParams& p, const WeightOnlySm90Plan& plan, float* partial,
                          cudaStream_t stream) {
  const int box = plan.wide ? 256 : 128;
  const CUtensorMap x_map = byte_matrix_tensor_map(p.a, p.m, std::int64_t{p.k} * 2, box, "x");
  // y's rows are tokens: a consumer's 64 weight rows are one 128-byte box column of box tokens.
  const CUtensorMap y_map = byte_matrix_tensor_map(p.y, p.m, std::int64_t{p.n} * 2, box, "y");
  CUtensorMap low_rank_map = x_map;
  if (w.svd_rank_padded > 0) {  // low_rank = x · svd_downᵀ first, by gemm_tc's dense tensor-core launch
    launch_svd_down<T>(p.a, w.svd_down, const_cast<void*>(p.low_rank), partial, p.m, p.rank_padded, p.k, plan.down,
                       stream);
    // [M, rp] with rows of rp · 2 bytes (a multiple of 32): the 128-byte box of the last SVD tile
    // reaches past rp, and TMA fills those columns with zeros.
    low_rank_map = byte_matrix_tensor_map(p.low_rank, p.m, std::int64_t{p.rank_padded} * 2, box, "low_rank");
  }
  const auto launch = [&](auto bits) {
    constexpr int Bits = decltype(bits)::value;
    if (plan.wide)
      launch_weight_only_sm90<T, Bits, WeightOnlySm90Tile256>(p, x_map, low_rank_map, y_map, plan.split, plan.blocks,
                                                              stream);
    else
      launch_weight_only_sm90<T, Bits, WeightOnlySm90Tile128>(p, x_map, low_rank_map, y_map, plan.split, plan.blocks,
                                                              stream);
  };
  if (w.bits == 4)
    launch(std::integral_constant<int, 4>{});
  else
    launch(std::integral_constant<int, 8>{});
}

}  // namespace kernel_detail

// Whether gemm_weight_only_sm90 runs on `device`: this build has sm_90a code and the GPU is a 9.x.
inline bool weight_only_sm90_supported(int device) { return kernel_detail::has_sm90a_code(device); }

// Device workspace gemm_weight_only_sm90() needs for M rows of x (the low-rank product and its split-K
// partial sums); 0 without SVD.
// The most any token tile and grid choice of a call needs, so that forcing one (tokens_per_block, grid)
// never needs more than this.
inline std::size_t gemm_weight_only_sm90_workspace_bytes(const GemmTcWeights& w, std::int64_t tokens) {
  const GemmTcDevice device = current_gemm_tc_device();
  std::size_t bytes = 0;
  for (const int tokens_per_block : {128, 256})
    bytes = std::max(bytes, kernel_detail::plan_weight_only_sm90(w, tokens, device, tokens_per_block).workspace_bytes());
  return bytes;
}

// y = x · dequant(W)ᵀ (+ SVD branch) (+ bias). x [M, K], y [M, N], bias [N]: device, contiguous, in
// w.dtype, 16-byte aligned. `workspace`: at least gemm_weight_only_sm90_workspace_bytes(w, M) bytes of
// device memory (empty is fine when that is 0). `tokens_per_block`: 128 or 256 forces the block's
// token tile (tests, benchmarks); 0 chooses by the number of waves. `grid`: one block per SM (default)
// or one per output tile (comparisons).
inline void gemm_weight_only_sm90(const GemmTcWeights& w, TensorView x, std::optional<TensorView> bias, TensorView y,
                                  TensorView workspace, cudaStream_t stream = nullptr, int tokens_per_block = 0,
                                  WeightOnlySm90Grid grid = WeightOnlySm90Grid::persistent) {
  SDNQ_REQUIRE((w.bits == 4 || w.bits == 8) && w.codes != nullptr && w.group_params != nullptr, UnsupportedError,
               "gemm_weight_only_sm90: weights must be repacked 4- or 8-bit codes (repack_for_gemm_tc), got {} bits",
               w.bits);
  SDNQ_REQUIRE(w.dtype == DType::bf16 || w.dtype == DType::f16, UnsupportedError,
               "gemm_weight_only_sm90: activations must be BF16 or F16, weights were repacked for {}",
               dtype_name(w.dtype));
  SDNQ_REQUIRE(w.out_features > 0 && w.out_features % 64 == 0 && w.in_features > 0 && w.in_features % 64 == 0 &&
                   w.out_features < (std::int64_t{1} << 30) && w.in_features < (std::int64_t{1} << 30),
               UnsupportedError, "gemm_weight_only_sm90: needs N % 64 == 0 and K % 64 == 0, got weight [{}, {}]",
               w.out_features, w.in_features);
  SDNQ_REQUIRE(w.group_size > 0 && w.in_features % w.group_size == 0 && (w.group_size == 32 || w.group_size % 64 == 0),
               UnsupportedError,
               "gemm_weight_only_sm90: group size must be 32 or a multiple of 64 dividing K = {}, got {}",
               w.in_features, w.group_size);
  SDNQ_REQUIRE(w.svd_rank_padded >= 0 && w.svd_rank_padded % gemm_tc_rank_granule == 0 &&
                   w.svd_rank_padded <= gemm_tc_max_rank &&
                   (w.svd_rank_padded == 0 || (w.svd_up != nullptr && w.svd_down != nullptr)),
               UnsupportedError,
               "gemm_weight_only_sm90: SVD factors must be padded to a multiple of {} up to {}, got {}",
               gemm_tc_rank_granule, gemm_tc_max_rank, w.svd_rank_padded);
  SDNQ_REQUIRE(
      x.rank() == 2 && x.size(1) == w.in_features && x.dtype() == w.dtype && x.is_contiguous() && x.device().is_cuda(),
      ShapeError, "gemm_weight_only_sm90: x must be a contiguous device {} tensor [M, {}], got {} {} on {}",
      dtype_name(w.dtype), w.in_features, dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  const std::int64_t tokens = x.size(0);
  // Output tile indices and TMA coordinates are 32-bit in the kernel (index + gridDim.x included); the
  // SVD pre-pass (gemm_tc's dense launch) has gridDim.y ≤ 65535 tiles of 64 tokens.
  constexpr std::int64_t max_tiles = std::int64_t{1} << 30;
  const std::int64_t max_tokens = w.svd_rank_padded > 0 ? std::int64_t{65535} * 64 : max_tiles;
  SDNQ_REQUIRE(tokens >= 1 && tokens <= max_tokens, UnsupportedError,
               "gemm_weight_only_sm90: {} rows of x; 1..{} supported", tokens, max_tokens);
  SDNQ_REQUIRE((tokens + 127) / 128 * ((w.out_features + 127) / 128) <= max_tiles, UnsupportedError,
               "gemm_weight_only_sm90: M = {} by N = {} makes more than {} output tiles; split x", tokens,
               w.out_features, max_tiles);
  SDNQ_REQUIRE(y.rank() == 2 && y.size(0) == tokens && y.size(1) == w.out_features && y.dtype() == w.dtype &&
                   y.is_contiguous() && y.device().is_cuda(),
               ShapeError, "gemm_weight_only_sm90: y must be a contiguous device {} tensor [{}, {}], got {} {}",
               dtype_name(w.dtype), tokens, w.out_features, dtype_name(y.dtype()), y.shape().to_string());
  if (bias)
    SDNQ_REQUIRE(bias->numel() == w.out_features && bias->dtype() == w.dtype && bias->is_contiguous() &&
                     bias->device().is_cuda(),
                 ShapeError, "gemm_weight_only_sm90: bias must be a contiguous device {} tensor [{}], got {} {}",
                 dtype_name(w.dtype), w.out_features, dtype_name(bias->dtype()), bias->shape().to_string());
  const auto aligned = [](const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; };
  SDNQ_REQUIRE(aligned(x.data()) && aligned(y.data()) && aligned(w.codes) && aligned(w.group_params) &&
                   (w.svd_rank_padded == 0 || (aligned(w.svd_up) && aligned(w.svd_down))),
               ShapeError,
               "gemm_weight_only_sm90: x, y, codes, group parameters and SVD factors need 16-byte alignment (x and y "
               "are read and written by TMA)");
  SDNQ_REQUIRE(tokens_per_block == 0 || tokens_per_block == 128 || tokens_per_block == 256, UnsupportedError,
               "gemm_weight_only_sm90: tokens_per_block must be 0 (automatic), 128 or 256, got {}", tokens_per_block);
  const int device = x.device().index;
  SDNQ_REQUIRE(weight_only_sm90_supported(device), UnsupportedError,
               "gemm_weight_only_sm90: needs an sm_90a build running on a Hopper GPU (device {})", device);
  const kernel_detail::WeightOnlySm90Plan plan =
      kernel_detail::plan_weight_only_sm90(w, tokens, current_gemm_tc_device(), tokens_per_block, grid);
  // The kernel counts the K tiles of all of a block's output tiles in 32 bits (the ring's stage and phase);
  // a split tile's chunk adds at most one tile's worth.
  const std::int64_t block_k_tiles =
      ((plan.tiles + plan.blocks - 1) / plan.blocks + 1) * (w.in_features / 64 + (w.svd_rank_padded + 63) / 64);
  SDNQ_REQUIRE(block_k_tiles < (std::int64_t{1} << 31), UnsupportedError,
               "gemm_weight_only_sm90: M = {}, N = {}, K = {} gives a block {} K tiles, more than 2^31; split x",
               tokens, w.out_features, w.in_features, block_k_tiles);
  const std::size_t workspace_bytes = plan.workspace_bytes();
  SDNQ_REQUIRE(workspace_bytes == 0 ||
                   (workspace.nbytes() >= workspace_bytes && workspace.device().is_cuda() && aligned(workspace.data())),
               ShapeError, "gemm_weight_only_sm90: needs {} bytes of 16-byte aligned device workspace, got {}",
               workspace_bytes, workspace.nbytes());

  kernel_detail::GemmTcParams params =
      kernel_detail::gemm_tc_params(w, x.data(), bias ? bias->data() : nullptr, y.data(), tokens);
  auto* workspace_begin = static_cast<char*>(workspace.data());
  params.low_rank = plan.low_rank_bytes > 0 ? workspace_begin : nullptr;
  float* partial =
      plan.partial_floats > 0 ? reinterpret_cast<float*>(workspace_begin + plan.partial_offset()) : nullptr;
  kernel_detail::WeightOnlySm90Plan launch_plan = plan;
  if (plan.split_floats > 0) {
    launch_plan.split.partial = reinterpret_cast<float*>(workspace_begin + plan.split_offset());
    launch_plan.split.arrivals = reinterpret_cast<int*>(workspace_begin + plan.arrivals_offset());
    SDNQ_CUDA_CHECK(cudaMemsetAsync(launch_plan.split.arrivals, 0, plan.split_arrivals * sizeof(int), stream));
  }
  if (w.dtype == DType::bf16)
    kernel_detail::run_weight_only_sm90<__nv_bfloat16>(w, params, launch_plan, partial, stream);
  else
    kernel_detail::run_weight_only_sm90<__half>(w, params, launch_plan, partial, stream);
}

SDNQ_KERNEL_NAMESPACE_END
