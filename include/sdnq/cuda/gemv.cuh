#pragma once
// Small-M weight-only GEMM  y[M, N] = x[M, K] · dequant(W)ᵀ (+ (x·svd_downᵀ)·svd_upᵀ) (+ b),
// M = 1..64, bf16/fp16 activations, SDNQ integer weights of 1..8 bits in the layout of repack.hpp, and float
// weights of 1..8 bits (float4_e2m1fn, float5_e3m1fn, ...) read through a table of their values, native fp8
// (float8_e4m3fn, float8_e5m2) converted by the hardware instead.
//
// Design (CUDA cores; the weight stream is the cost):
// - Each warp owns Rows output features and a K slice; lanes take 32-code chunks round-robin, so a
//   warp streams contiguous 128-bit loads (evict-first) and every weight byte is read once per token
//   tile. Integer codes become floats with the 2^23 mantissa trick (no I2F, no division), float codes
//   through a 2^bits table in shared memory, fp8 by cvt e4m3x2 → f16x2 (e5m2: a byte permute);
//   w = fma(q, s, z) with s, z rounded to the activation dtype as the reference loader does, fp32
//   accumulation.
// - Tokens go in tiles of 1, 4 (gemv_four_token_tile widths) or 8 held in registers next to the weights;
//   M > 8 runs several token tiles (grid z), re-reading the weights (from L2 when they fit): CUDA-core FMA throughput,
//   not bandwidth, limits M >= 16; a tensor-core (mma) path for M = 16..64 is not written yet.
// - Split-K (grid y) when N alone gives too few blocks for the SMs; partial sums in fp32 in the
//   caller's workspace, then an epilogue kernel reduces them.
// - SVD branch: a pre-pass computes low_rank = x · svd_downᵀ [M, r] (r ≤ 256, fp32); the main kernel
//   is launched behind it as a programmatic dependent launch (sm_90), streams its codes meanwhile and,
//   without split-K, adds low_rank · svd_upᵀ and the bias itself (lanes over r) and rounds once; with
//   split-K the epilogue does. Without SVD and split-K the main kernel writes y (with bias): one launch.
// Bytes moved: N·K·bits/8 weights + 4·N·K/group params (+ 2·r·(N+K) factors); FLOPs 2·M·N·K.
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

#include "sdnq/core/dtype.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/kernel_gemv.cuh"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/repack.hpp"

SDNQ_KERNEL_NAMESPACE_BEGIN

// Device views of repacked weights (see repack.hpp for the layout).
struct GemvWeights {
  int bits = 0;
  bool is_signed = false;
  std::int64_t out_features = 0, in_features = 0, group_size = 0;
  DType dtype = DType::bf16;
  const std::uint32_t* codes = nullptr;   // [N, K/32, bits]
  const void* group_params = nullptr;     // [N, K/group_size, 2] dtype
  std::int64_t svd_rank = 0;
  const void* svd_up = nullptr;           // [N, r]
  const void* svd_down = nullptr;         // [r, K]
  const float* code_values = nullptr;     // float codes: F32 [2^bits] decoded values; null for integer codes
  // Float codes: how the kernel reads them. fp8_e4m3fn / fp8_e5m2 only where code_values is exactly that
  // format's table (repack_for_gemv derives it with float_decode_of); the table itself is then not read.
  FloatDecode float_decode = FloatDecode::table;
};

// Repacked weights in device memory, owning.
struct GemvWeightsDevice {
  GemvWeights meta;  // pointers refer to the tensors below
  Tensor codes, group_params, svd_up, svd_down, code_values;
  const GemvWeights& view() const { return meta; }
};

