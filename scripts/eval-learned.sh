#!/usr/bin/env bash
# The evaluation of Andrychowicz et al. (2016) for examples/l2l.optim: every
# row of docs/learned.md runs `optim-eval` (the learned rule with its weights,
# SGD, RMSprop, Adam and Nesterov momentum with tuned learning rates) and the
# table, the figure and the text are regenerated from its results.
#
# Usage: scripts/eval-learned.sh [--weights FILE] [--quadratic-weights FILE]
#                                [--inits N] [--tune-inits N]
#                                [--rows ID,ID,...] [--jobs N] [--out FILE]
#   --weights     trained weights of examples/l2l.optim (safetensors); without
#                 them the learned column says "not trained yet"
#   --quadratic-weights  weights meta-trained on the quadratic, for its row
#                 (the paper trains one optimizer per task); default --weights
#   --inits       evaluation runs per rule and row, one seed each (100)
#   --tune-inits  runs per learning rate when tuning, other seeds (20)
#   --rows        a subset of: mnist-100 mnist-200 mnist-h40 mnist-l2
#                 mnist-relu quadratic fashion (default: all, in that order)
#   --jobs        parallel runs (0: one per core)
#   --out         the Markdown file to write (docs/learned.md); the figure
#                 goes next to it as <name>-mnist.png
#   --render-only rewrite --out from the results of the last run (kept in
#                 $BUILD_DIR/eval-learned/) without running anything
# Environment: BUILD_DIR (default: build), where bin/optim-eval is built.
# Needs python3 (standard library) to write the Markdown, and gnuplot
# (Debian's gnuplot-nox) for the figure, which is skipped with a warning when
# gnuplot is absent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
tool=$build/bin/optim-eval

invocation="scripts/eval-learned.sh${*:+ $*}"
weights="" quad_weights="" inits=100 tune_inits=20 jobs=0 out=$root/docs/learned.md render_only=0
rows="mnist-100,mnist-200,mnist-h40,mnist-l2,mnist-relu,quadratic,fashion"
usage() { sed -n '7,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --weights) weights=${2:?--weights needs a file}; shift 2 ;;
    --quadratic-weights) quad_weights=${2:?--quadratic-weights needs a file}; shift 2 ;;
    --inits) inits=${2:?}; shift 2 ;;
    --tune-inits) tune_inits=${2:?}; shift 2 ;;
    --rows) rows=${2:?}; shift 2 ;;
    --jobs) jobs=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --render-only) render_only=1; shift ;;
    -h|--help) usage ;;
    *) echo "eval-learned: unknown argument '$1'" >&2; usage ;;
  esac
done
[ -x "$tool" ] || [ $render_only = 1 ] || { echo "eval-learned: $tool is not built (BUILD_DIR=... scripts/build.sh optim-eval)" >&2; exit 1; }
[ -d "$(dirname "$out")" ] || { echo "eval-learned: no folder for '$out'" >&2; exit 1; }
for f in "$weights" "$quad_weights"; do
  if [ -n "$f" ] && [ ! -f "$f" ]; then
    echo "eval-learned: no weights file '$f'" >&2; exit 1
  fi
done
if [ -n "$quad_weights" ] && [ -z "$weights" ]; then
  echo "eval-learned: --quadratic-weights needs --weights too" >&2; exit 2
fi

# Learning-rate grids: half decades (factor sqrt(10)), wide enough that the
# best value is inside on every row (optim-eval flags an edge).
rules=(--rule "$root/examples/sgd.optim" --rule "$root/examples/rmsprop.optim"
       --rule "$root/examples/adam.optim" --rule "$root/examples/nesterov.optim"
       --grid sgd=0.001:10:9 --grid rmsprop=0.0001:1:9
       --grid adam=0.0001:1:9 --grid nesterov=0.001:10:9)

