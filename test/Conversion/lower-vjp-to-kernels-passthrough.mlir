// RUN: optim-opt %s --split-input-file --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=1 --canonicalize --cse | FileCheck %s

// Outputs of a VJP kernel that are incoming cotangents themselves. The
// kernel overwrites the incoming cotangents of p and the states with the
// outgoing ones, so each incoming cotangent that another output passes on
// must be loaded before the first store: here p' = m and m' = p - lr g make
// dp = dm' and dm = dp'. (Loaded after the store into dp, dp' read back
// dm'; test/e2e/TrajectoryReductionsTest.cpp checks the gradients.)
// Chunk table: p, g, m, dp, dm.
// CHECK-LABEL: func.func @optim_vjp_kernel_swap(
// CHECK: %[[G:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[DP:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[DM:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: scf.for
// CHECK: %[[DMAT:.*]] = llvm.getelementptr %[[DM]][
// CHECK: %[[DMIN:.*]] = llvm.load %[[DMAT]]
// CHECK: %[[DPAT:.*]] = llvm.getelementptr %[[DP]][
// CHECK-NEXT: %[[DPIN:.*]] = llvm.load %[[DPAT]]
// CHECK-NEXT: llvm.store %[[DMIN]], %[[DPAT]]
// CHECK-NEXT: llvm.store %[[DPIN]], %[[DMAT]]
optim.rule @swap(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) state(%m: f32 = 0.5) {
  %0 = arith.mulf %lr, %g : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %m, %1 : f32, f32
}

// -----

// A state assigned a reduced value: the cotangent of rho is the incoming
// cotangent of the state, summed into the chunk's partials after the
// outgoing one (here ds = dp' (-p) lr) has overwritten it.
// Chunk table: p, g, s, dp, ds; partials: dlr, drho, tie.
// CHECK-LABEL: func.func @optim_vjp_reduced_kernel_from_sum(
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[DS:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK: scf.for
// CHECK: scf.for
// CHECK: %[[DSAT:.*]] = llvm.getelementptr %[[DS]][
// CHECK-NEXT: %[[DSIN:.*]] = llvm.load %[[DSAT]]
// CHECK-NEXT: llvm.store %{{.*}}, %{{.*}}
// CHECK-NEXT: llvm.store %{{.*}}, %[[DSAT]]
// CHECK: arith.addf %{{.*}}, %[[DSIN]] : f32
optim.rule @from_sum(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) state(%s: f32 = 0.0) {
  %c = arith.constant 0.5 : f32
  %0 = arith.addf %s, %c : f32
  %1 = arith.mulf %0, %lr : f32
  %2 = optim.tensor_reduce sum %1 : f32
  %3 = arith.mulf %1, %p : f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4, %2 : f32, f32
}
