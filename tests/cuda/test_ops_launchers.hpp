#pragma once
// Launchers of the element-wise / normalization / layout op tests (defined in test_ops_launchers.cu,
// called from test_ops_*.cpp). Each takes host tensors (bf16 or f16 unless said otherwise), copies
// them to the GPU, fills the output with NaN (0xFF bytes) before the launch, runs the op on its own
// stream and returns the output on the host.
#include <cstdint>
#include <string>

#include "sdnq/core/tensor.hpp"
#include "sdnq/nn/detail/ops_elementwise.hpp"

namespace sdnq::test::ops {

Tensor activation(const TensorView& x, nn::Activation activation, bool in_place);
// x [R, W]: columns [x_first, x_first + C) through `activation` into columns [out_first, out_first + C) of a
// NaN-filled [R, out_width] buffer (cuda::ops::activation_rows on row-strided views), returned whole.
Tensor activation_rows(const TensorView& x, std::int64_t x_first, std::int64_t columns, std::int64_t out_width,
                       std::int64_t out_first, nn::Activation activation);
Tensor geglu(const TensorView& x);
Tensor add(const TensorView& a, const TensorView& b);
Tensor add_vector(const TensorView& x, const TensorView& v);
Tensor mul_vector(const TensorView& x, const TensorView& v);
Tensor add_channel_vector(const TensorView& x, const TensorView& v);
// emb [B, chunks·D]: shift / scale / gate are its chunks (cuda::ops::modulation_chunk views).
Tensor modulate(const TensorView& x, const TensorView& emb, int chunks, int shift_index, int scale_index);
Tensor gated_add(const TensorView& residual, const TensorView& emb, int chunks, int gate_index,
                 const TensorView& update);
Tensor layer_norm(const TensorView& x, const TensorView* weight, const TensorView* bias, float eps);
// LayerNorm (no affine) then · (1 + scale) + shift, with shift / scale chunks of emb [B, chunks·D].
Tensor layer_norm_modulate(const TensorView& x, const TensorView& emb, int chunks, int shift_index, int scale_index,
                           float eps);
// t5_two_step_rounding: cuda::ops::RmsNormRounding::t5_two_step, else once (the default).
Tensor rms_norm(const TensorView& x, const TensorView* weight, float eps, bool t5_two_step_rounding = false);
Tensor group_norm(const TensorView& x, int groups, const TensorView* weight, const TensorView* bias, float eps,
                  bool silu);
Tensor softmax(const TensorView& x);
// x [B, L, H, D]; cos, sin f32 [L, D]; run on the [B, H, L, D] split_heads view of [B, L, H·D], in place.
Tensor rope(const TensorView& x, const TensorView& cos, const TensorView& sin);
// t f32 [N] -> [N, dim] of `out_dtype`.
Tensor timestep_embedding(const TensorView& t, int dim, bool flip_sin_to_cos, float shift, float scale, int max_period,
                          DType out_dtype);
Tensor upsample_nearest2x(const TensorView& x);
Tensor patchify(const TensorView& image, int patch, bool channel_major);
Tensor unpatchify(const TensorView& tokens, int patch, bool channel_major, const Shape& image_shape);

// Runs one op with a wrong argument (named by `which`); the op must throw before launching.
void call_with_bad_argument(const std::string& which);

}  // namespace sdnq::test::ops
