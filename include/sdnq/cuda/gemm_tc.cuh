#pragma once
// Tensor-core weight-only GEMM  y[M, N] = x[M, K] · dequant(W)ᵀ (+ (x·svd_downᵀ)·svd_upᵀ) (+ b) for
// any M: bf16/fp16 activations, uint4/int4 (grouped, zero point) and 8-bit (row-wise or grouped)
// weights in the layout of detail/gemm_tc_repack.hpp. mma.sync m16n8k16 with fp32 accumulators
// (sm_80, sm_89, sm_90), a cp.async multi-stage pipeline for activations, codes and group
// parameters, codes dequantized in registers straight into B fragments (exponent trick, w = q·s + z
// rounded once in T as the reference loader does). Kernel: detail/gemm_tc_kernel.cuh.
// M ≤ 16: the weight-streaming kernel (detail/gemm_tc_stream_kernel.cuh) on the same codes, the weight
// as the mma's A operand so the time stays flat in M (4-bit codes with the group scale applied in fp32
// after the k sum, not rounded to T per weight: closer to the exact product than a dequantize-then-
// matmul, not bit-identical to it); GemmTcSmallM::tiled keeps the 16×64 tile below for comparison.
// Tiles: K is split over the grid when the output tiles leave SMs idle (fp32 partial sums in the
// workspace, one reduce launch adds them, the bias, and rounds).
// SVD branch: low_rank = x · svd_downᵀ [M, rp] (T, in the caller's workspace) by a small dense
// tensor-core launch, then the main kernel runs ⌈rp/64⌉ extra K tiles over it with svd_up into the
// same accumulators (fused; no pass over y), the last one cut at rp (a multiple of 16: rank 32 runs
// 32 columns, not 64). Bias and the single rounding happen in the epilogue. The streaming kernel runs
// the up-projection as extra k-steps too, launched behind the down-projection as a programmatic
// dependent launch on sm_90 so its code streaming overlaps it.
// Requirements (checked before launch): N % 64 == 0, K % 64 == 0, group size 32 or a multiple of 64.
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/gemm_tc_kernel.cuh"
#include "sdnq/cuda/detail/gemm_tc_stream_kernel.cuh"
#include "sdnq/cuda/detail/gemm_tc_repack.hpp"
#include "sdnq/cuda/detail/shared_memory_opt_in.cuh"
#include "sdnq/cuda/device_memory.hpp"

SDNQ_KERNEL_NAMESPACE_BEGIN

// Device view of repacked weights.
struct GemmTcWeights {
  int bits = 0;
  bool is_signed = false;
  std::int64_t out_features = 0, in_features = 0, group_size = 0;
  std::int64_t svd_rank_padded = 0;  // 0 without SVD, else a multiple of gemm_tc_rank_granule (16)
  DType dtype = DType::bf16;
  const std::uint32_t* codes = nullptr;  // [K/64, N/16, 32, bits]
  const void* group_params = nullptr;    // [G, N, 2] dtype
  const void* svd_up = nullptr;          // [N, rp]
  const void* svd_down = nullptr;        // [rp, K]
};

struct GemmTcWeightsDevice {
  GemmTcWeights meta;  // pointers refer to the tensors below
  Tensor codes, group_params, svd_up, svd_down;
  const GemmTcWeights& view() const { return meta; }
};

inline GemmTcWeightsDevice upload_gemm_tc_weights(const GemmTcWeightsHost& host, int device = 0,
                                                  cudaStream_t stream = nullptr) {
  GemmTcWeightsDevice out;
  out.codes = sdnq::cuda::to_device(host.codes, device, stream);
  out.group_params = sdnq::cuda::to_device(host.group_params, device, stream);
  if (host.svd_up.defined()) {
    out.svd_up = sdnq::cuda::to_device(host.svd_up, device, stream);
    out.svd_down = sdnq::cuda::to_device(host.svd_down, device, stream);
  }
  out.meta = GemmTcWeights{host.bits,
                           host.is_signed,
                           host.out_features,
                           host.in_features,
                           host.group_size,
                           host.svd_up.defined() ? host.svd_rank_padded : 0,
                           host.dtype,
                           static_cast<const std::uint32_t*>(out.codes.data()),
                           out.group_params.data(),
                           host.svd_up.defined() ? out.svd_up.data() : nullptr,
                           host.svd_up.defined() ? out.svd_down.data() : nullptr};
  return out;
}

