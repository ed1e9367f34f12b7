#pragma once
// What the fused producers of normalization.cuh and elementwise.cuh (layer_norm_to_w8a8, activation_to_w8a8,
// ...) write instead of their bf16/fp16 rows: the 8-bit codes and per-row scales of a quantized-matmul
// GEMM's input (sdnq-format.md §5.1 step 4), the bits cuda::quantize_w8a8_activations would make of the
// rows the plain op writes. The quantization itself is the GEMM's (cuda/detail/w8a8_quantize.cuh); this
// file holds the output description, its checks, and the row kernels of the element-wise producers.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string_view>

#include "sdnq/core/error.hpp"
#include "sdnq/core/tensor.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/w8a8_quantize.cuh"
#include "sdnq/cuda/detail/w8a8_repack.hpp"
#include "sdnq/cuda/ops/detail/common.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace ops {

// The 8-bit rows a fused producer writes in place of its output [rows, D]: codes U8 [rows, D] (int8 or
// float8_e4m3fn bits; 16-byte aligned, D % 16 == 0) and scale F32 [rows], contiguous device tensors. `kind`
// and `scale_in_activation_dtype` are those of the weights that will read them (W8A8Weights::kind and
// scale_dtype != F32). nn::gpu::take_fused_input lays them out as a W8A8Activations buffer.
struct W8A8Rows {
  TensorView codes, scale;
  W8A8Kind kind = W8A8Kind::int8;
  bool scale_in_activation_dtype = false;
};

namespace kernel_detail {

struct W8A8RowsParams {
  std::uint8_t* codes = nullptr;  // [rows, dim]
  float* scale = nullptr;         // [rows]
  bool scale_in_activation_dtype = false;
};

// Checks `out` for `rows` rows of `dim` values of x (whose dtype the codes come from) before a launch.
inline W8A8RowsParams w8a8_rows_params(const W8A8Rows& out, std::int64_t rows, std::int64_t dim, std::string_view op) {
  const TensorView& c = out.codes;
  const TensorView& s = out.scale;
  SDNQ_REQUIRE(dim % 16 == 0, UnsupportedError,
               "cuda::ops::{}: 8-bit output needs rows of a multiple of 16 values (the GEMM's K), got {}", op, dim);
  SDNQ_REQUIRE(rows <= std::numeric_limits<int>::max(), UnsupportedError,
               "cuda::ops::{}: 8-bit output of at most 2^31 - 1 rows, got {}", op, rows);
  SDNQ_REQUIRE((c.dtype() == DType::u8 || c.dtype() == DType::i8) && c.rank() == 2 && c.size(0) == rows &&
                   c.size(1) == dim && c.is_contiguous() && c.device().is_cuda() && aligned16(c.data()),
               ShapeError,
               "cuda::ops::{}: codes must be a contiguous 16-byte aligned U8 device tensor [{}, {}], got {} {} on {}",
               op, rows, dim, dtype_name(c.dtype()), c.shape().to_string(), c.device().to_string());
  SDNQ_REQUIRE(
      s.dtype() == DType::f32 && s.rank() == 1 && s.size(0) == rows && s.is_contiguous() && s.device().is_cuda(),
      ShapeError, "cuda::ops::{}: scale must be a contiguous F32 device tensor [{}], got {} {} on {}", op, rows,
      dtype_name(s.dtype()), s.shape().to_string(), s.device().to_string());
  return {static_cast<std::uint8_t*>(c.data()), static_cast<float*>(s.data()), out.scale_in_activation_dtype};
}

// Dispatches `launch.template operator()<Operand>()` on the kind of the 8-bit rows.
template <class Launch>
void dispatch_w8a8_kind(W8A8Kind kind, Launch&& launch) {
  using cuda::kernel_detail::W8A8Operand;
  if (kind == W8A8Kind::int8)
    launch.template operator()<W8A8Operand::int8>();
  else
    launch.template operator()<W8A8Operand::float8_e4m3fn>();
}

// The element-wise producers, row by row: `Source(row, word)` returns word `word` (8 values, rounded to
// T as the plain op stores them) of the producer's output row `row`. Rows of up to
// w8a8_resident_max_k values take one block of w8a8_resident_threads per row (the row held in
// registers, its inputs read once: quantize_resident_row); longer rows one warp per row, the words
// computed twice (quantize_warp_row).
template <class T, cuda::kernel_detail::W8A8Operand Operand, int Words, class Source>
__global__ void __launch_bounds__(cuda::kernel_detail::w8a8_resident_threads)
    produce_w8a8_resident_rows_kernel(const Source source, const W8A8RowsParams q, int words) {
  const std::int64_t row = blockIdx.x;
  auto* codes = reinterpret_cast<uint2*>(q.codes + row * words * 8);
  cuda::kernel_detail::quantize_resident_row<T, Operand, Words>([&](int word) { return source(row, word); }, words,
                                                                codes, q.scale + row, q.scale_in_activation_dtype);
}

inline constexpr int w8a8_producer_rows_per_block = 4;  // warps per block of the long-row kernel

template <class T, cuda::kernel_detail::W8A8Operand Operand, class Source>
__global__ void __launch_bounds__(w8a8_producer_rows_per_block * 32)
    produce_w8a8_rows_kernel(const Source source, const W8A8RowsParams q, int words, std::int64_t rows) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * w8a8_producer_rows_per_block + threadIdx.x / 32;
  if (row >= rows) return;  // whole warps leave together
  auto* codes = reinterpret_cast<uint2*>(q.codes + row * words * 8);
  cuda::kernel_detail::quantize_warp_row<T, Operand, 4>([&](int word) { return source(row, word); }, words, codes,
                                                        q.scale + row, static_cast<int>(threadIdx.x % 32),
                                                        q.scale_in_activation_dtype);
}

// Launches the producer over `rows` rows of `dim` values (dim % 16 == 0; checked by the caller).
template <class T, cuda::kernel_detail::W8A8Operand Operand, class Source>
void launch_w8a8_producer(const Source& source, const W8A8RowsParams& q, std::int64_t rows, std::int64_t dim,
                          cudaStream_t stream) {
  namespace w8a8 = cuda::kernel_detail;
  if (rows == 0) return;
  const int words = static_cast<int>(dim / 8);
  if (dim <= w8a8::w8a8_resident_max_k) {
    const int per_thread = (words + w8a8::w8a8_resident_threads - 1) / w8a8::w8a8_resident_threads;
    const auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(rows), w8a8::w8a8_resident_threads, 0, stream>>>(source, q, words);
    };
    if (per_thread <= 2) return launch(produce_w8a8_resident_rows_kernel<T, Operand, 2, Source>);
    if (per_thread <= 4) return launch(produce_w8a8_resident_rows_kernel<T, Operand, 4, Source>);
    if (per_thread <= 8) return launch(produce_w8a8_resident_rows_kernel<T, Operand, 8, Source>);
    return launch(produce_w8a8_resident_rows_kernel<T, Operand, w8a8::w8a8_resident_max_words, Source>);
  }
  const auto blocks = static_cast<unsigned>((rows + w8a8_producer_rows_per_block - 1) / w8a8_producer_rows_per_block);
  produce_w8a8_rows_kernel<T, Operand, Source>
      <<<blocks, w8a8_producer_rows_per_block * 32, 0, stream>>>(source, q, words, rows);
}

}  // namespace kernel_detail
}  // namespace ops
SDNQ_KERNEL_NAMESPACE_END
