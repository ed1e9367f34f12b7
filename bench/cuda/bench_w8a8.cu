// 8-bit GEMMs with per-token activation quantization (gemm_w8a8.cuh) against cuBLAS bf16 on the same
// shapes, in one process. Our time is one gemm_w8a8 call: the counter reset, the activation
// quantization (inside the kernel) and the GEMM with its epilogue, from bf16 x to bf16 y. Counters:
// median µs per call, TFLOP/s (2·M·N·K), effective TB/s over the weight bytes, vs_cublas = cuBLAS bf16
// time / our time (> 1 is faster). Weights rotate among copies totalling > 2x the 50 MB L2.
// Second baseline: cuBLASLt int8 (int32 out) and e4m3 (bf16 out) on PRE-quantized operands — a bare
// 8-bit GEMM without any quantization or scaling, so a lower bound for a library route.
// Also forced tiles to tune the heuristic (cuda::W8A8TileChoice: 1 large 128×128 mma.sync; 4 / 5:
// cp.async wgmma 128×128 / 128×256; 6 / 7: TMA + mbarrier warp-specialized wgmma 128×128 / 128×256 on
// a persistent grid; 8 / 9: the same kernel with one block per tile): int8 tiles 6-9 at M ≥ 512;
// e4m3 tiles 1 (mma.sync), 6 and 8 at M ≥ 512; 10 / 11: the e4m3 128×192 TMA tile, persistent / one
// block per tile. The *_prequantized rows time the pre-quantized
// gemm_w8a8(w, activations) alone, on codes quantize_w8a8_activations wrote once before: what the
// fused quantization costs.
// quantize_{int8,fp8}/M/K: quantize_w8a8_activations alone (x and the codes rotate among copies
// > 2x L2); GBps counts the bf16 read once, the codes and the scales written.
// siblings_*: FLUX single-block to_q, to_k, to_v (3× 3072×3072) and proj_mlp (12288×3072), all reading
// the same x at M = 4608, with bias: cuBLAS bf16 ×4, gemm_w8a8 fused ×4 (x quantized 4 times), and
// quantize_w8a8_activations once + 4 pre-quantized gemm_w8a8; us is the whole group, vs_cublas against
// the cuBLAS group.
// w4a8_svd32_*: int8 codes with an SVD branch of rank 32 (padded to 64): what a uint4 + SVD r32 layer
// with quantized matmul runs once re-quantized at load (repack_operand_for_w8a8); its time includes the
// down-projection launch (x · svd_downᵀ) and the SVD tiles of the GEMM, which multiply the 32 true ranks
// (the part table upload_w8a8_weights writes). w4a8_svd32_all_ranks: the same without a part table, all
// 64 padded ranks multiplied (what the kernel did before the table).
// w4a8_joined_svd32_*: FLUX's joined single-block projection (to_q, to_k, to_v, proj_mlp: N = 3·3072 +
// 12288) with four rank-32 branches, svd_up block-diagonal over 4 × 64 padded ranks
// (nn::gpu::Linear::concatenate): with the part table (each output tile multiplies its own part's 32
// ranks) and without it (every output all 256).
// *_layer: what nn::gpu::Linear runs per call, the quantization pass (quantize_w8a8_activations into a
// buffer of w8a8_activations_bytes(w, M)) and the GEMM on its codes, timed together: int8, and W4A8 with
// the SVD down-projection on each route (_routeR: kernel_detail::forced_w8a8_low_rank = R; 0 is the
// split-K launch of its own, 1 / 2 / 4 the rows kernel inside the quantization pass; no suffix: the default).
// w8a8_fp8_prequantized[_tileT][_promoteP]: e4m3 on codes on tile T (6: 128×128, 10: 128×192; none:
// the chosen one) with the promotion into fp32 totals every P K tiles of 128 inputs
// (kernel_detail::ForcedE4m3Promotion; none: the default). _tile6_promote1 is the kernel before session 16.
// w4a8_svd32_tables_layer: w4a8_svd32_layer with the int8 operand held as code tables (4-bit indices and a
// 16-entry table per 128 inputs, nn::RequantizedMatmul::int8_tables_at_load), expanded into a scratch
// before each GEMM (expand_w8a8_codes); TBps counts the tables' bytes. expand_code_tables/N/K: that
// expansion alone, GBps over the bytes read and written.
// w8a8_{int8,fp8}_prequantized_pairsP: on codes, the chosen tile, with the TMA kernel's blocks never paired
// (P = 1) or paired wherever they can be (P = 2: clusters of two sharing each weight tile;
// kernel_detail::ForcedW8A8Pairs).
// Run: bench_w8a8 --benchmark_min_time=0.05s
#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench_harness.cuh"
#include "sdnq/cuda/check.hpp"
#include "sdnq/cuda/device_memory.hpp"
#include "sdnq/cuda/gemm_w8a8.cuh"
#include "sdnq/cuda/w8a8_code_tables.cuh"

