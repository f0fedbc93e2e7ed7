// log_sign of a value shared by every coordinate (a hyperparameter, a tensor
// reduction) is expanded in the coordinate loops like any other log_sign:
// cloned into the per-call or per-chunk code, the op would be left outside a
// rule, where nothing lowers it (the verifier said "outside an 'optim.rule'").
// RUN: optim-opt %s --optim-lower-rules-to-kernels | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels --optim-check-lowered > /dev/null

// CHECK-LABEL: func.func @optim_reduce_logsign_chunk
// CHECK-LABEL: func.func @optim_rule_logsign_chunk
// CHECK-NOT: optim.log_sign
// CHECK: math.log
// CHECK-LABEL: func.func @optim_rule_logsign_uniform
// CHECK-NOT: optim.log_sign
// CHECK: math.log
optim.rule @logsign_chunk(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %0 = optim.tensor_reduce sum %g : f32
  %cst = arith.constant 1.000000e+01 : f32
  %1 = optim.log_sign %0, %cst : f32 -> vector<2xf32>
  %2 = vector.extract %1[0] : f32 from vector<2xf32>
  %3 = arith.mulf %lr, %2 : f32
  %4 = arith.mulf %3, %g : f32
  %5 = arith.subf %p, %4 : f32
  optim.yield %5 : f32
}
optim.rule @logsign_uniform(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %cst = arith.constant 1.000000e+01 : f32
  %0 = optim.log_sign %lr, %cst : f32 -> vector<2xf32>
  %1 = vector.extract %0[0] : f32 from vector<2xf32>
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.mulf %2, %g : f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4 : f32
}
