// optim.random: parsing, printing (custom and generic), the rule's list of
// draw sites, the verifier's errors, and that neither CSE nor the
// canonicalizer merges two draws (distinct sites) while DCE may erase a dead
// one without renumbering the others.
// RUN: optim-opt %s -split-input-file | optim-opt -split-input-file | FileCheck %s
// RUN: optim-opt %s -split-input-file --mlir-print-op-generic | optim-opt -split-input-file | FileCheck %s
// RUN: optim-opt %s -split-input-file --canonicalize --cse | FileCheck %s --check-prefix=CANON
// RUN: optim-opt %s -split-input-file --mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

// CHECK-LABEL: optim.rule @draws(%p: f32, %g: f32, %t: i64) random(normal, uniform, normal) {
// CHECK-NEXT:    %[[A:.*]] = optim.random normal site 0 : f32
// CHECK-NEXT:    %[[B:.*]] = optim.random uniform site 1 : f32
// CHECK-NEXT:    %[[C:.*]] = optim.random normal site 2 : f32
// CANON-LABEL: optim.rule @draws
// CANON-SAME:  random(normal, uniform, normal)
// CANON-DAG:   optim.random normal site 0 : f32
// CANON-DAG:   optim.random normal site 2 : f32
// CANON-NOT:   optim.random uniform
// CANON:       optim.yield
// GENERIC: "optim.rule"() <{{.*}} random = ["normal", "uniform", "normal"]{{.*}} sym_name = "draws"
// GENERIC: "optim.random"() <{kind = 1 : i32, site = 0 : i32}> : () -> f32
optim.rule @draws(%p: f32, %g: f32, %t: i64) random(normal, uniform, normal) {
  %a = optim.random normal site 0 : f32
  %u = optim.random uniform site 1 : f32
  %b = optim.random normal site 2 : f32
  %s = arith.addf %a, %b : f32
  %q = arith.addf %p, %s : f32
  optim.yield %q : f32
}

// -----

// A rule without draws prints no list.
// CHECK-LABEL: optim.rule @none(%p: f64, %g: f64, %t: i64) {
// GENERIC: "optim.rule"() <{{.*}} hyper_names = [], state_inits{{.*}} sym_name = "none"
optim.rule @none(%p: f64, %g: f64, %t: i64) {
  optim.yield %p : f64
}
