#!/usr/bin/env bash
# Installs what optim-mlir needs to build and test, from Debian's packages.
# Idempotent: packages already present are not downloaded again.
set -euo pipefail

packages=(
  cmake ninja-build ccache python3
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools
  clang-22 lld-22 libclang-rt-22-dev
  libgtest-dev nlohmann-json3-dev
  zlib1g-dev dataset-fashion-mnist
  gnuplot-nox libopenblas0-serial
)

# The QP oracle test (test/Oracle/qp-oracle.test) needs cvxopt and numpy in
# the python3 of PATH; pip, since that python3 may not be Debian's.
if command -v python3 >/dev/null &&
   ! python3 -c "import cvxopt, numpy" 2>/dev/null; then
  echo "install-deps: pip install cvxopt numpy"
  python3 -m pip install --quiet cvxopt numpy ||
    echo "install-deps: could not install cvxopt; the QP oracle test will be skipped"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
# LLVM/MLIR 22 come from bookworm-security: the package lists must be fresh.
"${sudo_cmd[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
