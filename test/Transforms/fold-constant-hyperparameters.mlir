// RUN: optim-opt %s --optim-fold-constant-hyperparameters | FileCheck %s
// RUN: optim-opt %s --optim-fold-constant-hyperparameters=all=true | FileCheck %s --check-prefix=ALL
// RUN: optim-opt %s --optim-fold-constant-hyperparameters --canonicalize | FileCheck %s --check-prefix=CANON

// Only the const hyperparameter is substituted; the signature is unchanged.
// CHECK-LABEL: optim.rule @momentum(%p: f32, %g: f32, %t: i64)
// CHECK-SAME: hyper(%lr: f32 = 0.01, %beta: f32 = 0.9 const) state(%m: f32 = 0.0) {
// CHECK-NEXT:    %[[BETA:.*]] = arith.constant 0.899999976 : f32
// CHECK-NEXT:    %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NEXT:    %[[OMB:.*]] = arith.subf %[[ONE]], %[[BETA]] : f32
// CHECK-NEXT:    %[[A:.*]] = arith.mulf %[[BETA]], %m : f32
// CHECK-NEXT:    %[[B:.*]] = arith.mulf %[[OMB]], %g : f32
// CHECK-NEXT:    %[[M:.*]] = arith.addf %[[A]], %[[B]] : f32
// CHECK-NEXT:    %[[C:.*]] = arith.mulf %lr, %[[M]] : f32
// CHECK-NEXT:    %[[P:.*]] = arith.subf %p, %[[C]] : f32
// CHECK-NEXT:    optim.yield %[[P]], %[[M]] : f32, f32

// With all=true every hyperparameter is substituted and marked const.
// ALL-LABEL: optim.rule @momentum(%p: f32, %g: f32, %t: i64)
// ALL-SAME: hyper(%lr: f32 = 0.01 const, %beta: f32 = 0.9 const) state(%m: f32 = 0.0) {
// ALL-DAG:     %[[LR:.*]] = arith.constant 0.00999999977 : f32
// ALL-DAG:     %[[BETA:.*]] = arith.constant 0.899999976 : f32
// ALL:         arith.mulf %[[BETA]], %m : f32
// ALL:         arith.mulf %[[LR]], %{{.*}} : f32
// ALL-NOT:     %lr
// ALL:         optim.yield

// After canonicalization 1 - beta is a constant: 1 - 0.9 in f32.
// CANON-LABEL: optim.rule @momentum(
// CANON-SAME: %beta: f32 = 0.9 const
// CANON-DAG:     %[[OMB:.*]] = arith.constant 0.100000024 : f32
// CANON-DAG:     %[[BETA:.*]] = arith.constant 0.899999976 : f32
// CANON-NOT:     arith.subf %{{.*}}, %[[BETA]]
// CANON:         %[[A:.*]] = arith.mulf %m, %[[BETA]] : f32
// CANON:         %[[B:.*]] = arith.mulf %g, %[[OMB]] : f32
// CANON:         %[[M:.*]] = arith.addf %[[A]], %[[B]] : f32
// CANON:         %[[C:.*]] = arith.mulf %lr, %[[M]] : f32
// CANON:         %[[P:.*]] = arith.subf %p, %[[C]] : f32
// CANON:         optim.yield %[[P]], %[[M]] : f32, f32
optim.rule @momentum(%p: f32, %g: f32, %t: i64)
    hyper(%lr: f32 = 0.01, %beta: f32 = 0.9 const) state(%m: f32 = 0.0) {
  %one = arith.constant 1.0 : f32
  %0 = arith.subf %one, %beta : f32
  %1 = arith.mulf %beta, %m : f32
  %2 = arith.mulf %0, %g : f32
  %3 = arith.addf %1, %2 : f32
  %4 = arith.mulf %lr, %3 : f32
  %5 = arith.subf %p, %4 : f32
  optim.yield %5, %3 : f32, f32
}

