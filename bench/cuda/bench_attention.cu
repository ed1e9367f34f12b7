// Attention forward in TFLOP/s (4·B·H·Lq·Lk·D FLOPs, causal not counted as halved: none here):
//   sdnq_flash/<block>   cuda::ops::attention (fused, online softmax), each kernel block shape: the
//                        mma.sync kernel's four and sm90_wgmma, the Hopper TMA + wgmma kernel (what
//                        cuda::ops::attention picks on an H100 for these non-causal, bias-free shapes)
//   cublas_materialized  the unfused baseline in the same process: cuBLAS strided-batched S = Q·Kᵀ·scale
//                        (bf16 [B·H, Lq, Lk] in memory), a row softmax kernel, cuBLAS O = P·V
// at FLUX.1's shape (B 1, H 24, L 4608, D 128) and SDXL-like ones (D 64). bf16, [B, H, L, D] tensors.
// Each sdnq row also reports max_abs_diff: the largest |difference| from the cuBLAS baseline's output.
//   sdnq_flash_bias      the same kernel with T5's additive [H, L, L] position bias and scale 1 (the
//                        bias-free row of the same shape beside it shows what reading the bias costs)
// rope_qk: cuda::ops::apply_rope in place on q and k ([B, L, H·D] activations seen through split_heads),
// the memory-bound step FLUX runs right before attention; TBps counts bytes read + written.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/ops/attention.cuh"
#include "sdnq/cuda/ops/positional.cuh"

namespace {

using sdnq_bench::fill;
using sdnq_bench::report;
using sdnq_bench::time_median_us;

struct Problem {
  int batch, heads, length, head_dim;
  double flops() const { return 4.0 * batch * heads * static_cast<double>(length) * length * head_dim; }
  double bytes() const { return 4.0 * 2.0 * batch * heads * static_cast<double>(length) * head_dim; }
};

Problem problem_of(const benchmark::State& state) {
  return {static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), static_cast<int>(state.range(2)),
          static_cast<int>(state.range(3))};
}

struct Operands {
  sdnq::Tensor q, k, v, out;
  explicit Operands(const Problem& p) {
    const sdnq::Shape shape{p.batch, p.heads, p.length, p.head_dim};
    q = sdnq::cuda::empty(shape, sdnq::DType::bf16);
    k = sdnq::cuda::empty(shape, sdnq::DType::bf16);
    v = sdnq::cuda::empty(shape, sdnq::DType::bf16);
    out = sdnq::cuda::empty(shape, sdnq::DType::bf16);
    fill(q, 1, -2.0f, 2.0f);
    fill(k, 2);
    fill(v, 3);
  }
};

// The baseline's output of the last problem, for the max_abs_diff counter.
std::vector<__nv_bfloat16>& baseline_output() {
  static std::vector<__nv_bfloat16> values;
  return values;
}

std::vector<__nv_bfloat16> to_host_values(const sdnq::Tensor& t) {
  std::vector<__nv_bfloat16> values(static_cast<std::size_t>(t.numel()));
  SDNQ_CUDA_CHECK(cudaMemcpy(values.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost));
  return values;
}

// One block per row of S [rows, n] (bf16, already scaled): P = softmax(S) in place, fp32 math.
__global__ void softmax_rows_kernel(__nv_bfloat16* s, int n) {
  __nv_bfloat16* row = s + static_cast<std::size_t>(blockIdx.x) * n;
  __shared__ float partial[32];
  float local_max = -INFINITY;
  for (int i = threadIdx.x; i < n; i += blockDim.x) local_max = fmaxf(local_max, __bfloat162float(row[i]));
  for (int offset = 16; offset > 0; offset /= 2)
    local_max = fmaxf(local_max, __shfl_xor_sync(0xFFFFFFFFu, local_max, offset));
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = local_max;
  __syncthreads();
  float row_max = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) row_max = fmaxf(row_max, partial[w]);
  __syncthreads();
  float local_sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) local_sum += __expf(__bfloat162float(row[i]) - row_max);
  for (int offset = 16; offset > 0; offset /= 2) local_sum += __shfl_xor_sync(0xFFFFFFFFu, local_sum, offset);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = local_sum;
  __syncthreads();
  float row_sum = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) row_sum += partial[w];
  const float inverse = 1.0f / row_sum;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    row[i] = __float2bfloat16(__expf(__bfloat162float(row[i]) - row_max) * inverse);
}

