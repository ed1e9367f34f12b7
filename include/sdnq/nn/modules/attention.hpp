#pragma once
// Head reshaping around nn::attention: [B, L, H·hd] <-> [B, H, L, hd].
#include <cstdint>

#include "sdnq/nn/tensor_ops.hpp"

namespace sdnq::nn {

// x [B, L, H·hd] -> [B, H, L, hd] (materialized).
inline Tensor split_heads(const TensorView& x, std::int64_t heads) {
  SDNQ_REQUIRE(x.rank() == 3 && heads >= 1 && x.size(2) % heads == 0, ShapeError,
               "split_heads: x must be [B, L, heads·head_dim] with heads = {}, got {}", heads, x.shape().to_string());
  Tensor storage;
  const float* data = detail::contiguous_f32(x, storage, "split_heads", "x");
  const TensorView as4d(const_cast<float*>(data), DType::f32, Shape{x.size(0), x.size(1), heads, x.size(2) / heads});
  const int axes[] = {0, 2, 1, 3};
  return permute(as4d, axes);
}

// x [B, H, L, hd] -> [B, L, H·hd] (materialized).
inline Tensor merge_heads(const TensorView& x) {
  SDNQ_REQUIRE(x.rank() == 4, ShapeError, "merge_heads: x must be [B, H, L, head_dim], got {}", x.shape().to_string());
  const int axes[] = {0, 2, 1, 3};
  Tensor out = permute(x, axes);
  out.reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
  return out;
}

}  // namespace sdnq::nn
