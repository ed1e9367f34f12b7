#pragma once
// Launcher of the fused attention tests (defined in test_attention.cu, called from test_attention.cpp).
#include <cstdint>

#include "sdnq/core/tensor.hpp"

namespace sdnq::test {

// How q, k, v and out sit in device memory: [B, H, L, D] contiguous, or [B, L, H, D] (the models'
// layout) passed to the kernel as strided [B, H, L, D] views.
enum class AttentionLayout { heads_first, tokens_first };

struct AttentionCase {
  std::int64_t batch = 1, heads = 1, query_length = 1, key_length = 1, head_dim = 64;
  float scale = 0.125f;
  bool causal = false;
  AttentionLayout layout = AttentionLayout::heads_first;
  int block = -1;  // kernel block shape (cuda::ops::kernel_detail::AttentionBlock), -1 = default
};

// q [B, H, Lq, D], k and v [B, H, Lk, D] host tensors of dtype bf16 or f16 (contiguous): copies them
// to the GPU in the case's layout, poisons out with NaN, runs cuda::ops::attention, returns out as a
// host [B, H, Lq, D] tensor of the same dtype. `bias` (optional, host, contiguous) is uploaded as it is
// and passed as AttentionOptions::bias.
Tensor run_attention_kernel(const AttentionCase& c, const TensorView& q, const TensorView& k, const TensorView& v,
                            const TensorView* bias = nullptr);

// Calls cuda::ops::attention on device buffers of the given shapes (contents unset) so the tests can
// check the errors raised before launch. dtype applies to all four; out_shape defaults to q's.
void call_attention_with_shapes(DType dtype, const Shape& q, const Shape& k, const Shape& v, const Shape& out,
                                float scale);

// The same with q [B, H, Lq, D], k = v = out-like [B, H, Lk, D] shapes and a device bias of `bias_shape`
// and `bias_dtype`; `block` ≥ 0 picks the kernel block shape (attention_with_block).
void call_attention_with_bias(DType dtype, const Shape& q, const Shape& kv, const Shape& bias_shape, DType bias_dtype,
                              int block = -1);

// The block shape of the sm_90a kernel (AttentionBlock::sm90_wgmma) and whether device 0 runs it.
int attention_sm90_block();
bool attention_sm90_available();

// cuda::ops::attention_with_block with the sm_90a kernel on device buffers of the given shapes (contents
// unset), causal or with a [B, 1, 1, Lk] bias, so the tests can check the refusal.
void call_attention_sm90(DType dtype, const Shape& q, const Shape& kv, bool causal, bool bias);

}  // namespace sdnq::test
