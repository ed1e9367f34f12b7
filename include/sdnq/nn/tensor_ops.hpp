#pragma once
// Pure functions over host f32 tensors, each returning a new contiguous f32 tensor (activate_ works
// in place). The CPU reference path of the nn layer; the CUDA path will mirror these names.
// Inputs may be non-contiguous views (copied first); every other dtype is a ShapeError.
//
//   linear(x [..., in], W [out, in], b*)          -> [..., out]
//   conv2d(x [N, C, H, W], W [O, C/g, kh, kw], b*, Conv2dParams) -> [N, O, OH, OW]   (im2col + GEMM)
//   layer_norm / rms_norm over the last axis; group_norm(x [N, C, ...], groups)
//   activate_(x, Activation), add / mul (numpy broadcasting), softmax (last axis)
//   attention(q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv], {scale, causal, additive_mask*})
//   concat / chunk / permute, upsample_nearest2x, timestep_embedding (diffusers' sinusoid)
#include "sdnq/nn/detail/ops_attention.hpp"
#include "sdnq/nn/detail/ops_common.hpp"
#include "sdnq/nn/detail/ops_elementwise.hpp"
#include "sdnq/nn/detail/ops_gemm.hpp"
#include "sdnq/nn/detail/ops_linear_conv.hpp"
#include "sdnq/nn/detail/ops_norm.hpp"
#include "sdnq/nn/detail/ops_shape.hpp"
