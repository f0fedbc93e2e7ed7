// RUN: optim-opt %s --optim-lower-rules-to-gpu | FileCheck %s

// A rule with tensor reductions becomes two kernels (KernelABI.h, GPU
// kernels of versions 6 and 9). The first pass (stage 0, all there is): each thread accumulates its
// coordinates (tid, tid + blockDim, ...) in f64, then a tree in shared
// memory (one double per thread, ten steps of a barrier each), thread 0
// writing partials[c * 2 + r]. The rule kernel reads reduced[c * 2 + r]
// after loading its chunk, computes lr * wn / gmax once, and runs the
// coordinate loops.
optim.rule @lars(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %0 = optim.tensor_reduce norm %p : f32
  %1 = optim.tensor_reduce max %g global : f32
  %2 = arith.divf %0, %1 : f32
  %3 = arith.mulf %lr, %2 : f32
  %4 = arith.mulf %3, %g : f32
  %5 = arith.subf %p, %4 : f32
  optim.yield %5 : f32
}

// CHECK-LABEL: gpu.func @optim_reduce_lars(
// CHECK-SAME: %{{.*}}: f32, %[[PARTIALS:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: !llvm.ptr<1>, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr<1>) workgroup(%[[TREE:.*]] : memref<1024xf64, #gpu.address_space<workgroup>>) kernel
// CHECK: %[[TID:.*]] = gpu.thread_id x
// CHECK: %[[THREADS:.*]] = gpu.block_dim x
// Both reductions are of level 0: stage 0 only (KernelABI.h version 9).
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f64
// CHECK-DAG: %[[NEGINF:.*]] = arith.constant 0xFFF0000000000000 : f64
// CHECK: %[[ACC:.*]]:2 = scf.for %{{.*}} = %[[TID]] to %{{.*}} step %[[THREADS]] iter_args(%[[SQ:.*]] = %[[ZERO]], %[[MAX:.*]] = %[[NEGINF]]) -> (f64, f64)
// CHECK: %[[P:.*]] = arith.extf %{{.*}} : f32 to f64
// CHECK: %[[P2:.*]] = arith.mulf %[[P]], %[[P]] : f64
// CHECK: arith.addf %[[SQ]], %[[P2]] : f64
// CHECK: %[[G:.*]] = arith.extf %{{.*}} : f32 to f64
// CHECK: arith.maximumf %[[MAX]], %[[G]] : f64
// CHECK: memref.store %[[ACC]]#0, %[[TREE]][%[[TID]]]
// CHECK-NEXT: gpu.barrier
// CHECK: scf.for
// CHECK: arith.cmpi ult, %[[TID]]
// CHECK: arith.cmpi ult, %{{.*}}, %[[THREADS]]
// CHECK: arith.addf %{{.*}}, %{{.*}} : f64
// CHECK: gpu.barrier
// CHECK: scf.if
// CHECK: %[[SUM:.*]] = memref.load %[[TREE]]
// CHECK: %[[AT0:.*]] = llvm.getelementptr %[[PARTIALS]]
// CHECK: llvm.store %[[SUM]], %[[AT0]]
// The second reduction reuses the tree once thread 0 has read it.
// CHECK: gpu.barrier
// CHECK-NEXT: memref.store %[[ACC]]#1, %[[TREE]][%[[TID]]]
// CHECK: arith.maximumf %{{.*}}, %{{.*}} : f64
// CHECK: %[[TOP:.*]] = memref.load %[[TREE]]
// CHECK: %[[AT1:.*]] = llvm.getelementptr %[[PARTIALS]]
// CHECK: llvm.store %[[TOP]], %[[AT1]]
// CHECK-NEXT: {{^ +}}}{{$}}
// CHECK-NEXT: {{^ +}}}{{$}}
// CHECK-NEXT: gpu.return

// CHECK-LABEL: gpu.func @optim_rule_lars(
// CHECK-SAME: %[[LR:[^:]*]]: f32, %[[REDUCED:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: !llvm.ptr<1>) kernel
// CHECK-NOT: workgroup
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK: %[[WN64:.*]] = llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> f64
// CHECK: %[[WN:.*]] = arith.truncf %[[WN64]] : f64 to f32
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK: %[[GM64:.*]] = llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> f64
// CHECK: %[[GM:.*]] = arith.truncf %[[GM64]] : f64 to f32
// CHECK: %[[RATIO:.*]] = arith.divf %[[WN]], %[[GM]] : f32
// CHECK: %[[SCALE:.*]] = arith.mulf %[[LR]], %[[RATIO]] : f32
// CHECK: gpu.thread_id x
// CHECK: scf.for
// CHECK: vector.broadcast %[[SCALE]] : f32 to vector<4xf32>
// CHECK: scf.for
// CHECK: arith.mulf %[[SCALE]], %{{.*}} : f32
// CHECK-NOT: tensor_reduce
