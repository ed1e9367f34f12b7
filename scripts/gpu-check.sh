#!/usr/bin/env bash
# The one script run on the GPU machine (H100, Ubuntu 24.04, CUDA 13, g++ 13, Catch2 v3, no network):
#   1. records the machine (GPU, driver, compilers);
#   2. configures the `cuda` preset for sm_90a only and builds every target (host tests, CUDA tests,
#      examples, benchmarks; SDNQ_BUILD_TARGETS="<targets>" builds only those);
#   3. runs the host tests (sdnq_tests) as a cross-check with g++ 13 and Catch2 v3;
#   4. runs the CUDA tests (sdnq_cuda_tests; SDNQ_CUDA_TEST_FILTER=<Catch test spec> runs some);
#   5. runs the CUDA tests again under compute-sanitizer memcheck (with leak check);
#   6. runs racecheck on the kernel tests that use shared memory (SDNQ_RACECHECK_FILTER overrides the tags);
#      SDNQ_SKIP_SANITIZERS=1 skips steps 5 and 6 (a timing run); SDNQ_MEMCHECK_FILTER=<Catch test spec>
#      limits step 5 to some tests;
#   7. runs every benchmark in bench/ (SDNQ_SKIP_BENCHMARKS=1 skips them, SDNQ_BENCH_FILTER=<regex of
#      program names> picks some), JSON next to the logs;
#      SDNQ_BENCH_ARGS adds arguments to every benchmark run (e.g. --benchmark_filter=...);
#      SDNQ_PROFILE="<program> <arguments>" also runs one benchmark under nsys: GPU time per kernel;
#   8. where Python has PyTorch, compares the scalar conversions with torch's bit for bit.
# A failing test step does not stop the later ones; the script exits non-zero if any step failed.
# Logs go to $OUT when set (its files come back from the GPU machine), else to <build dir>/logs.
# Environment: SDNQ_JOBS (default nproc), SDNQ_BUILD_DIR (default build/gpu-check), CUDACXX (default
# /usr/local/cuda/bin/nvcc), SDNQ_CUDA_ARCHITECTURES (default 90a), SDNQ_CMAKE_ARGS (extra configure
# arguments, split on spaces, e.g. "-DSDNQ_TEST_ONLY=tests/cuda/ -DSDNQ_BUILD_BENCHMARKS=OFF").
set -euo pipefail
start=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${SDNQ_JOBS:-$(nproc)}
build_dir=${SDNQ_BUILD_DIR:-$root/build/gpu-check}
nvcc_path=${CUDACXX:-/usr/local/cuda/bin/nvcc}
architectures=${SDNQ_CUDA_ARCHITECTURES:-90a}
log_dir=${OUT:-$build_dir/logs}
mkdir -p "$log_dir"
failed_steps=()

step() { printf '\n== %s (%ds)\n' "$1" $(($(date +%s) - start)); }

# Dumps sdnq's float -> bf16/fp16/fp8 conversions of ~1.8M floats and the widening of every code
# (host build of sdnq/core/scalar.hpp), then compares them with PyTorch's on CPU (must agree
# bit for bit on every non-NaN input; NaN inputs must give NaN) and on CUDA (reported only).
scalar_vs_torch() {
  local work=$1
  mkdir -p "$work"
  cat >"$work/dump.cpp" <<'CPP'
#include <bit>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include "sdnq/core/scalar.hpp"
template <class T> void write(const std::string& path, const std::vector<T>& data) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr || std::fwrite(data.data(), sizeof(T), data.size(), file) != data.size()) std::exit(1);
  std::fclose(file);
}
template <class T> void dump(const std::string& dir, const std::string& name, const std::vector<float>& inputs) {
  std::vector<decltype(T::bits)> encoded;
  for (float input : inputs) encoded.push_back(T(input).bits);
  write(dir + "/encoded_" + name + ".bin", encoded);
  std::vector<std::uint32_t> decoded;
  for (std::uint32_t code = 0; code < (1u << (8 * sizeof(T))); ++code)
    decoded.push_back(std::bit_cast<std::uint32_t>(T::from_bits(static_cast<decltype(T::bits)>(code)).to_float()));
  write(dir + "/decoded_" + name + ".u32", decoded);
}
int main(int, char** argv) {
  const std::string dir = argv[1];
  std::vector<float> inputs;
  for (std::uint32_t high = 0; high < 0x10000u; ++high)
    for (std::uint32_t low : {0x0000u, 0x0001u, 0x0FFFu, 0x1000u, 0x1001u, 0x2000u, 0x4000u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu})
      inputs.push_back(std::bit_cast<float>((high << 16) | low));
  std::mt19937 generator(11);
  for (int i = 0; i < (1 << 20); ++i) inputs.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(generator())));
  write(dir + "/inputs.f32", inputs);
  dump<sdnq::bf16>(dir, "bf16", inputs);
  dump<sdnq::fp16>(dir, "fp16", inputs);
  dump<sdnq::fp8_e4m3fn>(dir, "fp8_e4m3fn", inputs);
  dump<sdnq::fp8_e5m2>(dir, "fp8_e5m2", inputs);
}
CPP
  cat >"$work/compare.py" <<'PY'