namespace kernel_detail {

// The instantiated tile shapes: M ≤ 16 (streams weights, 4 warps side by side in N), mid-size,
// 128×128 (two blocks per SM) once there are enough tiles to fill every SM, and 128×256 (64×64 per
// warp: fewer L2 → SM bytes and dequantizations per FLOP) for large M and N.
using TcTileSmall = TcTile<16, 64, 1, 4, 6>;
using TcTileMedium = TcTile<64, 64, 2, 2, 4>;
using TcTileLarge = TcTile<128, 128, 2, 4, 3, 2>;
using TcTileHuge = TcTile<128, 256, 2, 4, 3, 1>;

enum class TcTileChoice { small, medium, large, huge };

// `shared_optin`: the device's dynamic shared-memory limit per block (the 128×256 int8 tile needs
// 102 KB, more than sm_86/sm_89 allow).
inline TcTileChoice choose_tc_tile(std::int64_t tokens, std::int64_t out_features, int bits, int multiprocessors,
                                   int shared_optin) {
  if (tokens <= 16) return TcTileChoice::small;
  const std::int64_t huge_tiles = (tokens + 127) / 128 * (out_features / 256);
  const int huge_shared = bits == 4 ? TcTileHuge::shared_bytes<4>() : TcTileHuge::shared_bytes<8>();
  // Measured on the H100 (docs/kernels.md): 2-7 % faster than 128×128 at M = 4096, up to 15 % slower
  // at M = 1024 (one 8-warp block per SM hides less latency), so only from 16 row tiles up.
  const bool many_rows = (tokens + 127) / 128 >= 16;
  if (out_features % 256 == 0 && many_rows && huge_tiles >= multiprocessors && huge_shared <= shared_optin)
    return TcTileChoice::huge;
  const std::int64_t large_tiles = (tokens + 127) / 128 * (out_features / 128);
  if (out_features % 128 == 0 && large_tiles >= multiprocessors) return TcTileChoice::large;
  return TcTileChoice::medium;
}

inline std::int64_t tile_rows(TcTileChoice tile) {
  return tile == TcTileChoice::small ? 16 : tile == TcTileChoice::medium ? 64 : 128;
}
inline std::int64_t tile_columns(TcTileChoice tile) {
  return tile == TcTileChoice::huge ? 256 : tile == TcTileChoice::large ? 128 : 64;
}

// Split K over gridDim.z when the output tiles alone leave SMs idle (small M): about two blocks per
// SM, at least `min_tiles` K tiles per split.
struct KSplit {
  int splits = 1, tiles_per_split = 0;
};
inline KSplit choose_k_split(std::int64_t blocks, int k_tiles, int min_tiles, int multiprocessors) {
  const std::int64_t wanted = (2 * std::int64_t{multiprocessors} + blocks - 1) / blocks;
  const int most = k_tiles / min_tiles > 1 ? (k_tiles / min_tiles < 16 ? k_tiles / min_tiles : 16) : 1;
  const int splits = static_cast<int>(wanted < 1 ? 1 : wanted > most ? most : wanted);
  KSplit out;
  out.tiles_per_split = (k_tiles + splits - 1) / splits;
  out.splits = (k_tiles + out.tiles_per_split - 1) / out.tiles_per_split;  // no empty split
  return out;
}

// K split of an SVD branch's down-projection low_rank = x · svd_downᵀ ([M, rp], 64×64 blocks of the
// dense launch, launch_svd_down, the last column block cut at rp), which gemm_tc, the Hopper
// weight-only GEMM and gemm_w8a8 all run first.
inline KSplit svd_down_split(std::int64_t tokens, std::int64_t rank_padded, std::int64_t in_features,
                             int multiprocessors) {
  const std::int64_t blocks = (tokens + 63) / 64 * ((rank_padded + 63) / 64);
  return choose_k_split(blocks, static_cast<int>(in_features / 64), 4, multiprocessors);
}

}  // namespace kernel_detail

