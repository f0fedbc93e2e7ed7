#!/usr/bin/env bash
# bench/gpu/run.sh end to end on a machine WITHOUT a GPU, before a device
# run is spent on it: prepare.sh's artifacts, then run.sh against a fake
# libcuda.so.1 (FakeCuda.cpp) that runs each rule's CPU kernel where the
# cubin would run, and a fake nvidia-smi (sm_90). Every step of run.sh runs
# (the build, both numerics checks, the benches at small sizes, nvcc of
# FmaPeak.cu, the torch scripts on the CPU where they can, the summaries);
# the numerics checks compare the CPU kernels with the references, so they
# pass, and the timings mean nothing. The cubins themselves and the torch
# CUDA paths are NOT exercised: that takes a device.
#   bench/gpu/dry-run.sh [OPTIMC]   (default build/bin/optimc; writes
#                                    $DRY, default /tmp/optim-gpu-dry-run)
# With OPTIM_FAKE_CUDA_OLD_DRIVER=1 the fake driver refuses every cubin, as
# a driver older than their ptxas would, and the runtime loads their PTX.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
optimc=${1:-$root/build/bin/optimc}
dry=${DRY:-/tmp/optim-gpu-dry-run}
rm -rf "$dry" && mkdir -p "$dry/lib" "$dry/kernels" "$dry/bin"
PREP_BUILD=$dry/prepare-build "$root/bench/gpu/prepare.sh" "$optimc" "$dry/aot"
for rule in sgd momentum nesterov rmsprop adagrad lion adam adamw amsgrad lamb l2l; do
  "$optimc" "$root/examples/$rule.optim" --emit=shared -o "$dry/kernels/$rule.so"
done
for rule in shared clipped; do
  "$optimc" "$root/test/Learned/Inputs/$rule.optim" --emit=shared \
    -o "$dry/kernels/$rule.so"
done
for rule in vecstate vecnorm features; do
  "$optimc" "$root/test/GPU/Inputs/vector-states.optim" --rule "$rule" \
    --emit=shared -o "$dry/kernels/$rule.so"
done
for rule in adafactor muon; do
  "$optimc" "$root/examples/$rule.optim" --emit=shared \
    -o "$dry/kernels/$rule.so"
done
# The QP row's layer: the fake runs the block solver from its manifest.
cp "$dry/aot/qpbench.sm_90.manifest.json" "$dry/kernels/qpbench.manifest.json"
c++ -std=c++17 -O2 -shared -fPIC -I "$root/runtime/include" \
  -I "$dry/aot/include" "$root/bench/gpu/FakeCuda.cpp" \
  -o "$dry/lib/libcuda.so.1" -ldl
cat > "$dry/bin/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
  *name,*) echo "fake CUDA device (CPU kernels), 9.0, 0.0, 0 MiB, 0 MHz" ;;
  *) echo "9.0" ;;
esac
EOF
chmod +x "$dry/bin/nvidia-smi"
# Small sizes: the CPU kernels run single-threaded in the fake driver.
# Learned kernels' blocks over 256 threads fail to launch (the error path of
# optim-gpu-learned's launch-shape sweep).
status=0
PATH="$dry/bin:$PATH" LD_LIBRARY_PATH="$dry/lib" OPTIM_FAKE_CUDA_DIR="$dry/kernels" \
  OPTIM_FAKE_CUDA_MAX_BLOCK=${OPTIM_FAKE_CUDA_MAX_BLOCK:-256} \
  STEPS=2 L2L_COORDINATES=100000 TORCH_DEVICE=cpu SGEMM_SIZE=1024 OUT="$dry/out" \
  QP_BATCH=16 QP_REPS=2 QP_VARIANTS= MUON_WIDTH=16 \
  BUILD="$dry/build" "$root/bench/gpu/run.sh" "$dry/aot" || status=$?
echo "dry-run: run.sh exited with $status; logs in $dry/out"
exit "$status"
