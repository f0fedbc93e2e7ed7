#!/usr/bin/env python3
"""An optimizer whose worker threads the system refuses (run under a small
`ulimit -v`: each thread's stack is a mapping of its own) fails with
OPTIM_ERROR_OUT_OF_MEMORY and the reason, not with INVALID_ARGUMENT (the
caller asked for a valid count); one thread still works afterwards.

Usage: threads_exhausted.py LIBOPTIM EXAMPLES_DIR"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                "python"))
import optim_mlir  # noqa: E402

library, examples = sys.argv[1:3]
optim_mlir.load(library)
rule = optim_mlir.compile_file(os.path.join(examples, "adam.optim"))
w = np.ones(100, np.float32)
try:
    optim_mlir.Optimizer(rule, [w], threads=1024)
    print("no error")
except optim_mlir.OptimError as e:
    print(e.status_name, e.message)
opt = optim_mlir.Optimizer(rule, [w], threads=1)
opt.step([np.ones(100, np.float32)])
print("one thread: w[0] = %.6f" % w[0])
