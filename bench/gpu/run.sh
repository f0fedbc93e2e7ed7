#!/usr/bin/env bash
# The device check of the CUDA backend, in one run (well under 10 minutes on
# one H100/H200): builds the runtime-only tree (no LLVM/MLIR), checks the
# numerics of every example rule's cubin against a float reference of its
# formula, then measures Adam on the GPT-2-small-shaped parameter list
# (~124M fp32 coordinates) against a device-to-device copy of the same bytes
# and against torch.optim.Adam(fused=True), all on the same card in this run,
# and prints the ratios with the issue's targets.
#
#   bench/gpu/prepare.sh           # where optimc is built: writes build-gpu/aot
#   bench/gpu/run.sh [AOT_DIR]     # on the GPU machine (default build-gpu/aot)
#
# Exit status: 0 when everything ran and the numerics check passed (the
# performance targets are reported, met or not), 1 otherwise.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
aot=$(cd "${1:-$root/build-gpu/aot}" 2>/dev/null && pwd) || {
  echo "run.sh: no AOT folder ${1:-build-gpu/aot}; run bench/gpu/prepare.sh where optimc is built and carry it"
  exit 1
}
steps=${STEPS:-50}
out=${OUT:-/tmp/optim-gpu-run}
build=${BUILD:-/tmp/optim-gpu-build}
mkdir -p "$out"
t0=$(date +%s)
say() { echo "[run.sh +$(( $(date +%s) - t0 ))s] $*"; }

say "date: $(date -u +%Y-%m-%dT%H:%MZ)"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.memory --format=csv,noheader 2>&1 | sed 's/^/[gpu] /'
ls "$aot"/adam.sm_*.cubin >/dev/null 2>&1 || { say "FAIL: no adam cubins in $aot"; exit 1; }

# 1. The runtime-only build (no LLVM, no GoogleTest needed).
gen=(-G Ninja); command -v ninja >/dev/null || gen=()
json=()
[ -f "$aot/include/nlohmann/json.hpp" ] && json=(-DOPTIM_JSON_INCLUDE_DIR="$aot/include")
say "configure + build the runtime-only tree in $build"
if ! cmake "${gen[@]}" -S "$root" -B "$build" -DOPTIM_RUNTIME_ONLY=ON \
     -DOPTIM_ENABLE_UNITTESTS=OFF -DCMAKE_BUILD_TYPE=Release "${json[@]}" \
     > "$out/cmake.log" 2>&1 ||
   ! cmake --build "$build" --target optim-gpu-bench -j "$(nproc)" \
     > "$out/build.log" 2>&1; then
  say "FAIL: build; last lines:"; tail -30 "$out/cmake.log" "$out/build.log" 2>/dev/null
  exit 1
fi
bench="$build/bin/optim-gpu-bench"

# 2. Numerics: every example rule, vector and scalar paths, 20 steps.
say "numerics check"
timeout 120 "$bench" --check "$aot" | tee "$out/check.txt"
check=${PIPESTATUS[0]}
[ "$check" = 0 ] && say "numerics: OK" || say "numerics: FAIL (status $check)"

# 3. Adam, ~124M coordinates: optim vs a copy of the same bytes (same
#    stream, same process) and vs torch's fused Adam (same card, this run).
say "optim Adam vs device-to-device copy ($steps steps)"
timeout 180 "$bench" --bench "$aot" --steps "$steps" > "$out/optim.json"
ob=$?
cat "$out/optim.json"
say "torch.optim.Adam(fused=True) ($steps steps)"
timeout 180 python3 "$root/bench/gpu/torch_adam.py" --steps "$steps" > "$out/torch.json"
tb=$?
cat "$out/torch.json"

python3 - "$out/optim.json" "$out/torch.json" <<'PY'
import json, sys
try:
    o = json.load(open(sys.argv[1]))
except Exception as e:
    print("[result] no optim figures:", e); sys.exit(0)
print(f"[result] card: {o['device']} ({o['arch']}), {o['coordinates']} fp32 coordinates in {o['tensors']} tensors, {o['chunks']} chunks")
ratio = o["step_vs_copy_bandwidth"]
print(f"[result] optim Adam step: {o['step_ms']:.3f} ms = {o['step_GBps']:.0f} GB/s; "
      f"D2D copy of the same bytes: {o['copy_ms']:.3f} ms = {o['copy_GBps']:.0f} GB/s")
print(f"[result] optim Adam / copy bandwidth: {ratio:.3f} (target >= 0.90: {'MET' if ratio >= 0.9 else 'MISSED'}); "
      f"best launch shape {o['best_vs_copy_bandwidth']:.3f}")
for c in o["configs"]:
    print(f"[result]   chunk {c['chunk']:6d} x block {c['block']:4d}: {c['step_ms']:.3f} ms")
try:
    t = json.load(open(sys.argv[2]))
    speed = t["torch_fused_adam_ms"] / o["step_ms"]
    print(f"[result] torch fused Adam: {t['torch_fused_adam_ms']:.3f} ms = {t['torch_fused_adam_GBps']:.0f} GB/s "
          f"(torch {t['torch']}); torch copy_: {t['torch_copy_GBps']:.0f} GB/s")
    print(f"[result] optim Adam speed-up over torch fused Adam: {speed:.3f}x (target >= 1.0: {'MET' if speed >= 1.0 else 'MISSED'})")
except Exception as e:
    print("[result] no torch figures:", e)
PY
say "done; logs in $out"
[ "$check" = 0 ] && [ "$ob" = 0 ] && exit 0
exit 1
