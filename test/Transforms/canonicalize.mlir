// RUN: optim-opt %s --canonicalize --split-input-file | FileCheck %s

// In a rule body signed zeros are not significant: x + 0.0 and 0.0 + x fold
// to x (the dialect's pattern), as do x + -0.0, x * 1.0 and 1.0 * x (upstream
// arith folders).
// CHECK-LABEL: optim.rule @identities(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
// CHECK-NEXT:    %[[A:.*]] = arith.mulf %lr, %g : f32
// CHECK-NEXT:    %[[B:.*]] = arith.subf %p, %[[A]] : f32
// CHECK-NEXT:    optim.yield %[[B]] : f32
// CHECK-NEXT:  }
optim.rule @identities(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %zero = arith.constant 0.0 : f32
  %nzero = arith.constant -0.0 : f32
  %one = arith.constant 1.0 : f32
  %0 = arith.addf %g, %zero : f32
  %1 = arith.addf %zero, %0 : f32
  %2 = arith.addf %1, %nzero : f32
  %3 = arith.mulf %2, %one : f32
  %4 = arith.mulf %one, %3 : f32
  %5 = arith.mulf %lr, %4 : f32
  %6 = arith.subf %p, %5 : f32
  optim.yield %6 : f32
}

// -----

// The same for per-coordinate vectors and splat constants, in an f64 rule.
// CHECK-LABEL: optim.rule @vectors(%p: f64, %g: f64, %t: i64) state(%h: vector<4xf64> = 0.0) {
// CHECK-NEXT:    optim.yield %p, %h : f64, vector<4xf64>
optim.rule @vectors(%p: f64, %g: f64, %t: i64) state(%h: vector<4xf64> = 0.0) {
  %zero = arith.constant dense<0.0> : vector<4xf64>
  %one = arith.constant dense<1.0> : vector<4xf64>
  %0 = arith.addf %zero, %h : vector<4xf64>
  %1 = arith.mulf %0, %one : vector<4xf64>
  %2 = arith.addf %1, %zero : vector<4xf64>
  optim.yield %p, %2 : f64, vector<4xf64>
}

// -----

// Only zeros fold: a non-splat constant with a zero in it does not.
// CHECK-LABEL: optim.rule @not_zero(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
// CHECK:         %[[C:.*]] = arith.constant dense<[0.000000e+00, 1.000000e+00]> : vector<2xf32>
// CHECK:         %[[S:.*]] = arith.addf %h, %[[C]] : vector<2xf32>
// CHECK:         optim.yield %p, %[[S]] : f32, vector<2xf32>
optim.rule @not_zero(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
  %c = arith.constant dense<[0.0, 1.0]> : vector<2xf32>
  %0 = arith.addf %h, %c : vector<2xf32>
  optim.yield %p, %0 : f32, vector<2xf32>
}

// -----

// Outside rules IEEE semantics hold: x + 0.0 stays (it maps -0.0 to +0.0),
// while x + -0.0 and x * 1.0 still fold.
// CHECK-LABEL: optim.layer @layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
// CHECK-NEXT:    %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : tensor<2xf32>
// CHECK-NEXT:    %[[S:.*]] = arith.addf %y, %[[ZERO]] : tensor<2xf32>
// CHECK-NEXT:    optim.return %[[S]] : tensor<2xf32>
optim.layer @layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %zero = arith.constant dense<0.0> : tensor<2xf32>
  %nzero = arith.constant dense<-0.0> : tensor<2xf32>
  %one = arith.constant dense<1.0> : tensor<2xf32>
  %0 = arith.addf %y, %nzero : tensor<2xf32>
  %1 = arith.mulf %0, %one : tensor<2xf32>
  %2 = arith.addf %1, %zero : tensor<2xf32>
  optim.return %2 : tensor<2xf32>
}

// -----