// Which kernel runs M ≤ 16 rows: the weight-streaming kernel (default), or the 16×64 tile of the
// tiled kernel (kept for comparison).
enum class GemmTcSmallM : std::uint8_t { streaming, tiled };

// How one call is cut into launches, and the workspace it needs.
struct GemmTcPlan {
  bool streaming = false;  // the weight-streaming kernel (M ≤ 16) instead of a tile
  kernel_detail::TcTileChoice tile = kernel_detail::TcTileChoice::small;
  kernel_detail::KSplit main, down;  // K splits of the main GEMM and of x · svd_downᵀ
  std::size_t low_rank_bytes = 0;    // T [M, rp]
  std::size_t partial_floats = 0;    // fp32 split-K partial sums (shared by both launches)
  std::size_t workspace_bytes() const { return (low_rank_bytes + 15) / 16 * 16 + partial_floats * sizeof(float); }
};

// What the plan needs to know about the GPU.
struct GemmTcDevice {
  int multiprocessors = 0;
  int major = 0;         // compute capability: programmatic dependent launch from 9
  int shared_optin = 0;  // bytes of dynamic shared memory a block may opt in to
};

inline GemmTcPlan plan_gemm_tc(const GemmTcWeights& w, std::int64_t tokens, const GemmTcDevice& device,
                               GemmTcSmallM small_m = GemmTcSmallM::streaming) {
  using namespace kernel_detail;
  GemmTcPlan plan;
  const int k_tiles = static_cast<int>(w.in_features / 64);
  const int multiprocessors = device.multiprocessors;
  // The streaming kernel's group index needs K / 64 < 2^16 (gemm_tc_group_magic), and its rings more
  // shared memory than sm_86/sm_89 allow a block (those take the 16×64 tile).
  const int stream_shared = w.bits == 4 ? stream_shared_bytes<4, 2, false> : stream_shared_bytes<8, 2, false>;
  plan.streaming = tokens <= stream_max_tokens && small_m == GemmTcSmallM::streaming && k_tiles < (1 << 16) &&
                   stream_shared <= device.shared_optin;
  plan.tile = choose_tc_tile(tokens, w.out_features, w.bits, multiprocessors, device.shared_optin);
  const std::int64_t blocks =
      (tokens + tile_rows(plan.tile) - 1) / tile_rows(plan.tile) * (w.out_features / tile_columns(plan.tile));
  plan.main = plan.streaming ? KSplit{1, k_tiles} : choose_k_split(blocks, k_tiles, 8, multiprocessors);
  std::size_t partial = plan.main.splits > 1 ? static_cast<std::size_t>(plan.main.splits * tokens * w.out_features) : 0;
  if (w.svd_rank_padded > 0 && plan.streaming) {
    // One K tile a warp of the down-projection; its fp32 splits are added by the main kernel.
    plan.down.tiles_per_split = stream_down_tiles_per_split;
    plan.down.splits = (k_tiles + stream_down_tiles_per_split - 1) / stream_down_tiles_per_split;
    partial = static_cast<std::size_t>(plan.down.splits * tokens * w.svd_rank_padded);
  } else if (w.svd_rank_padded > 0) {
    plan.down = svd_down_split(tokens, w.svd_rank_padded, w.in_features, multiprocessors);
    plan.low_rank_bytes = static_cast<std::size_t>(tokens * w.svd_rank_padded) * 2;
    if (plan.down.splits > 1) {
      const auto down_partial = static_cast<std::size_t>(plan.down.splits * tokens * w.svd_rank_padded);
      partial = partial > down_partial ? partial : down_partial;
    }
  }
  plan.partial_floats = partial;
  return plan;
}

inline GemmTcDevice current_gemm_tc_device() {
  int device = 0;
  GemmTcDevice out;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&out.multiprocessors, cudaDevAttrMultiProcessorCount, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&out.major, cudaDevAttrComputeCapabilityMajor, device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&out.shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return out;
}