void bench_cublas_materialized(benchmark::State& state) {
  const Problem p = problem_of(state);
  Operands operands(p);
  const long long batch_count = static_cast<long long>(p.batch) * p.heads;
  const long long l = p.length, d = p.head_dim;
  sdnq::Tensor scores = sdnq::cuda::empty(sdnq::Shape{batch_count, l, l}, sdnq::DType::bf16);  // [B·H, Lq, Lk]
  cublasHandle_t handle{};
  SDNQ_CUBLAS_CHECK(cublasCreate(&handle));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d)), one = 1.0f, zero = 0.0f;
  const double us = time_median_us(state, 1, [&](int) {
    // Row-major S[Lq, Lk] = Q·Kᵀ is column-major Sᵀ = K·Qᵀ (K read transposed).
    SDNQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, l, l, d, &scale, operands.k.data(),
                                                 CUDA_R_16BF, d, l * d, operands.q.data(), CUDA_R_16BF, d, l * d, &zero,
                                                 scores.data(), CUDA_R_16BF, l, l * l, batch_count, CUBLAS_COMPUTE_32F,
                                                 CUBLAS_GEMM_DEFAULT));
    softmax_rows_kernel<<<static_cast<unsigned>(batch_count * l), 256>>>(static_cast<__nv_bfloat16*>(scores.data()),
                                                                         static_cast<int>(l));
    SDNQ_CUDA_CHECK(cudaGetLastError());
    // Row-major O[Lq, D] = P·V is column-major Oᵀ = Vᵀ·Pᵀ.
    SDNQ_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, d, l, l, &one, operands.v.data(),
                                                 CUDA_R_16BF, d, l * d, scores.data(), CUDA_R_16BF, l, l * l, &zero,
                                                 operands.out.data(), CUDA_R_16BF, d, l * d, batch_count,
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  SDNQ_CUBLAS_CHECK(cublasDestroy(handle));
  baseline_output() = to_host_values(operands.out);
  report(state, us, p.flops(), p.bytes());
}

void bench_sdnq_flash(benchmark::State& state) {
  const Problem p = problem_of(state);
  const auto block = static_cast<sdnq::cuda::ops::kernel_detail::AttentionBlock>(state.range(4));
  Operands operands(p);
  const sdnq::cuda::ops::AttentionOptions options{1.0f / std::sqrt(static_cast<float>(p.head_dim)), false};
  const double us = time_median_us(state, 1, [&](int) {
    sdnq::cuda::ops::kernel_detail::attention_with_block(operands.q, operands.k, operands.v, operands.out, options,
                                                         block, nullptr);
  });
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  report(state, us, p.flops(), p.bytes());
  const std::vector<__nv_bfloat16> ours = to_host_values(operands.out);
  const std::vector<__nv_bfloat16>& theirs = baseline_output();
  if (theirs.size() == ours.size()) {
    double worst = 0.0;
    for (std::size_t i = 0; i < ours.size(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(__bfloat162float(ours[i])) - __bfloat162float(theirs[i])));
    state.counters["max_abs_diff"] = worst;
  }
}

void bench_sdnq_flash_bias(benchmark::State& state) {
  const Problem p = problem_of(state);
  Operands operands(p);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{p.heads, p.length, p.length}, sdnq::DType::bf16);  // [H, L, L]
  fill(bias, 6);
  const sdnq::TensorView bias_view = bias.view();
  const sdnq::cuda::ops::AttentionOptions options{1.0f / std::sqrt(static_cast<float>(p.head_dim)), false,
                                                  &bias_view};
  const double us = time_median_us(
      state, 1, [&](int) { sdnq::cuda::ops::attention(operands.q, operands.k, operands.v, operands.out, options, nullptr); });
  SDNQ_CUDA_CHECK(cudaDeviceSynchronize());
  report(state, us, p.flops(), p.bytes() + static_cast<double>(bias.nbytes()));
}

