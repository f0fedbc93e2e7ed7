#!/usr/bin/env bash
# The numerics checks of bench/gpu/run.sh again, under compute-sanitizer's
# memcheck (out-of-bounds and misaligned device accesses, leaks of device
# memory) and racecheck (shared-memory races: the learned rules' weights and
# the QP block solver's factorization live in shared memory). Run on the GPU
# machine after run.sh, with the runtime-only build it made:
#   bench/gpu/sanitize.sh [AOT_DIR] [BUILD]   (defaults build-gpu/aot,
#                                              $BUILD or /tmp/optim-gpu-build)
# Small problems only: the tools slow kernels down by 10-100x. Exit status 0
# when every check ran clean, 1 when any reported an error or failed, 2 when
# compute-sanitizer is missing or refuses the device (on gVisor it does).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
aot=${1:-$root/build-gpu/aot}
build=${2:-${BUILD:-/tmp/optim-gpu-build}}
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
[ -x "$cs" ] || { echo "[sanitize] no compute-sanitizer"; exit 2; }
status=0
run() { # TOOL TIMEOUT ARGS...
  local tool=$1 limit=$2; shift 2
  local log opts=()
  # The loaders probe optional symbols (descriptors with cuModuleGetGlobal,
  # a rule's reduce kernel with cuModuleGetFunction) and expect
  # CUDA_ERROR_NOT_FOUND where a rule has none: not an error, but
  # memcheck counts every failed API call. Any other failed call is an
  # error of the program itself (the runtime checks each result), which
  # then exits non-zero and fails here all the same.
  [ "$tool" = memcheck ] && opts=(--leak-check full --report-api-errors no)
  log=$(timeout "$limit" "$cs" --tool "$tool" "${opts[@]}" --error-exitcode 3 "$@" 2>&1)
  local rc=$?
  local summary
  summary=$(echo "$log" | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" | tr '\n' ' ')
  case $rc in
    0) echo "[sanitize] $tool $(basename "$1") ${*:2}: clean ($summary)" ;;
    124) echo "[sanitize] $tool $(basename "$1") ${*:2}: TIMEOUT after ${limit}s"; status=1 ;;
    *) echo "[sanitize] $tool $(basename "$1") ${*:2}: FAILED (status $rc) $summary"
       echo "$log" | grep -v "^check" | head -40
       status=1 ;;
  esac
  if echo "$log" | grep -q "Device not supported\|unable to initialize"; then
    echo "[sanitize] compute-sanitizer refuses this device"; exit 2
  fi
}
run memcheck 150 "$build/bin/optim-gpu-bench" --check "$aot"
run memcheck 120 "$build/bin/optim-gpu-learned" --check "$aot"
# racecheck of the 20-step check (1M coordinates) ran past 130 s on an
# H200: a small step instead (shared memory is the weights, written once).
run racecheck 60 "$build/bin/optim-gpu-learned" --bench "$aot" --coordinates 4096 --steps 1
run memcheck 120 "$build/bin/optim-gpu-qp" "$aot" --batch 4 --reps 1
run racecheck 150 "$build/bin/optim-gpu-qp" "$aot" --batch 2 --reps 1
exit "$status"
