#pragma once
// Conv2d on device NCHW bf16/fp16 tensors (the layout of the VAE and the UNet), groups 1, square
// kernel (1×1 and 3×3 in the models), one stride for both axes, zero padding per side (Downsample2D
// with padding 0 pads only bottom and right):
//   conv2d(x [N, C, H, W], weight [O, C, k, k], bias [O]*, options, out [N, O, Ho, Wo], scratch, cublas, stream, layer)
//   Ho = (H + pad_top + pad_bottom − k) / stride + 1, Wo likewise.
// How: an explicit GEMM per image, out[n] [O, Ho·Wo] = weight [O, C·k·k] · columns [C·k·k, Ho·Wo], on
// cuBLAS (tensor cores, fp32 accumulation). A 1×1 stride-1 unpadded conv reads x as the columns; other
// convs build the columns (im2col) in `scratch` for a bounded chunk of output positions at a time
// (conv2d_workspace_bytes). The bias is added to the rounded products afterwards (two roundings, as
// PyTorch's cuDNN conv followed by its bias add). Accumulating onto a broadcast bias with beta = 1 was
// tried first: on an H100 some small shapes (48 positions × 24 outputs, K = 216) then came out up to
// 1.65× a single rounding's tolerance off the CPU conv, so the bias is a separate add.
// Why not an implicit GEMM: im2col + cuBLAS was the quicker way to a correct, tensor-core conv for every
// shape the models use; it moves k·k times the input through memory (the price of not fusing), which an
// implicit-GEMM kernel would save. No allocation; every argument is checked before the first launch.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>

#include "sdnq/core/arena.hpp"
#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"
#include "sdnq/cuda/ops/detail/conv_kernels.cuh"
#include "sdnq/cuda/ops/elementwise.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

struct Conv2dOptions {
  int stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;

  static Conv2dOptions symmetric(int stride, int padding) { return {stride, padding, padding, padding, padding}; }
};

