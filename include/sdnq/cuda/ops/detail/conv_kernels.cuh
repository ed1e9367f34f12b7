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

}  // namespace ops::kernel_detail
SDNQ_KERNEL_NAMESPACE_END
