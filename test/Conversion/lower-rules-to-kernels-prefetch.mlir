// RUN: optim-opt %s --optim-lower-rules-to-kernels | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels=prefetch-distance=2048 | FileCheck %s --check-prefix=FAR
// RUN: optim-opt %s --optim-lower-rules-to-kernels=prefetch-distance=0 | FileCheck %s --check-prefix=NONE
// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 | FileCheck %s --check-prefix=NONE

// An update rule prefetches each of its streams (p, g, every state) a fixed
// distance ahead in its vector loop, clamped to the loop's last vector, on
// chunks of at least four times that distance; shorter chunks run the same
// loop without prefetches.

// CHECK-LABEL: func.func @optim_rule_momentum(
// CHECK: %[[N:.*]] = llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK: %[[LONG:.*]] = arith.cmpi sge, %[[N]], %c1024_i64 : i64
// CHECK: scf.if %[[LONG]] {
// CHECK: scf.for %[[I:[0-9a-z_]+]] = %{{.*}} to %[[END:[0-9a-z_]+]] step %c16{{.*}} {
// CHECK: %[[IDX:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: %[[LAST:.*]] = arith.subi %{{.*}}, %c16_i64 : i64
// CHECK: %[[DIST:.*]] = arith.addi %[[IDX]], %c256_i64 : i64
// CHECK: %[[AHEAD:.*]] = arith.minsi %[[DIST]], %[[LAST]] : i64
// CHECK-COUNT-3: "llvm.intr.prefetch"(%{{.*}}) <{cache = 1 : i32, hint = 3 : i32, rw = 0 : i32}>
// CHECK-NOT: llvm.intr.prefetch
// CHECK: } else {
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[END]] step %c16{{.*}} {
// CHECK-NOT: llvm.intr.prefetch
// CHECK: scf.for %{{.*}} step %c1{{(_[0-9]+)?}} {
// CHECK-NOT: llvm.intr.prefetch
// CHECK: return

// FAR: arith.cmpi sge, %{{.*}}, %c2048_i64 : i64
// FAR: arith.addi %{{.*}}, %c512_i64 : i64
// FAR-COUNT-3: llvm.intr.prefetch

// NONE-LABEL: func.func @optim_rule_momentum(
// NONE-NOT: scf.if
// NONE-NOT: llvm.intr.prefetch
// NONE: return

optim.rule @momentum(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01, %mu: f32 = 0.9) state(%buf: f32 = 0.0) {
  %0 = arith.mulf %mu, %buf : f32
  %1 = arith.addf %0, %g : f32
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, f32
}
