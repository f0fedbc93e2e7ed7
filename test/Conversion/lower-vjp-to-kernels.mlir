// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=4 --canonicalize --cse | FileCheck %s

// p' = p + s * (W [h; 1]), h' = g: one hyperparameter, one vector state of
// 2 and weights of 3, so P = 1 + 3 partial sums per chunk and 3 + 2 * 1 = 5
// pointers per chunk (p, g, h, dp, dh).

// The per-coordinate functions are gone; the rule itself (printed first)
// is left to optim-lower-rules-to-kernels.
// CHECK: optim.rule @lin
// CHECK-NOT: func.func @optim_step_lin
// CHECK-NOT: func.func @optim_vjp_lin(
// CHECK-LABEL: func.func @optim_vjp_kernel_lin(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr, %[[LENGTHS:[^:]*]]: !llvm.ptr, %[[STRIDES:[^:]*]]: !llvm.ptr, %[[BEGIN:[^:]*]]: i64, %[[END:[^:]*]]: i64, %[[HYPERS:[^:]*]]: !llvm.ptr, %[[STEP:[^:]*]]: i64, %[[WEIGHTS:[^:]*]]: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr)
// Per-lane accumulators of the vector loop and of the scalar tail: P = 4.
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : i64
// CHECK-DAG: %[[C5:.*]] = arith.constant 5 : i64
// CHECK: %[[VACC:.*]] = llvm.alloca %[[C4]] x vector<4xf32>
// CHECK: %[[SACC:.*]] = llvm.alloca %[[C4]] x f32
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: arith.muli %[[CI]], %[[C5]] : i64
// Zeroed per chunk.
// CHECK: scf.for
// CHECK: llvm.store %{{.*}}, %{{.*}} {{.*}} : vector<4xf32>, !llvm.ptr
// CHECK: llvm.store %{{.*}}, %{{.*}} {{.*}} : f32, !llvm.ptr
// The vector loop, then the scalar tail, each adding to its accumulators.
// CHECK: scf.for %{{.*}} step %c4
// CHECK: llvm.store %{{.*}}, %[[VACC]] {{.*}} : vector<4xf32>
// CHECK: scf.for %{{.*}} step %c1
// CHECK: llvm.store %{{.*}}, %[[SACC]] {{.*}} : f32
// The chunk's sums: lanes in order, then the tail, into its own slots.
// CHECK: %[[BASE:.*]] = arith.muli %[[CI]], %[[C4]] : i64
// CHECK: scf.for
// CHECK: %[[LANES:.*]] = vector.reduction <add>, %{{.*}} : vector<4xf32> into f32
// CHECK: %[[SUM:.*]] = arith.addf %[[LANES]], %{{.*}} : f32
// CHECK: %[[AT:.*]] = arith.addi %[[BASE]], %{{.*}} : i64
// CHECK: %[[DST:.*]] = llvm.getelementptr %[[PARTIALS]][%[[AT]]]
// CHECK: llvm.store %[[SUM]], %[[DST]]
optim.rule @lin(%p: f32, %g: f32, %t: i64) hyper(%s: f32 = 0.1) state(%h: vector<2xf32> = 0.0) weights(%w: tensor<1x3xf32>) {
  %y = optim.linear %h, %w : vector<2xf32>, tensor<1x3xf32> -> f32
  %u = arith.mulf %s, %y : f32
  %q = arith.addf %p, %u : f32
  %b = vector.broadcast %g : f32 to vector<2xf32>
  optim.yield %q, %b : f32, vector<2xf32>
}
