// RUN: optim-opt %s --optim-differentiate --split-input-file | FileCheck %s

// Heavy-ball momentum: p' = p - lr (mu buf + g), buf' = mu buf + g.
// dp = dp'; dbuf = mu (dbuf' - lr dp'); dlr = -(mu buf + g) dp';
// dmu = buf (dbuf' - lr dp'). g gets no adjoint.

// CHECK-LABEL: func.func @optim_step_momentum(
// CHECK-SAME: %[[P:.*]]: f32, %[[G:.*]]: f32, %[[T:.*]]: i64, %[[LR:.*]]: f32, %[[MU:.*]]: f32, %[[BUF:.*]]: f32) -> (f32, f32)
// CHECK: return

// CHECK-LABEL: func.func @optim_vjp_momentum(
// CHECK-SAME: %[[P:.*]]: f32, %[[G:.*]]: f32, %[[T:.*]]: i64, %[[LR:.*]]: f32, %[[MU:.*]]: f32, %[[BUF:.*]]: f32, %[[DP:.*]]: f32, %[[DBUF:.*]]: f32) -> (f32, f32, f32, f32)
// CHECK: %[[M:.*]] = arith.mulf %[[MU]], %[[BUF]] : f32
// CHECK: %[[NEW:.*]] = arith.addf %[[M]], %[[G]] : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[DLR:.*]] = arith.mulf %[[NEG]], %[[NEW]] : f32
// CHECK: %[[X:.*]] = arith.mulf %[[NEG]], %[[LR]] : f32
// CHECK: %[[DNEW:.*]] = arith.addf %[[DBUF]], %[[X]] : f32
// CHECK: %[[DMU:.*]] = arith.mulf %[[DNEW]], %[[BUF]] : f32
// CHECK: %[[DB:.*]] = arith.mulf %[[DNEW]], %[[MU]] : f32
// CHECK: return %[[DP]], %[[DB]], %[[DLR]], %[[DMU]] : f32, f32, f32, f32
optim.rule @momentum(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01, %mu: f32 = 0.9) state(%buf: f32 = 0.0) {
  %0 = arith.mulf %mu, %buf : f32
  %1 = arith.addf %0, %g : f32
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, f32
}

// -----

// The derivative of sqrt at 0 is taken as 0, not infinity: an Adam-like
// rule at a zero gradient must not produce NaN.
// CHECK-LABEL: func.func @optim_vjp_root(
// CHECK: %[[R:.*]] = math.sqrt %{{.*}} : f64
// CHECK: %[[POS:.*]] = arith.cmpf ogt, %[[R]], %{{.*}} : f64
// CHECK: %[[SAFE:.*]] = arith.select %[[POS]], %[[R]], %{{.*}} : f64
// CHECK: %[[D:.*]] = arith.divf %{{.*}}, %[[SAFE]] : f64
// CHECK: arith.select %[[POS]], %[[D]], %{{.*}} : f64
optim.rule @root(%p: f64, %g: f64, %t: i64) state(%v: f64 = 0.0) {
  %0 = math.sqrt %v : f64
  %1 = arith.subf %p, %0 : f64
  optim.yield %1, %v : f64, f64
}
