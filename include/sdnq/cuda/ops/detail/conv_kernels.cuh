#pragma once
// The kernel of conv.cuh: im2col of a chunk of output positions of one image.
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/ops/detail/common.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops::kernel_detail {

// Geometry of one conv2d launch (square kernel, same stride on both axes; padding per side).
struct ConvGeometry {
  int channels = 0, height = 0, width = 0;  // input [C, H, W] of one image
  int out_height = 0, out_width = 0;
  int kernel = 1, stride = 1, pad_top = 0, pad_left = 0;
};

// columns [C·k·k, count] (row-major) for output positions [first, first + count) of image x [C, H, W]:
// columns[(c·k + ky)·k + kx][p] = x[c, oy·s − pad_top + ky, ox·s − pad_left + kx], 0 outside the image.
template <class T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ columns, ConvGeometry g, std::int64_t first,
                              std::int64_t count) {
  const std::int64_t rows = static_cast<std::int64_t>(g.channels) * g.kernel * g.kernel;
  const std::int64_t total = rows * count;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / count, position = first + (i - row * count);
    const int kx = static_cast<int>(row % g.kernel);
    const int ky = static_cast<int>((row / g.kernel) % g.kernel);
    const std::int64_t c = row / (g.kernel * g.kernel);
    const int oy = static_cast<int>(position / g.out_width), ox = static_cast<int>(position % g.out_width);
    const int iy = oy * g.stride - g.pad_top + ky, ix = ox * g.stride - g.pad_left + kx;
    const bool inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width;
    columns[i] = inside ? x[(c * g.height + iy) * g.width + ix] : from_float<T>(0.0f);
  }
}

// The convs that run on quantized codes see the image as rows: output row r = image·Ho·Wo + position,
// column (ky·k + kx)·C + c (position-major, the order quant::conv2d_weight_as_linear gives the weight).
// Both kernels are 32×32 tiled transposes through shared memory so that global reads and writes stay
// coalesced (NCHW runs along positions, the rows along channels).
inline constexpr int conv_tile = 32, conv_tile_rows = 8;

// rows [count, k·k·C] for output rows [first, first + count) of x [N, C, H, W]; blockIdx.z = ky·k + kx.
template <class T>
__global__ void im2row_kernel(const T* __restrict__ x, T* __restrict__ rows, ConvGeometry g, std::int64_t first,
                              std::int64_t count) {
  __shared__ T tile[conv_tile][conv_tile + 1];  // [channel][row]
  const int kernel_position = blockIdx.z, ky = kernel_position / g.kernel, kx = kernel_position % g.kernel;
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * conv_tile;
  const int channel0 = blockIdx.y * conv_tile;
  const std::int64_t positions = static_cast<std::int64_t>(g.out_height) * g.out_width;
  {  // read: threadIdx.x walks output positions (neighbouring input pixels)
    const std::int64_t local = row0 + threadIdx.x;
    const std::int64_t r = first + local;
    const std::int64_t image = r / positions, position = r - image * positions;
    const int oy = static_cast<int>(position / g.out_width), ox = static_cast<int>(position % g.out_width);
    const int iy = oy * g.stride - g.pad_top + ky, ix = ox * g.stride - g.pad_left + kx;
    const bool inside = local < count && iy >= 0 && iy < g.height && ix >= 0 && ix < g.width;
    for (int c = threadIdx.y; c < conv_tile; c += conv_tile_rows) {
      const int channel = channel0 + c;
      tile[c][threadIdx.x] = inside && channel < g.channels
                                 ? x[((image * g.channels + channel) * g.height + iy) * g.width + ix]
                                 : from_float<T>(0.0f);
    }
  }
  __syncthreads();
  // write: threadIdx.x walks channels (contiguous columns of one row)
  const std::int64_t columns = static_cast<std::int64_t>(g.kernel) * g.kernel * g.channels;
  const int channel = channel0 + threadIdx.x;
  if (channel >= g.channels) return;
  for (int i = threadIdx.y; i < conv_tile; i += conv_tile_rows) {
    const std::int64_t local = row0 + i;
    if (local < count) rows[local * columns + static_cast<std::int64_t>(kernel_position) * g.channels + channel] =
        tile[threadIdx.x][i];
  }
}

// out[image, o, position] = rows[r − first, o] (+ bias[o], added in fp32 and rounded once more) for
// r in [first, first + count); out is [N, O, positions].
template <class T>
__global__ void rows_to_nchw_kernel(const T* __restrict__ rows, const T* __restrict__ bias, T* __restrict__ out,
                                    int out_channels, std::int64_t positions, std::int64_t first,
                                    std::int64_t count) {
  __shared__ T tile[conv_tile][conv_tile + 1];  // [row][channel]
  const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * conv_tile;
  const int channel0 = blockIdx.y * conv_tile;
  {  // read: threadIdx.x walks channels of one row
    const int channel = channel0 + threadIdx.x;
    for (int i = threadIdx.y; i < conv_tile; i += conv_tile_rows) {
      const std::int64_t local = row0 + i;
      if (local < count && channel < out_channels) tile[i][threadIdx.x] = rows[local * out_channels + channel];
    }
  }
  __syncthreads();
  // write: threadIdx.x walks rows (neighbouring positions of one channel plane)
  const std::int64_t local = row0 + threadIdx.x;
  if (local >= count) return;
  const std::int64_t r = first + local, image = r / positions, position = r - image * positions;
  for (int c = threadIdx.y; c < conv_tile; c += conv_tile_rows) {
    const int channel = channel0 + c;
    if (channel >= out_channels) break;
    T value = tile[threadIdx.x][c];
    if (bias != nullptr) value = from_float<T>(to_float(value) + to_float(bias[channel]));
    out[(image * out_channels + channel) * positions + position] = value;
  }
}

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