row_args() {
  case "$1" in
    mnist-100) echo "--task mnist --steps 100" ;;
    mnist-200) echo "--task mnist --steps 200" ;;
    mnist-h40) echo "--task mnist --steps 100 --hidden 40" ;;
    mnist-l2) echo "--task mnist --steps 100 --layers 2" ;;
    mnist-relu) echo "--task mnist --steps 100 --activation relu" ;;
    quadratic) echo "--task quadratic --steps 100 --metric sum" ;;
    fashion) echo "--task fashion-mnist --steps 100" ;;
    *) return 1 ;;
  esac
}

# The results stay in the build folder, for --render-only and for a look.
work=$build/eval-learned
IFS=, read -r -a row_list <<<"$rows"
for row in "${row_list[@]}"; do
  row_args "$row" >/dev/null || { echo "eval-learned: unknown row '$row'" >&2; exit 2; }
done
if [ $render_only = 1 ]; then
  for row in "${row_list[@]}"; do
    [ -f "$work/$row.json" ] || { echo "eval-learned: no results of row '$row' in $work" >&2; exit 1; }
  done
  weights=$(cat "$work/weights")
  invocation=$(cat "$work/invocation")
  jobs=$(cat "$work/jobs")
else
  rm -rf "$work"
  mkdir -p "$work"
  if [ -n "$quad_weights" ]; then
    echo "$weights (the quadratic row: $quad_weights)" >"$work/weights"
  else
    echo "$weights" >"$work/weights"
  fi
  echo "$invocation" >"$work/invocation"
  echo "$jobs" >"$work/jobs"
  date -u '+%Y-%m-%d %H:%M' >"$work/date"
  for row in "${row_list[@]}"; do
    args=$(row_args "$row")
    # The paper meta-trains one optimizer per task: the quadratic row may
    # take its own weights.
    learned=()
    w=$weights
    if [ "$row" = quadratic ] && [ -n "$quad_weights" ]; then w=$quad_weights; fi
    if [ -n "$w" ]; then learned=(--rule "$root/examples/l2l.optim" --weights "$w"); fi
    echo "== $row: optim-eval $args" >&2
    # Wall-clock, user and system seconds of the row.
    TIMEFORMAT='%R %U %S'
    # shellcheck disable=SC2086
    { time "$tool" $args --inits "$inits" --tune-inits "$tune_inits" \
        --jobs "$jobs" ${learned[@]+"${learned[@]}"} "${rules[@]}" --json "$work/$row.json" \
        --curve "$work/$row.csv" >"$work/$row.txt"; } 2>"$work/$row.time" || {
      cat "$work/$row.time" >&2; exit 1; }
    cat "$work/$row.txt" >&2
    tail -1 "$work/$row.time" >"$work/$row.seconds"
  done
fi

figure=""
if [ -f "$work/mnist-100.csv" ]; then
  if command -v gnuplot >/dev/null; then
    figure="${out%.md}-mnist.png"
    cols=$(head -1 "$work/mnist-100.csv" | tr ',' '\n' | wc -l)
    gnuplot <<EOF
set terminal pngcairo size 800,500 noenhanced
set output "$work/figure.png"
set datafile separator ","
set key autotitle columnhead top right
set logscale y
set xlabel "step"
set ylabel "mean minibatch loss f(theta_t)"
set title "MNIST MLP (1x20 sigmoid), 100 steps, tuned learning rates"
set grid
plot for [i=2:$cols] "$work/mnist-100.csv" using 1:i with lines lw 2
EOF
    [ -s "$work/figure.png" ] || { echo "eval-learned: gnuplot drew nothing" >&2; exit 1; }
    mv "$work/figure.png" "$figure"
  else
    echo "eval-learned: warning: gnuplot not found (apt-get install gnuplot-nox): no figure" >&2
  fi
fi

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then commit="$commit (with local changes)"; fi
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//' || true)
python3 "$root/scripts/render-learned.py" --dir "$work" --rows "$rows" \
  --out "$out" --figure "$figure" --commit "$commit" \
  --machine "${cpu:-unknown CPU}, $(nproc) cores" --jobs "$jobs" \
  --weights "$(cat "$work/weights")" --command "$invocation" --root "$root" \
  --date "$(cat "$work/date")"
echo "eval-learned: wrote $out${figure:+ and $figure}" >&2
