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

// -----

// Canonicalization turns `t > 1` (sitofp then cmpf) into an integer compare
// of t: it carries no cotangent, and the select still routes dp'.

// CHECK-LABEL: func.func @optim_vjp_warmup(
// CHECK-SAME: %[[P:.*]]: f32, %[[G:.*]]: f32, %[[T:.*]]: i64, %[[LR:.*]]: f32, %[[DP:.*]]: f32) -> (f32, f32)
// CHECK: %[[LATE:.*]] = arith.cmpi sgt, %[[T]], %{{.*}} : i64
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[DS:.*]] = arith.mulf %[[NEG]], %[[G]] : f32
// CHECK: %[[DLR:.*]] = arith.select %[[LATE]], %[[DS]], %{{.*}} : f32
// CHECK: return %[[DP]], %[[DLR]] : f32, f32
optim.rule @warmup(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01) {
  %c1 = arith.constant 1 : i64
  %late = arith.cmpi sgt, %t, %c1 : i64
  %zero = arith.constant 0.0 : f32
  %s = arith.select %late, %lr, %zero : f32
  %d = arith.mulf %s, %g : f32
  %0 = arith.subf %p, %d : f32
  optim.yield %0 : f32
}

// -----

// RAdam's shape: before the warm-up ends the rule takes `m`, and the other
// side of the select is NaN (the sqrt of a negative number). Its cotangent
// is exactly 0, and what flows back from it is forced to 0 where that
// cotangent is 0 (a strong zero), so 0 * NaN cannot reach dm; a rule
// without select, max or min (momentum above) gets no such ops.

// CHECK-LABEL: func.func @optim_vjp_warm(
// CHECK-SAME: %[[P:.*]]: f32, %[[G:.*]]: f32, %[[T:.*]]: i64, %[[R:.*]]: f32, %[[M:.*]]: f32, %[[DP:.*]]: f32, %[[DM:.*]]: f32) -> (f32, f32, f32)
// CHECK: %[[ROOT:.*]] = math.sqrt %[[R]] : f32
// CHECK: %[[WARM:.*]] = arith.cmpf ogt, %[[R]], %{{.*}} : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[DA:.*]] = arith.select %[[WARM]], %[[NEG]], %[[ZERO:.*]] : f32
// CHECK: %[[DB:.*]] = arith.select %[[WARM]], %[[ZERO]], %[[NEG]] : f32
// CHECK: %[[PART:.*]] = arith.addf %[[DM]], %[[DB]] : f32
// CHECK: %[[TIMES:.*]] = arith.mulf %[[DA]], %[[ROOT]] : f32
// CHECK: %[[ISZERO:.*]] = arith.cmpf oeq, %[[DA]], %[[ZERO2:.*]] : f32
// CHECK: %[[STRONG:.*]] = arith.select %[[ISZERO]], %[[ZERO2]], %[[TIMES]] : f32
// CHECK: %[[DMOUT:.*]] = arith.addf %[[PART]], %[[STRONG]] : f32
// CHECK: return %[[DP]], %[[DMOUT]], %{{.*}} : f32, f32, f32
optim.rule @warm(%p: f32, %g: f32, %t: i64) hyper(%r: f32 = -1.0) state(%m: f32 = 0.0) {
  %root = math.sqrt %r : f32
  %a = arith.mulf %root, %m : f32
  %zero = arith.constant 5.0 : f32
  %warm = arith.cmpf ogt, %r, %zero : f32
  %s = arith.select %warm, %a, %m : f32
  %0 = arith.subf %p, %s : f32
  %m2 = arith.addf %m, %g : f32
  optim.yield %0, %m2 : f32, f32
}

// -----

// A vector literal (vector.from_elements): each element's cotangent is its
// component of the vector's. p' = p - sum([p, lr] + v), v' = [p, lr] + v:
// d[p, lr] = dv' - dp' (broadcast), dp = dp' + its first component, dlr the
// second.
// CHECK-LABEL: func.func @optim_vjp_pack(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %[[T:[^:]*]]: i64, %[[LR:[^:]*]]: f32, %[[V:[^:]*]]: vector<2xf32>, %[[DP:[^:]*]]: f32, %[[DV:[^:]*]]: vector<2xf32>)
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[B:.*]] = vector.broadcast %[[NEG]] : f32 to vector<2xf32>
// CHECK: %[[D:.*]] = arith.addf %[[DV]], %[[B]] : vector<2xf32>
// CHECK: %[[D0:.*]] = vector.extract %[[D]][0] : f32 from vector<2xf32>
// CHECK: %[[DPOUT:.*]] = arith.addf %[[DP]], %[[D0]] : f32
// CHECK: %[[DLR:.*]] = vector.extract %[[D]][1] : f32 from vector<2xf32>
// CHECK: return %[[DPOUT]], %[[D]], %[[DLR]] : f32, vector<2xf32>, f32
optim.rule @pack(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) state(%v: vector<2xf32> = 0.0) {
  %0 = vector.from_elements %p, %lr : vector<2xf32>
  %1 = arith.addf %0, %v : vector<2xf32>
  %2 = vector.reduction <add>, %1 : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, vector<2xf32>
}
