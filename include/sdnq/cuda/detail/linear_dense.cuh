#pragma once
// The large-M route of quantized_linear (linear.cuh): dequantize the weight into the caller's
// workspace N-chunk by N-chunk (bounded size) and multiply each chunk with one cuBLAS bf16/fp16 GEMM
// (fp32 accumulation, one rounding).
//   Without SVD: x goes to the GEMM as is (K unchanged); a bias is added by a cuBLASLt bias epilogue
//   (in fp32 before the single rounding; no extra pass over y), or, with
//   QuantizedLinearOptions::bias_epilogue off, broadcast into y first and accumulated with beta = 1.
//   With SVD: the rank columns (and the bias, when there is one) ride along as extra K columns padded
//   with zeros to a multiple of 64, so K stays tile-friendly and the GEMM writes y once:
//     x_ext [M, E] = [ x | x·svd_downᵀ | 1 | 0… ]            E = K + (r + 1 rounded up to 64)
//     W_ext [rows, E] = [ dequant(W) | svd_up | bias | 0… ]   per chunk of rows of W
//     y[:, chunk] = x_ext · W_extᵀ
//   x·svd_downᵀ is rounded to T before the second product (as the tensor-core kernel does).
// The chunk is dequantized from the one code layout the layer keeps: the tensor-core layout
// (dequantize_tensor_core_layout below), the GEMV layout (the vector kernel for 2/4/8 bits,
// dequantize_gemv_layout below for the other widths) or the checkpoint layout (dequantize.cuh).
// Measured on one H100 (bench_linear, M = 4096): the former bias column at K + 8 cost 80-130 µs (the x
// copy and slower cuBLAS kernels at an odd K). beta = 1 is cheaper where N is small (int8 3072×12288:
// 665 → 521 µs) but still moves 2·M·N elements more than the GEMM alone (int8 12288×3072: 586 → 570 µs,
// 507 without bias); the cuBLASLt bias epilogue removes that traffic (H100, M = 4096: int8 3072² 144.7 → 129.4 µs,
// 12288×3072 568 → 512 µs). A 16 MiB chunk (dequantized chunk kept in L2 for the GEMM) was slower everywhere.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/config.cuh"
#include "sdnq/cuda/detail/dequantize_vector.cuh"
#include "sdnq/cuda/detail/gemm_tc_fragments.cuh"
#include "sdnq/cuda/detail/kernel_convert.cuh"

SDNQ_KERNEL_NAMESPACE_BEGIN
namespace kernel_detail {

// Columns [K, E) of `rows` rows of a row-major [rows, E] matrix: column K + c (c < rank) is
// low_rank[row, c] (already written, skipped when `source` is null) or source[row·source_stride + c];
// column K + rank is `one_value` (1 for x_ext) or bias[row] (W_ext) when there is a bias; the rest 0.
template <class T>
__global__ void fill_extension_kernel(T* __restrict__ matrix, std::int64_t rows, std::int64_t in_features,
                                      std::int64_t row_elements, const T* __restrict__ source,
                                      std::int64_t source_stride, int rank, bool has_bias, const T* __restrict__ bias) {
  const std::int64_t width = row_elements - in_features;
  const std::int64_t total = rows * width;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / width, c = i - row * width;
    T* element = matrix + row * row_elements + in_features + c;
    if (c < rank) {
      if (source != nullptr) *element = source[row * source_stride + c];
    } else if (c == rank && has_bias) {
      *element = bias != nullptr ? bias[row] : from_float<T>(1.0f);
    } else {
      *element = from_float<T>(0.0f);
    }
  }
}

