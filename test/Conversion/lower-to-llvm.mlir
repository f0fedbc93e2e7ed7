// RUN: optim-opt %s --optim-lower-to-llvm | FileCheck %s
// RUN: optim-opt %s --optim-lower-to-llvm | mlir-translate --mlir-to-llvmir | FileCheck %s --check-prefix=IR

// The whole pipeline ends in the LLVM dialect, translatable to LLVM IR.
// CHECK-LABEL: llvm.func @optim_rule_sgd(
// CHECK-NOT: scf.
// CHECK-NOT: arith.
// CHECK: llvm.fmul %{{.*}} : vector<16xf32>
// IR: define void @optim_rule_sgd(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8)
optim.rule @sgd(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01) {
  %0 = arith.mulf %lr, %g : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}
