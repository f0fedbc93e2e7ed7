#!/usr/bin/env python3
"""Compares one optim-eval run (--inits 1: its means are that run) with the
CSV of `optimc run --every 1` on the same seed, rule and learning rate:
the minibatch losses f(theta_t), t < T, the final held-out loss and, for the
quadratic (whose held-out loss is f), sum_{t=1..T} f(theta_t).
Usage: compare_with_run.py EVAL.json RUN.csv quadratic|mnist"""
import csv
import json
import sys

result = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
task = sys.argv[3]
rule = result["rules"][0]
steps = result["steps"]
assert result["inits"] == 1 and len(rows) == steps + 1, (result, len(rows))


def near(a, b, what, tol=1e-6):
    # optimc writes %.9g, and the final row with 6 decimals.
    if abs(a - b) > tol * (1 + abs(b)):
        sys.exit("%s: optim-eval %r, optimc run %r" % (what, a, b))


train = [float(r["train_loss"]) for r in rows[:steps]]
final = float(rows[steps]["eval_loss"])
for t in range(steps):
    near(rule["curve"][t], train[t], "f(theta_%d)" % t)
near(rule["final"]["mean"], final, "final held-out loss")
near(rule["sum"]["mean"], sum(rule["curve"][1:]), "sum of the curve", 1e-12)
if task == "quadratic":
    # f(theta_T) is the loss after the last step: optimc's final eval loss.
    near(rule["sum"]["mean"], sum(train[1:]) + final, "sum f")
print("agree: %s, %d steps, final %.6g, sum %.6g"
      % (rule["name"], steps, final, rule["sum"]["mean"]))
