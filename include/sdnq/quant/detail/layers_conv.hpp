#pragma once
// im2col for Conv2d: the input [N, C, H, W] unfolded to rows [N·OH·OW, C·KH·KW] with the columns in
// channel-major order (c, kh, kw) — F.unfold's order, which matches the flattened [out, C·KH·KW]
// weight (§5.2). Zero padding; stride and dilation per axis.
#include <array>
#include <cstdint>
#include <vector>

#include "sdnq/core/parallel.hpp"

namespace sdnq::quant::detail {

struct ConvGeometry {
  std::int64_t batch, channels, height, width;
  std::int64_t kernel_h, kernel_w;
  std::array<std::int64_t, 2> stride, padding, dilation;
  std::int64_t out_h() const { return (height + 2 * padding[0] - dilation[0] * (kernel_h - 1) - 1) / stride[0] + 1; }
  std::int64_t out_w() const { return (width + 2 * padding[1] - dilation[1] * (kernel_w - 1) - 1) / stride[1] + 1; }
  std::int64_t columns() const { return channels * kernel_h * kernel_w; }
  std::int64_t rows() const { return batch * out_h() * out_w(); }
};

// input: [N, C, H, W] fp32 values; returns [N·OH·OW, C·KH·KW].
inline std::vector<float> im2col(const std::vector<float>& input, const ConvGeometry& g) {
  const std::int64_t oh = g.out_h(), ow = g.out_w(), columns = g.columns();
  std::vector<float> rows(static_cast<std::size_t>(g.rows() * columns));
  parallel_for(0, g.batch * oh, 4, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t image_row = begin; image_row < end; ++image_row) {
      const std::int64_t n = image_row / oh, y = image_row % oh;
      for (std::int64_t x = 0; x < ow; ++x) {
        float* row = rows.data() + ((n * oh + y) * ow + x) * columns;
        for (std::int64_t c = 0; c < g.channels; ++c)
          for (std::int64_t i = 0; i < g.kernel_h; ++i)
            for (std::int64_t j = 0; j < g.kernel_w; ++j) {
              const std::int64_t iy = y * g.stride[0] - g.padding[0] + i * g.dilation[0];
              const std::int64_t ix = x * g.stride[1] - g.padding[1] + j * g.dilation[1];
              const bool inside = iy >= 0 && iy < g.height && ix >= 0 && ix < g.width;
              *row++ = inside ? input[((n * g.channels + c) * g.height + iy) * g.width + ix] : 0.0f;
            }
      }
    }
  });
  return rows;
}

// [N·OH·OW, O] rows back to channels-first [N, O, OH, OW].
inline std::vector<float> rows_to_channels_first(const std::vector<float>& rows, std::int64_t batch,
                                                 std::int64_t positions, std::int64_t out_channels) {
  std::vector<float> result(rows.size());
  for (std::int64_t n = 0; n < batch; ++n)
    for (std::int64_t p = 0; p < positions; ++p)
      for (std::int64_t o = 0; o < out_channels; ++o)
        result[(n * out_channels + o) * positions + p] = rows[(n * positions + p) * out_channels + o];
  return result;
}

}  // namespace sdnq::quant::detail