namespace {

using namespace sdnq_bench;

constexpr int code_table_group = 128;  // uint4 + SVD's default group (§3.6)

// state.range: M, N, K, kind (0 int8, 1 e4m3), forced tile (−1: gemm_w8a8 chooses), pre-quantized (1:
// time only gemm_w8a8(w, activations) on x quantized by one quantize_w8a8_activations call before),
// `rank_padded`: the padded rank of an SVD branch (0: none); `svd_parts`: its part table (column end,
// first rank, true rank; empty: every output multiplies all rank_padded ranks).
void bench_w8a8_with_svd(benchmark::State& state, int rank_padded,
                         const std::vector<sdnq::cuda::kernel_detail::W8A8SvdPart>& svd_parts = {},
                         int low_rank_route = -1, bool code_tables = false) {
  const sdnq::cuda::kernel_detail::ForcedW8A8LowRank forced_route(low_rank_route);  // for this call only
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const auto kind = state.range(3) == 0 ? sdnq::cuda::W8A8Kind::int8 : sdnq::cuda::W8A8Kind::float8_e4m3fn;
  const double code_bytes = code_tables ? double(n) * k / 2 + double(n) * (k / code_table_group) * 16 : double(n) * k;
  const double bytes = code_bytes + 4.0 * n + 2.0 * rank_padded * (n + k);
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::W8A8Weights> weights;
  for (int c = 0; c < copies; ++c) {
    sdnq::Tensor codes;  // none where code tables take their place
    if (!code_tables) {
      codes = sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::u8);
      fill(codes, 200 + c);  // random bytes (a few e4m3 NaN codes): the values do not change the time
    }
    sdnq::Tensor scale = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::f32);
    SDNQ_CUDA_CHECK(cudaMemset(scale.data(), 0x3C, scale.nbytes()));  // 0x3C3C3C3C ≈ 0.0115
    weights.push_back(sdnq::cuda::W8A8Weights{kind, n, k, sdnq::DType::bf16, sdnq::DType::f32,
                                              codes.defined() ? codes.data() : nullptr,
                                              static_cast<const float*>(scale.data())});
    if (code_tables) {  // 4-bit indices and a table per 128 inputs in place of the codes
      sdnq::Tensor indices = sdnq::cuda::empty(sdnq::Shape{n, k / 2}, sdnq::DType::u8);
      sdnq::Tensor tables = sdnq::cuda::empty(sdnq::Shape{n, k / code_table_group, 16}, sdnq::DType::i8);
      fill(indices, 500 + c);
      fill(tables, 600 + c);
      weights.back().code_indices = static_cast<const std::uint8_t*>(indices.data());
      weights.back().code_tables = static_cast<const std::int8_t*>(tables.data());
      weights.back().code_table_group = code_table_group;
      storage.push_back(std::move(indices));
      storage.push_back(std::move(tables));
    }
    if (codes.defined()) storage.push_back(std::move(codes));
    storage.push_back(std::move(scale));
    if (rank_padded > 0) {
      sdnq::Tensor down = sdnq::cuda::empty(sdnq::Shape{rank_padded, k}, sdnq::DType::bf16);
      sdnq::Tensor up = sdnq::cuda::empty(sdnq::Shape{n, rank_padded}, sdnq::DType::bf16);
      fill(down, 300 + c);
      fill(up, 400 + c);
      weights.back().svd_down = down.data();
      weights.back().svd_up = up.data();
      weights.back().svd_rank_padded = rank_padded;
      weights.back().svd_part_count = static_cast<int>(svd_parts.size());
      std::copy(svd_parts.begin(), svd_parts.end(), weights.back().svd_parts.begin());
      storage.push_back(std::move(down));
      storage.push_back(std::move(up));
    }
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  sdnq::Tensor bias = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::bf16);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16);
  fill(x, 8);
  fill(bias, 9);
  const std::size_t expanded_bytes = sdnq::cuda::w8a8_expanded_codes_bytes(weights[0]);
  sdnq::Tensor expanded = sdnq::cuda::empty(
      sdnq::Shape{static_cast<std::int64_t>(std::max<std::size_t>(expanded_bytes, 1))}, sdnq::DType::u8);
  sdnq::Tensor workspace =
      sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::gemm_w8a8_workspace_bytes(
                            sdnq::cuda::expand_w8a8_codes(weights[0], expanded.data(), expanded_bytes, nullptr), m))},
                        sdnq::DType::u8);
  std::optional<sdnq::cuda::W8A8TileChoice> tile;
  if (state.range(4) >= 0) tile = static_cast<sdnq::cuda::W8A8TileChoice>(state.range(4));
  try {
    const bool prequantized = state.range(5) == 1, layer = state.range(5) == 2;
    sdnq::Tensor buffer, svd_workspace;
    sdnq::cuda::W8A8Activations activations;
    if (prequantized) {
      buffer = sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::w8a8_activations_bytes(m, k))},
                                 sdnq::DType::u8);
      activations = sdnq::cuda::quantize_w8a8_activations(weights[0], x, buffer);
      const auto svd_bytes = static_cast<std::int64_t>(sdnq::cuda::gemm_w8a8_workspace_bytes(weights[0], activations));
      if (svd_bytes > 0) svd_workspace = sdnq::cuda::empty(sdnq::Shape{svd_bytes}, sdnq::DType::u8);
    }
    if (layer) {  // what nn::gpu::Linear runs: its own quantization pass (with the down-projection where
                  // the route puts it there), then the GEMM on the codes
      buffer = sdnq::cuda::empty(
          sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::w8a8_activations_bytes(weights[0], m))}, sdnq::DType::u8);
      const auto svd_bytes = static_cast<std::int64_t>(sdnq::cuda::kernel_detail::plan_w8a8_svd(weights[0], m).bytes);
      if (svd_bytes > 0) svd_workspace = sdnq::cuda::empty(sdnq::Shape{svd_bytes}, sdnq::DType::u8);
    }
    const double us = time_median_us(state, copies, [&](int c) {
      if (layer) {
        const sdnq::cuda::W8A8Activations codes = sdnq::cuda::quantize_w8a8_activations(weights[c], x, buffer);
        // Code tables: expanded into the scratch first, as nn::gpu::Linear does.
        const sdnq::cuda::W8A8Weights w =
            sdnq::cuda::expand_w8a8_codes(weights[c], expanded.data(), expanded_bytes, nullptr);
        sdnq::cuda::gemm_w8a8(w, codes, sdnq::TensorView(bias), y,
                              svd_workspace.numel() > 0 ? sdnq::TensorView(svd_workspace) : sdnq::TensorView(), nullptr,
                              tile);
      } else if (prequantized)
        sdnq::cuda::gemm_w8a8(weights[c], activations, sdnq::TensorView(bias), y,
                              svd_workspace.numel() > 0 ? sdnq::TensorView(svd_workspace) : sdnq::TensorView(), nullptr,
                              tile);
      else
        sdnq::cuda::gemm_w8a8(weights[c], x, sdnq::TensorView(bias), y, workspace, nullptr, tile);
    });
    report(state, us, 2.0 * m * n * k, bytes);
    const auto it = cublas_microseconds().find({m, n, k});
    if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
  } catch (const sdnq::Error& error) {
    state.SkipWithError(error.what());
  }
}