template <class T>
void launch_fill_extension(void* matrix, std::int64_t rows, std::int64_t in_features, std::int64_t row_elements,
                           const void* source, std::int64_t source_stride, int rank, bool has_bias, const void* bias,
                           cudaStream_t stream) {
  const std::int64_t total = rows * (row_elements - in_features);
  if (total == 0) return;
  const std::int64_t blocks = (total + 255) / 256;
  fill_extension_kernel<T><<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(
      static_cast<T*>(matrix), rows, in_features, row_elements, static_cast<const T*>(source), source_stride, rank,
      has_bias, static_cast<const T*>(bias));
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// y[m, o] = bias[o] for a row-major [rows, columns] y (the C operand of a beta = 1 GEMM).
template <class T>
__global__ void broadcast_bias_kernel(T* __restrict__ y, std::int64_t rows, std::int64_t columns,
                                      const T* __restrict__ bias) {
  const std::int64_t column = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (column >= columns) return;
  const T value = bias[column];
  for (std::int64_t row = blockIdx.y; row < rows; row += gridDim.y) y[row * columns + column] = value;
}

template <class T>
void launch_broadcast_bias(void* y, std::int64_t rows, std::int64_t columns, const void* bias, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((columns + 255) / 256), static_cast<unsigned>(rows < 1024 ? rows : 1024));
  broadcast_bias_kernel<T><<<grid, 256, 0, stream>>>(static_cast<T*>(y), rows, columns, static_cast<const T*>(bias));
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// Rows [first_row, first_row + rows) of a weight in the tensor-core layout (detail/gemm_tc_repack.hpp,
// Bits 4 or 8) dequantized into out [rows, out_row_stride] (T, row-major, 16-byte aligned rows).
// first_row and rows are multiples of 16. One warp per fragment block (16 rows × 64 inputs): each lane
// loads its Bits words (whole 512-byte slices per warp), writes its w = q·s + z pairs into a shared
// 16×64 tile, and the warp stores the tile as 16 rows of 128 contiguous bytes.
struct TensorCoreLayoutChunk {
  const std::uint32_t* codes;  // U32 [K/64, N/16, 32, Bits] of the whole weight
  const void* group_params;    // T [G, N, 2] (scale, zero point) of the whole weight
  void* out;
  std::int64_t first_row, rows, out_features, in_features, group_size, out_row_stride;
  float code_offset;  // 2^(Bits−1) for signed codes, else 0
};

inline constexpr int tensor_core_layout_warps = 8;

template <class T, int Bits>
__global__ void __launch_bounds__(tensor_core_layout_warps * 32)
    dequantize_tensor_core_layout_kernel(const TensorCoreLayoutChunk p) {
  constexpr int padded = 64 + 8;  // tile row in T; the pad staggers banks between rows
  __shared__ alignas(16) T tiles[tensor_core_layout_warps][16 * padded];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  T* tile = tiles[warp];
  const std::int64_t row_blocks = p.rows / 16, k_blocks = p.in_features / 64;
  const std::int64_t n_blocks = p.out_features / 16, first_block = p.first_row / 16;
  const T* params = static_cast<const T*>(p.group_params);
  T* out = static_cast<T*>(p.out);
  for (std::int64_t task = blockIdx.x * static_cast<std::int64_t>(tensor_core_layout_warps) + warp;
       task < row_blocks * k_blocks; task += static_cast<std::int64_t>(gridDim.x) * tensor_core_layout_warps) {
    const std::int64_t k_block = task / row_blocks, row_block = task - k_block * row_blocks;
    const std::uint32_t* block = p.codes + ((k_block * n_blocks + first_block + row_block) * 32) * Bits;
    std::uint32_t words[Bits];
#pragma unroll
    for (int slice = 0; slice < Bits / 4; ++slice) {
      const uint4 v = __ldcs(reinterpret_cast<const uint4*>(block + slice * 128 + lane * 4));
      words[slice * 4] = v.x, words[slice * 4 + 1] = v.y, words[slice * 4 + 2] = v.z, words[slice * 4 + 3] = v.w;
    }
#pragma unroll
    for (int step = 0; step < 4; ++step)
#pragma unroll
      for (int pair = 0; pair < 4; ++pair) {
        const int row = 8 * (pair / 2) + g, column = 16 * step + 8 * (pair % 2) + 2 * t;  // inside the block
        const std::int64_t global_row = p.first_row + row_block * 16 + row;
        const std::int64_t group = (k_block * 64 + column) / p.group_size;
        const T scale = params[(group * p.out_features + global_row) * 2];
        const T zero = params[(group * p.out_features + global_row) * 2 + 1];
        float value[2];
#pragma unroll
        for (int high = 0; high < 2; ++high) {
          const std::uint32_t word = Bits == 4 ? words[step] : words[2 * step + pair / 2];
          const int shift = Bits == 4 ? 4 * (pair + 4 * high) : 8 * (pair % 2 + 2 * high);
          const auto code = static_cast<float>((word >> shift) & ((1u << Bits) - 1u));
          value[high] = fmaf(code - p.code_offset, to_float(scale), to_float(zero));
        }
        *reinterpret_cast<std::uint32_t*>(tile + row * padded + column) = pack_pair<T>(value[0], value[1]);
      }
    __syncwarp();
    // 16 rows × 128 bytes: 128 chunks of 16 bytes, four per lane; 8 lanes cover one row.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int chunk = i * 32 + lane, row = chunk / 8, part = chunk % 8;
      const uint4 v = *reinterpret_cast<const uint4*>(tile + row * padded + part * 8);
      *reinterpret_cast<uint4*>(out + (row_block * 16 + row) * p.out_row_stride + k_block * 64 + part * 8) = v;
    }
    __syncwarp();
  }
}

