#pragma once
// Host launchers of the GPU conv2d tests and of the split GroupNorm test (test_ops_conv.cu), callable
// from the Catch test cases.
#include <cstdint>
#include <string>

#include "sdnq/core/tensor.hpp"

namespace sdnq::test::conv {

struct ConvCall {
  int stride = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  // Scratch bytes handed to the op; 0: conv2d_workspace_bytes (whole images per chunk).
  std::int64_t scratch_bytes = 0;
};

// cuda::ops::conv2d on copies of the host tensors (bf16 or fp16; bias may be null) into a NaN-poisoned
// output; returns the output on the host.
Tensor conv2d_on_gpu(const TensorView& x, const TensorView& weight, const TensorView* bias, const ConvCall& call);

// cuda::ops::im2row of copies of x: rows [count, k·k·C] of output rows [first, first + count), into a
// NaN-poisoned buffer; returns them on the host.
Tensor im2row_on_gpu(const TensorView& x, int kernel, const ConvCall& call, std::int64_t first, std::int64_t count);

// cuda::ops::rows_to_nchw of copies of rows [count, O] (bias may be null) into a NaN-poisoned out of
// `out_shape` from row `first`; returns all of out on the host.
Tensor rows_to_nchw_on_gpu(const TensorView& rows, const TensorView* bias, std::int64_t first, const Shape& out_shape);

// Runs one misuse of cuda::ops::conv2d named by `which` (layer name "decoder.conv_in"); throws what the op throws.
void conv2d_misuse(const std::string& which);

// cuda::ops::group_norm with the scratch of group_norm_workspace_bytes (the split kernel where it
// applies) into a NaN-poisoned output, or in place; `scratch_bytes` receives the scratch size used.
Tensor group_norm_split_on_gpu(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias,
                               float eps, bool silu, bool in_place, std::int64_t& scratch_bytes);

// The ops of one top-level VAE decoder resnet at real size, x [1, channels, size, size] bf16: milliseconds
// per call (median of 5 after a warm-up) of the 3×3 conv, GroupNorm+SiLU in one block per group (32
// groups) and split, and the largest |split − one block| difference of their outputs.
struct LargeOpTimings {
  double conv_ms = 0.0, group_norm_one_block_ms = 0.0, group_norm_split_ms = 0.0;
  double split_max_difference = 0.0;
};
LargeOpTimings time_vae_top_level_ops(int channels, int size);

}  // namespace sdnq::test::conv