void bench_w8a8(benchmark::State& state) { bench_w8a8_with_svd(state, 0); }
// state.range(6): the e4m3 promotion interval in K tiles.
void bench_w8a8_promotion(benchmark::State& state) {
  const sdnq::cuda::kernel_detail::ForcedE4m3Promotion forced(static_cast<int>(state.range(6)));
  bench_w8a8_with_svd(state, 0);
}
// state.range(6): kernel_detail::ForcedW8A8Pairs's mode (1: blocks never paired, 2: paired wherever they can be).
void bench_w8a8_pairs(benchmark::State& state) {
  const sdnq::cuda::kernel_detail::ForcedW8A8Pairs forced(static_cast<int>(state.range(6)));
  bench_w8a8_with_svd(state, 0);
}
void bench_w4a8_svd32(benchmark::State& state) {
  bench_w8a8_with_svd(state, 64, {{static_cast<int>(state.range(1)), 0, 32}});
}
void bench_w4a8_svd32_all_ranks(benchmark::State& state) { bench_w8a8_with_svd(state, 64); }
void bench_w4a8_joined_svd32(benchmark::State& state) {
  if (state.range(6) == 0) return bench_w8a8_with_svd(state, 256);
  bench_w8a8_with_svd(state, 256, {{3072, 0, 32}, {6144, 64, 32}, {9216, 128, 32}, {21504, 192, 32}});
}
// The layer as nn::gpu::Linear runs it (quantization pass + GEMM on codes) with the down-projection's
// route forced: state.range(6) as kernel_detail::forced_w8a8_low_rank (−1 the default, 0 split-K launch,
// 1 / 2 / 4 the rows kernel, in the quantization pass, with that many 16-row tiles a block).
void bench_w4a8_svd32_layer(benchmark::State& state) {
  bench_w8a8_with_svd(state, 64, {{static_cast<int>(state.range(1)), 0, 32}}, static_cast<int>(state.range(6)));
}
// The same with the int8 operand held as code tables (128-input groups), expanded before each GEMM.
void bench_w4a8_svd32_tables_layer(benchmark::State& state) {
  bench_w8a8_with_svd(state, 64, {{static_cast<int>(state.range(1)), 0, 32}}, -1, true);
}