// Device workspace gemm_tc() needs for M rows of x on the current device (low-rank product and
// split-K partial sums); 0 when neither is needed.
inline std::size_t gemm_tc_workspace_bytes(const GemmTcWeights& w, std::int64_t tokens,
                                           GemmTcSmallM small_m = GemmTcSmallM::streaming) {
  const GemmTcPlan plan = plan_gemm_tc(w, tokens, current_gemm_tc_device(), small_m);
  return plan.low_rank_bytes + plan.partial_floats == 0 ? 0 : plan.workspace_bytes();
}

namespace kernel_detail {

template <class T, int Bits, class Tile>
void launch_gemm_tc(const GemmTcParams& params, const KSplit& split, cudaStream_t stream) {
  constexpr int shared_bytes = Tile::template shared_bytes<Bits>();
  if constexpr (shared_bytes > 48 * 1024) opt_in_shared_memory<gemm_tc_kernel<T, Bits, Tile>>(shared_bytes);
  GemmTcParams p = params;
  p.tiles_per_split = split.tiles_per_split;
  // N / BN for the weight GEMM (N a multiple of the tile); the dense launch's N = rp may end mid-tile.
  const dim3 grid(static_cast<unsigned>((p.n + Tile::BN - 1) / Tile::BN),
                  static_cast<unsigned>((p.m + Tile::BM - 1) / Tile::BM), static_cast<unsigned>(split.splits));
  gemm_tc_kernel<T, Bits, Tile><<<grid, Tile::threads, shared_bytes, stream>>>(p);
  SDNQ_CUDA_CHECK(cudaGetLastError());
  if (split.splits > 1) {
    const std::size_t quads = static_cast<std::size_t>(p.m) * p.n / 4;
    const unsigned blocks = static_cast<unsigned>((quads + 255) / 256 < 4096 ? (quads + 255) / 256 : 4096);
    gemm_tc_reduce_kernel<T><<<blocks, 256, 0, stream>>>(p.partial, split.splits, p.m, p.n,
                                                         static_cast<const T*>(p.bias), static_cast<T*>(p.y));
    SDNQ_CUDA_CHECK(cudaGetLastError());
  }
}

template <class T, int Bits>
void dispatch_gemm_tc_tile(const GemmTcPlan& plan, const GemmTcParams& params, cudaStream_t stream) {
  switch (plan.tile) {
    case TcTileChoice::small:
      return launch_gemm_tc<T, Bits, TcTileSmall>(params, plan.main, stream);
    case TcTileChoice::medium:
      return launch_gemm_tc<T, Bits, TcTileMedium>(params, plan.main, stream);
    case TcTileChoice::large:
      return launch_gemm_tc<T, Bits, TcTileLarge>(params, plan.main, stream);
    default:
      return launch_gemm_tc<T, Bits, TcTileHuge>(params, plan.main, stream);
  }
}

// low_rank [M, rp] T = x [M, K] · svd_downᵀ (svd_down [rp, K] T, rp a multiple of 16), a dense GEMM on
// gemm_tc's tensor-core launch; `partial` holds split.splits · M · rp fp32 sums when the split has more
// than one part.
template <class T>
void launch_svd_down(const void* x, const void* svd_down, void* low_rank, float* partial, int m, int rank_padded, int k,
                     const KSplit& split, cudaStream_t stream) {
  GemmTcParams down{};
  down.a = x;
  down.b = svd_down;
  down.y = low_rank;
  down.partial = split.splits > 1 ? partial : nullptr;
  down.m = m;
  down.n = rank_padded;
  down.k = k;
  launch_gemm_tc<T, 16, TcTileMedium>(down, split, stream);
}

// `behind_down`: launched right after the down-projection with programmatic stream serialization
// (sm_90), so it streams its codes while that finishes and waits for it before reading low_rank.
// At most one block an SM (each runs several row blocks of 32 outputs in turn). XShared: x staged in
// shared memory beside the rings.
template <class T, int Bits, int TokenTiles, bool XShared, StreamCodes Codes = StreamCodes::fragments>
void launch_gemm_tc_stream(const GemmTcParams& params, const GemmTcDevice& device, bool behind_down,
                           cudaStream_t stream) {
  constexpr auto kernel = gemm_tc_stream_kernel<T, Bits, TokenTiles, XShared, Codes>;
  opt_in_shared_memory<kernel>(device.shared_optin);
  const std::int64_t shared_bytes =
      stream_shared_bytes<Bits, TokenTiles, XShared, Codes> + (XShared ? stream_x_bytes(params.m, params.k) : 0);
  const int row_blocks = params.n / stream_rows;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(row_blocks < device.multiprocessors ? row_blocks : device.multiprocessors));
  config.blockDim = dim3(stream_warps * 32);
  config.dynamicSmemBytes = static_cast<std::size_t>(shared_bytes);
  config.stream = stream;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  if (behind_down) {
    config.attrs = &overlap;
    config.numAttrs = 1;
  }
  SDNQ_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, params));
}

