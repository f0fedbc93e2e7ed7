// RUN: optim-opt %s --canonicalize --cse | FileCheck %s
// RUN: optim-opt %s --optim-fold-constant-hyperparameters --canonicalize --cse | FileCheck %s

// The runtime's table of reduced values has one slot per optim.tensor_reduce
// of the rule as written, in body order (describeRule counts them before the
// pipeline, the lowering after it): canonicalization and CSE keep duplicates
// and unused ones, in order.
// CHECK-LABEL: optim.rule @slots(
// CHECK:         %[[A:.*]] = optim.tensor_reduce norm %g : f32
// CHECK-NEXT:    %[[B:.*]] = optim.tensor_reduce norm %g : f32
// CHECK-NEXT:    optim.tensor_reduce max %p global : f32
// CHECK-NEXT:    %[[C:.*]] = optim.tensor_reduce sum %{{.*}} : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[A]], %[[B]] : f32
// CHECK-NEXT:    arith.mulf %[[S]], %[[C]] : f32
optim.rule @slots(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.5 const) {
  %a = optim.tensor_reduce norm %g : f32
  %b = optim.tensor_reduce norm %g : f32
  %unused = optim.tensor_reduce max %p global : f32
  %c = optim.tensor_reduce sum %lr : f32
  %s = arith.addf %a, %b : f32
  %0 = arith.mulf %s, %c : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}
