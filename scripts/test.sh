#!/usr/bin/env bash
# The one command that sets up a fresh Debian 12 machine and runs every check CI runs:
#   1. installs missing packages (scripts/setup.sh);
#   2. builds the host tests and tools with ASan + UBSan;
#   3. compiles every CUDA test and benchmark for sm_90a, and the kernel tests again for sm_80 (no GPU needed);
#   4. builds and runs the consumer project through all four consumption routes;
#   5. runs the safetensors header fuzzer for a bounded time;
#   6. runs the host tests (ctest) and ends with their counts.
# Environment: SDNQ_JOBS (parallel build jobs, default nproc), SDNQ_SKIP_CUDA=1 where no nvcc exists,
# SDNQ_FUZZ_SECONDS (default 60), SDNQ_FIXTURES (default ../shared/fixtures/sdnq-reference).
set -euo pipefail
start=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${SDNQ_JOBS:-$(nproc)}
step() { printf '\n== %s (%ds)\n' "$1" $(($(date +%s) - start)); }

step "setup"
bash scripts/setup.sh

step "host build with sanitizers"
cmake --preset cpu-sanitize >/dev/null
cmake --build build/cpu-sanitize -j "$jobs"

step "CUDA compile check (tests and benchmarks for sm_90a, kernel tests for sm_80)"
nvcc_path=${CUDACXX:-/usr/local/cuda/bin/nvcc}
if [[ "${SDNQ_SKIP_CUDA:-0}" == 1 ]]; then
  echo "skipped: SDNQ_SKIP_CUDA=1"
elif [[ ! -x "$nvcc_path" ]]; then
  echo "error: nvcc not found at $nvcc_path (set CUDACXX, or SDNQ_SKIP_CUDA=1 to skip the CUDA compile check)" >&2
  exit 1
else
  # Only what nvcc compiles (and the host benchmarks): the host tests were built above. Every CUDA test
  # and benchmark for sm_90a, the GPU they run on. The kernel and op tests once more for sm_80, which
  # compiles every non-Hopper fallback; the model tests reach the same kernels, so they are not repeated
  # there (each model test unit recompiles every GEMM kernel, for each architecture).
  cmake --preset cuda -DCMAKE_CUDA_COMPILER="$nvcc_path" -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DSDNQ_BUILD_HOST_TESTS=OFF -DSDNQ_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/cuda -j "$jobs"
  cmake --preset cuda -B build/cuda-sm80 -DCMAKE_CUDA_COMPILER="$nvcc_path" -DCMAKE_CUDA_ARCHITECTURES=80 \
    -DSDNQ_BUILD_HOST_TESTS=OFF -DSDNQ_BUILD_EXAMPLES=OFF -DSDNQ_BUILD_BENCHMARKS=OFF \
    -DSDNQ_TEST_ONLY='tests/cuda/(test_(attention|check|dequantize|device|gemm|gemv|linear|ops|scalar|workspace)|scalar_kernels)' \
    >/dev/null
  cmake --build build/cuda-sm80 -j "$jobs"
fi

step "consumers: add_subdirectory, find_package, FetchContent, include/ copy"
bash tests/consumers/run.sh "$root" "$root/build/consumers"

step "fuzz the safetensors header parser for ${SDNQ_FUZZ_SECONDS:-60}s"
bash tests/fuzz/run.sh "$root" "$root/build/fuzz" "${SDNQ_FUZZ_SECONDS:-60}"

step "host tests"
log=$(mktemp)
set +e
ctest --test-dir build/cpu-sanitize --output-on-failure -j "$jobs" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
total=$(sed -nE 's/.*out of ([0-9]+).*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.* ([0-9]+) tests failed.*/\1/p' <<<"$summary")
if [[ -z "$total" || -z "$failed" ]]; then
  echo "ci: ctest printed no summary" >&2
  total=0 failed=1 status=1
fi
rm -f "$log"
elapsed=$(($(date +%s) - start))
printf '\nci: finished in %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
echo "tests: $((total - failed)) passed, ${failed} failed"
exit "$status"
