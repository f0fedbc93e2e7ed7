"""JIT of test/AOT/Inputs/nested-folded.optim through the Python binding:
the levels RuleInfo reports, and the values of rule `folded` (k = 0 folds
select(k > 0, tensor_mean(g), g) to g, so p = max(g) - sum(g)) on two steps
with different gradients: a reduction run at a stage other than RuleInfo's
reads a reduced value that is not combined yet (0 on the first step, the
previous step's on the next)."""
import sys

import numpy as np

sys.path.insert(0, sys.argv[2])
import optim_mlir  # noqa: E402

optim_mlir.load(sys.argv[1])
src = open(sys.argv[3]).read()
for threads in (1, 2):
    rule = optim_mlir.compile_source(src, rule="folded")
    print("folded levels", rule.reduction_levels)
    p = np.zeros(4, np.float32)
    opt = optim_mlir.Optimizer(rule, [p], threads=threads)
    for g in ([1, 2, 3, 4], [10, 20, 30, 40]):
        g = np.array(g, np.float32)
        opt.step([g])
        want = g.max() - g.sum()
        assert np.all(p == want), (threads, p, want)
        print("threads %d: p = %g" % (threads, p[0]))
rule = optim_mlir.compile_source(src, rule="centered")
print("centered levels", rule.reduction_levels)
