#!/usr/bin/env bash
# Prepares what bench/gpu/run.sh needs on a machine without LLVM: the cubins
# (sm_80 and sm_90) and manifests of every example update rule and of the
# learned rule l2l, their PTX, the QP layers' cubins (examples/sudoku.optim,
# bench/gpu/qpbench.optim), nlohmann/json.hpp (the runtime's only build
# dependency besides a C++17 compiler and CMake), the FMA-peak kernel
# (FmaPeak.cu, with the toolkit's nvcc) and the l2l values that the GPU must
# reproduce: the CPU kernel's (l2l.so) 20 steps on the check's tensors,
# l2l.expected.safetensors (and the same for two learned test rules whose
# LSTM results use private memory on the GPU), written by optim-gpu-learned
# from a runtime-only
# build made here in $PREP_BUILD (default /tmp/optim-gpu-prepare-build), as
# run.sh makes one on the device. Run where optimc is built:
#   bench/gpu/prepare.sh [OPTIMC] [OUT_DIR]   (default build/bin/optimc,
#                                              build-gpu/aot)
# then carry OUT_DIR to the device machine with the source tree.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
optimc=${1:-$root/build/bin/optimc}
out=${2:-$root/build-gpu/aot}
rm -rf "$out" && mkdir -p "$out/include"
for rule in sgd momentum nesterov rmsprop adagrad lion adam adamw amsgrad lamb l2l; do
  for arch in sm_80 sm_90; do
    "$optimc" "$root/examples/$rule.optim" --emit=cubin --gpu-arch=$arch \
      -o "$out/$rule.$arch.cubin"
  done
done
json=$(printf '#include <nlohmann/json.hpp>\n' | c++ -E -x c++ - -M 2>/dev/null |
  tr ' \\' '\n\n' | grep -m1 'nlohmann/json.hpp' || true)
[ -n "$json" ] || json=/usr/include/nlohmann/json.hpp
cp -r "$(dirname "$json")" "$out/include/"

# QP layers (issue 6's QP row): the Sudoku example, and bench/gpu/qpbench.optim
# in float64 (as qpth is timed); ptxas takes seconds each.
for arch in sm_80 sm_90; do
  "$optimc" "$root/examples/sudoku.optim" --emit=cubin --gpu-arch=$arch \
    -o "$out/sudoku.$arch.cubin"
  "$optimc" "$root/bench/gpu/qpbench.optim" --precision=f64 --emit=cubin \
    --gpu-arch=$arch -o "$out/qpbench.$arch.cubin"
done
# The same layer with other blocks than the default 256 threads, and with
# the 99 KiB shared memory budget that every architecture had before sm_90's
# became 227 KiB (run.sh times each beside the default; sm_90 only, the H100
# and H200 that the device machines have).
for threads in 128 512; do
  "$optimc" "$root/bench/gpu/qpbench.optim" --precision=f64 --emit=cubin \
    --gpu-arch=sm_90 --gpu-layer-threads=$threads \
    -o "$out/qpbench-t$threads.sm_90.cubin"
done
"$optimc" "$root/bench/gpu/qpbench.optim" --precision=f64 --emit=cubin \
  --gpu-arch=sm_90 --gpu-layer-shared-bytes=101376 \
  -o "$out/qpbench-s99.sm_90.cubin"

# The learned rule's row: the FMA-peak kernel, then the CPU kernel's values.
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
for arch in sm_80 sm_90; do
  "$nvcc" -cubin -arch=$arch -O3 -o "$out/fma_peak.$arch.cubin" \
    "$root/bench/gpu/FmaPeak.cu"
  "$nvcc" -ptx -arch=$arch -O3 -o "$out/fma_peak.$arch.ptx" \
    "$root/bench/gpu/FmaPeak.cu"
done
"$optimc" "$root/examples/l2l.optim" --emit=shared -o "$out/l2l.so"
build=${PREP_BUILD:-/tmp/optim-gpu-prepare-build}
gen=(-G Ninja); command -v ninja >/dev/null || gen=()
cmake "${gen[@]}" -S "$root" -B "$build" -DOPTIM_RUNTIME_ONLY=ON \
  -DOPTIM_ENABLE_UNITTESTS=OFF -DCMAKE_BUILD_TYPE=Release \
  -DOPTIM_JSON_INCLUDE_DIR="$out/include" > "$build.cmake.log" 2>&1 ||
  { tail -30 "$build.cmake.log"; exit 1; }
cmake --build "$build" --target optim-gpu-learned -j "${JOBS:-2}" > "$build.log" 2>&1 ||
  { tail -30 "$build.log"; exit 1; }
"$build/bin/optim-gpu-learned" --write-reference "$out" \
  --weights "$root/examples/l2l-mnist.safetensors"
# Learned rules whose LSTM results go through the threads' private memory on
# the GPU (a cell applied twice; results changed after the cell): their
# cubins against their CPU kernels, with generated weights.
# Update rules with vector states (their components are streams of their
# own, also in the reduce kernel), with row and column states (Adafactor:
# the chunk table of rectangles) and with a matrix function (Muon: NS(X) on
# the module's matrix kernels) go the same way.
for entry in test/Learned/Inputs/shared.optim:shared \
             test/Learned/Inputs/clipped.optim:clipped \
             test/GPU/Inputs/vector-states.optim:vecstate \
             test/GPU/Inputs/vector-states.optim:vecnorm \
             test/GPU/Inputs/vector-states.optim:features \
             examples/adafactor.optim:adafactor \
             examples/muon.optim:muon; do
  src="$root/${entry%%:*}" rule=${entry##*:}
  "$optimc" "$src" --rule "$rule" --emit=shared -o "$out/$rule.so"
  for arch in sm_80 sm_90; do
    "$optimc" "$src" --rule "$rule" --emit=cubin --gpu-arch=$arch \
      -o "$out/$rule.$arch.cubin"
  done
  "$build/bin/optim-gpu-learned" --write-reference "$out" --rule "$rule"
done
echo "prepare: wrote $(ls "$out"/*.cubin | wc -l) cubins to $out"