inline GemvWeightsDevice upload_gemv_weights(const GemvWeightsHost& host, int device = 0, cudaStream_t stream = nullptr) {
  GemvWeightsDevice out;
  out.codes = sdnq::cuda::to_device(host.codes, device, stream);
  out.group_params = sdnq::cuda::to_device(host.group_params, device, stream);
  if (host.svd_up.defined()) {
    out.svd_up = sdnq::cuda::to_device(host.svd_up, device, stream);
    out.svd_down = sdnq::cuda::to_device(host.svd_down, device, stream);
  }
  if (host.code_values.defined()) out.code_values = sdnq::cuda::to_device(host.code_values, device, stream);
  out.meta = GemvWeights{host.bits,
                         host.is_signed,
                         host.out_features,
                         host.in_features,
                         host.group_size,
                         host.dtype,
                         static_cast<const std::uint32_t*>(out.codes.data()),
                         out.group_params.data(),
                         host.svd_up.defined() ? host.svd_up.size(1) : 0,
                         host.svd_up.defined() ? out.svd_up.data() : nullptr,
                         host.svd_up.defined() ? out.svd_down.data() : nullptr,
                         out.code_values.defined() ? static_cast<const float*>(out.code_values.data()) : nullptr,
                         host.float_decode};
  return out;
}

// How a call is cut into launches; also tells the workspace it needs.
struct GemvPlan {
  int tokens_per_tile = 1;
  int splits = 1;
  int chunks_per_split = 0;
  std::size_t partial_floats = 0;    // splits·M·N, 0 when the main kernel writes y
  std::size_t low_rank_floats = 0;   // M·r
  std::size_t workspace_bytes() const { return (partial_floats + low_rank_floats) * sizeof(float); }
};

inline constexpr std::int64_t gemv_max_tokens = 64;

// Widths with a tile of 4 tokens (4 rows a warp) for 2..4 tokens: the published 4..8-bit formats but 7. The
// others run 2..8 tokens as one tile of 8 (2 rows a warp), fewer kernels to compile.
inline constexpr bool gemv_four_token_tile(int bits) { return bits == 4 || bits == 5 || bits == 6 || bits == 8; }

inline GemvPlan plan_gemv(const GemvWeights& w, std::int64_t tokens, int multiprocessors) {
  GemvPlan plan;
  plan.tokens_per_tile = tokens == 1 ? 1 : (tokens <= 4 && gemv_four_token_tile(w.bits)) ? 4 : 8;
  const int rows_per_warp = plan.tokens_per_tile >= 8 ? 2 : 4;
  const std::int64_t blocks_n = (w.out_features + kernel_detail::gemv_warps * rows_per_warp - 1) /
                                (kernel_detail::gemv_warps * rows_per_warp);
  const std::int64_t token_tiles = (tokens + plan.tokens_per_tile - 1) / plan.tokens_per_tile;
  const int chunks = static_cast<int>(w.in_features / 32);
  // About 8 blocks (32 warps) per SM, but every lane keeps at least one chunk per split.
  const std::int64_t wanted = (std::int64_t{8} * multiprocessors + blocks_n * token_tiles - 1) / (blocks_n * token_tiles);
  const int max_splits = chunks / 32 > 1 ? chunks / 32 : 1;
  const int splits = static_cast<int>(wanted < 1 ? 1 : wanted > max_splits ? max_splits : wanted);
  plan.chunks_per_split = (chunks + splits - 1) / splits;
  plan.chunks_per_split = (plan.chunks_per_split + 31) / 32 * 32;
  plan.splits = (chunks + plan.chunks_per_split - 1) / plan.chunks_per_split;
  plan.partial_floats = plan.splits > 1 ? static_cast<std::size_t>(plan.splits * tokens * w.out_features) : 0;
  plan.low_rank_floats = static_cast<std::size_t>(tokens * w.svd_rank);
  return plan;
}

