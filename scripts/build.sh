#!/usr/bin/env bash
# Configures (once) and builds optim-mlir with clang-22, lld, ccache and the
# shared libMLIR.so. Usage: scripts/build.sh [ninja targets...]
# Environment: BUILD_DIR (default: build), BUILD_TYPE (default: Release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
export PATH=/usr/lib/llvm-22/bin:$PATH

if [ ! -f "$build/build.ninja" ]; then
  cmake -G Ninja -S "$root" -B "$build" \
    -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache \
    -DLLVM_ENABLE_LLD=ON \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    ${CMAKE_EXTRA_ARGS:-}
fi
ninja -C "$build" "$@"
