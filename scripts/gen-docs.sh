#!/usr/bin/env bash
# Regenerates the reference docs that come from ODS. test/Docs checks that the
# committed files match, so run this after changing a .td file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tblgen=/usr/lib/llvm-22/bin/mlir-tblgen
inc=(-I /usr/lib/llvm-22/include -I "$root/dialect/include" -I "$root/include")
"$tblgen" -gen-dialect-doc -dialect=optim "${inc[@]}" \
  "$root/dialect/include/optim/Dialect/OptimOps.td" > "$root/docs/dialect.md.tmp"
mv "$root/docs/dialect.md.tmp" "$root/docs/dialect.md"
"$tblgen" -gen-pass-doc "${inc[@]}" \
  "$root/include/optim/Transforms/Passes.td" > "$root/docs/passes.md.tmp"
mv "$root/docs/passes.md.tmp" "$root/docs/passes.md"
"$tblgen" -gen-pass-doc "${inc[@]}" \
  "$root/include/optim/Conversion/Passes.td" > "$root/docs/lowering-passes.md.tmp"
mv "$root/docs/lowering-passes.md.tmp" "$root/docs/lowering-passes.md"
echo "gen-docs: wrote docs/dialect.md, docs/passes.md and docs/lowering-passes.md"
