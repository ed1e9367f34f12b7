#!/usr/bin/env bash
# The weight-streaming kernel (gemm_tc, M <= 16) on the GPU machine: builds the gemm_tc tests and
# bench_weight_only_tc, runs the tests, the small-M bench rows (BENCH_FILTER, default M = 1 and 16) and
# ncu's throughput, occupancy and stall sections on one launch of each NCU_FILTERS benchmark (where ncu is
# installed). Files go to $OUT. The ncu numbers in docs/benchmarks.md, session 9, came from this script.
set -u
out=${OUT:-/tmp/out}; mkdir -p "$out"
cmake -S . -B build/prof -G Ninja -DCMAKE_BUILD_TYPE=Release -DSDNQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DSDNQ_BUILD_HOST_TESTS=OFF -DSDNQ_BUILD_EXAMPLES=OFF -DSDNQ_BUILD_BENCHMARKS=ON \
  -DSDNQ_TEST_ONLY=test_gemm_tc > "$out/prof-build.log" 2>&1
cmake --build build/prof -j16 --target bench_weight_only_tc sdnq_cuda_tests >> "$out/prof-build.log" 2>&1 || { tail -30 "$out/prof-build.log"; exit 1; }
build/prof/tests/sdnq_cuda_tests '[gemm_tc]' > "$out/tests.txt" 2>&1; tail -3 "$out/tests.txt"
ncu_path=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
b=build/prof/bench/bench_weight_only_tc
$b --benchmark_filter="${BENCH_FILTER:-/M(1|16)/}" --benchmark_min_time=0.05s --benchmark_out="$out/bench.json" --benchmark_out_format=json > "$out/bench.txt" 2>&1
if [[ -n "$ncu_path" ]]; then
  for f in ${NCU_FILTERS:-tc_uint4_g64/M1/N12288/K3072/ tc_uint4_g64/M16/N12288/K3072/}; do
    "$ncu_path" --kernel-name regex:gemm_tc_stream_kernel --launch-skip 5 --launch-count 1 \
      --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
      --section MemoryWorkloadAnalysis --section LaunchStats \
      $b --benchmark_filter="$f" --benchmark_min_time=0.01s >> "$out/ncu.txt" 2>&1
  done
fi
