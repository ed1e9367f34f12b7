#pragma once
// SDNQ's quantized-matmul Conv2d (use_quantized_matmul_conv; sdnq-format.md §5.2) on the 8-bit tensor
// cores, without a bf16 im2col:
//   out [N, O, Ho, Wo] = conv(x [N, C, H, W]) with each output position's im2col row (K = k·k·C inputs)
//   quantized per row like a token of gemm_w8a8, times the int8 / e4m3 weight codes, then
//   y = fma(acc·s_x, s_w, bias) in fp32, rounded once to T.
// One pass turns x into NHWC and per-pixel channel maxima (workspace ≈ the size of x); a row's scale is
// the max of its k·k pixel maxima. Then, by the number of output channels:
// - O ≤ 128 (one column tile): the implicit GEMM gathers its A tiles from the NHWC copy and quantizes
//   them in registers; no im2col matrix exists at any point (the VAE's 128-channel convs at full size).
// - wider: the im2col codes are written once ([rows, k·k·C] int8/e4m3, in chunks of at most
//   conv_w8a8_rows_budget bytes, never a bf16 im2col) and gemm_w8a8 multiplies them on its fastest
//   tiles (the TMA + wgmma kernel on Hopper); its [rows, O] output goes back to NCHW. The implicit
//   kernel would quantize every A element once per column tile (CUDA-core divisions that cost as much
//   as the MMAs: measured 0.2-0.5x the bf16 conv at O = 640-1280, docs/benchmarks.md).
// Kernels: detail/w8a8_conv_kernel.cuh.
// int8 results are bit-identical to the reference (quant::conv2d_forward in quantized-matmul mode):
// the int32 sums are exact, so the position-major column order changes nothing. e4m3 sums agree within
// the fp32 rounding of the accumulation on the implicit route, within gemm_w8a8's wgmma bound (each
// 128-input block added with reduced precision, relative L2 ≤ 1e-2) on the rows route on Hopper.
// Weights: a W8A8Weights of the conv as a position-major Linear [O, k·k·C] (quant::conv2d_weight_as_linear,
// then repack_for_w8a8); no SVD branch (such convs take the im2row route). Requirements, checked before
// launch: C % 16 == 0 (a 16-code chunk is one pixel's channels; SDNQ gives convs quantized matmul only
// for C % 16 == 0 anyway), compute capability 8.0 (int8) or 8.9 (e4m3), sizes within 32-bit indices.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <type_traits>

#include "sdnq/core/arena.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/shared_memory_opt_in.cuh"
#include "sdnq/cuda/detail/w8a8_conv_kernel.cuh"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/ops/conv.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN

// The routes: the implicit GEMM on 64×64 tiles (4 warps) or on 128×128 tiles (8 warps, two blocks per
// SM), or rows (the im2col codes written once, then gemm_w8a8).
enum class ConvW8A8TileChoice { small, large, rows };

// Bytes of im2col codes one chunk of the rows route may take.
inline constexpr std::int64_t conv_w8a8_rows_budget = 128ll << 20;