// x is staged in shared memory when it fits beside the rings: M ≤ 8 (M = 1: K up to ~46000 on an H100),
// and for uint4 M ≤ 16 with a shallower ring (K up to ~3600: FLUX's K = 3072 layers).
template <class T, int Bits>
void dispatch_gemm_tc_stream(const GemmTcParams& params, const GemmTcDevice& device, bool behind_down,
                             cudaStream_t stream) {
  const std::int64_t x_bytes = stream_x_bytes(params.m, params.k);
  if (params.m > 8) {
    if constexpr (Bits == 4)
      if (stream_shared_bytes<Bits, 2, true> + x_bytes <= device.shared_optin)
        return launch_gemm_tc_stream<T, Bits, 2, true>(params, device, behind_down, stream);
    return launch_gemm_tc_stream<T, Bits, 2, false>(params, device, behind_down, stream);
  }
  if (stream_shared_bytes<Bits, 1, true> + x_bytes <= device.shared_optin)
    return launch_gemm_tc_stream<T, Bits, 1, true>(params, device, behind_down, stream);
  launch_gemm_tc_stream<T, Bits, 1, false>(params, device, behind_down, stream);
}

// The dequantized path of an 8-bit quantized-matmul weight (gemm_w8a8's [N, K] codes and F32 row scales)
// on the weight-streaming kernel (StreamCodes::*_rows, up to 16 tokens a launch): where N % 32 == 0,
// K % 64 == 0 and the rings fit; other shapes take the CUDA-core w8a8_gemv.
inline bool w8a8_rows_stream(std::int64_t out_features, std::int64_t in_features, const GemmTcDevice& device) {
  return out_features % stream_rows == 0 && in_features % 64 == 0 &&
         in_features / 64 < (std::int64_t{1} << 30) && out_features < (std::int64_t{1} << 30) &&
         stream_shared_bytes<8, 2, false, StreamCodes::int8_rows> <= device.shared_optin;
}

// y [M, N] = x · round_T(codes · scale)ᵀ (+ bias) for 1 ≤ M ≤ 16; the caller checked w8a8_rows_stream,
// dtypes and 16-byte alignment of codes and x. x is staged in shared memory for M ≤ 8 when it fits, else
// read from L2.
template <class T, StreamCodes Codes>
void launch_w8a8_rows_stream(const void* codes, const float* scale, const void* x, const void* bias, void* y,
                             std::int64_t tokens, std::int64_t out_features, std::int64_t in_features,
                             const GemmTcDevice& device, cudaStream_t stream) {
  GemmTcParams p{};
  p.a = x;
  p.b = codes;
  p.group_params = scale;
  p.bias = bias;
  p.y = y;
  p.m = static_cast<int>(tokens);
  p.n = static_cast<int>(out_features);
  p.k = static_cast<int>(in_features);
  if (tokens <= 8 && stream_shared_bytes<8, 1, true, Codes> + stream_x_bytes(tokens, in_features) <= device.shared_optin)
    return launch_gemm_tc_stream<T, 8, 1, true, Codes>(p, device, false, stream);
  launch_gemm_tc_stream<T, 8, 2, false, Codes>(p, device, false, stream);
}

