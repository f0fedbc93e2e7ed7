// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-gpu=relaxed-fp --split-input-file | FileCheck %s --check-prefix=RELAXED
// RUN: optim-opt %s --optim-lower-rules-to-gpu=vector-bits=32 --split-input-file | FileCheck %s --check-prefix=SCALAR

// Adam: one kernel per rule; hyperparameters and t are kernel arguments; the
// bias corrections are computed once per thread before any loop; block b
// takes chunk begin + b from the table; the vector loop reads p, g, m, v
// 128 bits at a time when every pointer is 16-byte aligned, then a scalar
// loop takes the rest.

// CHECK: module attributes {gpu.container_module}
// CHECK: gpu.module @optim_kernels
// CHECK-LABEL: gpu.func @optim_rule_adam(
// CHECK-SAME: %[[PTRS:.*]]: !llvm.ptr<1>, %[[LENS:.*]]: !llvm.ptr<1>, %[[STRIDES:.*]]: !llvm.ptr<1>, %[[BEGIN:.*]]: i64, %[[T:.*]]: i64, %[[LR:.*]]: f32, %[[B1:.*]]: f32, %[[B2:.*]]: f32, %[[EPS:.*]]: f32, %{{[^:]*}}: !llvm.ptr<1>) kernel
// CHECK: %[[TF:.*]] = arith.sitofp %[[T]] : i64 to f32
// CHECK: math.powf %[[B1]], %[[TF]] : f32
// CHECK: math.powf %[[B2]], %[[TF]] : f32
// CHECK: %[[BLOCK:.*]] = gpu.block_id x
// CHECK: %[[BLOCK64:.*]] = arith.index_cast %[[BLOCK]] : index to i64
// CHECK: %[[CHUNK:.*]] = arith.addi %[[BEGIN]], %[[BLOCK64]] : i64
// CHECK-COUNT-4: llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> !llvm.ptr
// CHECK: llvm.getelementptr %[[LENS]][%[[CHUNK]]]
// CHECK: gpu.thread_id x
// CHECK: gpu.block_dim x
// CHECK: arith.andi %{{.*}}, %c15_i64 : i64
// CHECK: scf.for
// CHECK-NOT: math.powf
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK-COUNT-2: arith.divf %{{.*}} : vector<4xf32>
// CHECK-COUNT-4: llvm.call_intrinsic "llvm.nvvm.sqrt.rn.f"
// CHECK: arith.divf %{{.*}} : vector<4xf32>
// CHECK-COUNT-3: llvm.store %{{.*}} {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<1>
// CHECK: scf.for
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK: llvm.call_intrinsic "llvm.nvvm.sqrt.rn.f"
// CHECK-COUNT-3: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr<1>
// CHECK: gpu.return
// CHECK-NOT: optim.rule

// Relaxed: reciprocals of the bias corrections once per thread, libdevice's
// square root (math.sqrt stays), contraction allowed.
// RELAXED-LABEL: gpu.func @optim_rule_adam(
// RELAXED: %[[R1:.*]] = arith.divf %{{.*}}, %{{.*}} : f32
// RELAXED: %[[R2:.*]] = arith.divf %{{.*}}, %{{.*}} : f32
// RELAXED: scf.for
// RELAXED-NOT: llvm.call_intrinsic
// RELAXED: math.sqrt %{{.*}} : vector<4xf32>
// RELAXED-COUNT-1: arith.divf %{{.*}} fastmath<contract> : vector<4xf32>
// RELAXED-NOT: arith.divf %{{.*}} : vector<4xf32>

// 32 bits: no vector loop.
// SCALAR-LABEL: gpu.func @optim_rule_adam(
// SCALAR-NOT: vector<
// SCALAR: gpu.return
optim.rule @adam(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.001, %beta1: f32 = 0.9, %beta2: f32 = 0.999, %eps: f32 = 1.0e-08) state(%m: f32 = 0.0, %v: f32 = 0.0) {
  %0 = arith.sitofp %t : i64 to f32
  %cst = arith.constant 1.000000e+00 : f32
  %1 = arith.mulf %beta1, %m : f32
  %2 = arith.subf %cst, %beta1 : f32
  %3 = arith.mulf %2, %g : f32
  %4 = arith.addf %1, %3 : f32
  %5 = arith.mulf %beta2, %v : f32
  %6 = arith.subf %cst, %beta2 : f32
  %7 = arith.mulf %6, %g : f32
  %8 = arith.mulf %7, %g : f32
  %9 = arith.addf %5, %8 : f32
  %10 = math.powf %beta1, %0 : f32
  %11 = arith.subf %cst, %10 : f32
  %12 = arith.divf %4, %11 : f32
  %13 = math.powf %beta2, %0 : f32
  %14 = arith.subf %cst, %13 : f32
  %15 = arith.divf %9, %14 : f32
  %16 = arith.mulf %lr, %12 : f32
  %17 = math.sqrt %15 : f32
  %18 = arith.addf %17, %eps : f32
  %19 = arith.divf %16, %18 : f32
  %20 = arith.subf %p, %19 : f32
  optim.yield %20, %4, %9 : f32, f32, f32
}

// -----

// f64: 128 bits are two coordinates; a const hyperparameter is compiled in
// (its argument stays, unused, so that every kernel takes every
// hyperparameter); an unchanged state is not written.
// CHECK-LABEL: gpu.func @optim_rule_decay(
// CHECK-SAME: %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: f64, %{{.*}}: f64, %{{[^:]*}}: !llvm.ptr<1>) kernel
// CHECK: arith.andi %{{.*}}, %c15_i64 : i64
// CHECK-COUNT-3: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<2xf64>
// CHECK-COUNT-1: llvm.store %{{.*}} {alignment = 16 : i64} : vector<2xf64>, !llvm.ptr<1>
// CHECK-NOT: llvm.store %{{.*}} : vector<2xf64>
// CHECK: scf.for
optim.rule @decay(%p: f64, %g: f64, %t: i64) hyper(%lr: f64 = 0.1, %wd: f64 = 0.5 const) state(%s: f64 = 0.0) {
  %0 = arith.mulf %wd, %p : f64
  %1 = arith.addf %g, %0 : f64
  %2 = arith.mulf %lr, %1 : f64
  %3 = arith.addf %2, %s : f64
  %4 = arith.subf %p, %3 : f64
  optim.yield %4, %s : f64, f64
}