namespace kernel_detail {

using ConvW8A8TileSmall = ConvW8A8Tile<64, 64, 2, 2, 4>;
using ConvW8A8TileLarge = ConvW8A8Tile<128, 128, 2, 4, 2>;
// e4m3 keeps fp32 totals beside the per-step accumulators: fewer blocks per SM, no register spills.
using ConvW8A8TileSmallFp8 = ConvW8A8Tile<64, 64, 2, 2, 2>;
using ConvW8A8TileLargeFp8 = ConvW8A8Tile<128, 128, 2, 4, 1>;

// Whether a conv with these outputs takes the implicit GEMM (else the rows route).
inline bool conv_w8a8_implicit(std::int64_t out_channels) { return out_channels <= 128; }

// Output rows per chunk of the rows route: all of them when their codes fit the budget, else a
// multiple of 128.
inline std::int64_t conv_w8a8_chunk_rows(std::int64_t rows, std::int64_t columns) {
  const std::int64_t fit = conv_w8a8_rows_budget / columns;
  return fit >= rows ? rows : std::max<std::int64_t>(128, fit / 128 * 128);
}

struct ConvW8A8Workspace {
  std::size_t nhwc = 0, amax = 0;                 // the layout pass
  std::size_t activations = 0, products = 0;      // the rows route: codes + scales of a chunk, its [rows, O]
  std::size_t bytes = 0;
  std::int64_t chunk_rows = 0;                    // 0: the implicit route
};

inline ConvW8A8Workspace conv_w8a8_workspace_layout(const Shape& x_shape, std::size_t element_size,
                                                    std::int64_t out_rows, std::int64_t columns,
                                                    std::int64_t out_channels, bool implicit) {
  ConvW8A8Workspace layout;
  const auto pixels = static_cast<std::size_t>(x_shape[0] * x_shape[2] * x_shape[3]);
  layout.amax = w8a8_align_256(pixels * static_cast<std::size_t>(x_shape[1]) * element_size);
  layout.bytes = layout.amax + w8a8_align_256(pixels * sizeof(float));
  if (implicit || out_rows == 0) return layout;
  layout.chunk_rows = conv_w8a8_chunk_rows(out_rows, columns);
  layout.activations = layout.bytes;
  layout.products = layout.activations + w8a8_activations_bytes(layout.chunk_rows, columns);
  layout.bytes = layout.products + w8a8_align_256(static_cast<std::size_t>(layout.chunk_rows * out_channels) * element_size);
  return layout;
}

template <class T, W8A8Operand Operand, class Tile>
void launch_conv_w8a8(const ConvW8A8Params& p, cudaStream_t stream) {
  constexpr auto* kernel = conv_w8a8_kernel<T, Operand, Tile>;
  if constexpr (Tile::shared_bytes > 48 * 1024) opt_in_shared_memory<kernel>(Tile::shared_bytes);
  const auto blocks = static_cast<unsigned>(ceil_div(p.n, Tile::BN) * ceil_div(p.m, Tile::BM));
  kernel<<<blocks, Tile::threads, Tile::shared_bytes, stream>>>(p);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// The rows route over one chunk: codes and scales into `activations`, gemm_w8a8 into `products`
// [count, O] (bias inside its single rounding), then back to NCHW without a second rounding.
template <class T, W8A8Operand Operand>
void run_conv_w8a8_rows(const W8A8Weights& w, const ConvW8A8Params& p, int first, int count, std::uint8_t* activations,
                        void* products, std::optional<TensorView> bias, TensorView out, cudaStream_t stream,
                        std::string_view layer) {
  const W8A8Workspace parts = w8a8_workspace_layout(count, p.k);
  auto* scale = reinterpret_cast<float*>(activations + parts.scales);
  constexpr int threads = 256;
  conv_w8a8_row_scales_kernel<T, Operand><<<static_cast<unsigned>(ceil_div(count, threads)), threads, 0, stream>>>(
      p, first, count, scale);
  SDNQ_CUDA_CHECK(cudaGetLastError());
  const std::int64_t chunks = std::int64_t{count} * (p.k / 16);
  conv_w8a8_row_codes_kernel<T, Operand><<<static_cast<unsigned>(ceil_div(chunks, threads)), threads, 0, stream>>>(
      p, first, count, scale, activations + parts.codes);
  SDNQ_CUDA_CHECK(cudaGetLastError());
  W8A8Activations codes;
  codes.kind = w.kind;
  codes.dtype = w.dtype;
  codes.scale_in_activation_dtype = p.scale_in_activation_dtype;
  codes.tokens = count;
  codes.in_features = p.k;
  codes.codes = activations + parts.codes;
  codes.scale = scale;
  const TensorView rows(products, w.dtype, Shape{count, p.n}, out.device());
  gemm_w8a8(w, codes, bias, rows, TensorView(), stream);
  ops::rows_to_nchw(rows, nullptr, first, out, stream, layer);
}

template <class T, W8A8Operand Operand>
void dispatch_conv_w8a8(ConvW8A8TileChoice tile, const ConvW8A8Params& p, cudaStream_t stream) {
  constexpr bool fp8 = Operand == W8A8Operand::float8_e4m3fn;
  using Large = std::conditional_t<fp8, ConvW8A8TileLargeFp8, ConvW8A8TileLarge>;
  using Small = std::conditional_t<fp8, ConvW8A8TileSmallFp8, ConvW8A8TileSmall>;
  if (tile == ConvW8A8TileChoice::large) return launch_conv_w8a8<T, Operand, Large>(p, stream);
  launch_conv_w8a8<T, Operand, Small>(p, stream);
}

inline ConvW8A8TileChoice choose_conv_w8a8_tile(std::int64_t rows, std::int64_t out_channels, int multiprocessors) {
  if (!conv_w8a8_implicit(out_channels)) return ConvW8A8TileChoice::rows;
  return ceil_div(rows, 128) * ceil_div(out_channels, 128) >= multiprocessors ? ConvW8A8TileChoice::large
                                                                              : ConvW8A8TileChoice::small;
}

}  // namespace kernel_detail

// Device workspace conv2d_w8a8 needs for x [N, C, H, W] in `dtype` with `out_channels` outputs of a
// k×k kernel (the NHWC copy and the pixel maxima; for the rows route also one chunk's codes and
// products), as an Arena footprint. `tile` as the call's.
inline std::size_t conv2d_w8a8_workspace_bytes(const Shape& x_shape, std::int64_t out_channels, int kernel,
                                               const ops::Conv2dOptions& options, DType dtype = DType::bf16,
                                               std::optional<ConvW8A8TileChoice> tile = std::nullopt) {
  SDNQ_REQUIRE(x_shape.rank() == 4 && out_channels >= 1 && kernel >= 1, ShapeError,
               "conv2d_w8a8_workspace_bytes: x must be [N, C, H, W] with out_channels and kernel >= 1, got {}, {}, {}",
               x_shape.to_string(), out_channels, kernel);
  const auto [out_h, out_w] = ops::kernel_detail::conv_output_size(x_shape, kernel, options, "workspace size");
  const bool implicit = tile ? *tile != ConvW8A8TileChoice::rows : kernel_detail::conv_w8a8_implicit(out_channels);
  return Arena::footprint(kernel_detail::conv_w8a8_workspace_layout(x_shape, dtype_size(dtype), x_shape[0] * out_h * out_w,
                                                                    x_shape[1] * kernel * kernel, out_channels, implicit)
                              .bytes);
}

// Whether conv2d_w8a8 runs these weights as a k×k conv over `channels` input channels: K = k·k·C,
// C % 16 == 0, no SVD branch. (Device, dtype and shapes are checked by the call.)
inline bool conv2d_w8a8_supports(const W8A8Weights& w, std::int64_t channels, int kernel) {
  return channels > 0 && channels % 16 == 0 && kernel >= 1 && w.in_features == channels * kernel * kernel &&
         w.svd_rank_padded == 0 && w.codes != nullptr && w.scale != nullptr;
}

// x [N, C, H, W], out [N, O, Ho, Wo], bias [O]: contiguous device tensors in w.dtype, x 16-byte
// aligned. `workspace`: ≥ conv2d_w8a8_workspace_bytes(x, O, kernel, options, dtype, tile) bytes of 256-byte aligned device memory,
// not shared with a call running at the same time. `layer` names the conv in every error; `tile`
// forces a tile shape (tests, benchmarks). Throws ShapeError / UnsupportedError before launching.
inline void conv2d_w8a8(const W8A8Weights& w, int kernel, const ops::Conv2dOptions& options, TensorView x,
                        std::optional<TensorView> bias, TensorView out, TensorView workspace,
                        cudaStream_t stream = nullptr, std::string_view layer = "conv2d_w8a8",
                        std::optional<ConvW8A8TileChoice> tile = std::nullopt) {
  using namespace kernel_detail;
  require_w8a8_weights(w, "conv2d_w8a8");
  SDNQ_REQUIRE(x.rank() == 4 && x.dtype() == w.dtype && x.is_contiguous() && x.device().is_cuda() &&
                   w8a8_aligned(x.data(), 16),
               ShapeError, "conv2d_w8a8 '{}': x must be a contiguous, 16-byte aligned device {} tensor [N, C, H, W], got {} {} on {}",
               layer, dtype_name(w.dtype), dtype_name(x.dtype()), x.shape().to_string(), x.device().to_string());
  const std::int64_t channels = x.size(1);
  SDNQ_REQUIRE(w.svd_rank_padded == 0, UnsupportedError,
               "conv2d_w8a8 '{}': weights with an SVD branch are not run by the implicit-GEMM conv", layer);
  SDNQ_REQUIRE(kernel >= 1 && channels % 16 == 0 && w.in_features == channels * kernel * kernel, UnsupportedError,
               "conv2d_w8a8 '{}': needs C % 16 == 0 and weights [O, k·k·C] = [O, {}] for a {}x{} kernel over C = {}, "
               "got weights [{}, {}]",
               layer, channels * kernel * kernel, kernel, kernel, channels, w.out_features, w.in_features);
  const auto [out_h, out_w] = ops::kernel_detail::conv_output_size(x.shape(), kernel, options, layer);
  const Shape expected{x.size(0), w.out_features, out_h, out_w};
  SDNQ_REQUIRE(out.shape() == expected && out.dtype() == w.dtype && out.is_contiguous() && out.device().is_cuda(),
               ShapeError, "conv2d_w8a8 '{}': out must be a contiguous device {} tensor {}, got {} {}", layer,
               dtype_name(w.dtype), expected.to_string(), dtype_name(out.dtype()), out.shape().to_string());
  if (bias)
    SDNQ_REQUIRE(bias->numel() == w.out_features && bias->dtype() == w.dtype && bias->is_contiguous() &&
                     bias->device().is_cuda(),
                 ShapeError, "conv2d_w8a8 '{}': bias must be a contiguous device {} tensor [{}], got {} {}", layer,
                 dtype_name(w.dtype), w.out_features, dtype_name(bias->dtype()), bias->shape().to_string());
  constexpr std::int64_t int_max = std::numeric_limits<int>::max();
  const std::int64_t rows = x.size(0) * out_h * out_w;
  SDNQ_REQUIRE(rows <= int_max && x.size(2) <= 65535 && x.size(3) <= 65535 &&
                   ceil_div(rows, 64) * ceil_div(w.out_features, 64) <= int_max && x.numel() <= (int_max >> 1) * 64,
               UnsupportedError, "conv2d_w8a8 '{}': x {} with {} outputs is too large for one launch", layer,
               x.shape().to_string(), w.out_features);
  const W8A8Launch launch = choose_checked_w8a8_tile(w, rows, W8A8TileChoice::small);
  const ConvW8A8TileChoice chosen = tile ? *tile : choose_conv_w8a8_tile(rows, w.out_features, launch.multiprocessors);
  const ConvW8A8Workspace layout = conv_w8a8_workspace_layout(x.shape(), x.element_size(), rows, w.in_features,
                                                              w.out_features, chosen != ConvW8A8TileChoice::rows);
  SDNQ_REQUIRE(workspace.nbytes() >= layout.bytes && workspace.device().is_cuda() &&
                   w8a8_aligned(workspace.data(), 256),
               ShapeError, "conv2d_w8a8 '{}': needs {} bytes of 256-byte aligned device workspace, got {} on {}", layer,
               layout.bytes, workspace.nbytes(), workspace.device().to_string());
  if (out.numel() == 0) return;

  auto* base = static_cast<std::uint8_t*>(workspace.data());
  ConvW8A8Params p{};
  p.x_nhwc = base + layout.nhwc;
  p.pixel_amax = reinterpret_cast<const float*>(base + layout.amax);
  p.w = w.codes;
  p.w_scale = w.scale;
  p.bias = bias ? bias->data() : nullptr;
  p.y = out.data();
  p.channels = static_cast<int>(channels);
  p.height = static_cast<int>(x.size(2));
  p.width = static_cast<int>(x.size(3));
  p.out_height = static_cast<int>(out_h);
  p.out_width = static_cast<int>(out_w);
  p.kernel = kernel;
  p.stride = options.stride;
  p.pad_top = options.pad_top;
  p.pad_left = options.pad_left;
  p.m = static_cast<int>(rows);
  p.n = static_cast<int>(w.out_features);
  p.k = static_cast<int>(w.in_features);
  p.scale_in_activation_dtype = w.scale_dtype != DType::f32;
  const std::int64_t pixels = x.size(0) * x.size(2) * x.size(3);
  const auto layout_blocks = static_cast<unsigned>(ceil_div(pixels, conv_layout_tile));
  const auto run = [&]<class T>() {
    conv_w8a8_layout_kernel<T><<<layout_blocks, dim3(conv_layout_tile, conv_layout_rows), 0, stream>>>(
        static_cast<const T*>(x.data()), reinterpret_cast<T*>(base + layout.nhwc),
        reinterpret_cast<float*>(base + layout.amax), p.channels, p.height * p.width, pixels);
    SDNQ_CUDA_CHECK(cudaGetLastError());
    const bool int8 = w.kind == W8A8Kind::int8;
    if (chosen != ConvW8A8TileChoice::rows) {
      if (int8)
        dispatch_conv_w8a8<T, W8A8Operand::int8>(chosen, p, stream);
      else
        dispatch_conv_w8a8<T, W8A8Operand::float8_e4m3fn>(chosen, p, stream);
      return;
    }
    for (std::int64_t first = 0; first < rows; first += layout.chunk_rows) {
      const int count = static_cast<int>(std::min(layout.chunk_rows, rows - first));
      const auto chunk = int8 ? run_conv_w8a8_rows<T, W8A8Operand::int8> : run_conv_w8a8_rows<T, W8A8Operand::float8_e4m3fn>;
      chunk(w, p, static_cast<int>(first), count, base + layout.activations, base + layout.products, bias, out, stream,
            layer);
    }
  };
  if (w.dtype == DType::bf16)
    run.template operator()<__nv_bfloat16>();
  else
    run.template operator()<__half>();
}

SDNQ_KERNEL_NAMESPACE_END