// launch_w8a8_rows_stream for any M ≥ 1, in slabs of stream_max_tokens rows (each slab streams the weight
// again), e4m3 or int8 codes; the caller checked w8a8_rows_stream and the alignments.
template <class T>
void launch_w8a8_rows_stream_slabs(bool e4m3, const void* codes, const float* scale, const void* x, const void* bias,
                                   void* y, std::int64_t tokens, std::int64_t out_features, std::int64_t in_features,
                                   const GemmTcDevice& device, cudaStream_t stream) {
  for (std::int64_t first = 0; first < tokens; first += stream_max_tokens) {
    const std::int64_t count = tokens - first < stream_max_tokens ? tokens - first : stream_max_tokens;
    const void* slab_x = static_cast<const T*>(x) + first * in_features;
    void* slab_y = static_cast<T*>(y) + first * out_features;
    if (e4m3)
      launch_w8a8_rows_stream<T, StreamCodes::e4m3_rows>(codes, scale, slab_x, bias, slab_y, count, out_features,
                                                         in_features, device, stream);
    else
      launch_w8a8_rows_stream<T, StreamCodes::int8_rows>(codes, scale, slab_x, bias, slab_y, count, out_features,
                                                         in_features, device, stream);
  }
}

// The same for activations of `dtype` (BF16 or F16).
inline void launch_w8a8_rows_stream_slabs(DType dtype, bool e4m3, const void* codes, const float* scale, const void* x,
                                          const void* bias, void* y, std::int64_t tokens, std::int64_t out_features,
                                          std::int64_t in_features, const GemmTcDevice& device, cudaStream_t stream) {
  if (dtype == DType::bf16)
    launch_w8a8_rows_stream_slabs<__nv_bfloat16>(e4m3, codes, scale, x, bias, y, tokens, out_features, in_features,
                                                 device, stream);
  else
    launch_w8a8_rows_stream_slabs<__half>(e4m3, codes, scale, x, bias, y, tokens, out_features, in_features, device,
                                          stream);
}

// partial [splits, M, rp] fp32 = x · svd_downᵀ per K split, for the weight-streaming kernel.
template <class T>
void launch_gemm_tc_stream_down(const GemmTcWeights& w, const GemmTcParams& main, const KSplit& split,
                                cudaStream_t stream) {
  GemmTcParams down{};
  down.a = main.a;
  down.b = w.svd_down;
  down.partial = main.partial;
  down.m = main.m;
  down.n = main.rank_padded;
  down.k = main.k;
  down.tiles_per_split = split.tiles_per_split;
  const dim3 grid(static_cast<unsigned>((down.n + stream_rows - 1) / stream_rows), static_cast<unsigned>(split.splits));
  if (down.m <= 8)
    gemm_tc_stream_down_kernel<T, 1><<<grid, stream_warps * 32, 0, stream>>>(down);
  else
    gemm_tc_stream_down_kernel<T, 2><<<grid, stream_warps * 32, 0, stream>>>(down);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void run_gemm_tc(const GemmTcWeights& w, const GemmTcParams& main, const GemmTcPlan& plan, const GemmTcDevice& device,
                 cudaStream_t stream) {
  if (plan.streaming) {
    GemmTcParams p = main;
    if (w.svd_rank_padded > 0) {
      launch_gemm_tc_stream_down<T>(w, main, plan.down, stream);
      p.low_rank_splits = plan.down.splits;
    }
    const bool behind_down = w.svd_rank_padded > 0 && device.major >= 9;
    if (w.bits == 4)
      dispatch_gemm_tc_stream<T, 4>(p, device, behind_down, stream);
    else
      dispatch_gemm_tc_stream<T, 8>(p, device, behind_down, stream);
    return;
  }
  if (w.svd_rank_padded > 0)  // low_rank = x · svd_downᵀ, a dense [M, rp] GEMM on the same tensor cores
    launch_svd_down<T>(main.a, w.svd_down, const_cast<void*>(main.low_rank), main.partial, main.m, main.rank_padded,
                       main.k, plan.down, stream);
  GemmTcParams p = main;
  if (plan.main.splits == 1) p.partial = nullptr;
  if (w.bits == 4)
    dispatch_gemm_tc_tile<T, 4>(plan, p, stream);
  else
    dispatch_gemm_tc_tile<T, 8>(plan, p, stream);
}

inline std::uint32_t half_bits_pair(std::uint16_t half) { return static_cast<std::uint32_t>(half) * 0x10001u; }

// m = ⌊2^32 / d⌋ + 1 for d = group_size / 64 K tiles a group: (t · m) >> 32 = ⌊t / d⌋ for every t < 2^16
// (t · m / 2^32 exceeds t / d by less than t / 2^32 < 1/d, so it never reaches the next integer).
inline std::uint64_t gemm_tc_group_magic(std::int64_t group_size) {
  const std::uint64_t tiles = group_size >= 64 ? static_cast<std::uint64_t>(group_size / 64) : 1;
  return (std::uint64_t{1} << 32) / tiles + 1;
}

// The launch parameters gemm_tc and gemm_weight_only_sm90 fill alike: operands, shape and the
// dequantization constants; the workspace pointers (low_rank, partial) are left to the caller.
inline GemmTcParams gemm_tc_params(const GemmTcWeights& w, const void* x, const void* bias, void* y,
                                   std::int64_t tokens) {
  GemmTcParams params{};
  params.a = x;
  params.b = w.codes;
  params.group_params = w.group_params;
  params.svd_up = w.svd_up;
  params.bias = bias;
  params.y = y;
  params.m = static_cast<int>(tokens);
  params.n = static_cast<int>(w.out_features);
  params.k = static_cast<int>(w.in_features);
  params.group_size = static_cast<int>(w.group_size);
  params.rank_padded = static_cast<int>(w.svd_rank_padded);
  params.group_magic = gemm_tc_group_magic(w.group_size);
  const int code_offset = w.is_signed ? -(1 << (w.bits - 1)) : 0;
  params.minus_f = 8388608.0f - static_cast<float>(code_offset);
  // magic − offset as a T pair: 128 − offset (bf16) or 1024 − offset (fp16), exact in both.
  const float magic = w.dtype == DType::bf16 ? 128.0f : 1024.0f;
  if (w.dtype == DType::bf16)
    params.minus = half_bits_pair(bf16(magic - code_offset).bits);
  else
    params.minus = half_bits_pair(fp16(magic - code_offset).bits);
  return params;
}

}  // namespace kernel_detail

