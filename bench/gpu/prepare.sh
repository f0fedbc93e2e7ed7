#!/usr/bin/env bash
# Prepares what bench/gpu/run.sh needs on a machine without LLVM: the cubins
# (sm_80 and sm_90) and manifests of every example update rule and of the
# learned rule l2l (not checked or timed by run.sh yet), their PTX,
# and nlohmann/json.hpp (the runtime's only build dependency besides a C++17
# compiler and CMake). Run where optimc is built:
#   bench/gpu/prepare.sh [OPTIMC] [OUT_DIR]   (default build-gpu/bin/optimc,
#                                              build-gpu/aot)
# then carry OUT_DIR to the device machine with the source tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
optimc=${1:-$root/build-gpu/bin/optimc}
out=${2:-$root/build-gpu/aot}
rm -rf "$out" && mkdir -p "$out/include"
for rule in sgd momentum nesterov rmsprop adagrad lion adam adamw amsgrad l2l; do
  for arch in sm_80 sm_90; do
    "$optimc" "$root/examples/$rule.optim" --emit=cubin --gpu-arch=$arch \
      -o "$out/$rule.$arch.cubin"
  done
  "$optimc" "$root/examples/$rule.optim" --emit=ptx --gpu-arch=sm_90 \
    -o "$out/$rule.sm_90.ptx"
done
json=$(printf '#include <nlohmann/json.hpp>\n' | c++ -E -x c++ - -M 2>/dev/null |
  tr ' \\' '\n\n' | grep -m1 'nlohmann/json.hpp' || true)
[ -n "$json" ] || json=/usr/include/nlohmann/json.hpp
cp -r "$(dirname "$json")" "$out/include/"
echo "prepare: wrote $(ls "$out"/*.cubin | wc -l) cubins to $out"