// expand_w8a8_codes alone: state.range N, K; 128-input tables; GBps over the indices and tables read and the
// codes written. Rotates among copies > 2x L2.
void bench_expand_code_tables(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const double read = double(n) * k / 2 + double(n) * (k / code_table_group) * 16, written = double(n) * k;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / (read + written)) + 1);
  std::vector<sdnq::Tensor> storage;
  std::vector<sdnq::cuda::W8A8Weights> weights;
  for (int c = 0; c < copies; ++c) {
    sdnq::Tensor indices = sdnq::cuda::empty(sdnq::Shape{n, k / 2}, sdnq::DType::u8);
    sdnq::Tensor tables = sdnq::cuda::empty(sdnq::Shape{n, k / code_table_group, 16}, sdnq::DType::i8);
    sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::u8);
    fill(indices, 700 + c);
    fill(tables, 800 + c);
    sdnq::cuda::W8A8Weights w{sdnq::cuda::W8A8Kind::int8, n, k, sdnq::DType::bf16, sdnq::DType::f32};
    w.code_indices = static_cast<const std::uint8_t*>(indices.data());
    w.code_tables = static_cast<const std::int8_t*>(tables.data());
    w.code_table_group = code_table_group;
    w.codes = codes.data();  // where this copy expands to
    weights.push_back(w);
    storage.push_back(std::move(indices));
    storage.push_back(std::move(tables));
    storage.push_back(std::move(codes));
  }
  const double us = time_median_us(state, copies, [&](int c) {
    sdnq::cuda::expand_w8a8_codes(weights[c], const_cast<void*>(weights[c].codes), written, nullptr);
  });
  state.counters["us"] = us;
  state.counters["GBps"] = (read + written) / us * 1e-3;
}

void bench_w4a8_joined_svd32_layer(benchmark::State& state) {
  bench_w8a8_with_svd(state, 256, {{3072, 0, 32}, {6144, 64, 32}, {9216, 128, 32}, {21504, 192, 32}},
                      static_cast<int>(state.range(6)));
}

