#pragma once
// 8-bit tensor-core GEMM for SDNQ's quantized matmul (sdnq-format.md §5.1) with per-token
// activation quantization:
//   y[M, N] = (Σ_k xq[m, k]·wq[n, k]) · s_x[m] · s_w[n] (+ bias[n])      in fp32, rounded once to T
// Two entry points, the same bits:
// - gemm_w8a8(w, x, ...): x [M, K] bf16/fp16 is quantized by the GEMM kernel itself: each row once, by
//   the first blocks that need it (detail/w8a8_quantize.cuh), into a workspace the main loop reads as
//   8-bit codes; no separate launch over the activations.
// - quantize_w8a8_activations(w, x, buffer) once, then gemm_w8a8(w_i, activations, ...) for every
//   weight that reads the same x (q/k/v, FLUX's proj_mlp; w8a8_activations_fit says which): one
//   memory-bound pass over x, and GEMMs on the codes with no prologue and no counters
//   (W8A8Params::codes_ready). Bit-identical to the fused call on the same x.
// Weights: int8 (int32 accumulation, exact) or float8_e4m3fn (fp32 accumulation, promoted every 128
// inputs, on the Hopper kernel every 512 or 256: e4m3_promotion_tiles) from an SDNQ checkpoint,
// repacked at load time by detail/w8a8_repack.hpp; weights the reference re-quantizes per call (W4A8: uint4 g64 + SVD
// and friends) re-quantized once at load (repack_operand_for_w8a8). An SVD branch (int8, Hopper): low_rank =
// x·svd_downᵀ by gemm_tc's dense launch first (or, forced only, inside the quantization pass:
// detail/w8a8_low_rank.cuh), then, once an output tile's int32 sums are scaled into fp32 outputs with their bias,
// low_rank·svd_upᵀ accumulated onto them on the tensor cores as extra stages of the GEMM, only the ranks the tile's
// columns have (a joined layer's part table, the true rank). §5.1 step 3 computes bias' = bias + low-rank term first;
// here low_rank is rounded to T where the reference keeps it in fp32 and the low-rank term is added in
// fp32 after the scaling, also where the reference rounds bias' to T
// (dequantize_fp32 = false): relative L2 ≤ 1e-2, not bit-exact. mma.sync m16n8k32
// on sm_80+ (int8) and sm_89+ (e4m3) (detail/w8a8_kernel.cuh), used for M ≤ 32 everywhere and for all
// M off Hopper; on Hopper with an sm_90a build and M > 32: a warp-specialized persistent kernel
// (detail/w8a8_tma.cuh) with a TMA producer warp, an mbarrier-guarded shared-memory ring, two wgmma
// consumer warpgroups and spare producer warps quantizing later tiles' activation rows ahead (int8
// 128×256 / 128×128, e4m3 128×192 / 128×128 with fp32 promotion every 256 / 512 inputs: relative L2
// error ≤ 1e-2 instead of bit-exact).
// Measured on the H100 (bench/cuda/bench_w8a8.cu, docs/benchmarks.md session 7), M = 4096, FLUX
// shapes, on codes quantized beforehand: int8 1.71-2.00x cuBLAS bf16 (cuBLASLt's bare int8 GEMM:
// 1.79-2.01x), e4m3 1.23-1.35x (session 16, H200: 1.39-1.50x with runs of K tiles between promotions
// and the 128×192 tile); with the quantization fused into the GEMM: int8 1.11-1.70x. W4A8
// with SVD r32 on codes (session 14, H200): 1.31-1.67x, the SVD stages on the 128×256 tiles. The
// fused quantization is latency-bound (warps reading x while the GEMM waits), so nn::gpu::Linear
// always quantizes in its own pass and sibling GEMMs share one quantization. The TMA kernel's
// epilogue stages the output tile and writes it with TMA stores that drain under the next tile's MMAs:
// at the SDXL UNet's K = 640-1280 shapes that made the GEMM on codes 1.2-2.1x faster than direct
// stores from the consumers.
// Clusters of 2 sharing B by TMA multicast were measured 1.5-2x slower in two attempts and are not
// shipped.
// Numerics equal the CPU reference (quant/activation_quant.hpp, quant/detail/layers_qmm.hpp): same
// scale formula, IEEE division, round-half-even, clamps; all-zero rows give exact zeros (+ bias) and
// a row holding NaN/inf only affects its own outputs. Kernel: detail/w8a8_kernel.cuh.
// Requirements (checked before launch): K % 16 == 0; any M ≥ 1 and N ≥ 1.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <optional>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/shared_memory_opt_in.cuh"
#include "sdnq/cuda/detail/w8a8_kernel.cuh"
#include "sdnq/cuda/detail/w8a8_low_rank.cuh"
#include "sdnq/cuda/detail/w8a8_repack.hpp"
#include "sdnq/cuda/detail/w8a8_tma.cuh"
#include "sdnq/cuda/detail/w8a8_wgmma.cuh"
#include "sdnq/cuda/detail/wgmma.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_tc.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN

// Device view of repacked weights.
struct W8A8Weights {
  W8A8Kind kind = W8A8Kind::int8;
  std::int64_t out_features = 0, in_features = 0;
  DType dtype = DType::bf16;       // activations, bias and output
  DType scale_dtype = DType::f32;  // F32, or dtype when the layer computes its scales in the model dtype
  const void* codes = nullptr;     // [N, K] int8 / e4m3
  const float* scale = nullptr;    // [N]
  // The SVD branch (§5.1 step 3), int8 only, or none: svd_down [rp, K] and svd_up [N, rp] in dtype,
  // ranks zero-padded to rp, a multiple of 64 (repack_for_w8a8 / repack_operand_for_w8a8).
  const void* svd_down = nullptr;
  const void* svd_up = nullptr;
  std::int64_t svd_rank_padded = 0;
  // The reference's SVD dtype is dtype (it rounds bias' to it), else F32. Kept with the layer (joined
  // parts must agree); no kernel rounds to it: the TMA kernel adds the low-rank term in fp32 onto the
  // scaled outputs, w8a8_dequantized_linear adds it to y by cuBLAS.
  bool svd_in_activation_dtype = false;
  // Which ranks the outputs read (kernel_detail::W8A8SvdPart: column blocks in order, the last ending at
  // N): one part {N, 0, true rank} for a layer, one per joined layer for Linear::concatenate's
  // block-diagonal svd_up. svd_part_count 0 with an SVD branch: every output reads all rp ranks.
  std::array<kernel_detail::W8A8SvdPart, kernel_detail::w8a8_max_svd_parts> svd_parts{};
  int svd_part_count = 0;
  // Code tables instead of codes (quant::Int8CodeTables; codes is then null): indices [N, K/2] and
  // tables [N, K / code_table_group, 16], expanded per call by expand_w8a8_codes (w8a8_code_tables.cuh).
  const std::uint8_t* code_indices = nullptr;
  const std::int8_t* code_tables = nullptr;
  std::int64_t code_table_group = 0;
};

struct W8A8WeightsDevice {
  W8A8Weights meta;  // pointers refer to the tensors below
  Tensor codes, scale, svd_down, svd_up;
  Tensor code_indices, code_tables;  // in place of codes for weights held as code tables
  const W8A8Weights& view() const { return meta; }
};

inline W8A8WeightsDevice upload_w8a8_weights(const W8A8WeightsHost& host, int device = 0,
                                             cudaStream_t stream = nullptr) {
  W8A8WeightsDevice out;
  if (!host.tables) out.codes = sdnq::cuda::to_device(host.codes, device, stream);
  out.scale = sdnq::cuda::to_device(host.scale, device, stream);
  out.meta = W8A8Weights{host.kind,
                         host.out_features,
                         host.in_features,
                         host.dtype,
                         host.scale_dtype,
                         host.tables ? nullptr : out.codes.data(),
                         static_cast<const float*>(out.scale.data())};
  if (host.tables) {
    out.code_indices = sdnq::cuda::to_device(host.tables->indices, device, stream);
    out.code_tables = sdnq::cuda::to_device(host.tables->tables, device, stream);
    out.meta.code_indices = static_cast<const std::uint8_t*>(out.code_indices.data());
    out.meta.code_tables = static_cast<const std::int8_t*>(out.code_tables.data());
    out.meta.code_table_group = host.tables->group;
  }
  if (host.svd_rank > 0) {
    out.svd_down = sdnq::cuda::to_device(host.svd_down, device, stream);
    out.svd_up = sdnq::cuda::to_device(host.svd_up, device, stream);
    out.meta.svd_down = out.svd_down.data();
    out.meta.svd_up = out.svd_up.data();
    out.meta.svd_rank_padded = host.svd_down.size(0);
    out.meta.svd_in_activation_dtype = host.svd_in_activation_dtype;
    out.meta.svd_part_count = 1;
    out.meta.svd_parts[0] =
        kernel_detail::W8A8SvdPart{static_cast<int>(host.out_features), 0, static_cast<int>(host.svd_rank)};
  }
  return out;
}