void bench_rope_qk(benchmark::State& state) {
  const Problem p = problem_of(state);
  const std::int64_t width = static_cast<std::int64_t>(p.heads) * p.head_dim;
  sdnq::Tensor q = sdnq::cuda::empty(sdnq::Shape{p.batch, p.length, width}, sdnq::DType::bf16);
  sdnq::Tensor k = sdnq::cuda::empty(sdnq::Shape{p.batch, p.length, width}, sdnq::DType::bf16);
  sdnq::Tensor cos = sdnq::cuda::empty(sdnq::Shape{p.length, p.head_dim}, sdnq::DType::f32);
  sdnq::Tensor sin = sdnq::cuda::empty(sdnq::Shape{p.length, p.head_dim}, sdnq::DType::f32);
  fill(q, 4);
  fill(k, 5);
  SDNQ_CUDA_CHECK(cudaMemset(cos.data(), 0, cos.nbytes()));  // values do not change the traffic
  SDNQ_CUDA_CHECK(cudaMemset(sin.data(), 0, sin.nbytes()));
  const sdnq::TensorView q_heads = sdnq::cuda::ops::split_heads(q, p.heads, p.head_dim);
  const sdnq::TensorView k_heads = sdnq::cuda::ops::split_heads(k, p.heads, p.head_dim);
  const double us = time_median_us(state, 1, [&](int) {
    sdnq::cuda::ops::apply_rope(q_heads, cos, sin, q_heads, nullptr);
    sdnq::cuda::ops::apply_rope(k_heads, cos, sin, k_heads, nullptr);
  });
  report(state, us, 0.0, 2.0 * 2.0 * static_cast<double>(q.nbytes()));
}

void register_all() {
  const std::vector<Problem> problems = {{1, 24, 4608, 128}, {2, 20, 1024, 64}, {2, 10, 4096, 64}, {1, 24, 1024, 128}};
  benchmark::RegisterBenchmark("rope_qk/B1/H24/L4608/D128", bench_rope_qk)->Args({1, 24, 4608, 128})->UseManualTime();
  const char* block_names[] = {"warps4_rows64", "warps4_rows128", "warps8_rows128", "warps4_rows128_lazy",
                               "sm90_wgmma"};
  static_assert(sizeof(block_names) / sizeof(block_names[0]) == sdnq::cuda::ops::kernel_detail::attention_block_count);
  for (const Problem& p : problems) {
    const std::string shape = "/B" + std::to_string(p.batch) + "/H" + std::to_string(p.heads) + "/L" +
                              std::to_string(p.length) + "/D" + std::to_string(p.head_dim);
    benchmark::RegisterBenchmark(("cublas_materialized" + shape).c_str(), bench_cublas_materialized)
        ->Args({p.batch, p.heads, p.length, p.head_dim})
        ->UseManualTime();
    for (int block = 0; block < sdnq::cuda::ops::kernel_detail::attention_block_count; ++block)
      benchmark::RegisterBenchmark((std::string("sdnq_flash_") + block_names[block] + shape).c_str(), bench_sdnq_flash)
          ->Args({p.batch, p.heads, p.length, p.head_dim, block})
          ->UseManualTime();
  }
  // T5-XXL's encoder attention (64 heads of 64, 512 tokens) and FLUX's shape, with a bias.
  for (const Problem& p : std::vector<Problem>{{1, 64, 512, 64}, {1, 24, 4608, 128}}) {
    const std::string shape = "/B" + std::to_string(p.batch) + "/H" + std::to_string(p.heads) + "/L" +
                              std::to_string(p.length) + "/D" + std::to_string(p.head_dim);
    benchmark::RegisterBenchmark(("sdnq_flash_bias" + shape).c_str(), bench_sdnq_flash_bias)
        ->Args({p.batch, p.heads, p.length, p.head_dim})
        ->UseManualTime();
    benchmark::RegisterBenchmark(("sdnq_flash_default_no_bias" + shape).c_str(), bench_sdnq_flash)
        ->Args({p.batch, p.heads, p.length, p.head_dim,
                static_cast<int>(sdnq::cuda::ops::kernel_detail::bias_attention_block(p.head_dim))})
        ->UseManualTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
