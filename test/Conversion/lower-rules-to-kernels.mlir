// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels=relaxed-fp --split-input-file | FileCheck %s --check-prefix=RELAXED
// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 --split-input-file | FileCheck %s --check-prefix=SCALAR

// Adam: the bias corrections (uniform) are computed once, before any loop;
// each coordinate reads p, g, m, v once and writes p, m, v once.

// CHECK-LABEL: func.func @optim_rule_adam(
// CHECK-SAME: %[[PTRS:.*]]: !llvm.ptr, %[[LENS:.*]]: !llvm.ptr, %[[STRIDES:.*]]: !llvm.ptr, %[[BEGIN:.*]]: i64, %[[END:.*]]: i64, %[[HYPERS:.*]]: !llvm.ptr, %[[T:.*]]: i64, %[[WEIGHTS:.*]]: !llvm.ptr)
// CHECK: %[[H0:.*]] = llvm.getelementptr %[[HYPERS]][%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK: llvm.load %[[H0]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK: %[[TF:.*]] = arith.sitofp %[[T]] : i64 to f32
// CHECK: math.powf %{{.*}}, %[[TF]] : f32
// CHECK: math.powf %{{.*}}, %[[TF]] : f32
// CHECK: scf.for %[[C:.*]] =
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> i64
// The vector loop: 16 coordinates per iteration.
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c16
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK-NOT: math.powf
// CHECK-COUNT-2: arith.divf %{{.*}} : vector<16xf32>
// CHECK: math.sqrt %{{.*}} : vector<16xf32>
// CHECK: arith.divf %{{.*}} : vector<16xf32>
// CHECK-COUNT-3: llvm.store %{{.*}} {alignment = 4 : i64} : vector<16xf32>, !llvm.ptr
// The scalar tail.
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-COUNT-3: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr
// CHECK-NOT: optim.rule

// Relaxed rounding: m / bc1 and v / bc2 multiply by reciprocals computed
// once; the division by sqrt(vhat) + eps (per coordinate) stays.
// RELAXED-LABEL: func.func @optim_rule_adam(
// RELAXED: %[[R1:.*]] = arith.divf %{{.*}}, %{{.*}} : f32
// RELAXED: %[[R2:.*]] = arith.divf %{{.*}}, %{{.*}} : f32
// RELAXED: scf.for
// RELAXED: scf.for
// RELAXED: arith.mulf %{{.*}} fastmath<contract> : vector<16xf32>
// RELAXED: arith.divf %{{.*}} fastmath<contract> : vector<16xf32>
// RELAXED-NOT: arith.divf %{{[^ ]*}}, %{{[^ ]*}} : vector<16xf32>
// RELAXED-LABEL: func.func @optim_rule_scaled(

// SCALAR-LABEL: func.func @optim_rule_adam(
// SCALAR-NOT: vector<
// SCALAR: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1
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

// A const hyperparameter is compiled in, not read; a state that is not
// updated is not written back.
// CHECK-LABEL: func.func @optim_rule_scaled(
// CHECK-NOT: -> f64
// CHECK: arith.constant 2.500000e+00 : f64
// CHECK: scf.for
// CHECK: scf.for
// CHECK-COUNT-3: llvm.load %{{.*}} -> vector<16xf64>
// CHECK-COUNT-1: llvm.store
// CHECK-NOT: llvm.store {{.*}} vector<16xf64>
// CHECK: scf.for
optim.rule @scaled(%p: f64, %g: f64, %t: i64) hyper(%k: f64 = 2.5 const) state(%s: f64 = 1.0) {
  %0 = arith.mulf %k, %g : f64
  %1 = arith.mulf %0, %s : f64
  %2 = arith.subf %p, %1 : f64
  optim.yield %2, %s : f64, f64
}

// -----

// A vector state h[2] is two components per coordinate, stored
// component-major (component j at state + j * stride); log_sign is computed
// inline.
// CHECK-LABEL: func.func @optim_rule_vec(
// CHECK: %[[LENS:.*]] = llvm.getelementptr %arg1[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i64
// CHECK: %[[SGEP:.*]] = llvm.getelementptr %arg2[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i64
// CHECK: %[[STRIDE:.*]] = llvm.load %[[SGEP]] {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: scf.for
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK: arith.muli %[[STRIDE]], %{{.*}} : i64
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK: math.log %{{.*}} : vector<16xf32>
// CHECK-COUNT-3: llvm.store %{{.*}} : vector<16xf32>, !llvm.ptr
optim.rule @vec(%p: f32, %g: f32, %t: i64) hyper(%k: f32 = 10.0 const) state(%h: vector<2xf32> = 0.0) {
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %1 = arith.addf %h, %0 : vector<2xf32>
  %2 = vector.reduction <add>, %1 : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, vector<2xf32>
}
