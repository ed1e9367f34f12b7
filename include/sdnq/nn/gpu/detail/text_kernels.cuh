#pragma once
// Kernels of the GPU text encoders that no shared op covers: the token + position embedding lookup and
// the pooled-token gather (CLIP's end-of-text rule). bf16 tables and activations, I64 or I32 ids.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/check.hpp"

namespace sdnq::nn::gpu::detail {

template <class Id>
__device__ inline std::int64_t id_at(const void* ids, std::int64_t i) {
  return static_cast<std::int64_t>(static_cast<const Id*>(ids)[i]);
}

// out[t, :] = table[ids[t], :] + positions[t % tokens, :] (positions may be null). An id outside
// [0, vocab) writes a zero row and raises *bad_id (checked by the host after the forward).
template <class Id>
__global__ void embed_tokens_kernel(const void* ids, const __nv_bfloat16* table, const __nv_bfloat16* positions,
                                    __nv_bfloat16* out, std::int64_t rows, std::int64_t tokens, std::int64_t dim,
                                    std::int64_t vocab, int* bad_id) {
  const std::int64_t row = blockIdx.x;
  if (row >= rows) return;
  const std::int64_t id = id_at<Id>(ids, row);
  const bool valid = id >= 0 && id < vocab;
  if (!valid && threadIdx.x == 0) atomicExch(bad_id, 1);
  const __nv_bfloat16* position = positions != nullptr ? positions + (row % tokens) * dim : nullptr;
  for (std::int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
    float value = valid ? __bfloat162float(table[id * dim + c]) : 0.0f;
    if (position != nullptr) value += __bfloat162float(position[c]);
    out[row * dim + c] = __float2bfloat16(value);
  }
}

// pooled[b, :] = hidden[b, p(b), :] with p(b) = argmax(ids[b]) (first maximum) when eos_token_id is
// negative (legacy CLIP configs), else the first position holding eos_token_id, 0 when there is none.
template <class Id>
__global__ void gather_eos_kernel(const void* ids, const __nv_bfloat16* hidden, __nv_bfloat16* pooled,
                                  std::int64_t tokens, std::int64_t dim, std::int64_t eos_token_id) {
  const std::int64_t b = blockIdx.x;
  __shared__ std::int64_t position;
  if (threadIdx.x == 0) {
    std::int64_t best = 0;
    if (eos_token_id < 0) {
      for (std::int64_t i = 1; i < tokens; ++i)
        if (id_at<Id>(ids, b * tokens + i) > id_at<Id>(ids, b * tokens + best)) best = i;
    } else {
      for (std::int64_t i = tokens - 1; i >= 0; --i)
        if (id_at<Id>(ids, b * tokens + i) == eos_token_id) best = i;
    }
    position = best;
  }
  __syncthreads();
  for (std::int64_t c = threadIdx.x; c < dim; c += blockDim.x)
    pooled[b * dim + c] = hidden[(b * tokens + position) * dim + c];
}

inline void embed_tokens(const TensorView& ids, const TensorView& table, const TensorView* positions,
                         const TensorView& out, int* bad_id, cudaStream_t stream) {
  const std::int64_t rows = ids.numel(), tokens = ids.size(ids.rank() - 1), dim = table.size(1);
  if (rows == 0) return;
  const auto* table_data = static_cast<const __nv_bfloat16*>(table.data());
  const auto* position_data = positions != nullptr ? static_cast<const __nv_bfloat16*>(positions->data()) : nullptr;
  auto* out_data = static_cast<__nv_bfloat16*>(out.data());
  if (ids.dtype() == DType::i64)
    embed_tokens_kernel<std::int64_t><<<static_cast<unsigned>(rows), 128, 0, stream>>>(
        ids.data(), table_data, position_data, out_data, rows, tokens, dim, table.size(0), bad_id);
  else
    embed_tokens_kernel<std::int32_t><<<static_cast<unsigned>(rows), 128, 0, stream>>>(
        ids.data(), table_data, position_data, out_data, rows, tokens, dim, table.size(0), bad_id);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// ids [B, L], hidden [B, L, D], pooled [B, D].
inline void gather_eos(const TensorView& ids, const TensorView& hidden, const TensorView& pooled,
                       std::int64_t eos_token_id, cudaStream_t stream) {
  const std::int64_t batch = ids.size(0), tokens = ids.size(1), dim = hidden.size(2);
  if (batch == 0) return;
  const auto* in = static_cast<const __nv_bfloat16*>(hidden.data());
  auto* out = static_cast<__nv_bfloat16*>(pooled.data());
  if (ids.dtype() == DType::i64)
    gather_eos_kernel<std::int64_t>
        <<<static_cast<unsigned>(batch), 128, 0, stream>>>(ids.data(), in, out, tokens, dim, eos_token_id);
  else
    gather_eos_kernel<std::int32_t>
        <<<static_cast<unsigned>(batch), 128, 0, stream>>>(ids.data(), in, out, tokens, dim, eos_token_id);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sdnq::nn::gpu::detail