namespace kernel_detail {

// Bytes of im2col columns one chunk may take: large enough that each chunk's GEMM fills the GPU
// (K = 1152, 128 channels 3×3: ~29k positions), small enough to stay beside the activations.
inline constexpr std::int64_t conv_columns_budget_bytes = 64ll << 20;

// Output spatial size, or a ShapeError naming the layer.
inline std::pair<std::int64_t, std::int64_t> conv_output_size(const Shape& x, std::int64_t kernel,
                                                              const Conv2dOptions& o, std::string_view layer) {
  SDNQ_REQUIRE(o.stride >= 1 && o.pad_top >= 0 && o.pad_left >= 0 && o.pad_bottom >= 0 && o.pad_right >= 0,
               ShapeError, "conv2d '{}': stride must be >= 1 and paddings >= 0, got stride {} padding {}/{}/{}/{}",
               layer, o.stride, o.pad_top, o.pad_left, o.pad_bottom, o.pad_right);
  const std::int64_t padded_h = x[2] + o.pad_top + o.pad_bottom, padded_w = x[3] + o.pad_left + o.pad_right;
  SDNQ_REQUIRE(padded_h >= kernel && padded_w >= kernel, ShapeError,
               "conv2d '{}': input {} (padded {}x{}) is smaller than the {}x{} kernel", layer, x.to_string(), padded_h,
               padded_w, kernel, kernel);
  return {(padded_h - kernel) / o.stride + 1, (padded_w - kernel) / o.stride + 1};
}

inline bool conv_reads_input_as_columns(std::int64_t kernel, const Conv2dOptions& o) {
  return kernel == 1 && o.stride == 1 && o.pad_top == 0 && o.pad_left == 0 && o.pad_bottom == 0 && o.pad_right == 0;
}

// Output positions per im2col chunk within `budget_bytes` of columns: the whole image when it fits,
// else a multiple of 8 (keeps every chunk's first output element 16-byte aligned for the tensor-core
// GEMM); 0 when not even 8 positions fit.
inline std::int64_t conv_chunk_positions(std::int64_t column_rows, std::int64_t positions, std::size_t element_size,
                                         std::int64_t budget_bytes) {
  const std::int64_t fit = budget_bytes / (column_rows * static_cast<std::int64_t>(element_size));
  if (fit >= positions) return positions;
  return fit / 8 * 8;
}

// out_cm [m, n] (ld ldc) = alpha · op_a(a) · op_b(b) + beta · out_cm, column-major, fp32 accumulation.
inline void gemm_16bit(cublasHandle_t cublas, DType dtype, cublasOperation_t op_a, cublasOperation_t op_b,
                       std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const void* a, std::int64_t lda,
                       const void* b, std::int64_t ldb, float beta, void* c, std::int64_t ldc) {
  const cudaDataType_t type = dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F;
  SDNQ_CUBLAS_CHECK(cublasGemmEx(cublas, op_a, op_b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                                 &alpha, a, type, static_cast<int>(lda), b, type, static_cast<int>(ldb), &beta, c,
                                 type, static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace kernel_detail

// Scratch bytes conv2d needs for input `x_shape` [N, C, H, W] and a k×k kernel (0 for 1×1 stride 1
// unpadded); as an Arena footprint.
inline std::size_t conv2d_workspace_bytes(const Shape& x_shape, std::int64_t kernel, const Conv2dOptions& options,
                                          DType dtype = DType::bf16) {
  using namespace kernel_detail;
  if (conv_reads_input_as_columns(kernel, options)) return 0;
  SDNQ_REQUIRE(x_shape.rank() == 4 && kernel >= 1, ShapeError,
               "conv2d_workspace_bytes: x must be [N, C, H, W] and the kernel >= 1, got {} and {}",
               x_shape.to_string(), kernel);
  const auto [out_h, out_w] = conv_output_size(x_shape, kernel, options, "workspace size");
  const std::int64_t rows = x_shape[1] * kernel * kernel, positions = out_h * out_w;
  const std::int64_t chunk = conv_chunk_positions(rows, positions, dtype_size(dtype), conv_columns_budget_bytes);
  return Arena::footprint(static_cast<std::size_t>(rows * chunk) * dtype_size(dtype));
}

// `layer` names the conv in every error. scratch: device bytes for the im2col columns, or an empty view
// when none is needed; conv2d_workspace_bytes lets one chunk cover up to 64 MiB of columns, a smaller
// scratch (at least 8 positions' worth) gives more, smaller chunks.
inline void conv2d(const TensorView& x, const TensorView& weight, const TensorView* bias, const Conv2dOptions& options,
                   const TensorView& out, const TensorView& scratch, cublasHandle_t cublas, cudaStream_t stream,
                   std::string_view layer) {
  using namespace kernel_detail;
  SDNQ_REQUIRE(x.rank() == 4 && weight.rank() == 4 && weight.size(2) == weight.size(3) && weight.size(2) >= 1 &&
                   weight.size(1) == x.size(1),
               ShapeError, "conv2d '{}': needs x [N, C, H, W] and weight [O, C, k, k] with the same C, got {} and {}",
               layer, x.shape().to_string(), weight.shape().to_string());
  require_operand(x, layer, "x");
  require_like(weight, x, weight.shape(), layer, "weight");
  const std::int64_t batch = x.size(0), channels = x.size(1), out_channels = weight.size(0), kernel = weight.size(2);
  const auto [out_h, out_w] = conv_output_size(x.shape(), kernel, options, layer);
  require_like(out, x, Shape{batch, out_channels, out_h, out_w}, layer, "out");
  if (bias != nullptr) require_like(*bias, x, Shape{out_channels}, layer, "bias");
  const std::int64_t rows = channels * kernel * kernel, positions = out_h * out_w;
  SDNQ_REQUIRE(rows <= std::numeric_limits<int>::max() && positions <= std::numeric_limits<int>::max() &&
                   out_channels <= std::numeric_limits<int>::max() && x.size(2) <= std::numeric_limits<int>::max() &&
                   x.size(3) <= std::numeric_limits<int>::max(),
               UnsupportedError, "conv2d '{}': x {} with weight {} exceeds 32-bit GEMM sizes", layer,
               x.shape().to_string(), weight.shape().to_string());
  const bool direct = conv_reads_input_as_columns(kernel, options);
  const std::int64_t chunk =
      direct ? positions
             : conv_chunk_positions(rows, positions, x.element_size(),
                                    scratch.device().is_cuda() ? static_cast<std::int64_t>(scratch.nbytes()) : 0);
  if (!direct) {
    const std::size_t needed = static_cast<std::size_t>(rows * std::min<std::int64_t>(8, positions)) * x.element_size();
    SDNQ_REQUIRE(chunk > 0, ShapeError,
                 "conv2d '{}': scratch must hold at least {} device bytes of im2col columns (conv2d_workspace_bytes "
                 "gives the size for whole images), got {} on {}",
                 layer, needed, scratch.nbytes(), scratch.device().to_string());
  }
  if (out.numel() == 0) return;
  SDNQ_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  constexpr int threads = 256;
  const ConvGeometry geometry{static_cast<int>(channels), static_cast<int>(x.size(2)), static_cast<int>(x.size(3)),
                              static_cast<int>(out_h),    static_cast<int>(out_w),     static_cast<int>(kernel),
                              options.stride,             options.pad_top,             options.pad_left};
  const std::size_t element = x.element_size();
  for (std::int64_t image = 0; image < batch; ++image) {
    const auto* image_in = static_cast<const std::byte*>(x.data()) + image * channels * x.size(2) * x.size(3) * element;
    auto* image_out = static_cast<std::byte*>(out.data()) + image * out_channels * positions * element;
    for (std::int64_t first = 0; first < positions; first += chunk) {
      const std::int64_t count = std::min(chunk, positions - first);
      const void* columns = image_in;
      std::int64_t columns_pitch = positions;
      if (!direct) {
        dispatch_16bit(x.dtype(), [&]<class T>() {
          im2col_kernel<T><<<grid_for(rows * count, threads), threads, 0, stream>>>(
              reinterpret_cast<const T*>(image_in), static_cast<T*>(scratch.data()), geometry, first, count);
        });
        SDNQ_CUDA_CHECK(cudaGetLastError());
        columns = scratch.data();
        columns_pitch = count;
      }
      // Row-major out[:, first:first+count] [O, count] = weight [O, rows] · columns [rows, count], i.e.
      // column-major [count, O] = columns_cm [count, rows] · weight_cm [rows, O].
      gemm_16bit(cublas, x.dtype(), CUBLAS_OP_N, CUBLAS_OP_N, count, out_channels, rows, 1.0f, columns, columns_pitch,
                 weight.data(), rows, 0.0f, image_out + first * element, positions);
    }
  }
  if (bias != nullptr) add_channel_vector(out, *bias, out, stream);
}

// A conv on quantized codes runs as rows × a position-major Linear (quant/conv_as_linear.hpp):
// im2row writes rows [count, k·k·C] (column (ky·k + kx)·C + c) of the output rows [first, first + count),
// row r = image·Ho·Wo + position; rows_to_nchw puts a Linear's [count, O] result back into out
// [N, O, Ho, Wo], adding the bias in fp32 after the GEMM's rounding (the two roundings of conv2d above).
inline void im2row(const TensorView& x, std::int64_t kernel, const Conv2dOptions& options, std::int64_t first,
                   const TensorView& rows, cudaStream_t stream, std::string_view layer) {
  using namespace kernel_detail;
  require_operand(x, layer, "x");
  SDNQ_REQUIRE(x.rank() == 4 && kernel >= 1, ShapeError, "conv '{}': im2row needs x [N, C, H, W] and a kernel >= 1, got {} and {}",
               layer, x.shape().to_string(), kernel);
  const auto [out_h, out_w] = conv_output_size(x.shape(), kernel, options, layer);
  const std::int64_t total = x.size(0) * out_h * out_w, columns = kernel * kernel * x.size(1);
  SDNQ_REQUIRE(rows.rank() == 2 && rows.size(1) == columns && first >= 0 && first + rows.size(0) <= total, ShapeError,
               "conv '{}': im2row rows must be [count, {}] with count ≤ {} − first ({}), got {}", layer, columns, total,
               first, rows.shape().to_string());
  require_like(rows, x, rows.shape(), layer, "rows");
  SDNQ_REQUIRE(x.size(1) <= std::numeric_limits<int>::max() && x.size(2) <= std::numeric_limits<int>::max() &&
                   x.size(3) <= std::numeric_limits<int>::max() && (x.size(1) + conv_tile - 1) / conv_tile <= 65535,
               UnsupportedError, "conv '{}': x {} is too large for im2row", layer, x.shape().to_string());
  const std::int64_t count = rows.size(0);
  if (count == 0) return;
  const ConvGeometry geometry{static_cast<int>(x.size(1)), static_cast<int>(x.size(2)), static_cast<int>(x.size(3)),
                              static_cast<int>(out_h),     static_cast<int>(out_w),     static_cast<int>(kernel),
                              options.stride,              options.pad_top,             options.pad_left};
  const dim3 grid(static_cast<unsigned>((count + conv_tile - 1) / conv_tile),
                  static_cast<unsigned>((x.size(1) + conv_tile - 1) / conv_tile), static_cast<unsigned>(kernel * kernel));
  dispatch_16bit(x.dtype(), [&]<class T>() {
    im2row_kernel<T><<<grid, dim3(conv_tile, conv_tile_rows), 0, stream>>>(
        static_cast<const T*>(x.data()), static_cast<T*>(rows.data()), geometry, first, count);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

inline void rows_to_nchw(const TensorView& rows, const TensorView* bias, std::int64_t first, const TensorView& out,
                         cudaStream_t stream, std::string_view layer) {
  using namespace kernel_detail;
  require_operand(out, layer, "out");
  SDNQ_REQUIRE(out.rank() == 4 && rows.rank() == 2 && rows.size(1) == out.size(1) && first >= 0 &&
                   first + rows.size(0) <= out.size(0) * out.size(2) * out.size(3),
               ShapeError, "conv '{}': rows [count, O] must fit out [N, O, Ho, Wo] from row {}, got {} and {}", layer,
               first, rows.shape().to_string(), out.shape().to_string());
  require_like(rows, out, rows.shape(), layer, "rows");
  if (bias != nullptr) require_like(*bias, out, Shape{out.size(1)}, layer, "bias");
  SDNQ_REQUIRE((out.size(1) + conv_tile - 1) / conv_tile <= 65535, UnsupportedError,
               "conv '{}': {} output channels are too many for rows_to_nchw", layer, out.size(1));
  const std::int64_t count = rows.size(0);
  if (count == 0) return;
  const dim3 grid(static_cast<unsigned>((count + conv_tile - 1) / conv_tile),
                  static_cast<unsigned>((out.size(1) + conv_tile - 1) / conv_tile));
  dispatch_16bit(out.dtype(), [&]<class T>() {
    rows_to_nchw_kernel<T><<<grid, dim3(conv_tile, conv_tile_rows), 0, stream>>>(
        static_cast<const T*>(rows.data()), bias != nullptr ? static_cast<const T*>(bias->data()) : nullptr,
        static_cast<T*>(out.data()), static_cast<int>(out.size(1)), out.size(2) * out.size(3), first, count);
  });
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
