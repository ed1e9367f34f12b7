#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and fuzzes the safetensors header parser for a bounded time.
#   bash tests/fuzz/run.sh ROOT BUILD_DIR SECONDS
# Exits non-zero on any finding (crash, sanitizer report, leak, timeout, out-of-memory); the input
# that caused it is kept in BUILD_DIR/fuzz-findings/. The seed corpus is copied to a scratch folder
# so the checked-in corpus never grows.
set -euo pipefail
if [[ $# -ne 3 ]]; then
  echo "usage: $0 ROOT BUILD_DIR SECONDS" >&2
  exit 2
fi
root=$1
build=$2
seconds=$3

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSDNQ_BUILD_FUZZERS=ON -DSDNQ_BUILD_TESTS=OFF -DSDNQ_BUILD_EXAMPLES=OFF -DSDNQ_INSTALL=OFF >/dev/null
cmake --build "$build" --target fuzz_safetensors_header -j "${SDNQ_JOBS:-2}"

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$root"/tests/fuzz/corpus/safetensors/* "$corpus"/
findings="$build/fuzz-findings"
mkdir -p "$findings"

# LeakSanitizer is on by default with ASan; leaks count as findings. The full log stays in BUILD_DIR.
log="$build/fuzz_safetensors_header.log"
status=0
"$build/tests/fuzz/fuzz_safetensors_header" "$corpus" \
  -dict="$root/tests/fuzz/safetensors.dict" \
  -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_funcs=0 \
  -artifact_prefix="$findings/" -print_final_stats=1 >"$log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
  tail -n 80 "$log" >&2
  echo "fuzz_safetensors_header: FINDING (exit $status); inputs in $findings, log in $log" >&2
  exit "$status"
fi
grep -E '^(Done|stat::)' "$log" || true
echo "fuzz_safetensors_header: no findings in ${seconds}s (log: $log)"
