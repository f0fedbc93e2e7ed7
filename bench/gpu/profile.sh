#!/usr/bin/env bash
# Nsight Compute (ncu) reports of the kernels whose device targets are
# missed, for the next round of tuning: one launch each of the QP layer's
# forward kernel (batch 128, n = p = 100) and of the learned rule l2l (2M
# coordinates). Run on the GPU machine after run.sh, with its build:
#   bench/gpu/profile.sh [AOT_DIR] [BUILD] [OUT]   (defaults build-gpu/aot,
#        $BUILD or /tmp/optim-gpu-build, $OUT or /tmp/optim-gpu-run)
# Writes OUT/ncu-qp.txt and OUT/ncu-l2l.txt. ncu needs the hardware
# counters (Firecracker machines have them, gVisor ones do not); the clocks
# are left alone (--clock-control none).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
aot=${1:-$root/build-gpu/aot}
build=${2:-${BUILD:-/tmp/optim-gpu-build}}
out=${3:-${OUT:-/tmp/optim-gpu-run}}
mkdir -p "$out"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] && [ -x "$ncu" ] || { echo "[profile] no ncu"; exit 2; }
sections=(--section SpeedOfLight --section Occupancy --section LaunchStats
  --section WarpStateStats --section SchedulerStats
  --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
  --section InstructionStats --section SourceCounters)
status=0
timeout 150 "$ncu" --clock-control none "${sections[@]}" \
  --kernel-name regex:'^optim_layer_qpbench_qp$' --launch-skip 1 --launch-count 1 \
  "$build/bin/optim-gpu-qp" "$aot" --batch 128 --reps 1 > "$out/ncu-qp.txt" 2>&1 || status=1
timeout 150 "$ncu" --clock-control none "${sections[@]}" \
  --kernel-name optim_rule_l2l --launch-skip 2 --launch-count 1 \
  "$build/bin/optim-gpu-learned" --bench "$aot" --coordinates 2000000 --steps 1 \
  > "$out/ncu-l2l.txt" 2>&1 || status=1
for f in ncu-qp ncu-l2l; do
  echo "[profile] $f: $(grep -c . "$out/$f.txt") lines"
  grep -E "Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Executed Ipc A" "$out/$f.txt" | head -20
done
exit "$status"
