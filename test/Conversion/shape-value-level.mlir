// RUN: optim-opt %s --optim-lower-to-llvm | FileCheck %s
// A shape value ignores its operand, so it has level 0 even when the operand
// depends on a reduction (hand-written IR; the front end passes a constant):
// the descriptor must not give it a stage (":1"), which the runtime refuses.

// CHECK: optim_reductions_r("mean,rows\00")
optim.rule @r(%p: f32, %g: f32, %t: i64) {
  %m = optim.tensor_reduce mean %g : f32
  %r = optim.tensor_reduce rows %m : f32
  %1 = arith.mulf %r, %g : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}