// y = x · dequant(W)ᵀ (+ SVD branch) (+ bias). x [M, K], y [M, N], bias [N]: device, contiguous, in
// w.dtype; 16-byte aligned x. `workspace`: device memory of at least gemm_tc_workspace_bytes(w, M)
// bytes (empty is fine when that is 0: no SVD and no K split). Checks everything before launching; throws ShapeError /
// UnsupportedError naming what is required. `small_m` picks the kernel for M ≤ 16 (pass the same to
// gemm_tc_workspace_bytes).
inline void gemm_tc(const GemmTcWeights& w, TensorView x, std::optional<TensorView> bias, TensorView y,
                    TensorView workspace, cudaStream_t stream = nullptr,
                    GemmTcSmallM small_m = GemmTcSmallM::streaming) {
  SDNQ_REQUIRE((w.bits == 4 || w.bits == 8) && w.codes != nullptr && w.group_params != nullptr, UnsupportedError,
               "gemm_tc: weights must be repacked 4- or 8-bit codes (repack_for_gemm_tc), got {} bits", w.bits);
  SDNQ_REQUIRE(w.dtype == DType::bf16 || w.dtype == DType::f16, UnsupportedError,
               "gemm_tc: activations must be BF16 or F16, weights were repacked for {}", dtype_name(w.dtype));
  SDNQ_REQUIRE(w.out_features > 0 && w.out_features % 64 == 0 && w.in_features > 0 && w.in_features % 64 == 0 &&
                   w.out_features < (std::int64_t{1} << 31) && w.in_features < (std::int64_t{1} << 31),
               UnsupportedError, "gemm_tc: needs N % 64 == 0 and K % 64 == 0, got weight [{}, {}]", w.out_features,
               w.in_features);
  SDNQ_REQUIRE(w.group_size > 0 && w.in_features % w.group_size == 0 && (w.group_size == 32 || w.group_size % 64 == 0),
               UnsupportedError, "gemm_tc: group size must be 32 or a multiple of 64 dividing K = {}, got {}",
               w.in_features, w.group_size);
  SDNQ_REQUIRE(w.svd_rank_padded >= 0 && w.svd_rank_padded % gemm_tc_rank_granule == 0 &&
                   w.svd_rank_padded <= gemm_tc_max_rank &&
                   (w.svd_rank_padded == 0 || (w.svd_up != nullptr && w.svd_down != nullptr)),
               UnsupportedError, "gemm_tc: SVD factors must be padded to a multiple of {} up to {}, got {}",
               gemm_tc_rank_granule, gemm_tc_max_rank, w.svd_rank_padded);
  SDNQ_REQUIRE(
      x.rank() == 2 && x.size(1) == w.in_features && x.dtype() == w.dtype && x.is_contiguous() && x.device().is_cuda(),
      ShapeError, "gemm_tc: x must be a contiguous device {} tensor [M, {}], got {} {} on {}", dtype_name(w.dtype),
      w.in_features, dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  const std::int64_t tokens = x.size(0);
  // gridDim.y ≤ 65535 row tiles of the smallest multi-row tile (64 rows).
  constexpr std::int64_t max_tokens = std::int64_t{65535} * 64;
  SDNQ_REQUIRE(tokens >= 1 && tokens <= max_tokens, UnsupportedError,
               "gemm_tc: {} rows of x; 1..{} supported (M ≥ 16 is where it beats the GEMV)", tokens, max_tokens);
  SDNQ_REQUIRE(y.rank() == 2 && y.size(0) == tokens && y.size(1) == w.out_features && y.dtype() == w.dtype &&
                   y.is_contiguous() && y.device().is_cuda(),
               ShapeError, "gemm_tc: y must be a contiguous device {} tensor [{}, {}], got {} {}", dtype_name(w.dtype),
               tokens, w.out_features, dtype_name(y.dtype()), y.shape().to_string());
  if (bias)
    SDNQ_REQUIRE(bias->numel() == w.out_features && bias->dtype() == w.dtype && bias->is_contiguous() &&
                     bias->device().is_cuda(),
                 ShapeError, "gemm_tc: bias must be a contiguous device {} tensor [{}], got {} {}", dtype_name(w.dtype),
                 w.out_features, dtype_name(bias->dtype()), bias->shape().to_string());
  const auto aligned = [](const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; };
  SDNQ_REQUIRE(aligned(x.data()) && aligned(y.data()) && aligned(w.codes) && aligned(w.group_params) &&
                   (w.svd_rank_padded == 0 || (aligned(w.svd_up) && aligned(w.svd_down))),
               ShapeError, "gemm_tc: x, y, codes, group parameters and SVD factors need 16-byte alignment");
  const GemmTcDevice device = current_gemm_tc_device();
  const GemmTcPlan plan = plan_gemm_tc(w, tokens, device, small_m);
  const std::size_t workspace_bytes = plan.low_rank_bytes + plan.partial_floats == 0 ? 0 : plan.workspace_bytes();
  SDNQ_REQUIRE(workspace_bytes == 0 ||
                   (workspace.nbytes() >= workspace_bytes && workspace.device().is_cuda() && aligned(workspace.data())),
               ShapeError, "gemm_tc: needs {} bytes of 16-byte aligned device workspace, got {}", workspace_bytes,
               workspace.nbytes());

  kernel_detail::GemmTcParams params =
      kernel_detail::gemm_tc_params(w, x.data(), bias ? bias->data() : nullptr, y.data(), tokens);
  auto* workspace_bytes_begin = static_cast<char*>(workspace.data());
  params.low_rank = plan.low_rank_bytes > 0 ? workspace_bytes_begin : nullptr;
  params.partial = plan.partial_floats > 0
                       ? reinterpret_cast<float*>(workspace_bytes_begin + (plan.low_rank_bytes + 15) / 16 * 16)
                       : nullptr;

  if (w.dtype == DType::bf16)
    kernel_detail::run_gemm_tc<__nv_bfloat16>(w, params, plan, device, stream);
  else
    kernel_detail::run_gemm_tc<__half>(w, params, plan, device, stream);
}

SDNQ_KERNEL_NAMESPACE_END
