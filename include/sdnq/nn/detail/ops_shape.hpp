#pragma once
// Data movement: concat, chunk, permute (materialized), nearest 2× upsampling.
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "sdnq/core/parallel.hpp"
#include "sdnq/nn/detail/ops_common.hpp"

namespace sdnq::nn {

inline Tensor concat(std::span<const TensorView> parts, int axis) {
  SDNQ_REQUIRE(!parts.empty(), ShapeError, "nn::concat needs at least one tensor");
  const int rank = parts[0].rank();
  axis = detail::normalize_axis(axis, rank, "concat");
  Shape shape = parts[0].shape();
  shape[axis] = 0;
  for (const auto& part : parts) {
    detail::require_host_f32(part, "concat", "part");
    bool same = part.rank() == rank;
    for (int a = 0; same && a < rank; ++a) same = a == axis || part.size(a) == parts[0].size(a);
    SDNQ_REQUIRE(same, ShapeError, "nn::concat along axis {}: {} and {} differ on another axis", axis,
                 parts[0].shape().to_string(), part.shape().to_string());
    shape[axis] += part.size(axis);
  }
  Tensor out = Tensor::empty(shape, DType::f32);
  const std::int64_t outer = detail::extent_product(shape, 0, axis),
                     inner = detail::extent_product(shape, axis + 1, rank);
  float* po = out.data_as<float>();
  std::int64_t column = 0;
  for (const auto& part : parts) {
    Tensor storage;
    const float* pp = detail::contiguous_f32(part, storage, "concat", "part");
    const std::int64_t width = part.size(axis) * inner;
    for (std::int64_t o = 0; o < outer; ++o)
      std::memcpy(po + o * shape[axis] * inner + column, pp + o * width,
                  static_cast<std::size_t>(width) * sizeof(float));
    column += width;
  }
  return out;
}

// `chunks` equal pieces along `axis` (torch.chunk with a divisible extent).
inline std::vector<Tensor> chunk(const TensorView& x, int chunks, int axis) {
  Tensor storage;
  const float* px = detail::contiguous_f32(x, storage, "chunk", "x");
  axis = detail::normalize_axis(axis, x.rank(), "chunk");
  SDNQ_REQUIRE(chunks >= 1 && x.size(axis) % chunks == 0, ShapeError, "nn::chunk: {} chunks must divide axis {} of {}",
               chunks, axis, x.shape().to_string());
  Shape shape = x.shape();
  shape[axis] /= chunks;
  const std::int64_t outer = detail::extent_product(x.shape(), 0, axis);
  const std::int64_t width = shape[axis] * detail::extent_product(x.shape(), axis + 1, x.rank());
  std::vector<Tensor> out;
  for (int c = 0; c < chunks; ++c) {
    Tensor piece = Tensor::empty(shape, DType::f32);
    for (std::int64_t o = 0; o < outer; ++o)
      std::memcpy(piece.data_as<float>() + o * width, px + (o * chunks + c) * width,
                  static_cast<std::size_t>(width) * sizeof(float));
    out.push_back(std::move(piece));
  }
  return out;
}

// out.shape[i] = x.shape[axes[i]], copied into contiguous memory.
inline Tensor permute(const TensorView& x, std::span<const int> axes) {
  detail::require_host_f32(x, "permute", "x");
  SDNQ_REQUIRE(static_cast<int>(axes.size()) == x.rank(), ShapeError,
               "nn::permute: {} axes given for a tensor of rank {}", axes.size(), x.rank());
  Shape shape, strides;
  std::vector<bool> seen(static_cast<std::size_t>(x.rank()), false);
  for (int axis : axes) {
    const int a = detail::normalize_axis(axis, x.rank(), "permute");
    SDNQ_REQUIRE(!seen[static_cast<std::size_t>(a)], ShapeError, "nn::permute: axis {} appears twice", a);
    seen[static_cast<std::size_t>(a)] = true;
    shape.push_back(x.size(a));
    strides.push_back(x.stride(a));
  }
  Tensor out = Tensor::empty(shape, DType::f32);
  copy(out, TensorView(x.data(), DType::f32, shape, strides, x.device()));
  return out;
}

// x [N, C, H, W] -> [N, C, 2H, 2W], each pixel repeated 2×2.
inline Tensor upsample_nearest2x(const TensorView& x) {
  Tensor storage;
  const float* px = detail::contiguous_f32(x, storage, "upsample_nearest2x", "x");
  SDNQ_REQUIRE(x.rank() == 4, ShapeError, "nn::upsample_nearest2x needs x [N, C, H, W], got {}", x.shape().to_string());
  const std::int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  Tensor out = Tensor::empty({x.size(0), x.size(1), 2 * h, 2 * w}, DType::f32);
  float* po = out.data_as<float>();
  parallel_for(0, planes, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t p = begin; p < end; ++p)
      for (std::int64_t y = 0; y < 2 * h; ++y)
        for (std::int64_t xx = 0; xx < 2 * w; ++xx) po[(p * 2 * h + y) * 2 * w + xx] = px[(p * h + y / 2) * w + xx / 2];
  });
  return out;
}

}  // namespace sdnq::nn