// cuBLASLt D[M,N] = A[M,K]·B[N,K]ᵀ on pre-quantized 8-bit operands (TN, the layout 8-bit Lt needs):
// int8 → int32, or e4m3 → bf16 with unit scales. state.range: M, N, K, kind (0 int8, 1 e4m3).
void bench_cublaslt(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = static_cast<int>(state.range(1)),
            k = static_cast<int>(state.range(2));
  const bool fp8 = state.range(3) == 1;
  const double bytes = double(n) * k;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / bytes) + 1);
  std::vector<sdnq::Tensor> weights;
  for (int c = 0; c < copies; ++c) {
    weights.push_back(sdnq::cuda::empty(sdnq::Shape{n, k}, sdnq::DType::u8));
    fill(weights.back(), 200 + c);
  }
  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::u8);
  fill(x, 8);
  sdnq::Tensor y = sdnq::cuda::empty(sdnq::Shape{m, n}, fp8 ? sdnq::DType::bf16 : sdnq::DType::i32);
  sdnq::Tensor workspace = sdnq::cuda::empty(sdnq::Shape{32 << 20}, sdnq::DType::u8);

  cublasLtHandle_t handle{};
  cublasLtMatmulDesc_t op{};
  cublasLtMatrixLayout_t a_layout{}, b_layout{}, d_layout{};
  cublasLtMatmulPreference_t preference{};
  SDNQ_CUBLAS_CHECK(cublasLtCreate(&handle));
  const cudaDataType_t in_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_8I, out_type = fp8 ? CUDA_R_16BF : CUDA_R_32I;
  const cublasComputeType_t compute = fp8 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32I;
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, compute, fp8 ? CUDA_R_32F : CUDA_R_32I));
  const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
  // Column-major: Dᵀ[N, M] = W[N, K] · xᵀ  → op(A) = Wᵀ-stored-as [K, N] transposed, op(B) = x as [K, M].
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_layout, in_type, k, n, k));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_layout, in_type, k, m, k));
  SDNQ_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d_layout, out_type, n, m, n));
  SDNQ_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const std::size_t workspace_bytes = workspace.nbytes();
  SDNQ_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes, sizeof(workspace_bytes)));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle, op, a_layout, b_layout, d_layout, d_layout,
                                                               preference, 1, &heuristic, &found);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0) {
    state.SkipWithError("cuBLASLt has no algorithm for this 8-bit GEMM");
  } else {
    const float alpha_f = 1.0f, beta_f = 0.0f;
    const int alpha_i = 1, beta_i = 0;
    const void* alpha = fp8 ? static_cast<const void*>(&alpha_f) : &alpha_i;
    const void* beta = fp8 ? static_cast<const void*>(&beta_f) : &beta_i;
    const double us = time_median_us(state, copies, [&](int c) {
      SDNQ_CUBLAS_CHECK(cublasLtMatmul(handle, op, alpha, weights[c].data(), a_layout, x.data(), b_layout, beta,
                                       y.data(), d_layout, y.data(), d_layout, &heuristic.algo, workspace.data(),
                                       workspace_bytes, nullptr));
    });
    report(state, us, 2.0 * m * n * k, bytes);
    const auto it = cublas_microseconds().find({m, n, k});
    if (it != cublas_microseconds().end()) state.counters["vs_cublas"] = it->second / us;
  }
  cublasLtMatmulPreferenceDestroy(preference);
  cublasLtMatrixLayoutDestroy(a_layout);
  cublasLtMatrixLayoutDestroy(b_layout);
  cublasLtMatrixLayoutDestroy(d_layout);
  cublasLtMatmulDescDestroy(op);
  cublasLtDestroy(handle);
}

// quantize_w8a8_activations alone. state.range: M, K, kind (0 int8, 1 e4m3).
void bench_quantize(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const auto kind = state.range(2) == 0 ? sdnq::cuda::W8A8Kind::int8 : sdnq::cuda::W8A8Kind::float8_e4m3fn;
  const std::size_t buffer_bytes = sdnq::cuda::w8a8_activations_bytes(m, k);
  const double moved_bytes = 2.0 * m * k + double(m) * k + 4.0 * m;  // x read once, codes and scales written
  const int copies = std::max(1, static_cast<int>(rotation_bytes / moved_bytes) + 1);
  std::vector<sdnq::Tensor> xs, buffers;
  for (int c = 0; c < copies; ++c) {
    xs.push_back(sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16));
    fill(xs.back(), 300 + c);
    buffers.push_back(sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(buffer_bytes)}, sdnq::DType::u8));
  }
  // Only the kind, dtypes and K of `like` matter: no codes needed.
  const sdnq::cuda::W8A8Weights like{kind, 1, k, sdnq::DType::bf16, sdnq::DType::f32, nullptr, nullptr};
  try {
    const double us = time_median_us(
        state, copies, [&](int c) { (void)sdnq::cuda::quantize_w8a8_activations(like, xs[c], buffers[c]); });
    state.counters["us"] = us;
    state.counters["GBps"] = moved_bytes / (us * 1e-6) / 1e9;
  } catch (const sdnq::Error& error) {
    state.SkipWithError(error.what());
  }
}

// FLUX single block: to_q, to_k, to_v and proj_mlp as [N, K], all reading the same x [4608, 3072].
constexpr int sibling_tokens = 4608;
const std::vector<std::pair<int, int>>& sibling_shapes() {
  static const std::vector<std::pair<int, int>> shapes = {{3072, 3072}, {3072, 3072}, {3072, 3072}, {12288, 3072}};
  return shapes;
}

double& cublas_siblings_us() {
  static double us = 0.0;
  return us;
}