template <class T>
void launch_dequantize_tensor_core_layout(int bits, const TensorCoreLayoutChunk& chunk, int multiprocessors,
                                          cudaStream_t stream) {
  const std::int64_t tasks = chunk.rows / 16 * (chunk.in_features / 64);
  const std::int64_t wanted = (tasks + tensor_core_layout_warps - 1) / tensor_core_layout_warps;
  const std::int64_t resident = std::int64_t{multiprocessors} * 8;
  const auto blocks = static_cast<unsigned>(wanted < resident ? wanted : resident);
  if (bits == 4)
    dequantize_tensor_core_layout_kernel<T, 4><<<blocks, tensor_core_layout_warps * 32, 0, stream>>>(chunk);
  else
    dequantize_tensor_core_layout_kernel<T, 8><<<blocks, tensor_core_layout_warps * 32, 0, stream>>>(chunk);
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// `rows` rows of a weight in the GEMV layout (repack.hpp: U32 [rows, K/32, Bits], code j of a run of 32
// at bit j·Bits; (scale, zero) T pairs [rows, G, 2]), pointers already at the chunk's first row,
// dequantized into out [rows, out_row_stride]. For the widths the vector kernel does not take
// (1, 3, 5, 6, 7): one thread per run of 32 codes, Bits words in, 64 bytes out. Float codes: `table` holds
// their 2^Bits values (copied to shared memory), else q = code − code_offset.
template <class T, int Bits>
__global__ void __launch_bounds__(256)
    dequantize_gemv_layout_kernel(const std::uint32_t* __restrict__ codes, const T* __restrict__ group_params,
                                  const float* __restrict__ table, T* __restrict__ out, std::int64_t rows,
                                  std::int64_t in_features, std::int64_t group_size, std::int64_t out_row_stride,
                                  float code_offset) {
  __shared__ float values[1 << Bits];
  if (table != nullptr) {
    for (int i = threadIdx.x; i < (1 << Bits); i += blockDim.x) values[i] = table[i];
    __syncthreads();
  }
  const std::int64_t runs_per_row = in_features / 32, groups = in_features / group_size;
  for (std::int64_t run = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; run < rows * runs_per_row;
       run += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = run / runs_per_row, column = (run - row * runs_per_row) * 32;
    std::uint32_t words[Bits + 1];
#pragma unroll
    for (int w = 0; w < Bits; ++w) words[w] = __ldcs(codes + run * Bits + w);
    words[Bits] = 0;
    const std::int64_t param = (row * groups + column / group_size) * 2;
    const float scale = to_float(group_params[param]), zero = to_float(group_params[param + 1]);
    std::uint32_t packed[16];
#pragma unroll
    for (int j = 0; j < 32; j += 2) {
      float value[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int bit = (j + h) * Bits;
        const std::uint64_t both = words[bit / 32] | (static_cast<std::uint64_t>(words[bit / 32 + 1]) << 32);
        const auto code = static_cast<std::uint32_t>((both >> (bit % 32)) & ((1u << Bits) - 1u));
        const float q = table != nullptr ? values[code] : static_cast<float>(code) - code_offset;
        value[h] = fmaf(q, scale, zero);
      }
      packed[j / 2] = pack_pair<T>(value[0], value[1]);
    }
    auto* target = reinterpret_cast<uint4*>(out + row * out_row_stride + column);
#pragma unroll
    for (int q = 0; q < 4; ++q)
      target[q] = make_uint4(packed[4 * q], packed[4 * q + 1], packed[4 * q + 2], packed[4 * q + 3]);
  }
}

template <class T>
void launch_dequantize_gemv_layout(int bits, const std::uint32_t* codes, const void* group_params, const float* table,
                                   void* out, std::int64_t rows, std::int64_t in_features, std::int64_t group_size,
                                   std::int64_t out_row_stride, float code_offset, int multiprocessors,
                                   cudaStream_t stream) {
  const std::int64_t runs = rows * (in_features / 32), wanted = (runs + 255) / 256;
  const std::int64_t resident = std::int64_t{multiprocessors} * 8;
  const auto blocks = static_cast<unsigned>(wanted < resident ? wanted : resident);
  const auto* params = static_cast<const T*>(group_params);
  auto* target = static_cast<T*>(out);
#define SDNQ_GEMV_LAYOUT_CASE(B)                                                                                     \
  case B:                                                                                                            \
    dequantize_gemv_layout_kernel<T, B><<<blocks, 256, 0, stream>>>(codes, params, table, target, rows, in_features, \
                                                                    group_size, out_row_stride, code_offset);        \
    break;
  switch (bits) {
    SDNQ_GEMV_LAYOUT_CASE(1)
    SDNQ_GEMV_LAYOUT_CASE(2)
    SDNQ_GEMV_LAYOUT_CASE(3)
    SDNQ_GEMV_LAYOUT_CASE(4)
    SDNQ_GEMV_LAYOUT_CASE(5)
    SDNQ_GEMV_LAYOUT_CASE(6)
    SDNQ_GEMV_LAYOUT_CASE(7)
    default:
      SDNQ_GEMV_LAYOUT_CASE(8)
  }
#undef SDNQ_GEMV_LAYOUT_CASE
  SDNQ_CUDA_CHECK(cudaGetLastError());
}

// Row-major out[M, N] (leading dimensions lda, ldb, ldo) = a[M, K] · b[N, K]ᵀ + beta · out, fp32 accumulation:
// column-major outᵀ = b · aᵀ with b read transposed.
inline void gemm_row_major_abt(cublasHandle_t handle, cudaDataType_t type, std::int64_t m, std::int64_t n,
                               std::int64_t k, const void* a, std::int64_t lda, const void* b, std::int64_t ldb,
                               void* out, std::int64_t ldo, float beta) {
  const float alpha = 1.0f;
  SDNQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                 static_cast<int>(k), &alpha, b, type, static_cast<int>(ldb), a, type,
                                 static_cast<int>(lda), &beta, out, type, static_cast<int>(ldo), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

// Row-major out[M, N] = a[M, K] · b[N, K]ᵀ + bias[N] by cuBLASLt with the bias epilogue (fp32
// accumulation, bias added before the one rounding to the output type), on `stream`, without workspace.
inline void gemm_row_major_abt_bias(cublasLtHandle_t lt, cudaDataType_t type, std::int64_t m, std::int64_t n,
                                    std::int64_t k, const void* a, std::int64_t lda, const void* b, std::int64_t ldb,
                                    void* out, std::int64_t ldo, const void* bias, cudaStream_t stream) {
  // Column-major view: outᵀ [N, M] = bᵀᵀ [N, K] · aᵀ [K, M]; the bias runs along outᵀ's rows.
  cublasLtMatmulDesc_t operation = nullptr;
  cublasLtMatrixLayout_t b_layout = nullptr, a_layout = nullptr, out_layout = nullptr;
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&operation, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  SDNQ_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(operation, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_layout, type, static_cast<std::uint64_t>(k),
                                               static_cast<std::uint64_t>(n), ldb));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout, type, static_cast<std::uint64_t>(k),
                                               static_cast<std::uint64_t>(m), lda));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&out_layout, type, static_cast<std::uint64_t>(n),
                                               static_cast<std::uint64_t>(m), ldo));
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t status = cublasLtMatmul(lt, operation, &alpha, b, b_layout, a, a_layout, &beta, out, out_layout,
                                               out, out_layout, nullptr, nullptr, 0, stream);
  cublasLtMatrixLayoutDestroy(out_layout);
  cublasLtMatrixLayoutDestroy(a_layout);
  cublasLtMatrixLayoutDestroy(b_layout);
  cublasLtMatmulDescDestroy(operation);
  SDNQ_CUBLAS_CHECK(status);
}

}  // namespace kernel_detail
SDNQ_KERNEL_NAMESPACE_END
