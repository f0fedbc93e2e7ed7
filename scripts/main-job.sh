#!/usr/bin/env bash
# The main job: installs, builds, compiles every example in examples/ to the
# optim dialect and shows the MLIR of one of them.
# Usage: scripts/main-job.sh [example to show, default: adam]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
show=${1:-adam}
steps=${2:-300}

"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" optimc optim-opt
bin=${BUILD_DIR:-$root/build}/bin

echo
echo "== Compiling every example"
status=0
for f in "$root"/examples/*.optim; do
  if "$bin/optimc" "$f" | "$bin/optim-opt" > /dev/null; then
    printf '  ok    %s\n' "examples/$(basename "$f")"
  else
    printf '  FAIL  %s\n' "examples/$(basename "$f")"
    status=1
  fi
done

echo
echo "== examples/$show.optim"
cat "$root/examples/$show.optim"
echo
echo "== optimc examples/$show.optim --emit=mlir"
"$bin/optimc" "$root/examples/$show.optim" --emit=mlir

cd "$root" # The MNIST digits are found at ../shared/data/mnist.
echo
echo "== optimc run examples/adam.optim --task mnist --steps $steps --set lr=0.03"
"$bin/optimc" run examples/adam.optim --task mnist --steps "$steps" --set lr=0.03 || status=1

echo
echo "== The same task, seed and steps with other rules"
printf '%-10s %-8s %s\n' rule lr "final losses"
for spec in adam:0.03 rmsprop:0.01 sgd:1.0 momentum:0.1; do
  rule=${spec%%:*} lr=${spec##*:}
  result=$("$bin/optimc" run "examples/$rule.optim" --task mnist --steps "$steps" \
             --set lr="$lr" --every "$steps" | tail -n 1) || status=1
  printf '%-10s %-8s %s\n' "$rule" "$lr" "${result#final: }"
done
exit $status
