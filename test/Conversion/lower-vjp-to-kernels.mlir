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
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr, %[[LENGTHS:[^:]*]]: !llvm.ptr, %[[STRIDES:[^:]*]]: !llvm.ptr, %[[BEGIN:[^:]*]]: i64, %[[END:[^:]*]]: i64, %[[HYPERS:[^:]*]]: !llvm.ptr, %[[STEP:[^:]*]]: i64, %[[WEIGHTS:[^:]*]]: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr)
// linear makes the rule learned: per-lane accumulators (hyperparameter s and
// the 3 weights of a linear_vjp: 4 slots) for blocks of 4 vectors (16
// lanes), single vectors and the scalar tail.
// Slot k's lanes at elements [k * lanes, (k + 1) * lanes): 64, 16 and 4
// floats.
// CHECK-DAG: %[[C5:.*]] = arith.constant 5 : i64
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : i64
// CHECK: llvm.load %[[WEIGHTS]]
// CHECK: llvm.alloca %c64_i64 x f32
// CHECK-NEXT: llvm.alloca %c16_i64 x f32
// CHECK-NEXT: llvm.alloca %[[C4]] x f32
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: arith.muli %[[CI]], %[[C5]] : i64
// Zeroed per chunk.
// CHECK: scf.for
// CHECK: llvm.store %{{.*}}, %{{.*}} {{.*}} : vector<16xf32>, !llvm.ptr
// CHECK: llvm.store %{{.*}}, %{{.*}} {{.*}} : vector<4xf32>, !llvm.ptr
// CHECK: llvm.store %{{.*}}, %{{.*}} {{.*}} : f32, !llvm.ptr
// Blocks of 16 coordinates prefetch the next block's lines, then read h in
// place (stride: the chunk's) for W [h; 1], the bias first.
// CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %c16
// CHECK: llvm.intr.prefetch
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>)
// CHECK: math.fma {{.*}} : vector<16xf32>
// The weight cotangent dz [h; 1] goes to the lane accumulators of slots
// 1..3 (slot 0 is s).
// CHECK: llvm.store %{{.*}}, %{{.*}} {{.*}} : vector<16xf32>, !llvm.ptr
// CHECK: scf.for %{{.*}} step %c4
// CHECK: scf.for %{{.*}} step %c1
// The chunk's sums: each slot's lanes in order, widest loop first, then
// the tail, into its own slot of `partials`.
// CHECK: %[[BASE:.*]] = arith.muli %[[CI]], %[[C4]] : i64
// CHECK: %[[L16:.*]] = vector.reduction <add>, %{{.*}} : vector<16xf32> into f32
// CHECK: %[[L4:.*]] = vector.reduction <add>, %{{.*}} : vector<4xf32> into f32
// CHECK: %[[S:.*]] = arith.addf %[[L16]], %[[L4]] : f32
// CHECK: %[[SUM:.*]] = arith.addf %[[S]], %{{.*}} : f32
// CHECK: %[[DST:.*]] = llvm.getelementptr %[[PARTIALS]][%[[BASE]]]
// CHECK: llvm.store %[[SUM]], %[[DST]]
optim.rule @lin(%p: f32, %g: f32, %t: i64) hyper(%s: f32 = 0.1) state(%h: vector<2xf32> = 0.0) weights(%w: tensor<1x3xf32>) {
  %y = optim.linear %h, %w : vector<2xf32>, tensor<1x3xf32> -> f32
  %u = arith.mulf %s, %y : f32
  %q = arith.addf %p, %u : f32
  %b = vector.broadcast %g : f32 to vector<2xf32>
  optim.yield %q, %b : f32, vector<2xf32>
}
