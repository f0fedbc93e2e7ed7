#!/usr/bin/env python3
"""Feeds optimc mangled versions of the examples and checks that each one
ends cleanly: exit status 0 (the mangled text is still a valid program) or 1
with a located diagnostic -- never a signal, an assertion, a hang, or a
failure without a diagnostic.

Mutations: tokens deleted, duplicated, swapped; the file truncated; random
bytes inserted; whole-file binary garbage. Deterministic for a given --seed.

--split mutates each rule, learned rule or layer of a file on its own (a
mutant of one definition among fifty is mostly the other forty-nine).
--lower also compiles every accepted mutant on: to LLVM IR for the host and,
in f64, to PTX for CUDA. A mutant the front end accepts can still be refused
there (a learned rule the GPU cannot run), but only with an error message,
never with a signal or an internal error.
"""

import argparse
import glob
import os
import random
import re
import subprocess
import sys
import tempfile

TOKEN = re.compile(r"\s+|//[^\n]*|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][-+]?\d+)?|\*\*|[-+*/=<>!]=|.", re.S)
LOCATED = re.compile(r":\d+:\d+: error: ")
DEFINITION = re.compile(r"\n(?=(?://[^\n]*\n)*(?:rule|learned|layer) )")
CRASH = re.compile(r"internal error|LLVM ERROR|Assertion|PLEASE submit|Stack dump")


def tokens(text):
    return TOKEN.findall(text)


def mutate(text, rng):
    toks = tokens(text)
    kind = rng.randrange(7)
    if kind == 0 and toks:  # delete one to three tokens
        for _ in range(rng.randint(1, 3)):
            if toks:
                del toks[rng.randrange(len(toks))]
    elif kind == 1 and toks:  # duplicate a token
        i = rng.randrange(len(toks))
        toks.insert(i, toks[i])
    elif kind == 2 and len(toks) > 1:  # swap two tokens
        i, j = rng.randrange(len(toks)), rng.randrange(len(toks))
        toks[i], toks[j] = toks[j], toks[i]
    elif kind == 3:  # truncate
        return text[: rng.randrange(len(text) + 1)].encode()
    elif kind == 4:  # insert random bytes
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        return bytes(data)
    elif kind == 5:  # binary garbage
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 512)))
    else:  # several token mutations at once
        for _ in range(rng.randint(2, 6)):
            if not toks:
                break
            i = rng.randrange(len(toks))
            op = rng.randrange(3)
            if op == 0:
                del toks[i]
            elif op == 1:
                toks.insert(i, toks[rng.randrange(len(toks))])
            else:
                j = rng.randrange(len(toks))
                toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimc", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--count", type=int, default=100, help="mutants per example")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--split", action="store_true",
                    help="mutate each definition of a file on its own")
    ap.add_argument("--lower", action="store_true",
                    help="also lower accepted mutants to LLVM IR and PTX")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    sources = sorted(glob.glob(os.path.join(args.examples, "*.optim")))
    if not sources:
        print("no examples found in", args.examples)
        return 1
    texts = []
    for path in sources:
        text = open(path).read()
        if args.split:
            texts += [(path, part) for part in DEFINITION.split(text)
                      if re.search(r"^(rule|learned|layer) ", part, re.M)]
        else:
            texts.append((path, text))
    failures, ok, rejected = 0, 0, 0
    lowered, refused = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for path, text in texts:
            for n in range(args.count):
                data = mutate(text, rng)
                case = os.path.join(tmp, "mutant.optim")
                with open(case, "wb") as f:
                    f.write(data)
                try:
                    r = subprocess.run([args.optimc, case], capture_output=True,
                                       timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    failures += 1
                    keep = os.path.join(tmp, "..", "hang-%s-%d.optim" % (os.path.basename(path), n))
                    print("HANG on a mutant of", path, "- input:", repr(data[:200]))
                    continue
                err = r.stderr.decode(errors="replace")
                if r.returncode == 0:
                    ok += 1
                    if args.lower:
                        for flags in (["--emit=llvm"],
                                      ["--target=cuda", "--emit=ptx",
                                       "--precision=f64"]):
                            try:
                                d = subprocess.run([args.optimc, case] + flags,
                                                   capture_output=True,
                                                   timeout=args.timeout * 6)
                            except subprocess.TimeoutExpired:
                                failures += 1
                                print("HANG lowering (%s) a mutant of %s - input: %r"
                                      % (" ".join(flags), path, data[:300]))
                                continue
                            derr = d.stderr.decode(errors="replace")
                            if d.returncode == 0:
                                lowered += 1
                            elif (d.returncode == 1 and "error: " in derr
                                  and not CRASH.search(derr)):
                                refused += 1
                            else:
                                failures += 1
                                print("FAIL (exit %d) lowering (%s) a mutant of %s"
                                      % (d.returncode, " ".join(flags), path))
                                print("  input:", repr(data[:300]))
                                print("  stderr:", derr[-600:])
                elif r.returncode == 1 and LOCATED.search(err) and "internal error" not in err:
                    rejected += 1
                else:
                    failures += 1
                    print("FAIL (exit %d) on a mutant of %s" % (r.returncode, path))
                    print("  input:", repr(data[:300]))
                    print("  stderr:", err[-600:])
    total = ok + rejected + failures
    print("mangled programs: %d run, %d accepted, %d rejected with a located diagnostic, %d failures"
          % (total, ok, rejected, failures))
    if args.lower:
        print("lowered: %d to LLVM IR or PTX, %d refused with an error"
              % (lowered, refused))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