inline int multiprocessor_count() {
  int device = 0, count = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

namespace kernel_detail {

// Whether the current device runs programmatic dependent launches (sm_90 and newer).
inline bool programmatic_launch_supported() {
  int device = 0, major = 0;
  SDNQ_CUDA_CHECK(cudaGetDevice(&device));
  SDNQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major >= 9;
}

// Behind the SVD pre-pass (params.low_rank set) as a programmatic dependent launch where the device has them:
// the kernel waits for it only before reading low_rank (elsewhere stream order makes that wait a no-op).
template <int Bits, class T, int Tokens, GemvDecode Decode>
void launch_gemv_main(const GemvParams& params, const GemvPlan& plan, std::int64_t tokens, cudaStream_t stream) {
  constexpr int rows = Tokens >= 8 ? 2 : 4;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>((params.out_features + gemv_warps * rows - 1) / (gemv_warps * rows)),
                        static_cast<unsigned>(plan.splits), static_cast<unsigned>((tokens + Tokens - 1) / Tokens));
  config.blockDim = dim3(gemv_warps * 32);
  config.stream = stream;
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  if (params.low_rank != nullptr && programmatic_launch_supported()) {
    config.attrs = &overlap;
    config.numAttrs = 1;
  }
  SDNQ_CUDA_CHECK(cudaLaunchKernelEx(&config, gemv_kernel<Bits, T, Tokens, rows, Decode>, params));
}

template <int Bits, class T, GemvDecode Decode>
void dispatch_gemv_tokens(const GemvParams& params, const GemvPlan& plan, std::int64_t tokens, cudaStream_t stream) {
  if constexpr (gemv_four_token_tile(Bits)) {
    if (plan.tokens_per_tile == 4) return launch_gemv_main<Bits, T, 4, Decode>(params, plan, tokens, stream);
  }
  if (plan.tokens_per_tile == 1)
    launch_gemv_main<Bits, T, 1, Decode>(params, plan, tokens, stream);
  else
    launch_gemv_main<Bits, T, 8, Decode>(params, plan, tokens, stream);
}

template <class T, GemvDecode Decode>
void dispatch_gemv_widths(int bits, const GemvParams& params, const GemvPlan& plan, std::int64_t tokens,
                          cudaStream_t stream) {
  switch (bits) {
    case 1:
      return dispatch_gemv_tokens<1, T, Decode>(params, plan, tokens, stream);
    case 2:
      return dispatch_gemv_tokens<2, T, Decode>(params, plan, tokens, stream);
    case 3:
      return dispatch_gemv_tokens<3, T, Decode>(params, plan, tokens, stream);
    case 4:
      return dispatch_gemv_tokens<4, T, Decode>(params, plan, tokens, stream);
    case 5:
      return dispatch_gemv_tokens<5, T, Decode>(params, plan, tokens, stream);
    case 6:
      return dispatch_gemv_tokens<6, T, Decode>(params, plan, tokens, stream);
    case 7:
      return dispatch_gemv_tokens<7, T, Decode>(params, plan, tokens, stream);
    default:
      return dispatch_gemv_tokens<8, T, Decode>(params, plan, tokens, stream);
  }
}

// Integer codes, float codes through their table at 1..8 bits, or 8-bit fp8 codes converted (gemv checked which).
template <class T>
void dispatch_gemv_bits(int bits, GemvDecode decode, const GemvParams& params, const GemvPlan& plan,
                        std::int64_t tokens, cudaStream_t stream) {
  switch (decode) {
    case GemvDecode::fp8_e4m3fn:
      return dispatch_gemv_tokens<8, T, GemvDecode::fp8_e4m3fn>(params, plan, tokens, stream);
    case GemvDecode::fp8_e5m2:
      return dispatch_gemv_tokens<8, T, GemvDecode::fp8_e5m2>(params, plan, tokens, stream);
    case GemvDecode::table:
      return dispatch_gemv_widths<T, GemvDecode::table>(bits, params, plan, tokens, stream);
    default:
      return dispatch_gemv_widths<T, GemvDecode::integer>(bits, params, plan, tokens, stream);
  }
}

template <class T>
void launch_gemv_low_rank(const GemvLowRankParams& params, cudaStream_t stream) {
  const unsigned token_tiles = static_cast<unsigned>((params.tokens + gemv_epilogue_tokens - 1) / gemv_epilogue_tokens);
  if (params.rank > 0) {
    gemv_svd_down_kernel<T><<<dim3(static_cast<unsigned>(params.rank), token_tiles), 256, 0, stream>>>(params);
    SDNQ_CUDA_CHECK(cudaGetLastError());
  }
}

template <class T>
void launch_gemv_epilogue(const GemvLowRankParams& params, cudaStream_t stream) {
  const unsigned token_tiles = static_cast<unsigned>((params.tokens + gemv_epilogue_tokens - 1) / gemv_epilogue_tokens);
  gemv_epilogue_kernel<T><<<dim3(static_cast<unsigned>((params.out_features + 127) / 128), token_tiles), 128, 0, stream>>>(params);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline bool aligned_to(const void* pointer, std::uintptr_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

}  // namespace kernel_detail

// Workspace bytes gemv() needs for `tokens` rows of x on the current device.
inline std::size_t gemv_workspace_bytes(const GemvWeights& w, std::int64_t tokens) {
  return plan_gemv(w, tokens, multiprocessor_count()).workspace_bytes();
}

// y = x · dequant(W)ᵀ (+ SVD branch) (+ bias). x [M, K], y [M, N], bias [N]: device, contiguous, in
// w.dtype. `workspace` is device memory of at least gemv_workspace_bytes(w, M) bytes (may be empty
// when that is 0). Checks everything before launching; throws ShapeError / UnsupportedError.
inline void gemv(const GemvWeights& w, TensorView x, std::optional<TensorView> bias, TensorView y,
                 TensorView workspace, cudaStream_t stream = nullptr) {
  SDNQ_REQUIRE(w.bits >= 1 && w.bits <= 8 && w.codes != nullptr && w.group_params != nullptr, UnsupportedError,
               "gemv: weights must be repacked {}-bit integer codes (1..8 bits)", w.bits);
  SDNQ_REQUIRE(w.code_values == nullptr || !w.is_signed, UnsupportedError,
               "gemv: float codes (a table of values) carry their sign, got signed {}-bit codes", w.bits);
  SDNQ_REQUIRE(w.code_values == nullptr || w.float_decode == FloatDecode::table || w.bits == 8, UnsupportedError,
               "gemv: {} float codes are 8 bits wide, got {}-bit codes", float_decode_name(w.float_decode), w.bits);
  SDNQ_REQUIRE(w.dtype == DType::bf16 || w.dtype == DType::f16, UnsupportedError,
               "gemv: activations must be BF16 or F16, weights were repacked for {}", dtype_name(w.dtype));
  SDNQ_REQUIRE(w.in_features % 32 == 0 && w.group_size % 32 == 0 && w.group_size > 0 &&
                   w.in_features % w.group_size == 0,
               UnsupportedError, "gemv: in_features {} and group size {} must be multiples of 32", w.in_features,
               w.group_size);
  SDNQ_REQUIRE(w.out_features > 0 && w.out_features < (std::int64_t{1} << 31) && w.in_features < (std::int64_t{1} << 31),
               ShapeError, "gemv: weight [{}, {}] out of range", w.out_features, w.in_features);
  SDNQ_REQUIRE(w.svd_rank >= 0 && w.svd_rank <= kernel_detail::gemv_max_rank &&
                   (w.svd_rank == 0 || (w.svd_up != nullptr && w.svd_down != nullptr)),
               UnsupportedError, "gemv: SVD rank {} not supported (0..{})", w.svd_rank, kernel_detail::gemv_max_rank);
  SDNQ_REQUIRE(x.rank() == 2 && x.size(1) == w.in_features && x.dtype() == w.dtype && x.is_contiguous() &&
                   x.device().is_cuda(),
               ShapeError, "gemv: x must be a contiguous device {} tensor [M, {}], got {} {} on {}", dtype_name(w.dtype),
               w.in_features, dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  const std::int64_t tokens = x.size(0);
  SDNQ_REQUIRE(tokens >= 1 && tokens <= gemv_max_tokens, UnsupportedError,
               "gemv: {} tokens; the small-M kernel takes 1..{} (dequantize + cuBLAS beyond)", tokens, gemv_max_tokens);
  SDNQ_REQUIRE(y.rank() == 2 && y.size(0) == tokens && y.size(1) == w.out_features && y.dtype() == w.dtype &&
                   y.is_contiguous() && y.device().is_cuda(),
               ShapeError, "gemv: y must be a contiguous device {} tensor [{}, {}], got {} {}", dtype_name(w.dtype),
               tokens, w.out_features, dtype_name(y.dtype()), y.shape().to_string());
  if (bias)
    SDNQ_REQUIRE(bias->numel() == w.out_features && bias->dtype() == w.dtype && bias->is_contiguous() &&
                     bias->device().is_cuda(),
                 ShapeError, "gemv: bias must be a contiguous device {} tensor [{}], got {} {}", dtype_name(w.dtype),
                 w.out_features, dtype_name(bias->dtype()), bias->shape().to_string());
  const int alignment_words = w.bits % 4 == 0 ? 4 : w.bits % 2 == 0 ? 2 : 1;
  SDNQ_REQUIRE(kernel_detail::aligned_to(x.data(), 16) && kernel_detail::aligned_to(w.codes, 4 * alignment_words) &&
                   kernel_detail::aligned_to(w.group_params, 4) &&
                   (w.svd_rank == 0 || kernel_detail::aligned_to(w.svd_down, 16)),
               ShapeError, "gemv: x and svd_down need 16-byte, codes {}-byte alignment", 4 * alignment_words);

  const GemvPlan plan = plan_gemv(w, tokens, multiprocessor_count());
  SDNQ_REQUIRE(plan.workspace_bytes() == 0 ||
                   (workspace.nbytes() >= plan.workspace_bytes() && workspace.device().is_cuda() &&
                    kernel_detail::aligned_to(workspace.data(), 16)),
               ShapeError, "gemv: needs {} bytes of 16-byte aligned device workspace, got {}", plan.workspace_bytes(),
               workspace.nbytes());
  float* partial = plan.partial_floats > 0 ? static_cast<float*>(workspace.data()) : nullptr;
  float* low_rank = plan.low_rank_floats > 0 ? static_cast<float*>(workspace.data()) + plan.partial_floats : nullptr;

  kernel_detail::GemvParams params{};
  params.codes = w.codes;
  params.group_params = static_cast<const std::uint32_t*>(w.group_params);
  params.x = x.data();
  params.bias = bias ? bias->data() : nullptr;
  params.y = y.data();
  params.partial = partial;
  params.tokens = static_cast<int>(tokens);
  params.out_features = static_cast<int>(w.out_features);
  params.in_features = static_cast<int>(w.in_features);
  params.chunks_per_row = static_cast<int>(w.in_features / 32);
  params.chunks_per_group = static_cast<int>(w.group_size / 32);
  params.groups_per_row = static_cast<int>(w.in_features / w.group_size);
  params.chunks_per_split = plan.chunks_per_split;
  params.code_minus = 8388608.0f + (w.is_signed ? static_cast<float>(1 << (w.bits - 1)) : 0.0f);
  params.code_values = w.code_values;
  if (partial == nullptr && w.svd_rank > 0) {  // one split: the main kernel adds the up-projection
    params.low_rank = low_rank;
    params.svd_up = w.svd_up;
    params.rank = static_cast<int>(w.svd_rank);
  }

  kernel_detail::GemvLowRankParams low{};
  low.x = x.data();
  low.svd_down = w.svd_down;
  low.svd_up = w.svd_up;
  low.bias = bias ? bias->data() : nullptr;
  low.partial = partial;
  low.low_rank = low_rank;
  low.y = y.data();
  low.tokens = static_cast<int>(tokens);
  low.out_features = static_cast<int>(w.out_features);
  low.in_features = static_cast<int>(w.in_features);
  low.rank = static_cast<int>(w.svd_rank);
  low.splits = plan.splits;

  using kernel_detail::GemvDecode;
  const GemvDecode decode = w.code_values == nullptr                    ? GemvDecode::integer
                            : w.float_decode == FloatDecode::fp8_e4m3fn ? GemvDecode::fp8_e4m3fn
                            : w.float_decode == FloatDecode::fp8_e5m2   ? GemvDecode::fp8_e5m2
                                                                        : GemvDecode::table;
  if (w.dtype == DType::bf16) {
    kernel_detail::launch_gemv_low_rank<__nv_bfloat16>(low, stream);
    kernel_detail::dispatch_gemv_bits<__nv_bfloat16>(w.bits, decode, params, plan, tokens, stream);
    if (partial != nullptr) kernel_detail::launch_gemv_epilogue<__nv_bfloat16>(low, stream);
  } else {
    kernel_detail::launch_gemv_low_rank<__half>(low, stream);
    kernel_detail::dispatch_gemv_bits<__half>(w.bits, decode, params, plan, tokens, stream);
    if (partial != nullptr) kernel_detail::launch_gemv_epilogue<__half>(low, stream);
  }
}

SDNQ_KERNEL_NAMESPACE_END
