#!/usr/bin/env bash
# Installs the Debian packages the build and tests need, only those missing. Idempotent.
set -euo pipefail

packages=(
  cmake ninja-build g++ clang libclang-rt-14-dev   # toolchain; clang + its runtime for libFuzzer
  libfmt-dev nlohmann-json3-dev catch2 libbenchmark-dev libcurl4-openssl-dev libstb-dev
  python3                                          # the local test HTTP server of the Hub tests
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