// The four sibling GEMMs as one timed group. state.range: route (0 cuBLAS bf16, 1 gemm_w8a8 fused ×4,
// 2 quantize_w8a8_activations once + 4 pre-quantized gemm_w8a8), kind (0 int8, 1 e4m3; routes 1, 2).
void bench_siblings(benchmark::State& state) {
  const int route = static_cast<int>(state.range(0)), m = sibling_tokens;
  const auto kind = state.range(1) == 0 ? sdnq::cuda::W8A8Kind::int8 : sdnq::cuda::W8A8Kind::float8_e4m3fn;
  const auto& shapes = sibling_shapes();
  const int k = shapes.front().second;
  double flops = 0.0, codes_bytes = 0.0;
  for (const auto& [n, shape_k] : shapes) flops += 2.0 * m * n * shape_k, codes_bytes += double(n) * shape_k;
  const double set_bytes = route == 0 ? 2.0 * codes_bytes : codes_bytes + 4.0 * 21504;
  const int copies = std::max(1, static_cast<int>(rotation_bytes / set_bytes) + 1);

  sdnq::Tensor x = sdnq::cuda::empty(sdnq::Shape{m, k}, sdnq::DType::bf16);
  fill(x, 8);
  std::vector<sdnq::Tensor> ys, biases, storage;
  for (const auto& [n, shape_k] : shapes) {
    ys.push_back(sdnq::cuda::empty(sdnq::Shape{m, n}, sdnq::DType::bf16));
    biases.push_back(sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::bf16));
    fill(biases.back(), 9 + n);
  }
  // weights[c][i]: copy c of sibling i (route 0: bf16 [N, K] in storage, same indexing).
  std::vector<std::vector<sdnq::cuda::W8A8Weights>> weights(static_cast<std::size_t>(copies));
  for (int c = 0; c < copies; ++c)
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const auto [n, shape_k] = shapes[i];
      if (route == 0) {
        storage.push_back(sdnq::cuda::empty(sdnq::Shape{n, shape_k}, sdnq::DType::bf16));
        fill(storage.back(), 100 + 10 * c + static_cast<int>(i), -0.05f, 0.05f);
        continue;
      }
      sdnq::Tensor codes = sdnq::cuda::empty(sdnq::Shape{n, shape_k}, sdnq::DType::u8);
      sdnq::Tensor scale = sdnq::cuda::empty(sdnq::Shape{n}, sdnq::DType::f32);
      fill(codes, 200 + 10 * c + static_cast<int>(i));
      SDNQ_CUDA_CHECK(cudaMemset(scale.data(), 0x3C, scale.nbytes()));
      weights[c].push_back(sdnq::cuda::W8A8Weights{kind, n, shape_k, sdnq::DType::bf16, sdnq::DType::f32, codes.data(),
                                                   static_cast<const float*>(scale.data())});
      storage.push_back(std::move(codes));
      storage.push_back(std::move(scale));
    }

  try {
    double us = 0.0;
    if (route == 0) {
      cublasHandle_t handle{};
      SDNQ_CUBLAS_CHECK(cublasCreate(&handle));
      const float alpha = 1.0f, beta = 0.0f;
      us = time_median_us(state, copies, [&](int c) {
        for (std::size_t i = 0; i < shapes.size(); ++i) {
          const auto [n, shape_k] = shapes[i];
          // bias is left out of cuBLAS (beta = 0): the baseline is the bare bf16 GEMMs.
          SDNQ_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, shape_k, &alpha,
                                         storage[static_cast<std::size_t>(c) * shapes.size() + i].data(), CUDA_R_16BF,
                                         shape_k, x.data(), CUDA_R_16BF, shape_k, &beta, ys[i].data(), CUDA_R_16BF, n,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
      });
      SDNQ_CUBLAS_CHECK(cublasDestroy(handle));
      cublas_siblings_us() = us;
    } else if (route == 1) {
      std::size_t workspace_bytes = 0;
      for (const auto& w : weights[0])
        workspace_bytes = std::max(workspace_bytes, sdnq::cuda::gemm_w8a8_workspace_bytes(w, m));
      sdnq::Tensor workspace =
          sdnq::cuda::empty(sdnq::Shape{static_cast<std::int64_t>(workspace_bytes)}, sdnq::DType::u8);
      us = time_median_us(state, copies, [&](int c) {
        for (std::size_t i = 0; i < shapes.size(); ++i)
          sdnq::cuda::gemm_w8a8(weights[c][i], x, sdnq::TensorView(biases[i]), ys[i], workspace);
      });
    } else {
      sdnq::Tensor buffer = sdnq::cuda::empty(
          sdnq::Shape{static_cast<std::int64_t>(sdnq::cuda::w8a8_activations_bytes(m, k))}, sdnq::DType::u8);
      us = time_median_us(state, copies, [&](int c) {
        const sdnq::cuda::W8A8Activations activations = sdnq::cuda::quantize_w8a8_activations(weights[c][0], x, buffer);
        for (std::size_t i = 0; i < shapes.size(); ++i)
          sdnq::cuda::gemm_w8a8(weights[c][i], activations, sdnq::TensorView(biases[i]), ys[i], sdnq::TensorView());
      });
    }
    report(state, us, flops, route == 0 ? 2.0 * codes_bytes : codes_bytes);
    if (route != 0 && cublas_siblings_us() > 0.0) state.counters["vs_cublas"] = cublas_siblings_us() / us;
  } catch (const sdnq::Error& error) {
    state.SkipWithError(error.what());
  }
}