import sys
import torch

work = sys.argv[1]
def load(name, dtype):
    with open(f"{work}/{name}", "rb") as file:
        return torch.frombuffer(bytearray(file.read()), dtype=dtype)

inputs = load("inputs.f32", torch.float32)
input_is_nan = inputs.isnan()
formats = {"bf16": (torch.bfloat16, torch.int16), "fp16": (torch.float16, torch.int16),
           "fp8_e4m3fn": (torch.float8_e4m3fn, torch.uint8), "fp8_e5m2": (torch.float8_e5m2, torch.uint8)}
devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
failed = False
for name, (dtype, raw) in formats.items():
    ours = load(f"encoded_{name}.bin", raw)
    ours_nan = ours.view(dtype).float().isnan()
    code_count = 2 ** (8 * ours.element_size())
    codes = torch.arange(code_count, dtype=torch.int32).to(raw)
    ours_decoded = load(f"decoded_{name}.u32", torch.int32)
    decoded_nan = ours_decoded.view(torch.float32).isnan()
    for device in devices:
        theirs = inputs.to(device).to(dtype).view(raw).cpu()
        differ = (ours != theirs) & ~input_is_nan
        nan_lost = input_is_nan & ~ours_nan
        other_nan_bits = int(((ours != theirs) & input_is_nan).sum())
        theirs_decoded = codes.to(device).view(dtype).float().view(torch.int32).cpu()
        decode_differ = (ours_decoded != theirs_decoded) & ~decoded_nan
        decode_nan_differ = decoded_nan != theirs_decoded.view(torch.float32).isnan()
        print(f"{name} on {device}: encode {int(differ.sum())} non-NaN mismatches of {len(ours)}, "
              f"{int(nan_lost.sum())} NaNs lost, {other_nan_bits} NaN inputs with other NaN bits (allowed); "
              f"decode {int(decode_differ.sum())} of {code_count} differ, {int(decode_nan_differ.sum())} NaN disagreements")
        for index in differ.nonzero().flatten()[:5].tolist():
            print(f"  float bits {int(inputs[index:index + 1].view(torch.int32)) & 0xFFFFFFFF:#010x}: "
                  f"sdnq {int(ours[index]) & 0xFFFF:#x}, torch {int(theirs[index]) & 0xFFFF:#x}")
        for code in (decode_differ | decode_nan_differ).nonzero().flatten()[:5].tolist():
            print(f"  code {code:#x}: sdnq {int(ours_decoded[code]) & 0xFFFFFFFF:#010x}, "
                  f"torch {int(theirs_decoded[code]) & 0xFFFFFFFF:#010x}")
        bad = bool(differ.any() or nan_lost.any() or decode_differ.any() or decode_nan_differ.any())
        if bad and device == "cpu":
            failed = True
        elif bad:
            print(f"  (on {device} this is reported, not failed: torch's CUDA kernels may convert differently)")
sys.exit(1 if failed else 0)
PY
  "${CXX:-g++}" -std=c++20 -O2 -I"$root/include" "$work/dump.cpp" -o "$work/dump" &&
    "$work/dump" "$work" &&
    python3 "$work/compare.py" "$work"
}

# Runs a command, its output shown and saved to $log_dir/<name>.log; records a failure by name.
run_logged() {
  local name=$1
  shift
  echo "+ $*"
  set +e
  "$@" 2>&1 | tee "$log_dir/$name.log"
  local status=${PIPESTATUS[0]}
  set -e
  if [[ $status -ne 0 ]]; then
    echo "!! $name failed with exit status $status (log: $log_dir/$name.log)"
    failed_steps+=("$name")
  fi
  return 0
}

step "machine"
{
  nvidia-smi || echo "nvidia-smi not available"
  "$nvcc_path" --version
  "${CXX:-g++}" --version | head -1
  cmake --version | head -1
} 2>&1 | tee "$log_dir/machine.log"

step "configure (cuda preset, CMAKE_CUDA_ARCHITECTURES=$architectures) in $build_dir"
read -r -a extra_cmake_args <<<"${SDNQ_CMAKE_ARGS:-}"
cmake --preset cuda -B "$build_dir" -DCMAKE_CUDA_ARCHITECTURES="$architectures" \
  -DCMAKE_CUDA_COMPILER="$nvcc_path" "${extra_cmake_args[@]}" 2>&1 | tee "$log_dir/configure.log"

read -r -a build_targets <<<"${SDNQ_BUILD_TARGETS:-all}"
step "build ${build_targets[*]} with $jobs jobs"
set +e
cmake --build "$build_dir" -j "$jobs" --target "${build_targets[@]}" 2>&1 | tee "$log_dir/build.log"
build_status=${PIPESTATUS[0]}
set -e
if [[ $build_status -ne 0 ]]; then
  echo "!! build failed (log: $log_dir/build.log); nothing to run"
  exit "$build_status"
