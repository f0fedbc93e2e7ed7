#!/usr/bin/env bash
# The main job: installs, builds, compiles every example in examples/ to the
# optim dialect and shows the MLIR of one of them.
# Usage: scripts/main-job.sh [example to show, default: adam]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
show=${1:-adam}

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
exit $status