void register_all() {
  const std::vector<std::pair<int, int>> shapes = {{3072, 3072}, {12288, 3072}, {3072, 12288},
                                                   {9216, 3072}, {21504, 3072}, {3072, 15360}};
  for (const int m : {16, 512, 4096})
    for (const auto& [n, k] : shapes) {
      const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
      benchmark::RegisterBenchmark(("cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_int8" + shape).c_str(), bench_w8a8)
          ->Args({m, n, k, 0, -1, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_fp8" + shape).c_str(), bench_w8a8)->Args({m, n, k, 1, -1, 0})->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_int8_prequantized" + shape).c_str(), bench_w8a8)
          ->Args({m, n, k, 0, -1, 1})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_fp8_prequantized" + shape).c_str(), bench_w8a8)
          ->Args({m, n, k, 1, -1, 1})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("cublaslt_int8_prequantized" + shape).c_str(), bench_cublaslt)
          ->Args({m, n, k, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("cublaslt_fp8_prequantized" + shape).c_str(), bench_cublaslt)
          ->Args({m, n, k, 1})
          ->UseManualTime();
      if (m == 4096)
        benchmark::RegisterBenchmark(("expand_code_tables/N" + std::to_string(n) + "/K" + std::to_string(k)).c_str(),
                                     bench_expand_code_tables)
            ->Args({n, k})
            ->UseManualTime();
      if (m <= 32) continue;
      for (const int tile : {6, 7, 8, 9}) {  // forced int8 tiles (see the file comment)
        benchmark::RegisterBenchmark(("w8a8_int8_tile" + std::to_string(tile) + shape).c_str(), bench_w8a8)
            ->Args({m, n, k, 0, tile, 0})
            ->UseManualTime();
        benchmark::RegisterBenchmark(("w8a8_int8_prequantized_tile" + std::to_string(tile) + shape).c_str(),
                                     bench_w8a8)
            ->Args({m, n, k, 0, tile, 1})
            ->UseManualTime();
      }
      for (const int tile : {1, 6, 8, 10})
        benchmark::RegisterBenchmark(("w8a8_fp8_tile" + std::to_string(tile) + shape).c_str(), bench_w8a8)
            ->Args({m, n, k, 1, tile, 0})
            ->UseManualTime();
      for (const int tile : {-1, 6, 10})  // e4m3 on codes: chosen, 128×128, 128×192 tiles
        for (const int tiles : {0, 1, 2, 4}) {
          const std::string suffix = (tile < 0 ? "" : "_tile" + std::to_string(tile)) +
                                     (tiles == 0 ? "" : "_promote" + std::to_string(tiles)) + shape;
          if (suffix != shape)
            benchmark::RegisterBenchmark(("w8a8_fp8_prequantized" + suffix).c_str(), bench_w8a8_promotion)
                ->Args({m, n, k, 1, tile, 1, tiles})
                ->UseManualTime();
        }
      for (const int kind : {0, 1})
        for (const int mode : {1, 2})  // the chosen tile, blocks unpaired / paired
          benchmark::RegisterBenchmark(
              (std::string(kind == 0 ? "w8a8_int8" : "w8a8_fp8") + "_prequantized_pairs" + std::to_string(mode) + shape)
                  .c_str(),
              bench_w8a8_pairs)
              ->Args({m, n, k, kind, -1, 1, mode})
              ->UseManualTime();
      benchmark::RegisterBenchmark(("w4a8_svd32" + shape).c_str(), bench_w4a8_svd32)
          ->Args({m, n, k, 0, -1, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w4a8_svd32_prequantized" + shape).c_str(), bench_w4a8_svd32)
          ->Args({m, n, k, 0, -1, 1})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w4a8_svd32_all_ranks" + shape).c_str(), bench_w4a8_svd32_all_ranks)
          ->Args({m, n, k, 0, -1, 0})
          ->UseManualTime();
      benchmark::RegisterBenchmark(("w8a8_int8_layer" + shape).c_str(), bench_w8a8)
          ->Args({m, n, k, 0, -1, 2})
          ->UseManualTime();
      for (const int route : {-1, 0, 1, 2, 4}) {
        const std::string suffix = route < 0 ? "" : "_route" + std::to_string(route);
        benchmark::RegisterBenchmark(("w4a8_svd32_layer" + suffix + shape).c_str(), bench_w4a8_svd32_layer)
            ->Args({m, n, k, 0, -1, 2, route})
            ->UseManualTime();
        if (route < 0)
          benchmark::RegisterBenchmark(("w4a8_svd32_tables_layer" + shape).c_str(), bench_w4a8_svd32_tables_layer)
              ->Args({m, n, k, 0, -1, 2})
              ->UseManualTime();
        if (n == 21504)
          benchmark::RegisterBenchmark(("w4a8_joined_svd32_layer" + suffix + shape).c_str(),
                                       bench_w4a8_joined_svd32_layer)
              ->Args({m, n, k, 0, -1, 2, route})
              ->UseManualTime();
      }
      if (n == 21504)
        for (const int table : {1, 0})
          benchmark::RegisterBenchmark(
              ((table == 1 ? "w4a8_joined_svd32" : "w4a8_joined_svd32_all_ranks") + shape).c_str(),
              bench_w4a8_joined_svd32)
              ->Args({m, n, k, 0, -1, 0, table})
              ->UseManualTime();
    }
  // The SDXL UNet's Linear shapes at batch 2, 128² latents (M, N, K): fused against quantized beforehand,
  // and the quantization alone (what a separate pass costs).
  const std::vector<std::array<int, 3>> unet_shapes = {{2048, 1280, 1280}, {8192, 640, 640},  {154, 1280, 2048},
                                                       {2048, 10240, 1280}, {2048, 1280, 5120}, {8192, 5120, 640},
                                                       {8192, 640, 2560}};
  for (const auto& [m, n, k] : unet_shapes) {
    const std::string shape = "/M" + std::to_string(m) + "/N" + std::to_string(n) + "/K" + std::to_string(k);
    benchmark::RegisterBenchmark(("unet_cublas_bf16" + shape).c_str(), bench_cublas)->Args({m, n, k})->UseManualTime();
    benchmark::RegisterBenchmark(("unet_w8a8_int8" + shape).c_str(), bench_w8a8)
        ->Args({m, n, k, 0, -1, 0})
        ->UseManualTime();
    benchmark::RegisterBenchmark(("unet_w8a8_int8_prequantized" + shape).c_str(), bench_w8a8)
        ->Args({m, n, k, 0, -1, 1})
        ->UseManualTime();
    for (const int tile : {6, 7})  // the persistent TMA tiles forced: 128×128 against 128×256
      benchmark::RegisterBenchmark(("unet_w8a8_int8_prequantized_tile" + std::to_string(tile) + shape).c_str(),
                                   bench_w8a8)
          ->Args({m, n, k, 0, tile, 1})
          ->UseManualTime();
    benchmark::RegisterBenchmark(("unet_quantize_int8/M" + std::to_string(m) + "/K" + std::to_string(k)).c_str(),
                                 bench_quantize)
        ->Args({m, k, 0})
        ->UseManualTime();
  }
  for (const int m : {512, 4096})
    for (const int k : {3072, 15360})
      for (const int kind : {0, 1}) {
        const std::string name = std::string(kind == 0 ? "quantize_int8" : "quantize_fp8") + "/M" + std::to_string(m) +
                                 "/K" + std::to_string(k);
        benchmark::RegisterBenchmark(name.c_str(), bench_quantize)->Args({m, k, kind})->UseManualTime();
      }
  // cuBLAS first: the w8a8 routes report their ratio to it.
  benchmark::RegisterBenchmark("siblings_cublas_bf16/M4608", bench_siblings)->Args({0, 0})->UseManualTime();
  for (const int kind : {0, 1}) {
    const std::string suffix = std::string(kind == 0 ? "int8" : "fp8") + "/M4608";
    benchmark::RegisterBenchmark(("siblings_fused_" + suffix).c_str(), bench_siblings)
        ->Args({1, kind})
        ->UseManualTime();
    benchmark::RegisterBenchmark(("siblings_prequantized_" + suffix).c_str(), bench_siblings)
        ->Args({2, kind})
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