// x quantized once (per-token scales, the arithmetic gemm_w8a8 uses), for several gemm_w8a8 calls:
// what quantize_w8a8_activations returns. The codes and scales live in the caller's buffer; they stay
// valid (and unchanged: the GEMMs only read them) as long as that buffer does.
struct W8A8Activations {
  W8A8Kind kind = W8A8Kind::int8;
  DType dtype = DType::bf16;               // the dtype x had (the weights' activation dtype)
  bool scale_in_activation_dtype = false;  // as W8A8Weights::scale_dtype != DType::f32
  std::int64_t tokens = 0, in_features = 0;
  const std::uint8_t* codes = nullptr;  // [tokens, in_features] 8-bit codes, device, 256-byte aligned
  const float* scale = nullptr;         // [tokens] device
  // The x that was quantized ([tokens, in_features] in dtype), which a weight with an SVD branch reads
  // for its down-projection; null where the codes came without rows. Must outlive the GEMMs.
  const void* rows = nullptr;
  // x · svd_downᵀ [tokens, low_rank_width] in dtype, made in the quantization pass for the weights it was
  // given (quantize_w8a8_activations), or null; gemm_w8a8 uses it for weights with this svd_down
  // (`low_rank_of`) instead of running the down-projection again.
  const void* low_rank = nullptr;
  const void* low_rank_of = nullptr;
  std::int64_t low_rank_width = 0;
};

// The instantiated tiles: 16×32 (2 warps, many blocks: weight streaming) for M ≤ 32; 64×64 (4 warps)
// when large tiles would leave SMs idle; 128×128 (8 warps, 64×32 per warp; two blocks per SM for
// int8); 128×256 (64×64 per warp) for int8 at large M and N.
// On sm_90a builds running on Hopper, M > 32 takes the warp-specialized TMA + wgmma kernel
// (detail/w8a8_tma.cuh) on a persistent grid (one block per SM walking the tiles): int8 128×256 once
// those tiles fill the SMs, else 128×128; e4m3 128×192 once those fill the SMs, else 128×128 (its
// fp32 totals beside the accumulators leave no registers for 256 columns). tma_128_per_tile /
// tma_256_per_tile / tma_192_per_tile launch the same kernel with one block per tile, and wgmma_128 /
// wgmma_256 are the earlier cp.async wgmma kernel (int8, detail/w8a8_wgmma.cuh), all kept for comparison.
enum class W8A8TileChoice {
  small,
  large,
  huge,
  narrow,
  wgmma_128,
  wgmma_256,
  tma_128,
  tma_256,
  tma_128_per_tile,
  tma_256_per_tile,
  tma_192,  // e4m3 only
  tma_192_per_tile
};