// CHECK-LABEL: func.func @outside(%arg0: f32) -> f32 {
// CHECK-NEXT:    %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %arg0, %[[ZERO]] : f32
// CHECK-NEXT:    return %[[S]] : f32
func.func @outside(%x: f32) -> f32 {
  %zero = arith.constant 0.0 : f32
  %0 = arith.addf %zero, %x : f32
  return %0 : f32
}

// -----

// log_sign of constants folds, on both sides of the threshold |g| = exp(-k):
// log_sign(-2, 10) = (log(2) / 10, -1); log_sign(1e-6, 10) = (-1, exp(10) 1e-6).
// CHECK-LABEL: optim.rule @log_sign(%p: f64, %g: f64, %t: i64)
// CHECK-DAG:     %[[BIG:.*]] = arith.constant dense<[0.069314718055994{{[0-9]+}}, -1.000000e+00]> : vector<2xf64>
// CHECK-DAG:     %[[SMALL:.*]] = arith.constant dense<[-1.000000e+00, 0.022026465794806{{[0-9]+}}]> : vector<2xf64>
// CHECK-NOT:     optim.log_sign
// CHECK:         optim.yield %p, %[[BIG]], %[[SMALL]] : f64, vector<2xf64>, vector<2xf64>
optim.rule @log_sign(%p: f64, %g: f64, %t: i64)
    state(%a: vector<2xf64> = 0.0, %b: vector<2xf64> = 0.0) {
  %k = arith.constant 10.0 : f64
  %big = arith.constant -2.0 : f64
  %small = arith.constant 1.0e-6 : f64
  %0 = optim.log_sign %big, %k : f64 -> vector<2xf64>
  %1 = optim.log_sign %small, %k : f64 -> vector<2xf64>
  optim.yield %p, %0, %1 : f64, vector<2xf64>, vector<2xf64>
}

// -----

// In f32 the folded value is rounded to f32.
// CHECK-LABEL: optim.rule @log_sign_f32(%p: f32, %g: f32, %t: i64)
// CHECK:         %[[C:.*]] = arith.constant dense<[0.0693147182, 1.000000e+00]> : vector<2xf32>
// CHECK-NEXT:    optim.yield %p, %[[C]] : f32, vector<2xf32>
optim.rule @log_sign_f32(%p: f32, %g: f32, %t: i64) state(%a: vector<2xf32> = 0.0) {
  %k = arith.constant 10.0 : f32
  %two = arith.constant 2.0 : f32
  %0 = optim.log_sign %two, %k : f32 -> vector<2xf32>
  optim.yield %p, %0 : f32, vector<2xf32>
}

// -----

// Ill-defined cases are left to run time: k <= 0, a non-finite g.
// CHECK-LABEL: optim.rule @log_sign_no_fold(%p: f32, %g: f32, %t: i64) {
// CHECK:         optim.log_sign %{{.*}}, %{{.*}} : f32 -> vector<2xf32>
// CHECK:         optim.log_sign %{{.*}}, %{{.*}} : f32 -> vector<2xf32>
// CHECK:         optim.log_sign %{{.*}}, %{{.*}} : f32 -> vector<2xf32>
// CHECK:         optim.log_sign %g, %{{.*}} : f32 -> vector<2xf32>
optim.rule @log_sign_no_fold(%p: f32, %g: f32, %t: i64) {
  %k = arith.constant 10.0 : f32
  %zero = arith.constant 0.0 : f32
  %neg = arith.constant -1.0 : f32
  %inf = arith.constant 0x7F800000 : f32
  %one = arith.constant 1.0 : f32
  %0 = optim.log_sign %one, %zero : f32 -> vector<2xf32>
  %1 = optim.log_sign %one, %neg : f32 -> vector<2xf32>
  %2 = optim.log_sign %inf, %k : f32 -> vector<2xf32>
  %3 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %a = arith.addf %0, %1 : vector<2xf32>
  %b = arith.addf %2, %3 : vector<2xf32>
  %c = arith.mulf %a, %b : vector<2xf32>
  %4 = vector.extract %c[0] : f32 from vector<2xf32>
  %5 = arith.mulf %p, %4 : f32
  optim.yield %5 : f32
}