fi

host_tests=$build_dir/tests/sdnq_tests
cuda_tests=$build_dir/tests/sdnq_cuda_tests

step "host tests (g++ 13, Catch2 v3)"
if [[ -x "$host_tests" ]]; then
  run_logged host-tests "$host_tests" --durations yes
else
  echo "skipped: $host_tests not built (SDNQ_BUILD_HOST_TESTS=OFF)"
fi

step "CUDA tests"
# The GPU model tests compare with the reference fixtures; without them they pass by skipping. The device
# machine has no ../shared: copy fixtures/sdnq-reference/models into an ignored folder of the tree, carry it
# and point SDNQ_FIXTURES at its parent.
fixtures=${SDNQ_FIXTURES:-$root/../shared/fixtures/sdnq-reference}
if [[ ! -d "$fixtures/models" ]]; then
  echo "NOTE: no reference fixtures at $fixtures/models: the GPU model fixture tests will be skipped (set SDNQ_FIXTURES)"
fi
run_logged cuda-tests "$cuda_tests" --durations yes ${SDNQ_CUDA_TEST_FILTER:+"$SDNQ_CUDA_TEST_FILTER"}

step "CUDA tests under compute-sanitizer memcheck"
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [[ "${SDNQ_SKIP_SANITIZERS:-0}" == 1 ]]; then
  echo "skipped: SDNQ_SKIP_SANITIZERS=1"
elif [[ -x "$sanitizer" ]]; then
  # The tests provoke failing API calls on purpose (invalid device, out of memory): those are not
  # memory errors, so API errors are not reported.
  run_logged cuda-tests-memcheck "$sanitizer" --tool memcheck --leak-check full --report-api-errors no \
    --error-exitcode 99 "$cuda_tests" ${SDNQ_MEMCHECK_FILTER:+"$SDNQ_MEMCHECK_FILTER"}
else
  echo "!! compute-sanitizer not found"
  failed_steps+=(cuda-tests-memcheck)
fi

step "CUDA tests under compute-sanitizer racecheck (the kernels that use shared memory)"
if [[ "${SDNQ_SKIP_SANITIZERS:-0}" != 1 && -x "$sanitizer" ]]; then
  run_logged cuda-tests-racecheck "$sanitizer" --tool racecheck --report-api-errors no --error-exitcode 99 \
    "$cuda_tests" "${SDNQ_RACECHECK_FILTER:-[dequantize],[gemv],[gemm_tc],[w8a8],[linear],[attention],[ops]}"
fi

if [[ "${SDNQ_SKIP_BENCHMARKS:-0}" != 1 ]]; then
  step "benchmarks (Google Benchmark, JSON in the log folder)"
  for bench in "$build_dir"/bench/bench_*; do
    [[ -x "$bench" && -f "$bench" ]] || continue
    name=$(basename "$bench")
    [[ "$name" =~ ${SDNQ_BENCH_FILTER:-.} ]] || continue
    read -r -a bench_args <<<"${SDNQ_BENCH_ARGS:-}"
    run_logged "$name" "$bench" --benchmark_min_time="${SDNQ_BENCH_MIN_TIME:-0.05s}" \
      --benchmark_out="$log_dir/$name.json" --benchmark_out_format=json "${bench_args[@]}"
  done
fi

# SDNQ_PROFILE="<benchmark program> <its arguments>": that run under Nsight Systems, GPU time summed per
# kernel (where nsys is installed): which kernels a model step spends its time in.
if [[ -n "${SDNQ_PROFILE:-}" ]]; then
  step "kernel time profile: $SDNQ_PROFILE"
  nsys_path=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1 || true)
  if [[ -n "$nsys_path" ]]; then
    read -r -a profile_command <<<"$SDNQ_PROFILE"
    profile_command[0]="$build_dir/bench/${profile_command[0]}"
    run_logged profile "$nsys_path" profile --trace=cuda --force-overwrite=true -o "$build_dir/profile" \
      "${profile_command[@]}"
    run_logged profile-kernels "$nsys_path" stats --report cuda_gpu_kern_sum --format csv \
      --output "$log_dir/profile" "$build_dir/profile.nsys-rep"
  else
    echo "skipped: no nsys on this machine"
  fi
fi

step "scalar conversions against PyTorch"
if python3 -c 'import torch' >/dev/null 2>&1; then
  run_logged scalar-vs-torch scalar_vs_torch "$build_dir/scalar-vs-torch"
else
  echo "skipped: python3 cannot import torch"
fi

elapsed=$(($(date +%s) - start))
printf '\ngpu-check: finished in %dm%02ds, logs in %s\n' $((elapsed / 60)) $((elapsed % 60)) "$log_dir"
if [[ ${#failed_steps[@]} -gt 0 ]]; then
  echo "gpu-check: FAILED steps: ${failed_steps[*]}"
  exit 1
fi
echo "gpu-check: all steps passed"
