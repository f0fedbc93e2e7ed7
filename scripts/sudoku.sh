#!/usr/bin/env bash
# OptNet's 4x4 Sudoku experiment (Amos & Kolter 2017, section 5.2), reproduced
# with this project's compiler and runtime (docs/qp.md, "OptNet Sudoku"):
# builds optim-sudoku, trains the compiled examples/sudoku.optim layer and a
# fully connected baseline with the compiled examples/adam.optim, writes
# OUT/sudoku.csv (per-epoch loss and error of both) and OUT/sudoku.png.
#
# Usage: scripts/sudoku.sh [OUT] [optim-sudoku options...]
#   OUT defaults to sudoku-out; e.g. scripts/sudoku.sh out --epochs 5
# Environment: BUILD_DIR as for scripts/build.sh.
# Dependency: gnuplot (Debian: gnuplot-nox) for the plot; without it the
# plot is skipped with a warning.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
out=${1:-sudoku-out}
shift || true
BUILD_DIR=$build "$root/scripts/build.sh" optim-sudoku >&2
"$build/bin/optim-sudoku" --out "$out" "$@"

if ! command -v gnuplot > /dev/null; then
  echo "sudoku.sh: warning: gnuplot not found (apt-get install gnuplot-nox): no plot" >&2
  exit 0
fi
# Error is in percent; epoch 0 (before training) has a test error only.
for m in optnet fc; do
  awk -F, -v m=$m '$1 == m { print $2, ($4 == "" ? "?" : $4), $6 }' "$out/sudoku.csv" > "$out/$m.dat"
done
gnuplot <<GP
set terminal png size 900,500 noenhanced
set output "$out/sudoku.png"
set datafile missing "?"
set key outside right
set xlabel "epoch"
set ylabel "boards not fully solved (%)"
set title "4x4 Sudoku: OptNet layer vs fully connected baseline (Adam lr 0.1, batch 150)"
set yrange [0:105]
plot "$out/optnet.dat" every ::1 using 1:(100*\$2) with linespoints lw 2 title "OptNet train", \
     "$out/optnet.dat" using 1:(100*\$3) with linespoints lw 2 title "OptNet test", \
     "$out/fc.dat" every ::1 using 1:(100*\$2) with linespoints lw 2 dt 2 title "FC train", \
     "$out/fc.dat" using 1:(100*\$3) with linespoints lw 2 dt 2 title "FC test"
GP
rm -f "$out/optnet.dat" "$out/fc.dat"
echo "sudoku.sh: wrote $out/sudoku.csv and $out/sudoku.png"
