// RUN: optim-opt %s --optim-lower-to-llvm | FileCheck %s
// RUN: optim-opt %s --optim-lower-to-llvm=relaxed-fp | FileCheck %s
// RUN: optim-opt %s --optim-lower-to-llvm | mlir-translate --mlir-to-llvmir | FileCheck %s --check-prefix=IR

// Rules with tensor reductions go through the whole CPU pipeline to the
// LLVM dialect and to LLVM IR (both passes, f32 and f64) with the ABI of
// KernelABI.h, versions 6 and 9 (the reduce kernel takes `reduced` and
// `stage` before `rng`).

// CHECK-LABEL: llvm.func @optim_reduce_lars(
// CHECK-NOT: scf.
// CHECK-NOT: optim.
// CHECK: llvm.fpext %{{.*}} : vector<16xf32> to vector<16xf64>
// CHECK: llvm.fmul %{{.*}} : vector<16xf64>
// CHECK: llvm.store %{{.*}} : f64, !llvm.ptr
// CHECK-LABEL: llvm.func @optim_rule_lars(
// CHECK: llvm.fptrunc %{{.*}} : f64 to f32
// CHECK: llvm.fmul %{{.*}} : vector<16xf32>
// IR: define void @optim_reduce_lars(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8, ptr %9, i64 %10, ptr %11)
// IR: fpext <16 x float> %{{.*}} to <16 x double>
// IR: define void @optim_rule_lars(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8, ptr %9)
optim.rule @lars(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1, %eta: f32 = 0.001) {
  %0 = optim.tensor_reduce norm %p : f32
  %1 = optim.tensor_reduce norm %g : f32
  %2 = arith.divf %0, %1 : f32
  %3 = arith.mulf %eta, %2 : f32
  %4 = arith.mulf %lr, %3 : f32
  %5 = arith.mulf %4, %g : f32
  %6 = arith.subf %p, %5 : f32
  optim.yield %6 : f32
}

// CHECK-LABEL: llvm.func @optim_reduce_clip64(
// CHECK-NOT: llvm.fpext
// CHECK: llvm.intr.maximum(%{{.*}}) : (vector<16xf64>, vector<16xf64>) -> vector<16xf64>
// CHECK-LABEL: llvm.func @optim_rule_clip64(
// CHECK-NOT: llvm.fptrunc
// CHECK: llvm.return
// IR: define void @optim_reduce_clip64(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8, ptr %9, i64 %10, ptr %11)
// IR: call <16 x double> @llvm.maximum.v16f64
// IR: define void @optim_rule_clip64(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8, ptr %9)
optim.rule @clip64(%p: f64, %g: f64, %t: i64) hyper(%lr: f64 = 0.01) state(%m: f64 = 0.0) {
  %a = math.absf %g : f64
  %mx = optim.tensor_reduce max %a global : f64
  %one = arith.constant 1.0 : f64
  %0 = arith.maximumf %mx, %one : f64
  %1 = arith.divf %g, %0 : f64
  %2 = arith.addf %m, %1 : f64
  %3 = arith.mulf %lr, %2 : f64
  %4 = arith.subf %p, %3 : f64
  optim.yield %4, %2 : f64, f64
}