namespace kernel_detail {

using W8A8TileNarrow = W8A8Tile<16, 32, 1, 2, 8, 4>;
using W8A8TileSmall = W8A8Tile<64, 64, 2, 2, 4, 2>;
using W8A8TileLargeInt8 = W8A8Tile<128, 128, 2, 4, 3, 2>;
using W8A8TileLargeFp8 = W8A8Tile<128, 128, 2, 4, 4, 1>;  // promotion doubles the accumulators
using W8A8TileHuge = W8A8Tile<128, 256, 2, 4, 3, 1>;
using W8A8TileWgmma128 = W8A8WgmmaTile<128, 4>;
using W8A8TileWgmma256 = W8A8WgmmaTile<256, 4>;
using W8A8TileTma128 = W8A8TmaTile<128, 6>;  // 32 KB a stage + 32 KB of staged output
using W8A8TileTma256 = W8A8TmaTile<256, 3>;  // 48 KB a stage + 64 KB of staged output
using W8A8TileTma192 = W8A8TmaTile<192, 4>;  // e4m3: 40 KB a stage + 48 KB of staged output
using W8A8TileTma128Svd = W8A8TmaTile<128, 6, true>;  // weights with an SVD branch (int8)
using W8A8TileTma256Svd = W8A8TmaTile<256, 3, true>;
static_assert(W8A8TileTma256Svd::shared_bytes == W8A8TileTma256::shared_bytes, "w8a8_tma_wide_tiles sizes both");

// Whether this build has sm_90a code for `device` (detail/wgmma.cuh's probe, asked once per device).
inline bool has_wgmma_code(int device) { return has_sm90a_code(device); }

inline constexpr std::int64_t w8a8_smallest_tile_rows = 16;

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Whether the int8 TMA kernel takes 128×256 tiles over 128×128: once they give two waves (measured: M = 512
// with N = 12288 runs faster on 128×128) and fit the device's shared memory. With or without an SVD branch.
inline bool w8a8_tma_wide_tiles(std::int64_t tokens, std::int64_t out_features, int multiprocessors,
                                int shared_optin) {
  return ceil_div(tokens, 128) * ceil_div(out_features, 256) >= 2 * multiprocessors &&
         W8A8TileTma256::shared_bytes <= shared_optin;
}

// Whether the e4m3 TMA kernel takes 128×192 tiles over 128×128: once they fill the SMs (one wave) and fit.
inline bool w8a8_e4m3_wide_tiles(std::int64_t tokens, std::int64_t out_features, int multiprocessors,
                                 int shared_optin) {
  return ceil_div(tokens, 128) * ceil_div(out_features, 192) >= multiprocessors &&
         W8A8TileTma192::shared_bytes <= shared_optin;
}

inline W8A8TileChoice choose_w8a8_tile(W8A8Kind kind, std::int64_t tokens, std::int64_t out_features,
                                       int multiprocessors, int shared_optin, bool wgmma) {
  if (tokens <= 32) return W8A8TileChoice::narrow;
  const std::int64_t row_tiles = ceil_div(tokens, 128);
  if (wgmma && W8A8TileTma128::shared_bytes <= shared_optin) {
    if (kind == W8A8Kind::float8_e4m3fn)
      return w8a8_e4m3_wide_tiles(tokens, out_features, multiprocessors, shared_optin) ? W8A8TileChoice::tma_192
                                                                                       : W8A8TileChoice::tma_128;
    return w8a8_tma_wide_tiles(tokens, out_features, multiprocessors, shared_optin) ? W8A8TileChoice::tma_256
                                                                                    : W8A8TileChoice::tma_128;
  }
  if (kind == W8A8Kind::int8 && row_tiles * ceil_div(out_features, 256) >= multiprocessors &&
      W8A8TileHuge::shared_bytes <= shared_optin)
    return W8A8TileChoice::huge;
  if (row_tiles * ceil_div(out_features, 128) >= multiprocessors) return W8A8TileChoice::large;
  return W8A8TileChoice::small;
}

// Launches the mma.sync kernel (Wgmma false) or the wgmma kernel over one block per output tile,
// raising the dynamic shared-memory limit once per device (0..63) and instantiation.
template <class T, W8A8Operand Operand, class Tile, bool Wgmma = false>
void launch_gemm_w8a8(const W8A8Params& p, cudaStream_t stream) {
  constexpr auto* kernel = [] {
    if constexpr (Wgmma)
      return gemm_w8a8_wgmma_kernel<T, Operand, Tile>;
    else
      return gemm_w8a8_kernel<T, Operand, Tile>;
  }();
  if constexpr (Tile::shared_bytes > 48 * 1024) opt_in_shared_memory<kernel>(Tile::shared_bytes);
  const auto blocks = static_cast<unsigned>(ceil_div(p.n, Tile::BN) * ceil_div(p.m, Tile::BM));
  kernel<<<blocks, Tile::threads, Tile::shared_bytes, stream>>>(p);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// The SVD operands of one launch: low_rank = x · svd_downᵀ [M, rank_padded] T (computed first) and
// svd_up [N, rank_padded] T, with the ranks each output reads (`params`); rank_padded 0 for weights
// without an SVD branch.
struct W8A8SvdLaunch {
  const void* low_rank = nullptr;
  const void* svd_up = nullptr;
  std::int64_t rank_padded = 0;
  W8A8SvdParams params{};
};

// How many 128-input K tiles the e4m3 TMA kernel sums on the tensor cores between two promotions into its
// fp32 totals (w8a8_tma.cuh). Each promotion waits for the consumer's MMAs, so longer runs keep the
// tensor cores busier, but a run holds its ring stages until that wait: the default leaves two stages
// for the producer to fill ahead (4 on the 6-stage 128×128 ring, 2 on the 4-stage 128×192 one; measured
// fastest of 1, 2 and 4 in docs/benchmarks.md session 16). The tensor core's reduced-precision adds then
// run over 512 / 256 inputs: at K = 15360 the relative L2 error went 1.66e-3 → 1.69e-3 from 1 to 4.
// Tests and benchmarks may force an interval (capped at the ring's stages) for a scope with
// ForcedE4m3Promotion; not for concurrent use.
inline std::atomic<int> forced_e4m3_promotion_tiles{0};

// For its lifetime, a setting tests and benchmarks force: `Setting` holds the value, `Unset` again at
// the end. Not for concurrent use.
template <std::atomic<int>& Setting, int Unset>
struct ForcedSetting {
  explicit ForcedSetting(int value) { Setting.store(value); }
  ~ForcedSetting() { Setting.store(Unset); }
  ForcedSetting(const ForcedSetting&) = delete;
  ForcedSetting& operator=(const ForcedSetting&) = delete;
};

using ForcedE4m3Promotion = ForcedSetting<forced_e4m3_promotion_tiles, 0>;

template <class Tile>
int e4m3_promotion_tiles() {
  static_assert(Tile::Stages > 2, "the default run leaves two ring stages to the producer");
  const int forced = forced_e4m3_promotion_tiles.load(std::memory_order_relaxed);
  return forced >= 1 ? std::min(forced, Tile::Stages) : Tile::Stages - 2;
}

// Whether the TMA kernel runs in pairs of blocks (W8A8Params::paired: clusters of two that share each
// weight tile, loaded half by each block and multicast into both): possible on codes quantized
// beforehand, without an SVD branch, from two row tiles on. The weight tiles then leave the L2 once per
// pair instead of once per block. Off unless forced: on the H200 it measured within -2 % .. +5 % of the
// unpaired kernel at FLUX's shapes (docs/benchmarks.md session 17), so the L2 is not what limits these
// GEMMs. Tests and benchmarks force it for a scope with ForcedW8A8Pairs (1: never, 2: wherever it can
// run); not for concurrent use.
inline std::atomic<int> forced_w8a8_pairs{0};
using ForcedW8A8Pairs = ForcedSetting<forced_w8a8_pairs, 0>;

template <class Tile>
bool w8a8_pairs(const W8A8Params& p, bool svd) {
  if (Tile::svd || svd || !p.codes_ready || ceil_div(p.m, Tile::BM) < 2) return false;
  const int forced = forced_w8a8_pairs.load(std::memory_order_relaxed);
  return forced == 2;
}

// The launch configuration of `clusters` clusters of two blocks along x (paired TMA blocks).
struct PairedLaunch {
  cudaLaunchAttribute attribute{};
  cudaLaunchConfig_t config{};
  PairedLaunch(std::int64_t clusters, int threads, int shared_bytes, cudaStream_t stream) {
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = 2;
    attribute.val.clusterDim.y = 1;
    attribute.val.clusterDim.z = 1;
    config.gridDim = dim3(static_cast<unsigned>(2 * clusters));
    config.blockDim = dim3(static_cast<unsigned>(threads));
    config.dynamicSmemBytes = static_cast<std::size_t>(shared_bytes);
    config.stream = stream;
    config.attrs = &attribute;  // this object's own attribute: not copyable
    config.numAttrs = 1;
  }
  PairedLaunch(const PairedLaunch&) = delete;
  PairedLaunch& operator=(const PairedLaunch&) = delete;
};

// How many clusters of two blocks of `kernel` (one block per SM) the device holds at once, asked once per
// device (0..63): a persistent paired grid is that many clusters, so that no cluster waits for a wave.
template <auto Kernel>
int w8a8_resident_pairs(int shared_bytes, int threads) {
  static std::atomic<int> known[64] = {};  // 0: not asked yet
  int device = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  std::atomic<int>& entry = known[device & 63];
  if (entry.load(std::memory_order_relaxed) == 0) {
    const PairedLaunch launch(1, threads, shared_bytes, nullptr);
    int clusters = 0;
    SDNQ_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, Kernel, &launch.config));
    SDNQ_REQUIRE(clusters > 0, UnsupportedError, "gemm_w8a8: the device holds no cluster of two TMA kernel blocks");
    entry.store(clusters, std::memory_order_relaxed);
  }
  return entry.load(std::memory_order_relaxed);
}

// Launches the TMA kernel: tensor maps of the workspace codes [M, K] and the weight codes [N, K];
// `blocks_at_most` caps the grid (the SM count: persistent blocks; 0: one block per tile).
template <class T, W8A8Operand Operand, class Tile>
void launch_gemm_w8a8_tma(const W8A8Params& p, int blocks_at_most, cudaStream_t stream,
                          const W8A8SvdLaunch& svd = {}) {
  constexpr auto* kernel = gemm_w8a8_tma_kernel<T, Operand, Tile>;
  opt_in_shared_memory<kernel>(Tile::shared_bytes);
  W8A8Params params = p;
  params.e4m3_promotion_tiles = e4m3_promotion_tiles<Tile>();
  params.paired = w8a8_pairs<Tile>(p, svd.rank_padded > 0);
  const CUtensorMap a_map = byte_matrix_tensor_map(p.x_codes, p.m, p.k, Tile::BM, "the quantized activations");
  const CUtensorMap b_map =
      byte_matrix_tensor_map(p.w, p.n, p.k, params.paired ? Tile::BN / 2 : Tile::BN, "the weight codes");
  // The output leaves through TMA stores when its rows are 16-byte multiples on a 16-byte aligned base
  // (N % 8 == 0); otherwise by the consumers' own stores (the map argument then is unused).
  const bool store_by_tma = p.n % 8 == 0 && reinterpret_cast<std::uintptr_t>(p.y) % 16 == 0;
  const CUtensorMap y_map =
      store_by_tma ? byte_matrix_tensor_map(p.y, p.m, std::int64_t{p.n} * 2, 64, "the output") : a_map;
  W8A8SvdParams svd_params{};
  CUtensorMap low_rank_map = a_map, svd_up_map = b_map;  // unused without an SVD branch
  if (svd.rank_padded > 0) {
    svd_params = svd.params;
    low_rank_map = byte_matrix_tensor_map(svd.low_rank, p.m, svd.rank_padded * 2, Tile::BM, "low_rank");
    svd_up_map = byte_matrix_tensor_map(svd.svd_up, p.n, svd.rank_padded * 2, Tile::BN, "svd_up");
  }
  if (params.paired) {
    std::int64_t clusters = ceil_div(p.n, Tile::BN) * ceil_div(ceil_div(p.m, Tile::BM), 2);
    if (blocks_at_most > 0)
      clusters = std::min<std::int64_t>(
          {clusters, blocks_at_most / 2, w8a8_resident_pairs<kernel>(Tile::shared_bytes, Tile::threads)});
    const PairedLaunch launch(clusters, Tile::threads, Tile::shared_bytes, stream);
    SDNQ_CUDA_CHECK(cudaLaunchKernelEx(&launch.config, kernel, params, a_map, b_map, y_map, store_by_tma, low_rank_map,
                                       svd_up_map, svd_params));
    return;
  }
  std::int64_t blocks = ceil_div(p.n, Tile::BN) * ceil_div(p.m, Tile::BM);
  if (blocks_at_most > 0) blocks = std::min<std::int64_t>(blocks, blocks_at_most);
  kernel<<<static_cast<unsigned>(blocks), Tile::threads, Tile::shared_bytes, stream>>>(
      params, a_map, b_map, y_map, store_by_tma, low_rank_map, svd_up_map, svd_params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

template <class T, W8A8Operand Operand>
void dispatch_gemm_w8a8(W8A8TileChoice tile, const W8A8Params& p, int multiprocessors, cudaStream_t stream,
                        const W8A8SvdLaunch& svd = {}) {
  if constexpr (Operand == W8A8Operand::int8) {
    if (svd.rank_padded > 0) {  // choose_checked_w8a8_tile allowed only the TMA tiles (persistent or per tile)
      const int blocks = tile == W8A8TileChoice::tma_128 || tile == W8A8TileChoice::tma_256 ? multiprocessors : 0;
      if (tile == W8A8TileChoice::tma_256 || tile == W8A8TileChoice::tma_256_per_tile)
        return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma256Svd>(p, blocks, stream, svd);
      return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma128Svd>(p, blocks, stream, svd);
    }
  }
  if (tile == W8A8TileChoice::tma_128)
    return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma128>(p, multiprocessors, stream);
  if (tile == W8A8TileChoice::tma_128_per_tile) return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma128>(p, 0, stream);
  if (tile == W8A8TileChoice::narrow) return launch_gemm_w8a8<T, Operand, W8A8TileNarrow>(p, stream);
  if (tile == W8A8TileChoice::small) return launch_gemm_w8a8<T, Operand, W8A8TileSmall>(p, stream);
  if constexpr (Operand == W8A8Operand::int8) {
    if (tile == W8A8TileChoice::wgmma_128) return launch_gemm_w8a8<T, Operand, W8A8TileWgmma128, true>(p, stream);
    if (tile == W8A8TileChoice::huge) return launch_gemm_w8a8<T, Operand, W8A8TileHuge>(p, stream);
    if (tile == W8A8TileChoice::wgmma_256) return launch_gemm_w8a8<T, Operand, W8A8TileWgmma256, true>(p, stream);
    if (tile == W8A8TileChoice::tma_256)
      return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma256>(p, multiprocessors, stream);
    if (tile == W8A8TileChoice::tma_256_per_tile)
      return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma256>(p, 0, stream);
    return launch_gemm_w8a8<T, Operand, W8A8TileLargeInt8>(p, stream);
  } else {
    if (tile == W8A8TileChoice::tma_192)
      return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma192>(p, multiprocessors, stream);
    if (tile == W8A8TileChoice::tma_192_per_tile) return launch_gemm_w8a8_tma<T, Operand, W8A8TileTma192>(p, 0, stream);
    return launch_gemm_w8a8<T, Operand, W8A8TileLargeFp8>(p, stream);
  }
}

// Whether this build holds e4m3 tensor-core code for `device` (sm_89+ code in the fatbinary), asked
// once per device (0..63).
template <class T>
bool has_e4m3_code(int device) {
  static std::atomic<int> known[64] = {};  // 0 not asked yet, 1 yes, 2 no
  std::atomic<int>& entry = known[device & 63];
  if (entry.load(std::memory_order_relaxed) == 0) {
    cudaFuncAttributes attributes{};
    SDNQ_CUDA_CHECK(cudaFuncGetAttributes(&attributes, gemm_w8a8_kernel<T, W8A8Operand::float8_e4m3fn, W8A8TileSmall>));
    entry.store(attributes.binaryVersion >= 89 ? 1 : 2, std::memory_order_relaxed);
  }
  return entry.load(std::memory_order_relaxed) == 1;
}

struct W8A8Workspace {
  std::size_t codes = 0, scales = 0, counters = 0;  // byte offsets
  std::size_t bytes = 0;
};

// The fused call's workspace: codes [M, K], scales [M], then the row-tile counters. Its first
// `counters` bytes are also the layout of a W8A8Activations buffer (codes, then scales).
inline std::size_t w8a8_align_256(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

inline W8A8Workspace w8a8_workspace_layout(std::int64_t tokens, std::int64_t in_features) {
  const auto align = w8a8_align_256;
  W8A8Workspace layout;
  layout.scales = align(static_cast<std::size_t>(tokens * in_features));
  layout.counters = layout.scales + align(static_cast<std::size_t>(tokens) * sizeof(float));
  const auto row_tiles = static_cast<std::size_t>(ceil_div(tokens, w8a8_smallest_tile_rows));
  layout.bytes = layout.counters + 2 * row_tiles * sizeof(int);
  return layout;
}

inline bool w8a8_aligned(const void* pointer, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

inline const char* w8a8_kind_name(W8A8Kind kind) { return kind == W8A8Kind::int8 ? "int8" : "float8_e4m3fn"; }

inline const char* w8a8_scale_mode_name(bool in_activation_dtype) {
  return in_activation_dtype ? "scales in the activation dtype" : "F32 scales";
}

// The SVD part table: column blocks in order ending at N, rank ranges in the same order, each starting
// on a 64-rank stage and inside rp (what svd_tile_ranks' contiguous rank range of a tile relies on).
inline void require_w8a8_svd_parts(const W8A8Weights& w, const char* caller) {
  SDNQ_REQUIRE(w.svd_part_count >= 0 && w.svd_part_count <= w8a8_max_svd_parts &&
                   (w.svd_rank_padded > 0 || w.svd_part_count == 0),
               UnsupportedError, "{}: {} SVD parts (at most {}, and none without an SVD branch)", caller,
               w.svd_part_count, w8a8_max_svd_parts);
  std::int64_t column_begin = 0, rank_end = 0;
  for (int i = 0; i < w.svd_part_count; ++i) {
    const W8A8SvdPart& part = w.svd_parts[static_cast<std::size_t>(i)];
    SDNQ_REQUIRE(part.column_end > column_begin && part.rank >= 0 && part.rank_begin % 64 == 0 &&
                     part.rank_begin >= rank_end && part.rank_begin + std::int64_t{part.rank} <= w.svd_rank_padded,
                 ShapeError,
                 "{}: SVD part {} (columns up to {}, ranks [{}, +{})) must follow the previous part's columns "
                 "(from {}) and ranks (from {}), start on a multiple of 64 and stay inside rank {}",
                 caller, i, part.column_end, part.rank_begin, part.rank, column_begin, rank_end, w.svd_rank_padded);
    column_begin = part.column_end;
    rank_end = part.rank_begin + part.rank;
  }
  SDNQ_REQUIRE(w.svd_part_count == 0 || column_begin == w.out_features, ShapeError,
               "{}: the SVD parts end at column {}, the weight has N = {}", caller, column_begin, w.out_features);
}

// What both entry points and quantize_w8a8_activations require of the weights (or of `like`).
inline void require_w8a8_weights(const W8A8Weights& w, const char* caller, bool need_codes = true) {
  SDNQ_REQUIRE(!need_codes || w.code_indices == nullptr, UnsupportedError,
               "{}: the weights hold code tables; expand them first (expand_w8a8_codes)", caller);
  SDNQ_REQUIRE(!need_codes || (w.codes != nullptr && w.scale != nullptr), UnsupportedError,
               "{}: weights have no codes or scales (use repack_for_w8a8 and upload_w8a8_weights)", caller);
  SDNQ_REQUIRE(w.dtype == DType::bf16 || w.dtype == DType::f16, UnsupportedError,
               "{}: activations must be BF16 or F16, weights were repacked for {}", caller, dtype_name(w.dtype));
  SDNQ_REQUIRE(w.scale_dtype == DType::f32 || w.scale_dtype == w.dtype, UnsupportedError,
               "{}: the activation scales are computed in F32 or in the activation dtype, not {}", caller,
               dtype_name(w.scale_dtype));
  SDNQ_REQUIRE(w.in_features > 0 && w.in_features % 16 == 0 && w.out_features > 0 &&
                   w.in_features < (std::int64_t{1} << 31) && w.out_features < (std::int64_t{1} << 31),
               UnsupportedError, "{}: needs K % 16 == 0 (16-byte code rows), got weight [{}, {}]", caller,
               w.out_features, w.in_features);
  SDNQ_REQUIRE(w.svd_rank_padded == 0 || (w.svd_rank_padded % 64 == 0 && w.svd_rank_padded <= 1024 &&
                                          w.svd_down != nullptr && w.svd_up != nullptr &&
                                          w8a8_aligned(w.svd_down, 16) && w8a8_aligned(w.svd_up, 16)),
               UnsupportedError,
               "{}: an SVD branch needs 16-byte aligned svd_down and svd_up with the rank padded to a multiple of 64 "
               "(up to 1024), got rank {}",
               caller, w.svd_rank_padded);
  require_w8a8_svd_parts(w, caller);
}

// The row count both GEMM entry points accept, y [tokens, N] and bias [N].
inline void require_w8a8_output(const W8A8Weights& w, std::int64_t tokens, std::optional<TensorView> bias,
                                TensorView y) {
  // Blocks are numbered in one int: M/16 · N/32 < 2^31; M itself is an int in the kernels.
  SDNQ_REQUIRE(tokens >= 1 && tokens < (std::int64_t{1} << 31) &&
                   ceil_div(tokens, 16) * ceil_div(w.out_features, 32) < (std::int64_t{1} << 31) &&
                   tokens * w.in_features < (std::int64_t{1} << 40),
               UnsupportedError,
               "gemm_w8a8: {} rows of x with {} outputs: needs at least one row, and not too many "
               "for one launch (M < 2^31, M/16 · N/32 < 2^31, M·K < 2^40)",
               tokens, w.out_features);
  SDNQ_REQUIRE(y.rank() == 2 && y.size(0) == tokens && y.size(1) == w.out_features && y.dtype() == w.dtype &&
                   y.is_contiguous() && y.device().is_cuda(),
               ShapeError, "gemm_w8a8: y must be a contiguous device {} tensor [{}, {}], got {} {}",
               dtype_name(w.dtype), tokens, w.out_features, dtype_name(y.dtype()), y.shape().to_string());
  if (bias)
    SDNQ_REQUIRE(bias->numel() == w.out_features && bias->dtype() == w.dtype && bias->is_contiguous() &&
                     bias->device().is_cuda(),
                 ShapeError, "gemm_w8a8: bias must be a contiguous device {} tensor [{}], got {} {}",
                 dtype_name(w.dtype), w.out_features, dtype_name(bias->dtype()), bias->shape().to_string());
  SDNQ_REQUIRE(w8a8_aligned(w.codes, 16) && w8a8_aligned(y.data(), 4), ShapeError,
               "gemm_w8a8: the weight codes need 16-byte alignment, y 4-byte alignment");
}

struct W8A8Launch {
  W8A8TileChoice tile = W8A8TileChoice::small;
  int multiprocessors = 0;
};

// The tile of a gemm_w8a8 call on the current device (`tile` forced, or chosen), after checking that
// the device and this build run it.
inline W8A8Launch choose_checked_w8a8_tile(const W8A8Weights& w, std::int64_t tokens,
                                           std::optional<W8A8TileChoice> tile) {
  int device = 0, major = 0, minor = 0, multiprocessors = 0, shared_optin = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int capability = major * 10 + minor;
  SDNQ_REQUIRE(capability >= (w.kind == W8A8Kind::int8 ? 80 : 89), UnsupportedError,
               "gemm_w8a8: {} tensor-core GEMMs need compute capability {} or newer; cuda:{} is sm_{}",
               w8a8_kind_name(w.kind), w.kind == W8A8Kind::int8 ? "8.0" : "8.9", device, capability);
  if (w.kind == W8A8Kind::float8_e4m3fn) {
    const bool has_code = w.dtype == DType::bf16 ? has_e4m3_code<__nv_bfloat16>(device) : has_e4m3_code<__half>(device);
    SDNQ_REQUIRE(has_code, UnsupportedError,
                 "gemm_w8a8: this build has no sm_89+ code for the float8_e4m3fn GEMM (CMAKE_CUDA_ARCHITECTURES)");
  }
  const bool wgmma = capability == 90 && has_wgmma_code(device);
  if (w.svd_rank_padded > 0) {  // the SVD stages run on the TMA kernel only: 128×256 as without SVD, else 128×128
    const bool wide = w8a8_tma_wide_tiles(tokens, w.out_features, multiprocessors, shared_optin);
    const W8A8TileChoice chosen = tile ? *tile : wide ? W8A8TileChoice::tma_256 : W8A8TileChoice::tma_128;
    SDNQ_REQUIRE(w.kind == W8A8Kind::int8 && wgmma && W8A8TileTma128Svd::shared_bytes <= shared_optin,
                 UnsupportedError,
                 "gemm_w8a8: weights with an SVD branch run on int8 weights on the Hopper TMA kernel (an sm_90a "
                 "build on a compute capability 9.0 GPU); cuda:{} is sm_{}",
                 device, capability);
    SDNQ_REQUIRE(chosen == W8A8TileChoice::tma_128 || chosen == W8A8TileChoice::tma_128_per_tile ||
                     chosen == W8A8TileChoice::tma_256 || chosen == W8A8TileChoice::tma_256_per_tile,
                 UnsupportedError,
                 "gemm_w8a8: weights with an SVD branch run on the TMA tiles only (tma_128, tma_256)");
    SDNQ_REQUIRE(w.out_features % 8 == 0 && w.in_features % 64 == 0, UnsupportedError,
                 "gemm_w8a8: weights with an SVD branch need N % 8 == 0 and K % 64 == 0, got [{}, {}]",
                 w.out_features, w.in_features);
    return W8A8Launch{chosen, multiprocessors};
  }
  const W8A8TileChoice chosen =
      tile ? *tile : choose_w8a8_tile(w.kind, tokens, w.out_features, multiprocessors, shared_optin, wgmma);
  const bool e4m3_only_tile = chosen == W8A8TileChoice::tma_192 || chosen == W8A8TileChoice::tma_192_per_tile;
  const bool wgmma_tile = chosen == W8A8TileChoice::wgmma_128 || chosen == W8A8TileChoice::wgmma_256 ||
                          chosen == W8A8TileChoice::tma_128 || chosen == W8A8TileChoice::tma_256 ||
                          chosen == W8A8TileChoice::tma_128_per_tile || chosen == W8A8TileChoice::tma_256_per_tile ||
                          e4m3_only_tile;
  const bool int8_only_tile = chosen == W8A8TileChoice::huge || chosen == W8A8TileChoice::wgmma_128 ||
                              chosen == W8A8TileChoice::wgmma_256 || chosen == W8A8TileChoice::tma_256 ||
                              chosen == W8A8TileChoice::tma_256_per_tile;
  SDNQ_REQUIRE(
      chosen != W8A8TileChoice::huge || (w.kind == W8A8Kind::int8 && W8A8TileHuge::shared_bytes <= shared_optin),
      UnsupportedError, "gemm_w8a8: the 128x256 tile is int8 only and needs {} bytes of shared memory",
      W8A8TileHuge::shared_bytes);
  SDNQ_REQUIRE(!int8_only_tile || w.kind == W8A8Kind::int8, UnsupportedError,
               "gemm_w8a8: the 128x256 and cp.async wgmma tiles are int8 only (float8_e4m3fn: tiles small, "
               "large, narrow, tma_128)");
  SDNQ_REQUIRE(!e4m3_only_tile || w.kind == W8A8Kind::float8_e4m3fn, UnsupportedError,
               "gemm_w8a8: the 128x192 tiles are float8_e4m3fn only (int8: 128x128 or 128x256)");
  SDNQ_REQUIRE(!wgmma_tile || wgmma, UnsupportedError,
               "gemm_w8a8: the wgmma tiles need an sm_90a build running on a Hopper GPU");
  constexpr int wgmma_shared_bytes =
      std::max({W8A8TileTma128::shared_bytes, W8A8TileTma256::shared_bytes, W8A8TileTma192::shared_bytes,
                W8A8TileWgmma128::shared_bytes, W8A8TileWgmma256::shared_bytes});
  SDNQ_REQUIRE(!wgmma_tile || wgmma_shared_bytes <= shared_optin, UnsupportedError,
               "gemm_w8a8: the wgmma tiles need {} bytes of shared memory per block, cuda:{} has {}",
               wgmma_shared_bytes, device, shared_optin);
  return W8A8Launch{chosen, multiprocessors};
}

// The kernel parameters of the fused gemm_w8a8 (arguments checked by the caller).
inline W8A8Params w8a8_params(const W8A8Weights& w, TensorView x, std::optional<TensorView> bias, TensorView y,
                              TensorView workspace) {
  const W8A8Workspace layout = w8a8_workspace_layout(x.size(0), w.in_features);
  auto* base = static_cast<std::uint8_t*>(workspace.data());
  W8A8Params p{};
  p.x = x.data();
  p.w = w.codes;
  p.w_scale = w.scale;
  p.bias = bias ? bias->data() : nullptr;
  p.y = y.data();
  p.x_codes = base + layout.codes;
  p.x_scale = reinterpret_cast<float*>(base + layout.scales);
  p.row_claims = reinterpret_cast<int*>(base + layout.counters);
  p.rows_done = p.row_claims + ceil_div(x.size(0), w8a8_smallest_tile_rows);
  p.m = static_cast<int>(x.size(0));
  p.n = static_cast<int>(w.out_features);
  p.k = static_cast<int>(w.in_features);
  p.scale_in_activation_dtype = w.scale_dtype != DType::f32;
  return p;
}

// The kernel parameters of the pre-quantized gemm_w8a8 (arguments checked by the caller): no x, no
// counters. The kernels never write x_codes / x_scale when codes_ready, so dropping const is safe.
inline W8A8Params w8a8_params(const W8A8Weights& w, const W8A8Activations& activations, std::optional<TensorView> bias,
                              TensorView y) {
  W8A8Params p{};
  p.x = nullptr;
  p.w = w.codes;
  p.w_scale = w.scale;
  p.bias = bias ? bias->data() : nullptr;
  p.y = y.data();
  p.x_codes = const_cast<std::uint8_t*>(activations.codes);
  p.x_scale = const_cast<float*>(activations.scale);
  p.row_claims = nullptr;
  p.rows_done = nullptr;
  p.m = static_cast<int>(activations.tokens);
  p.n = static_cast<int>(w.out_features);
  p.k = static_cast<int>(w.in_features);
  p.scale_in_activation_dtype = activations.scale_in_activation_dtype;
  p.codes_ready = true;
  return p;
}

inline void dispatch_gemm_w8a8(const W8A8Weights& w, W8A8TileChoice tile, const W8A8Params& p, int multiprocessors,
                               cudaStream_t stream, const W8A8SvdLaunch& svd = {}) {
  if (w.dtype == DType::bf16) {
    if (w.kind == W8A8Kind::int8)
      dispatch_gemm_w8a8<__nv_bfloat16, W8A8Operand::int8>(tile, p, multiprocessors, stream, svd);
    else
      dispatch_gemm_w8a8<__nv_bfloat16, W8A8Operand::float8_e4m3fn>(tile, p, multiprocessors, stream);
  } else {
    if (w.kind == W8A8Kind::int8)
      dispatch_gemm_w8a8<__half, W8A8Operand::int8>(tile, p, multiprocessors, stream, svd);
    else
      dispatch_gemm_w8a8<__half, W8A8Operand::float8_e4m3fn>(tile, p, multiprocessors, stream);
  }
}

// The SVD down-projection of one call, low_rank = x · svd_downᵀ [M, rp] T, in the SVD part of the
// workspace (low_rank, then any split partial sums). Two routes; one is chosen for all entry points
// alike, so that every entry point computes the same bits for the same M:
// - split_k (the default): gemm_tc's dense tensor-core launch, split along K when it has few blocks.
// - rows: w8a8_low_rank_kernel (detail/w8a8_low_rank.cuh), BM × 64 tiles, the whole K in one block; it
//   can quantize x in the same pass (quantize_w8a8_activations, and gemm_w8a8(w, x) with an SVD branch).
//   Correct (tests) but measured slower than split_k plus the separate quantization pass at every FLUX
//   shape (H200, docs/benchmarks.md session 15: its per-warp absmax rows and long K ring are latency-
//   bound, and 16-row tiles re-read svd_down from L2 per tile), so it runs only when forced.
enum class W8A8LowRankRoute : std::uint8_t { split_k, rows };

struct W8A8SvdPlan {
  W8A8LowRankRoute route = W8A8LowRankRoute::split_k;
  int row_tiles = 1;                   // rows: BM / 16 (1, 2 or 4)
  KSplit down;                         // split_k
  std::size_t partial = 0, bytes = 0;  // offset of the partial sums, bytes of the SVD part
};

// Tests and benchmarks may force a route (−1: the default, split_k; 0: split_k; 1, 2, 4: rows with that
// many 16-row tiles a block) for every call that plans while it is set (ForcedW8A8LowRank sets it for a
// scope). Not for concurrent use.
inline std::atomic<int> forced_w8a8_low_rank{-1};
using ForcedW8A8LowRank = ForcedSetting<forced_w8a8_low_rank, -1>;

// The rows route's 16-row tiles a block when it is forced, else 0 (split_k). No device query: the
// quantization entry points ask on every call.
inline int w8a8_low_rank_row_tiles() {
  const int forced = forced_w8a8_low_rank.load(std::memory_order_relaxed);
  return forced == 1 || forced == 2 || forced == 4 ? forced : 0;
}

inline W8A8SvdPlan plan_w8a8_svd(const W8A8Weights& w, std::int64_t tokens) {
  W8A8SvdPlan plan;
  if (w.svd_rank_padded == 0) return plan;
  const std::size_t low_rank_bytes = w8a8_align_256(static_cast<std::size_t>(tokens * w.svd_rank_padded * 2));
  if (const int row_tiles = w8a8_low_rank_row_tiles(); row_tiles > 0) {
    plan.route = W8A8LowRankRoute::rows;
    plan.row_tiles = row_tiles;
    plan.partial = plan.bytes = low_rank_bytes;
    return plan;
  }
  const int multiprocessors = current_gemm_tc_device().multiprocessors;
  plan.down = svd_down_split(tokens, w.svd_rank_padded, w.in_features, multiprocessors);
  plan.partial = low_rank_bytes;
  plan.bytes = plan.partial;
  if (plan.down.splits > 1)
    plan.bytes += static_cast<std::size_t>(plan.down.splits * tokens * w.svd_rank_padded) * sizeof(float);
  return plan;
}

// The 16-rank slices of svd_down some output of the GEMM reads (W8A8LowRankParams::live_slices): each
// part's ranks up to its true rank rounded to the 32-rank half the SVD stages stop after.
inline std::uint64_t w8a8_live_rank_slices(const W8A8Weights& w) {
  const std::int64_t slices = w.svd_rank_padded / 16;
  if (slices > 64) return ~std::uint64_t{0};
  const auto range = [](std::int64_t begin, std::int64_t end) {  // bits [begin, end), end ≤ 64
    const std::uint64_t below_end = end >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << end) - 1;
    return below_end & ~((std::uint64_t{1} << begin) - 1);
  };
  if (w.svd_part_count == 0) return range(0, slices);
  std::uint64_t live = 0;
  for (int i = 0; i < w.svd_part_count; ++i) {
    const W8A8SvdPart& part = w.svd_parts[static_cast<std::size_t>(i)];
    const std::int64_t end = std::min<std::int64_t>(part.rank_begin + (part.rank + 31) / 32 * 32, w.svd_rank_padded);
    if (part.rank > 0) live |= range(part.rank_begin / 16, end / 16);
  }
  return live;
}

template <class T, int RowTiles>
void launch_low_rank_rows(const W8A8LowRankParams& p, dim3 grid, cudaStream_t stream) {
  constexpr auto* kernel = w8a8_low_rank_kernel<T, W8A8Operand::int8, RowTiles>;
  opt_in_shared_memory<kernel>(low_rank_shared_bytes<RowTiles>);
  kernel<<<grid, low_rank_threads, low_rank_shared_bytes<RowTiles>, stream>>>(p);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// Launches the rows route: low_rank into `low_rank`, and with `quantized` non-null x's codes and scales
// too (the layout of quantize_w8a8_activations' buffer: codes [M, K] then scales [M]).
inline void launch_w8a8_low_rank(const W8A8Weights& w, const void* rows, std::int64_t tokens, const W8A8SvdPlan& plan,
                                 void* low_rank, std::uint8_t* quantized, cudaStream_t stream) {
  W8A8LowRankParams p{};
  p.x = rows;
  p.svd_down = w.svd_down;
  p.low_rank = low_rank;
  if (quantized != nullptr) {
    const W8A8Workspace layout = w8a8_workspace_layout(tokens, w.in_features);
    p.x_codes = quantized + layout.codes;
    p.x_scale = reinterpret_cast<float*>(quantized + layout.scales);
  }
  p.live_slices = w8a8_live_rank_slices(w);
  p.m = static_cast<int>(tokens);
  p.k = static_cast<int>(w.in_features);
  p.rank_padded = static_cast<int>(w.svd_rank_padded);
  p.scale_in_activation_dtype = w.scale_dtype != DType::f32;
  const dim3 grid(static_cast<unsigned>(ceil_div(tokens, 16 * plan.row_tiles)),
                  static_cast<unsigned>(w.svd_rank_padded / 64));
  // The SVD branch is int8 only (choose_checked_w8a8_tile), so only the int8 quantization is instantiated.
  const bool bf16 = w.dtype == DType::bf16;
  if (plan.row_tiles == 4)
    bf16 ? launch_low_rank_rows<__nv_bfloat16, 4>(p, grid, stream) : launch_low_rank_rows<__half, 4>(p, grid, stream);
  else if (plan.row_tiles == 2)
    bf16 ? launch_low_rank_rows<__nv_bfloat16, 2>(p, grid, stream) : launch_low_rank_rows<__half, 2>(p, grid, stream);
  else
    bf16 ? launch_low_rank_rows<__nv_bfloat16, 1>(p, grid, stream) : launch_low_rank_rows<__half, 1>(p, grid, stream);
}

// The operands of the GEMM launch that follows for `low_rank` ([M, rp] T on the device).
inline W8A8SvdLaunch w8a8_svd_launch(const W8A8Weights& w, const void* low_rank) {
  W8A8SvdLaunch out{low_rank, w.svd_up, w.svd_rank_padded, {}};
  if (w.svd_part_count == 0) {  // no part table: every output reads every rank
    out.params.part_count = 1;
    out.params.parts[0] = W8A8SvdPart{static_cast<int>(w.out_features), 0, static_cast<int>(w.svd_rank_padded)};
  } else {
    out.params.part_count = w.svd_part_count;
    std::copy_n(w.svd_parts.begin(), w.svd_part_count, out.params.parts);
  }
  return out;
}

// Whether quantize_w8a8_activations(like, ...) also computes like's down-projection: an SVD
// branch (int8 weights, K % 64 == 0, as gemm_w8a8 requires of one) on the rows route.
inline bool w8a8_quantizes_with_low_rank(const W8A8Weights& like) {
  return like.svd_rank_padded > 0 && like.kind == W8A8Kind::int8 && like.in_features % 64 == 0 &&
         w8a8_low_rank_row_tiles() > 0;
}

// Runs the down-projection of `rows` ([tokens, K] in w.dtype) into `svd_part` and returns the SVD
// operands of the GEMM launch that follows on the same stream.
inline W8A8SvdLaunch launch_w8a8_svd_down(const W8A8Weights& w, const void* rows, std::int64_t tokens,
                                          const W8A8SvdPlan& plan, std::uint8_t* svd_part, cudaStream_t stream) {
  if (w.svd_rank_padded == 0) return {};
  if (plan.route == W8A8LowRankRoute::rows) {
    launch_w8a8_low_rank(w, rows, tokens, plan, svd_part, nullptr, stream);
  } else {
    const auto launch = w.dtype == DType::bf16 ? launch_svd_down<__nv_bfloat16> : launch_svd_down<__half>;
    launch(rows, w.svd_down, svd_part, reinterpret_cast<float*>(svd_part + plan.partial), static_cast<int>(tokens),
           static_cast<int>(w.svd_rank_padded), static_cast<int>(w.in_features), plan.down, stream);
  }
  return w8a8_svd_launch(w, svd_part);
}

template <class T, W8A8Operand Operand>
void launch_quantize_w8a8_rows(const W8A8Params& p, cudaStream_t stream) {
  if (p.k <= w8a8_resident_max_k) {  // one block per row, the row read once (registers sized by K)
    const int words_per_thread = static_cast<int>(ceil_div(p.k / 8, w8a8_resident_threads));
    const auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(p.m), w8a8_resident_threads, 0, stream>>>(p);
      SDNQ_CUDA_CHECK(cudaGetLastError());
    };
    if (words_per_thread <= 2) return launch(quantize_w8a8_resident_rows_kernel<T, Operand, 2>);
    if (words_per_thread <= 4) return launch(quantize_w8a8_resident_rows_kernel<T, Operand, 4>);
    if (words_per_thread <= 8) return launch(quantize_w8a8_resident_rows_kernel<T, Operand, 8>);
    return launch(quantize_w8a8_resident_rows_kernel<T, Operand, w8a8_resident_max_words>);
  }
  constexpr int rows_per_block = w8a8_quantize_threads / 32;
  const auto blocks = static_cast<unsigned>(ceil_div(p.m, rows_per_block));
  quantize_w8a8_rows_kernel<T, Operand><<<blocks, w8a8_quantize_threads, 0, stream>>>(p);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace kernel_detail

// Whether gemm_w8a8 runs weights [N, K] with an SVD branch on `device`: int8 weights on the Hopper TMA
// kernel, i.e. an sm_90a build on a compute capability 9.0 GPU, N % 8 == 0 and K % 64 == 0 (what
// choose_checked_w8a8_tile requires). Loaders ask before choosing a layer's route.
inline bool gemm_w8a8_runs_svd(std::int64_t out_features, std::int64_t in_features, int device) {
  int major = 0, minor = 0, shared_optin = 0;
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return major * 10 + minor == 90 && kernel_detail::has_wgmma_code(device) &&
         kernel_detail::W8A8TileTma128Svd::shared_bytes <= shared_optin && out_features % 8 == 0 &&
         in_features % 64 == 0;
}

// Device workspace gemm_w8a8() needs for M rows: the 8-bit codes of x, its scales and the row-tile
// counters (≈ M·K bytes). One workspace must not be used by two calls running at the same time.
inline std::size_t gemm_w8a8_workspace_bytes(const W8A8Weights& w, std::int64_t tokens) {
  using namespace kernel_detail;
  const std::size_t quantization = w8a8_workspace_layout(tokens, w.in_features).bytes;
  const W8A8SvdPlan svd = plan_w8a8_svd(w, tokens);
  return svd.bytes == 0 ? quantization : w8a8_align_256(quantization) + svd.bytes;
}

// y = x · Wᵀ through the 8-bit product (+ bias), x quantized inside the GEMM. x [M, K], y [M, N],
// bias [N]: contiguous device tensors in w.dtype, x 16-byte aligned. `workspace`: ≥
// gemm_w8a8_workspace_bytes(w, M) bytes of 256-byte aligned device memory (cuda::empty gives that).
// `tile` forces a tile shape (benchmarks, tests). Checks everything before launching; throws
// ShapeError / UnsupportedError naming what is required.
inline void gemm_w8a8(const W8A8Weights& w, TensorView x, std::optional<TensorView> bias, TensorView y,
                      TensorView workspace, cudaStream_t stream = nullptr,
                      std::optional<W8A8TileChoice> tile = std::nullopt) {
  using namespace kernel_detail;
  require_w8a8_weights(w, "gemm_w8a8");
  SDNQ_REQUIRE(
      x.rank() == 2 && x.size(1) == w.in_features && x.dtype() == w.dtype && x.is_contiguous() && x.device().is_cuda(),
      ShapeError, "gemm_w8a8: x must be a contiguous device {} tensor [M, {}], got {} {} on {}", dtype_name(w.dtype),
      w.in_features, dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  const std::int64_t tokens = x.size(0);
  require_w8a8_output(w, tokens, bias, y);
  SDNQ_REQUIRE(w8a8_aligned(x.data(), 16), ShapeError, "gemm_w8a8: x needs 16-byte alignment");
  const W8A8Workspace layout = w8a8_workspace_layout(tokens, w.in_features);
  const std::size_t needed = gemm_w8a8_workspace_bytes(w, tokens);
  SDNQ_REQUIRE(
      workspace.nbytes() >= needed && workspace.device().is_cuda() && w8a8_aligned(workspace.data(), 256),
      ShapeError, "gemm_w8a8: needs {} bytes of 256-byte aligned device workspace, got {} on {}", needed,
      workspace.nbytes(), workspace.device().to_string());
  const W8A8Launch launch = choose_checked_w8a8_tile(w, tokens, tile);

  W8A8Params p = w8a8_params(w, x, bias, y, workspace);
  auto* svd_part = static_cast<std::uint8_t*>(workspace.data()) + w8a8_align_256(layout.bytes);
  const W8A8SvdPlan svd_plan = plan_w8a8_svd(w, tokens);
  if (svd_plan.route == W8A8LowRankRoute::rows) {  // (only weights with an SVD branch plan a route)
    // x quantized in the down-projection's pass over it, then the GEMM on the codes (as the
    // pre-quantized entry point: the same bits).
    launch_w8a8_low_rank(w, x.data(), tokens, svd_plan, svd_part, static_cast<std::uint8_t*>(workspace.data()), stream);
    p.x = nullptr;
    p.row_claims = p.rows_done = nullptr;
    p.codes_ready = true;
    return dispatch_gemm_w8a8(w, launch.tile, p, launch.multiprocessors, stream, w8a8_svd_launch(w, svd_part));
  }
  const std::int64_t row_tiles = ceil_div(tokens, w8a8_smallest_tile_rows);
  SDNQ_CUDA_CHECK(cudaMemsetAsync(p.row_claims, 0, 2 * static_cast<std::size_t>(row_tiles) * sizeof(int), stream));
  const W8A8SvdLaunch svd = launch_w8a8_svd_down(w, x.data(), tokens, svd_plan, svd_part, stream);
  dispatch_gemm_w8a8(w, launch.tile, p, launch.multiprocessors, stream, svd);
}

// Device bytes quantize_w8a8_activations needs in `buffer` for M rows of K (codes + scales,
// 256-aligned parts): codes [M, K] at offset 0, scales [M] F32 after them.
inline std::size_t w8a8_activations_bytes(std::int64_t tokens, std::int64_t in_features) {
  return kernel_detail::w8a8_workspace_layout(tokens, in_features).counters;
}

// The same for quantizing x for weights `like`: where like has an SVD branch whose down-projection runs
// in the quantization pass for M rows (the rows route, kernel_detail::plan_w8a8_svd), also room for
// its product [M, rp] after the scales.
inline std::size_t w8a8_activations_bytes(const W8A8Weights& like, std::int64_t tokens) {
  const std::size_t codes = w8a8_activations_bytes(tokens, like.in_features);
  if (!kernel_detail::w8a8_quantizes_with_low_rank(like)) return codes;
  return codes + kernel_detail::plan_w8a8_svd(like, tokens).bytes;
}

// Quantizes x [M, K] (contiguous device tensor in like.dtype, 16-byte aligned) as gemm_w8a8 would for
// weights `like` (their kind, dtype and scale dtype; K = like.in_features; their codes are not read)
// into `buffer` (≥ w8a8_activations_bytes(M, K) bytes of 256-byte aligned device memory), in one
// launch on `stream`. Where like has an SVD branch and `buffer` holds w8a8_activations_bytes(like, M)
// bytes, that launch also computes like's down-projection (W8A8Activations::low_rank), which its
// gemm_w8a8 then skips. The result refers to `buffer`; every weight w with w8a8_activations_fit(w, result)
// can then run gemm_w8a8(w, result, ...) on it, as often as needed, while nothing overwrites `buffer`.
// Checks everything before launching (ShapeError / UnsupportedError).
inline W8A8Activations quantize_w8a8_activations(const W8A8Weights& like, TensorView x, TensorView buffer,
                                                 cudaStream_t stream = nullptr) {
  using namespace kernel_detail;
  require_w8a8_weights(like, "quantize_w8a8_activations", false);
  SDNQ_REQUIRE(
      x.rank() == 2 && x.size(1) == like.in_features && x.dtype() == like.dtype && x.is_contiguous() &&
          x.device().is_cuda(),
      ShapeError, "quantize_w8a8_activations: x must be a contiguous device {} tensor [M, {}], got {} {} on {}",
      dtype_name(like.dtype), like.in_features, dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  const std::int64_t tokens = x.size(0);
  SDNQ_REQUIRE(tokens >= 1 && tokens < (std::int64_t{1} << 31) && tokens * like.in_features < (std::int64_t{1} << 40),
               UnsupportedError, "quantize_w8a8_activations: needs 1 to 2^31 - 1 rows of x (and M·K < 2^40), got {}",
               tokens);
  SDNQ_REQUIRE(w8a8_aligned(x.data(), 16), ShapeError, "quantize_w8a8_activations: x needs 16-byte alignment");
  const W8A8Workspace layout = w8a8_workspace_layout(tokens, like.in_features);
  SDNQ_REQUIRE(buffer.nbytes() >= layout.counters && buffer.device().is_cuda() && w8a8_aligned(buffer.data(), 256),
               ShapeError,
               "quantize_w8a8_activations: needs {} bytes of 256-byte aligned device buffer "
               "(w8a8_activations_bytes), got {} on {}",
               layout.counters, buffer.nbytes(), buffer.device().to_string());

  auto* base = static_cast<std::uint8_t*>(buffer.data());
  W8A8Activations out;
  out.kind = like.kind;
  out.dtype = like.dtype;
  out.scale_in_activation_dtype = like.scale_dtype != DType::f32;
  out.tokens = tokens;
  out.in_features = like.in_features;
  out.codes = base + layout.codes;
  out.scale = reinterpret_cast<const float*>(base + layout.scales);
  out.rows = x.data();
  if (w8a8_quantizes_with_low_rank(like) && buffer.nbytes() >= w8a8_activations_bytes(like, tokens)) {
    std::uint8_t* low_rank = base + layout.counters;
    launch_w8a8_low_rank(like, x.data(), tokens, plan_w8a8_svd(like, tokens), low_rank, base, stream);
    out.low_rank = low_rank;
    out.low_rank_of = like.svd_down;
    out.low_rank_width = like.svd_rank_padded;
    return out;
  }
  W8A8Params p{};
  p.x = x.data();
  p.x_codes = base + layout.codes;
  p.x_scale = reinterpret_cast<float*>(base + layout.scales);
  p.m = static_cast<int>(tokens);
  p.k = static_cast<int>(like.in_features);
  p.scale_in_activation_dtype = like.scale_dtype != DType::f32;
  if (like.dtype == DType::bf16) {
    if (like.kind == W8A8Kind::int8)
      launch_quantize_w8a8_rows<__nv_bfloat16, W8A8Operand::int8>(p, stream);
    else
      launch_quantize_w8a8_rows<__nv_bfloat16, W8A8Operand::float8_e4m3fn>(p, stream);
  } else {
    if (like.kind == W8A8Kind::int8)
      launch_quantize_w8a8_rows<__half, W8A8Operand::int8>(p, stream);
    else
      launch_quantize_w8a8_rows<__half, W8A8Operand::float8_e4m3fn>(p, stream);
  }
  return out;
}

namespace kernel_detail {
// Whether the activations carry w's down-projection (made in their quantization pass for weights with
// the same svd_down and padded rank).
inline bool w8a8_low_rank_ready(const W8A8Weights& w, const W8A8Activations& activations) {
  return w.svd_rank_padded > 0 && activations.low_rank != nullptr && activations.low_rank_of == w.svd_down &&
         activations.low_rank_width == w.svd_rank_padded;
}
}  // namespace kernel_detail

// Whether gemm_w8a8(w, activations, ...) accepts these activations: quantized for the same kind,
// activation dtype, scale mode and K, with codes and scales present, and with the rows of x when w has
// an SVD branch (its down-projection reads them). (y, bias and the device are checked by the call.)
inline bool w8a8_activations_fit(const W8A8Weights& w, const W8A8Activations& activations) {
  return activations.kind == w.kind && activations.dtype == w.dtype &&
         (w.svd_rank_padded == 0 || activations.rows != nullptr) &&
         activations.scale_in_activation_dtype == (w.scale_dtype != DType::f32) &&
         activations.in_features == w.in_features && activations.tokens >= 1 && activations.codes != nullptr &&
         activations.scale != nullptr;
}

// Workspace the pre-quantized gemm_w8a8 needs: none without an SVD branch (no counters, the codes are
// the caller's); with one, the down-projection's [M, rp] product (and its split partial sums).
inline std::size_t gemm_w8a8_workspace_bytes(const W8A8Weights& w, const W8A8Activations& activations) {
  if (kernel_detail::w8a8_low_rank_ready(w, activations)) return 0;
  return kernel_detail::plan_w8a8_svd(w, activations.tokens).bytes;
}

// y = dequant(activations) · Wᵀ (+ bias): the same result, bit for bit, as gemm_w8a8(w, x, ...) on the
// x that was quantized (same kernels and tiles, the quantization prologue skipped). y [M, N], bias [N]
// as in the fused call; `workspace`: gemm_w8a8_workspace_bytes(w, activations) bytes of 256-byte aligned
// device memory, 0 (an empty TensorView will do) unless w has an SVD branch, whose down-projection reads
// activations.rows. Several calls may read one W8A8Activations, also concurrently. Checks
// before launching that the activations fit the weights (kind, dtype, scale mode, K: ShapeError naming
// both sides), y, bias, the pointers and their alignment.
inline void gemm_w8a8(const W8A8Weights& w, const W8A8Activations& activations, std::optional<TensorView> bias,
                      TensorView y, TensorView workspace, cudaStream_t stream = nullptr,
                      std::optional<W8A8TileChoice> tile = std::nullopt) {
  using namespace kernel_detail;
  require_w8a8_weights(w, "gemm_w8a8");
  const W8A8Activations& a = activations;
  SDNQ_REQUIRE(a.codes != nullptr && a.scale != nullptr, ShapeError,
               "gemm_w8a8: the activations have no codes or scales (use quantize_w8a8_activations)");
  SDNQ_REQUIRE(a.kind == w.kind, ShapeError,
               "gemm_w8a8: the activations were quantized for {} weights, these weights are {}", w8a8_kind_name(a.kind),
               w8a8_kind_name(w.kind));
  SDNQ_REQUIRE(a.dtype == w.dtype, ShapeError,
               "gemm_w8a8: the activations were quantized from {} x, these weights take {} x", dtype_name(a.dtype),
               dtype_name(w.dtype));
  SDNQ_REQUIRE(a.scale_in_activation_dtype == (w.scale_dtype != DType::f32), ShapeError,
               "gemm_w8a8: the activations were quantized with {}, these weights compute {} (scale dtype {})",
               w8a8_scale_mode_name(a.scale_in_activation_dtype), w8a8_scale_mode_name(w.scale_dtype != DType::f32),
               dtype_name(w.scale_dtype));
  SDNQ_REQUIRE(a.in_features == w.in_features, ShapeError,
               "gemm_w8a8: the activations have K = {} inputs per row, the weight [{}, {}] needs K = {}", a.in_features,
               w.out_features, w.in_features, w.in_features);
  require_w8a8_output(w, a.tokens, bias, y);
  SDNQ_REQUIRE(w8a8_aligned(a.codes, 16) && w8a8_aligned(a.scale, 4), ShapeError,
               "gemm_w8a8: the activation codes need 16-byte alignment, their scales 4-byte alignment");
  const W8A8Launch launch = choose_checked_w8a8_tile(w, a.tokens, tile);
  const W8A8SvdPlan svd_plan = plan_w8a8_svd(w, a.tokens);
  W8A8SvdLaunch svd{};
  if (w8a8_low_rank_ready(w, a)) {
    SDNQ_REQUIRE(w8a8_aligned(a.low_rank, 16), ShapeError,
                 "gemm_w8a8: the activations' low_rank needs 16-byte alignment");
    svd = w8a8_svd_launch(w, a.low_rank);
  } else if (svd_plan.bytes > 0) {
    SDNQ_REQUIRE(a.rows != nullptr && w8a8_aligned(a.rows, 16), ShapeError,
                 "gemm_w8a8: weights with an SVD branch need the quantized rows of x (W8A8Activations::rows, "
                 "16-byte aligned) for their down-projection; these activations came without them");
    SDNQ_REQUIRE(workspace.nbytes() >= svd_plan.bytes && workspace.device().is_cuda() &&
                     w8a8_aligned(workspace.data(), 256),
                 ShapeError, "gemm_w8a8: needs {} bytes of 256-byte aligned device workspace, got {} on {}",
                 svd_plan.bytes, workspace.nbytes(), workspace.device().to_string());
    svd = launch_w8a8_svd_down(w, a.rows, a.tokens, svd_plan, static_cast<std::uint8_t*>(workspace.data()), stream);
  }
  dispatch_gemm_w8a8(w, launch.tile, w8a8_params(w, a, bias, y), launch.multiprocessors, stream, svd);
}

SDNQ_KERNEL_NAMESPACE_END
