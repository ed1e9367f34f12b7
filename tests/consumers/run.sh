#!/usr/bin/env bash
# Builds and runs the consumer project (tests/consumers/app) through every way an outside project
# can get sdnq, and checks the vcpkg port manifest. One line per route; exits non-zero if any fails.
#   bash tests/consumers/run.sh ROOT BUILD_DIR
# Routes: add_subdirectory, FetchContent with a local SOURCE_DIR, find_package after cmake --install
# (also with SDNQ_CUDA=ON when nvcc exists, from a consumer with and without CUDA), and a bare copy
# of include/ compiled by hand. Logs: BUILD_DIR/route_<name>.log. Environment: CXX (default g++),
# CUDACXX (default /usr/local/cuda/bin/nvcc), SDNQ_SKIP_CUDA=1 skips the CUDA install routes.
set -uo pipefail
if (($# != 2)); then
  echo "usage: $0 ROOT BUILD_DIR" >&2
  exit 2
fi
root=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && build=$(cd "$2" && pwd) || exit 2
app=$root/tests/consumers/app
cxx=${CXX:-g++}
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
version=$(sed -nE 's/^project\(sdnq VERSION ([0-9]+\.[0-9]+\.[0-9]+).*/\1/p' "$root/CMakeLists.txt")
if [[ -z "$version" ]]; then
  echo "consumers: cannot read the version from project(sdnq VERSION x.y.z) in $root/CMakeLists.txt" >&2
  exit 1
fi

failures=0
# run_route NAME COMMAND...: runs COMMAND with its output in BUILD_DIR/COMMAND.log, reports one line.
run_route() {
  local name=$1 log=$build/$2.log started=$SECONDS
  shift
  if "$@" >"$log" 2>&1; then
    printf 'consumers: %-40s ok (%ds)\n' "$name" $((SECONDS - started))
  else
    printf 'consumers: %-40s FAILED (%ds), log %s:\n' "$name" $((SECONDS - started)) "$log"
    tail -n 40 "$log" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}
skip_route() { printf 'consumers: %-40s skipped: %s\n' "$1" "$2"; }

configure_app() {  # configure_app BINARY_DIR CMAKE_ARGS...
  cmake -S "$app" -B "$1" -G Ninja -Werror=dev -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$cxx" -DSDNQ_EXPECTED_VERSION="$version" "${@:2}"
}
build_and_run_app() {  # build_and_run_app BINARY_DIR
  cmake --build "$1" -j2 && "$1/consumer"
}

# install_sdnq PREFIX CMAKE_ARGS...: a fresh `cmake --install` of sdnq into PREFIX, then its layout checked.
install_sdnq() {
  local prefix=$1
  rm -rf "$prefix" "$prefix-build"
  cmake -S "$root" -B "$prefix-build" -G Ninja -Werror=dev -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$cxx" -DSDNQ_BUILD_TESTS=OFF -DSDNQ_BUILD_EXAMPLES=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" "${@:2}" &&
    cmake --build "$prefix-build" -j2 && cmake --install "$prefix-build" && check_install_layout "$prefix"
}
check_install_layout() {
  local prefix=$1 file missing
  for file in share/cmake/sdnq/sdnqConfig.cmake share/cmake/sdnq/sdnqConfigVersion.cmake \
    share/cmake/sdnq/sdnqTargets.cmake share/doc/sdnq/LICENSE; do
    [[ -f "$prefix/$file" ]] || { echo "install lacks $file"; return 1; }
  done
  [[ ! -e "$prefix/lib" ]] || { echo "a header-only install must not create lib/"; return 1; }
  missing=$(cd "$root/include" && find . -name '*.hpp' -o -name '*.cuh' | while read -r header; do
    [[ -f "$prefix/include/$header" ]] || echo "$header"; done)
  [[ -z "$missing" ]] || { echo "install lacks headers: $missing"; return 1; }
}

route_subdirectory() {
  configure_app "$build/subdirectory" -DROUTE=subdirectory -DSDNQ_SOURCE_DIR="$root" &&
    build_and_run_app "$build/subdirectory"
}

route_fetchcontent() {
  configure_app "$build/fetchcontent" -DROUTE=fetchcontent -DSDNQ_SOURCE_DIR="$root" &&
    build_and_run_app "$build/fetchcontent"
}

route_find_package() {
  install_sdnq "$build/prefix" &&
    [[ ! -e "$build/prefix/share/cmake/sdnq/sdnqCudaTargets.cmake" ]] &&
    configure_app "$build/find_package" -DROUTE=find_package -DCMAKE_PREFIX_PATH="$build/prefix" \
      -DSDNQ_EXPECTED_PREFIX="$build/prefix" -DSDNQ_EXPECT_CUDA=OFF &&
    build_and_run_app "$build/find_package"
}

# An SDNQ_CUDA=ON install used by a CUDA consumer: sdnq::cuda exists, and cuda_probe.cu builds
# against it (and runs where a GPU answers).
route_find_package_cuda() {
  local cuda_args=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90a)
  install_sdnq "$build/prefix-cuda" -DSDNQ_CUDA=ON "${cuda_args[@]}" &&
    [[ -f "$build/prefix-cuda/share/cmake/sdnq/sdnqCudaTargets.cmake" ]] &&
    configure_app "$build/find_package_cuda" -DROUTE=find_package -DCMAKE_PREFIX_PATH="$build/prefix-cuda" \
      -DSDNQ_EXPECTED_PREFIX="$build/prefix-cuda" -DSDNQ_EXPECT_CUDA=ON -DSDNQ_CUDA_PROBE=ON "${cuda_args[@]}" &&
    build_and_run_app "$build/find_package_cuda" || return 1
  if nvidia-smi -L >/dev/null 2>&1; then
    "$build/find_package_cuda/cuda_probe"
  else
    echo "no GPU answers: cuda_probe built and linked, not run"
  fi
}

# The same CUDA install used by a consumer without the CUDA toolkit: sdnq::sdnq only.
route_find_package_no_toolkit() {
  [[ -f "$build/prefix-cuda/share/cmake/sdnq/sdnqConfig.cmake" ]] || { echo "needs the CUDA install"; return 1; }
  configure_app "$build/find_package_no_toolkit" -DROUTE=find_package -DCMAKE_PREFIX_PATH="$build/prefix-cuda" \
    -DSDNQ_EXPECTED_PREFIX="$build/prefix-cuda" -DSDNQ_EXPECT_CUDA=OFF \
    -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON &&
    build_and_run_app "$build/find_package_no_toolkit"
}

# No CMake at all: a copy of include/ and a compiler command line. Every public header must compile
# from the copy alone (those in sdnq/cuda/ and sdnq/nn/gpu/ with the CUDA toolkit's include directory, where it
# exists); main.cpp must build and pass.
route_include_copy() {
  local copy=$build/include-copy cuda_include
  cuda_include=$(dirname "$(dirname "$nvcc")")/include
  rm -rf "$copy" && mkdir -p "$copy" && cp -r "$root/include" "$copy/" || return 1
  # The headers checked are the committed ones where ROOT is a git checkout, so that a colleague's
  # unfinished new header in a shared working tree does not fail this route.
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -- 'include/*.hpp' | sed 's|^include/||'
  else
    (cd "$root/include" && find sdnq -name '*.hpp')
  fi | sort >"$copy/headers.txt"
  grep -v -E '^sdnq/(cuda|nn/gpu)/' "$copy/headers.txt" | sed 's/.*/#include <&>/' >"$copy/host_headers.cpp"
  grep -E '^sdnq/(cuda|nn/gpu)/' "$copy/headers.txt" | sed 's/.*/#include <&>/' >"$copy/cuda_host_headers.cpp"
  cat "$copy/host_headers.cpp" "$copy/cuda_host_headers.cpp"
  "$cxx" -std=c++20 -Wall -Wextra -Werror -I"$copy/include" -fsyntax-only "$copy/host_headers.cpp" || return 1
  if [[ -s "$copy/cuda_host_headers.cpp" && -f "$cuda_include/cuda_runtime_api.h" ]]; then
    "$cxx" -std=c++20 -Wall -Wextra -Werror -I"$copy/include" -isystem "$cuda_include" -fsyntax-only \
      "$copy/cuda_host_headers.cpp" || return 1
  fi
  "$cxx" -std=c++20 -O1 -Wall -Wextra -Werror -I"$copy/include" \
    -DSDNQ_CONSUMER_ROUTE='"include-copy"' -DSDNQ_CONSUMER_EXPECTED_VERSION="\"$version\"" \
    "$app/main.cpp" -o "$copy/consumer" -lfmt -pthread &&
    "$copy/consumer"
}

# vcpkg itself cannot be installed here, so the port is checked as far as possible without it:
# strict JSON, the fields vcpkg requires, and the version agreeing with the project's.
route_vcpkg_port_manifest() {
  local port=$root/ports/sdnq
  [[ -f "$port/portfile.cmake" && -f "$port/usage" ]] || { echo "ports/sdnq lacks portfile.cmake or usage"; return 1; }
  python3 -m json.tool "$port/vcpkg.json" >/dev/null || return 1
  python3 - "$port/vcpkg.json" "$version" <<'PY'
import json, re, sys
manifest, version = json.load(open(sys.argv[1])), sys.argv[2]
problems = []
if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", manifest.get("name", "")):
    problems.append("name must be lowercase letters, digits and hyphens")
version_fields = [key for key in ("version", "version-semver", "version-date", "version-string") if key in manifest]
if len(version_fields) != 1:
    problems.append(f"exactly one version field expected, found {version_fields}")
elif manifest[version_fields[0]] != version:
    problems.append(f"{version_fields[0]} is {manifest[version_fields[0]]}, the project is {version}")
if not isinstance(manifest.get("port-version", 0), int):
    problems.append("port-version must be an integer")
names = {d if isinstance(d, str) else d["name"] for d in manifest.get("dependencies", [])}
for needed in ("vcpkg-cmake", "vcpkg-cmake-config", "fmt", "nlohmann-json"):
    if needed not in names:
        problems.append(f"dependency {needed} missing")
if "cuda" not in manifest.get("features", {}):
    problems.append("feature cuda missing")
for problem in problems:
    print(f"{sys.argv[1]}: {problem}")
sys.exit(1 if problems else 0)
PY
  [[ $? == 0 ]] || return 1
  # The portfile's own logic, up to its first vcpkg helper, also runs in cmake's script mode: which
  # source it takes, and its check that the source's version is the port's.
  portfile_says() {
    env -u SDNQ_SOURCE_DIR -u SDNQ_GIT_URL -u SDNQ_GIT_REF cmake -DVERSION="$version" -DPORT=sdnq "$@" \
      -P "$port/portfile.cmake" 2>&1 | tr -s ' \n' ' '
  }
  expect_portfile() {  # expect_portfile TEXT CMAKE_ARGS...
    local said
    said=$(portfile_says "${@:2}")
    [[ "$said" == *"$1"* ]] || { echo "portfile with ${*:2}: expected '$1', got: $said"; return 1; }
  }
  expect_portfile 'Unknown CMake command "vcpkg_check_features"' -DSDNQ_SOURCE_DIR="$root" &&
    expect_portfile "no source for sdnq" &&
    expect_portfile "is not an sdnq source tree" -DSDNQ_SOURCE_DIR="$build" &&
    expect_portfile "must be the full 40-digit commit SHA" -DSDNQ_GIT_URL=https://example.invalid/sdnq.git -DSDNQ_GIT_REF=main &&
    expect_portfile "is sdnq '$version'" -DSDNQ_SOURCE_DIR="$root" -DVERSION=999.0.0
}

run_route "add_subdirectory" route_subdirectory
run_route "FetchContent (local SOURCE_DIR)" route_fetchcontent
run_route "find_package after cmake --install" route_find_package
if [[ "${SDNQ_SKIP_CUDA:-0}" == 1 ]]; then
  skip_route "find_package, CUDA install" "SDNQ_SKIP_CUDA=1"
elif [[ ! -x "$nvcc" ]]; then
  skip_route "find_package, CUDA install" "no nvcc at $nvcc (set CUDACXX)"
else
  run_route "find_package, CUDA install" route_find_package_cuda
  run_route "find_package, CUDA install, no toolkit" route_find_package_no_toolkit
fi
run_route "copy of include/, no CMake" route_include_copy
run_route "vcpkg port manifest" route_vcpkg_port_manifest

if ((failures > 0)); then
  echo "consumers: $failures failed"
  exit 1
fi
