// Launchers of the fused attention tests (Catch cases in test_attention.cpp).
#include <cuda_runtime.h>

#include <array>

#include "cuda/test_attention_support.hpp"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/ops/attention.cuh"

namespace sdnq::test {

namespace {

// [B, H, L, D] host -> device in `layout`; returns the owning tensor and the [B, H, L, D] view of it.
struct DeviceOperand {
  Tensor storage;
  TensorView view;
};

DeviceOperand upload(const TensorView& host, AttentionLayout layout) {
  if (layout == AttentionLayout::heads_first) {
    Tensor storage = cuda::to_device(host);
    const TensorView view = storage.view();
    return {std::move(storage), view};
  }
  // [B, H, L, D] -> [B, L, H, D] on the host, then the device copy seen through split_heads.
  const std::int64_t b = host.size(0), h = host.size(1), l = host.size(2), d = host.size(3);
  const TensorView permuted(host.data(), host.dtype(), Shape{b, l, h, d},
                            Shape{host.stride(0), host.stride(2), host.stride(1), host.stride(3)}, host.device());
  Tensor tokens_first = Tensor::empty(Shape{b, l, h, d}, host.dtype());
  copy(tokens_first, permuted);
  Tensor storage = cuda::to_device(tokens_first);
  const TensorView view = cuda::ops::split_heads(storage.view().reshaped(Shape{b, l, h * d}), h, d);
  return {std::move(storage), view};
}

}  // namespace

Tensor run_attention_kernel(const AttentionCase& c, const TensorView& q, const TensorView& k, const TensorView& v,
                            const TensorView* bias) {
  const DeviceOperand dq = upload(q, c.layout), dk = upload(k, c.layout), dv = upload(v, c.layout);
  const Shape out_shape{c.batch, c.heads, c.query_length, c.head_dim};
  Tensor out_storage = cuda::empty(out_shape, q.dtype());
  SDNQ_CUDA_CHECK(cudaMemset(out_storage.data(), 0xFF, out_storage.nbytes()));  // NaN in bf16 and fp16
  TensorView out_view = out_storage.view();
  if (c.layout == AttentionLayout::tokens_first)
    out_view = cuda::ops::split_heads(out_storage.view().reshaped(Shape{c.batch, c.query_length, c.heads * c.head_dim}),
                                      c.heads, c.head_dim);
  cudaStream_t stream{};
  SDNQ_CUDA_CHECK(cudaStreamCreate(&stream));
  const Tensor device_bias = bias != nullptr ? cuda::to_device(*bias) : Tensor();
  const TensorView bias_view = device_bias.defined() ? device_bias.view() : TensorView();
  const cuda::ops::AttentionOptions options{c.scale, c.causal, bias != nullptr ? &bias_view : nullptr};
  if (c.block < 0)
    cuda::ops::attention(dq.view, dk.view, dv.view, out_view, options, stream);
  else
    cuda::ops::kernel_detail::attention_with_block(dq.view, dk.view, dv.view, out_view, options,
                                                   static_cast<cuda::ops::kernel_detail::AttentionBlock>(c.block),
                                                   stream);
  SDNQ_CUDA_CHECK(cudaStreamSynchronize(stream));
  SDNQ_CUDA_CHECK(cudaStreamDestroy(stream));
  Tensor host_out = cuda::to_host(out_storage);
  if (c.layout == AttentionLayout::heads_first) return host_out;
  // [B, Lq, H, D] -> [B, H, Lq, D]
  Tensor result = Tensor::empty(out_shape, q.dtype());
  const TensorView tokens(host_out.data(), q.dtype(), out_shape,
                          Shape{c.query_length * c.heads * c.head_dim, c.head_dim, c.heads * c.head_dim, 1},
                          Device::cpu());
  copy(result, tokens);
  return result;
}

void call_attention_with_shapes(DType dtype, const Shape& q, const Shape& k, const Shape& v, const Shape& out,
                                float scale) {
  const std::array<Shape, 4> shapes{q, k, v, out};
  std::array<Tensor, 4> tensors;
  for (std::size_t i = 0; i < shapes.size(); ++i) tensors[i] = cuda::empty(shapes[i], dtype);
  cuda::ops::attention(tensors[0], tensors[1], tensors[2], tensors[3], {scale, false}, nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

void call_attention_with_bias(DType dtype, const Shape& q, const Shape& kv, const Shape& bias_shape, DType bias_dtype,
                              int block) {
  const Tensor tq = cuda::empty(q, dtype), tk = cuda::empty(kv, dtype), tv = cuda::empty(kv, dtype);
  const Tensor out = cuda::empty(q, dtype), bias = cuda::empty(bias_shape, bias_dtype);
  const TensorView bias_view = bias.view();
  const cuda::ops::AttentionOptions options{1.0f, false, &bias_view};
  if (block < 0)
    cuda::ops::attention(tq, tk, tv, out, options, nullptr);
  else
    cuda::ops::kernel_detail::attention_with_block(tq, tk, tv, out, options,
                                                   static_cast<cuda::ops::kernel_detail::AttentionBlock>(block), nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

int attention_sm90_block() { return static_cast<int>(cuda::ops::kernel_detail::AttentionBlock::sm90_wgmma); }

bool attention_sm90_available() { return cuda::ops::kernel_detail::attention_sm90_code(0); }

void call_attention_sm90(DType dtype, const Shape& q, const Shape& kv, bool causal, bool bias) {
  const Tensor tq = cuda::empty(q, dtype), tk = cuda::empty(kv, dtype), tv = cuda::empty(kv, dtype);
  const Tensor out = cuda::empty(q, dtype), mask = cuda::empty(Shape{q[0], 1, 1, kv[2]}, dtype);
  const TensorView mask_view = mask.view();
  const cuda::ops::AttentionOptions options{1.0f, causal, bias ? &mask_view : nullptr};
  cuda::ops::kernel_detail::attention_with_block(tq, tk, tv, out, options,
                                                 cuda::ops::kernel_detail::AttentionBlock::sm90_wgmma, nullptr);
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace sdnq::test