// The learned-rule preprocessing: with k const, exp(k) and the threshold
// exp(-k) fold, and so does log_sign of a constant gradient.
// CHECK-LABEL: optim.rule @preprocess(%p: f64, %g: f64, %t: i64)
// CHECK-SAME: hyper(%k: f64 = 1.0e+01 const) {
// CHECK-NEXT:    %[[K:.*]] = arith.constant 1.000000e+01 : f64
// CHECK:         math.exp %[[K]] : f64
// CHECK:         optim.log_sign %g, %[[K]] : f64 -> vector<2xf64>
// CHECK:         optim.log_sign %{{.*}}, %[[K]] : f64 -> vector<2xf64>

// ALL-LABEL: optim.rule @preprocess(%p: f64, %g: f64, %t: i64)
// ALL-SAME: hyper(%k: f64 = 1.0e+01 const) {

// exp(10) = 22026.465794806718, and log_sign(0.5, 10) = (log(0.5) / 10, 1).
// CANON-LABEL: optim.rule @preprocess(%p: f64, %g: f64, %t: i64)
// CANON-DAG:     %[[EXPK:.*]] = arith.constant 22026.465794806718 : f64
// CANON-DAG:     %[[K:.*]] = arith.constant 1.000000e+01 : f64
// CANON-DAG:     %[[LS:.*]] = arith.constant dense<[-0.06931471805599{{[0-9]+}}, 1.000000e+00]> : vector<2xf64>
// CANON-NOT:     math.exp
// CANON:         %[[X:.*]] = optim.log_sign %g, %[[K]] : f64 -> vector<2xf64>
// CANON-NOT:     optim.log_sign
// CANON:         %[[SUM:.*]] = arith.addf %[[X]], %[[LS]] : vector<2xf64>
// CANON:         %[[E:.*]] = vector.extract %[[SUM]][1] : f64 from vector<2xf64>
// CANON:         %[[S:.*]] = arith.mulf %[[E]], %[[EXPK]] : f64
// CANON:         %[[NEW:.*]] = arith.subf %p, %[[S]] : f64
// CANON:         optim.yield %[[NEW]] : f64
optim.rule @preprocess(%p: f64, %g: f64, %t: i64) hyper(%k: f64 = 10.0 const) {
  %0 = math.exp %k : f64
  %x = optim.log_sign %g, %k : f64 -> vector<2xf64>
  %half = arith.constant 0.5 : f64
  %y = optim.log_sign %half, %k : f64 -> vector<2xf64>
  %1 = arith.addf %x, %y : vector<2xf64>
  %2 = vector.extract %1[1] : f64 from vector<2xf64>
  %3 = arith.mulf %2, %0 : f64
  %4 = arith.subf %p, %3 : f64
  optim.yield %4 : f64
}

// A const hyperparameter without uses gets no constant.
// CHECK-LABEL: optim.rule @unused(%p: f32, %g: f32, %t: i64) hyper(%c: f32 = 2.0 const) {
// CHECK-NEXT:    optim.yield %p : f32
// ALL-LABEL: optim.rule @unused(%p: f32, %g: f32, %t: i64) hyper(%c: f32 = 2.0 const) {
// ALL-NEXT:    optim.yield %p : f32
optim.rule @unused(%p: f32, %g: f32, %t: i64) hyper(%c: f32 = 2.0 const) {
  optim.yield %p : f32
}

// Runtime hyperparameters are left alone by default.
// CHECK-LABEL: optim.rule @runtime(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
// CHECK-NOT:     arith.constant
// CHECK:         arith.mulf %lr, %g : f32
// ALL-LABEL: optim.rule @runtime(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1 const) {
// ALL-NEXT:      %[[LR:.*]] = arith.constant 1.000000e-01 : f32
// ALL-NEXT:      arith.mulf %[[LR]], %g : f32
optim.rule @runtime(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %0 = arith.mulf %lr, %g : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// Layers have no hyperparameters: the pass leaves them unchanged.
// CHECK-LABEL: optim.layer @layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
// CHECK-NEXT:    optim.return %y : tensor<2xf32>
optim.layer @layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  optim.return %y : tensor<2xf32>
}
