// RUN: optim-opt %s | optim-opt | FileCheck %s

// CHECK-LABEL: optim.rule @sgd
// CHECK-SAME: hyper(%lr: f32 = 0.01)
optim.rule @sgd(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01) {
  %0 = arith.mulf %lr, %g : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}
