#!/usr/bin/env python3
"""The issue-bound ceiling of the learned rule's CUDA kernel, from its SASS.

An SM sub-partition issues one warp instruction a cycle and retires one
warp FFMA a cycle (32 fp32 lanes), so the fp32 FMA peak that
bench/gpu/FmaPeak.cu measures is one FFMA in every issue slot. A kernel that
issues I instructions per coordinate, F of them the FMAs that issue 6
counts (2 F flops), reaches at most F / I of that peak, whatever its
occupancy and latency hiding: that is the ceiling this script prints.

It disassembles the cubin with cuobjdump (CUDA toolkit, or PyPI's
nvidia-cuda-cuobjdump wheel; set CUOBJDUMP to choose one), finds the loops
(backward branches) of the kernel, and weights each innermost loop by its
trip count: one iteration per hidden unit of each LSTM layer, in address
order (`--units 20,20` for examples/l2l.optim). The loop that contains them
is the per-coordinate loop. Run it on the cubin that bench/gpu/prepare.sh
makes:

  bench/gpu/issue_bound.py build-gpu/aot/l2l.sm_90.cubin --units 20,20 \\
      --flops 9960
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys


def find_cuobjdump():
    candidates = [os.environ.get("CUOBJDUMP"), shutil.which("cuobjdump"),
                  "/usr/local/cuda/bin/cuobjdump"]
    for path in sys.path:
        candidates += glob.glob(os.path.join(path, "nvidia", "cu*", "bin",
                                             "cuobjdump"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    sys.exit("issue_bound.py: no cuobjdump (CUDA toolkit, or "
             "`pip install nvidia-cuda-cuobjdump`; or set CUOBJDUMP)")


def disassemble(cubin, kernel):
    text = subprocess.run([find_cuobjdump(), "-sass", cubin], check=True,
                          capture_output=True, text=True).stdout
    code, inside = [], False
    for line in text.splitlines():
        if "Function :" in line:
            inside = line.split("Function :")[1].strip() == kernel
            continue
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
        if inside and m:
            op = re.sub(r"^@!?U?P\w+\s+", "", m.group(2))
            code.append((int(m.group(1), 16), op))
    if not code:
        sys.exit(f"issue_bound.py: no kernel '{kernel}' in {cubin}")
    return code


def opcode(instr):
    return instr.split()[0].split(".")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cubin")
    ap.add_argument("--kernel", default="optim_rule_l2l")
    ap.add_argument("--units", default="20,20",
                    help="trip counts of the innermost loops, address order")
    ap.add_argument("--flops", type=float, default=9960,
                    help="counted flops per coordinate (2 per FMA)")
    args = ap.parse_args()
    code = disassemble(args.cubin, args.kernel)
    loops = []
    for addr, instr in code:
        m = re.match(r"BRA\s+(?:`\()?0x([0-9a-f]+)", instr)
        if m and int(m.group(1), 16) < addr:
            loops.append((int(m.group(1), 16), addr))
    inner = [l for l in loops
             if not any(o != l and l[0] <= o[0] and o[1] <= l[1]
                        for o in loops)]
    trips = [int(t) for t in args.units.split(",")]
    # Innermost loops with a few instructions are the prologue's copies of
    # the weights into shared memory; the hidden units' loops hold the FMAs.
    units = [l for l in inner
             if sum(1 for a, i in code if l[0] <= a <= l[1]
                    and opcode(i) == "FFMA") > 0]
    if len(units) != len(trips):
        sys.exit(f"issue_bound.py: {len(units)} loops with FMAs, "
                 f"{len(trips)} trip counts given")
    outer = [l for l in loops if l not in inner
             and all(l[0] <= u[0] and u[1] <= l[1] for u in units)]
    if not outer:
        sys.exit("issue_bound.py: no loop around the hidden units' loops")
    outer = min(outer, key=lambda l: l[1] - l[0])

    total = collections.Counter()
    print(f"{args.cubin}: {args.kernel}, {len(code)} instructions")
    print(f"{'loop':<26}{'trips':>6}{'instrs':>8}{'FFMA':>6}{'LDS':>5}"
          f"{'LDG':>5}  other")
    for (lo, hi), n in zip(units, trips):
        mix = collections.Counter(opcode(i) for a, i in code if lo <= a <= hi)
        for k, v in mix.items():
            total[k] += n * v
        rest = sum(mix.values()) - mix["FFMA"] - mix["LDS"] - mix["LDG"]
        print(f"{hex(lo) + '-' + hex(hi):<26}{n:>6}{sum(mix.values()):>8}"
              f"{mix['FFMA']:>6}{mix['LDS']:>5}{mix['LDG']:>5}  {rest}")
    body = collections.Counter(
        opcode(i) for a, i in code if outer[0] <= a <= outer[1]
        and not any(u[0] <= a <= u[1] for u in units))
    total.update(body)
    print(f"{'per coordinate, outside':<26}{1:>6}{sum(body.values()):>8}"
          f"{body['FFMA']:>6}{body['LDS']:>5}{body['LDG']:>5}  "
          f"{sum(body.values()) - body['FFMA'] - body['LDS'] - body['LDG']}")
    issued = sum(total.values())
    fmas = args.flops / 2
    print(f"per coordinate: {issued} instructions issued, {total['FFMA']} "
          f"FFMA ({fmas:.0f} of them counted), {total['LDS']} LDS, "
          f"{total['LDG']} LDG, {total['MUFU']} MUFU")
    print("largest classes: " + ", ".join(
        f"{k} {v}" for k, v in total.most_common(8)))
    print(f"issue-bound ceiling: {fmas / issued:.3f} of the fp32 FMA peak")


if __name__ == "__main__":
    main()
