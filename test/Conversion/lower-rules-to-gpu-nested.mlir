// RUN: optim-opt %s --optim-lower-rules-to-gpu | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-gpu=relaxed-fp | FileCheck %s --check-prefix=RELAXED

// Nested reductions on CUDA (KernelABI.h version 9): levels 0, 1 and 2 (the
// standardized gradient z and its global norm). optim_reduce_ takes
// (..., partials, reduced, stage, rng) and branches on `stage`, the same
// for the whole launch: stage s loads the chunk's values of lower levels
// from `reduced` (read-only), computes what depends on them as the rule
// kernel does (sd with the correctly rounded sqrt), and writes the
// partials of level s only.
optim.rule @centered(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %m = optim.tensor_reduce mean %g : f32
  %c = arith.subf %g, %m : f32
  %sq = arith.mulf %c, %c : f32
  %v = optim.tensor_reduce mean %sq : f32
  %sd = math.sqrt %v : f32
  %z = arith.divf %c, %sd : f32
  %n = optim.tensor_reduce norm %z global : f32
  %s = arith.divf %lr, %n : f32
  %u = arith.mulf %s, %z : f32
  %p2 = arith.subf %p, %u : f32
  optim.yield %p2 : f32
}

// CHECK: llvm.mlir.global external constant @optim_reductions_centered("mean,mean:1,norm@global:2\00") {addr_space = 1 : i32}
// CHECK-LABEL: gpu.func @optim_reduce_centered(
// CHECK-SAME: %{{[^:]*}}: f32, %[[PARTIALS:[^:]*]]: !llvm.ptr<1>, %[[REDUCED:[^:]*]]: !llvm.ptr<1>, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr<1>) workgroup(%[[TREE:.*]] : memref<1024xf64, #gpu.address_space<workgroup>>) kernel

// Stage 0: no read of `reduced`; one tree; one store.
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK-NOT: %[[REDUCED]]
// CHECK: arith.extf %{{.*}} : f32 to f64
// CHECK-NOT: %[[REDUCED]]
// CHECK: llvm.getelementptr %[[PARTIALS]]
// CHECK-NOT: %[[REDUCED]]
// CHECK: llvm.store
// CHECK-NOT: llvm.store
// CHECK: }

// Stage 1: the mean (slot 0), then (g - m)^2.
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[STAGE]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS1]] {
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK-NEXT: %[[M64:.*]] = llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> f64
// CHECK-NEXT: %[[M:.*]] = arith.truncf %[[M64]] : f64 to f32
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[C1:.*]] = arith.subf %{{.*}}, %[[M]] : f32
// CHECK-NEXT: %[[Q1:.*]] = arith.mulf %[[C1]], %[[C1]] : f32
// CHECK-NEXT: arith.extf %[[Q1]] : f32 to f64
// CHECK-NOT: %[[REDUCED]]
// CHECK: llvm.store
// CHECK-NOT: llvm.store
// CHECK: }

// Stage 2: the mean and the variance (slots 0 and 1), sd, then z.
// CHECK: %[[IS2:.*]] = arith.cmpi eq, %[[STAGE]], %c2_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS2]] {
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[M2:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[V2:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %[[SD:.*]] = llvm.call_intrinsic "llvm.nvvm.sqrt.rn.f"(%[[V2]]) : (f32) -> f32
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[C2:.*]] = arith.subf %{{.*}}, %[[M2]] : f32
// CHECK-NEXT: %[[Z2:.*]] = arith.divf %[[C2]], %[[SD]] : f32
// CHECK-NEXT: %[[X2:.*]] = arith.extf %[[Z2]] : f32 to f64
// CHECK-NEXT: arith.mulf %[[X2]], %[[X2]] : f64
// CHECK: llvm.store
// CHECK-NOT: llvm.store
// CHECK: gpu.return

// The rule kernel computes m and sd from `reduced` with the same ops.
// CHECK-LABEL: gpu.func @optim_rule_centered(
// CHECK: %[[RM:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: %[[RV:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %[[RSD:.*]] = llvm.call_intrinsic "llvm.nvvm.sqrt.rn.f"(%[[RV]]) : (f32) -> f32
// CHECK: arith.subf %{{.*}}, %[[RM]] : f32
// CHECK-NEXT: arith.divf %{{.*}}, %[[RSD]] : f32

// Relaxed rounding: z = c / sd is reduced (level 2): no reciprocal of sd in
// either kernel, no contraction in the reduce kernel; lr / n (not reduced)
// may still be multiplied in.
// RELAXED-LABEL: gpu.func @optim_reduce_centered(
// RELAXED-NOT: fastmath<contract>
// RELAXED: arith.divf %{{.*}}, %{{.*}} : f32
// RELAXED-NOT: fastmath<contract>
// RELAXED-LABEL: gpu.func @optim_rule_centered(
// RELAXED: arith.divf %{{.*}}, %{{.*}} : vector<4xf32>
// RELAXED: arith.divf %{{.*}}, %{{.*}} : f32
