#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs the lit suite
# (dialect, passes, front end, examples, docs, mangled programs, and the
# GoogleTest unit tests), then builds the libFuzzer target with ASan and UBSan
# and fuzzes the front end for FUZZ_SECONDS (default 60), seeded with the
# examples and the front-end tests. Exits non-zero on any failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
fuzz_build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
fuzz_seconds=${FUZZ_SECONDS:-60}
export PATH=/usr/lib/llvm-22/bin:$PATH

"$root/scripts/install-deps.sh" || exit 1

echo "== Build"
BUILD_DIR=$build "$root/scripts/build.sh" || exit 1

echo "== lit suite"
lit_log=$(mktemp)
/usr/lib/llvm-22/bin/lit -sv "$build/test" 2>&1 | tee "$lit_log"
lit_status=${PIPESTATUS[0]}
passed=$(sed -n 's/^ *Passed *: *\([0-9]*\).*/\1/p' "$lit_log" | head -1)
failed=$(sed -n 's/^ *Failed *: *\([0-9]*\).*/\1/p' "$lit_log" | head -1)
passed=${passed:-0}
failed=${failed:-0}
if [ "$lit_status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
rm -f "$lit_log"

echo "== libFuzzer: front end, ${fuzz_seconds}s"
fuzz_ok=0
if CMAKE_EXTRA_ARGS="-DOPTIM_ENABLE_FUZZER=ON -DOPTIM_ENABLE_UNITTESTS=OFF" \
   BUILD_DIR=$fuzz_build "$root/scripts/build.sh" optim-frontend-fuzzer; then
  corpus=$fuzz_build/corpus
  rm -rf "$corpus" && mkdir -p "$corpus"
  cp "$root"/examples/*.optim "$corpus"/
  find "$root/test/Frontend" -name '*.optim' -exec cp {} "$corpus"/ \; 2>/dev/null
  # Container-overflow checks misfire when only part of the program (ours,
  # not libMLIR.so) is instrumented.
  fuzz_log=$fuzz_build/fuzz.log
  ASAN_OPTIONS=detect_container_overflow=0:detect_leaks=1 \
    "$fuzz_build/bin/optim-frontend-fuzzer" "$corpus" \
      -dict="$root/test/fuzz/optim.dict" -max_total_time="$fuzz_seconds" \
      -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$fuzz_build/" > "$fuzz_log" 2>&1
  fuzz_status=$?
  # The end of the log holds the statistics, or the report of a failure.
  tail -n 40 "$fuzz_log" | grep -v '^"' | tail -n 20
  [ $fuzz_status -eq 0 ] && fuzz_ok=1
fi
if [ $fuzz_ok -eq 1 ]; then
  passed=$((passed + 1))
  echo "fuzzer: no crash, hang or leak in ${fuzz_seconds}s"
else
  failed=$((failed + 1))
  echo "fuzzer: FAILED (see the artifacts in $fuzz_build)"
fi

echo
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
