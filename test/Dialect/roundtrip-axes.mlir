// Round trip of row and column states and reductions (KernelABI.h version
// 10) through the custom assembly and the generic form: the `row` / `col`
// marker after a state's initial value is the rule's state_axes ("none"
// for the others; absent when no state has an axis), and tensor_reduce's
// optional `row` / `col` its `axis`.
// RUN: optim-opt %s | optim-opt | FileCheck %s
// RUN: optim-opt %s --mlir-print-op-generic | optim-opt | FileCheck %s
// RUN: optim-opt %s --mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

// CHECK-LABEL: optim.rule @factored(%p: f32, %g: f32, %t: i64) hyper(%beta: f32 = 0.9) state(%r: f32 = 1.0 row, %m: f32 = 0.0, %c: f32 = 2.0 col) {
// CHECK-NEXT: %[[X:.*]] = arith.mulf %g, %g : f32
// CHECK-NEXT: %[[R:.*]] = optim.tensor_reduce mean %[[X]] row : f32
// CHECK-NEXT: %[[C:.*]] = optim.tensor_reduce max %[[X]] col : f32
// CHECK-NEXT: %[[N:.*]] = optim.tensor_reduce norm %g : f32
// CHECK-NEXT: %[[S:.*]] = optim.tensor_reduce sum %g global : f32
// CHECK-NEXT: %[[RC:.*]] = arith.mulf %r, %c : f32
// CHECK: optim.yield %{{.*}}, %[[R]], %[[RC]], %[[C]] : f32, f32, f32, f32
// GENERIC-LABEL: "optim.rule"()
// GENERIC-SAME: state_axes = ["row", "none", "col"]
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{axis = 0 : i32, kind = 1 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{axis = 1 : i32, kind = 3 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{kind = 2 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
optim.rule @factored(%p: f32, %g: f32, %t: i64) hyper(%beta: f32 = 0.9) state(%r: f32 = 1.0 row, %m: f32 = 0.0, %c: f32 = 2.0 col) {
  %0 = arith.mulf %g, %g : f32
  %1 = optim.tensor_reduce mean %0 row : f32
  %2 = optim.tensor_reduce max %0 col : f32
  %3 = optim.tensor_reduce norm %g : f32
  %4 = optim.tensor_reduce sum %g global : f32
  %5 = arith.mulf %r, %c : f32
  %6 = arith.addf %3, %4 : f32
  %7 = arith.subf %p, %6 : f32
  optim.yield %7, %1, %5, %2 : f32, f32, f32, f32
}

// Row reductions without row states: no state_axes.
// CHECK-LABEL: optim.rule @rownorm(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0) {
// CHECK-NEXT: optim.tensor_reduce norm %g row : f32
// GENERIC-LABEL: "optim.rule"()
// GENERIC-NOT: state_axes
// GENERIC-SAME: sym_name = "rownorm"
optim.rule @rownorm(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0) {
  %0 = optim.tensor_reduce norm %g row : f32
  %1 = arith.divf %g, %0 : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2, %1 : f32, f32
}
