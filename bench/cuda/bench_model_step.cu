// One denoiser step of the full-size models with random weights, in bf16, int8 with quantized matmul and
// uint4 + SVD r32: FLUX.1-dev (model_step/flux_step.cuh, benchmarks bench_flux_step/*) and the SDXL UNet
// (model_step/unet_step.cuh, bench_unet_step/*). One program: each model reaches every GEMM kernel
// through nn::gpu::Linear, so a program per model would compile all of them again.
// Run: bench/bench_model_step [--benchmark_filter=flux|unet]; with SDNQ_BENCH_LINEAR_BREAKDOWN=1 each
// variant also prints its Linears' time by shape and kernel, slowest first.
#include <benchmark/benchmark.h>

#include "model_step/flux_step.cuh"
#include "model_step/unet_step.cuh"

BENCHMARK_MAIN();
