// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels | FileCheck %s --check-prefix=VEC
// RUN: optim-opt %s --optim-lower-rules-to-kernels=relaxed-fp | FileCheck %s --check-prefix=RELAXED

// Nested reductions (KernelABI.h version 9): the standardized gradient
// z = (g - mean g) / sd, sd = sqrt(mean((g - mean g)^2)), and the global
// norm of z: levels 0, 1 and 2. optim_reduce_ takes (..., partials,
// reduced, stage, rng) and runs one chunk loop per level; stage s reads the
// reduced values of lower levels only (truncated to f32 and computed from
// as the rule kernel does: the same loads, truncations and ops) and
// overwrites the partials of level s only, partials[c * 3 + r].
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

// CHECK-LABEL: func.func @optim_reduce_centered(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[REDUCED:[^:]*]]: !llvm.ptr, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr) {

// Stage 0: mean(g), slot 0; nothing read from `reduced`.
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[F0:.*]] = arith.muli %{{.*}}, %c3_i64 : i64
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[S0:.*]] = scf.for %{{.*}} iter_args(%[[A0:.*]] = %{{.*}}) -> (f64) {
// CHECK: %[[G0:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[X0:.*]] = arith.extf %[[G0]] : f32 to f64
// CHECK-NEXT: %[[N0:.*]] = arith.addf %[[A0]], %[[X0]] : f64
// CHECK-NEXT: scf.yield %[[N0]] : f64
// CHECK: %[[K0:.*]] = arith.addi %[[F0]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[P0:.*]] = llvm.getelementptr %[[PARTIALS]][%[[K0]]]
// CHECK-NEXT: llvm.store %[[S0]], %[[P0]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }

// Stage 1: mean((g - m)^2), slot 1, from m = reduced[c * 3 + 0].
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[STAGE]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS1]] {
// CHECK: %[[F1:.*]] = arith.muli %{{.*}}, %c3_i64 : i64
// CHECK-NEXT: %{{.*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[K10:.*]] = arith.addi %[[F1]], %{{.*}} : i64
// CHECK-NEXT: %[[R10:.*]] = llvm.getelementptr %[[REDUCED]][%[[K10]]]
// CHECK-NEXT: %[[M64:.*]] = llvm.load %[[R10]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[M:.*]] = arith.truncf %[[M64]] : f64 to f32
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[S1:.*]] = scf.for %{{.*}} iter_args(%[[A1:.*]] = %{{.*}}) -> (f64) {
// CHECK: %[[G1:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[C1:.*]] = arith.subf %[[G1]], %[[M]] : f32
// CHECK-NEXT: %[[Q1:.*]] = arith.mulf %[[C1]], %[[C1]] : f32
// CHECK-NEXT: %[[X1:.*]] = arith.extf %[[Q1]] : f32 to f64
// CHECK-NEXT: arith.addf %[[A1]], %[[X1]] : f64
// CHECK: %[[K1:.*]] = arith.addi %[[F1]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[P1:.*]] = llvm.getelementptr %[[PARTIALS]][%[[K1]]]
// CHECK-NEXT: llvm.store %[[S1]], %[[P1]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }

// Stage 2: the norm of z, slot 2, from m and sd = sqrt(reduced[c * 3 + 1]),
// computed once per chunk; z divides by sd (no reciprocal).
// CHECK: %[[IS2:.*]] = arith.cmpi eq, %[[STAGE]], %c2_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS2]] {
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK: %[[M2:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: llvm.getelementptr %[[REDUCED]]
// CHECK: %[[V2:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %[[SD:.*]] = math.sqrt %[[V2]] : f32
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[S2:.*]] = scf.for %{{.*}} iter_args(%[[A2:.*]] = %{{.*}}) -> (f64) {
// CHECK: %[[C2:.*]] = arith.subf %{{.*}}, %[[M2]] : f32
// CHECK-NEXT: %[[Z2:.*]] = arith.divf %[[C2]], %[[SD]] : f32
// CHECK-NEXT: %[[X2:.*]] = arith.extf %[[Z2]] : f32 to f64
// CHECK-NEXT: %[[Y2:.*]] = arith.mulf %[[X2]], %[[X2]] : f64
// CHECK-NEXT: arith.addf %[[A2]], %[[Y2]] : f64
// CHECK: llvm.store %[[S2]], %{{.*}} {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }
// No other stage writes anything.
// CHECK-NEXT: return
// CHECK: @optim_reductions_centered("mean,mean:1,norm@global:2\00")

// The rule kernel reads the three values as before and computes m and sd
// from them with the same ops.
// CHECK-LABEL: func.func @optim_rule_centered(
// CHECK: scf.for
// CHECK: %[[RM:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: %[[RV:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %[[RSD:.*]] = math.sqrt %[[RV]] : f32
// CHECK: scf.for
// CHECK: arith.subf %{{.*}}, %[[RM]] : f32
// CHECK-NEXT: arith.divf %{{.*}}, %[[RSD]] : f32

// The vector loops of each stage read the same per-chunk values.
// VEC-LABEL: func.func @optim_reduce_centered(
// VEC: scf.if
// VEC: -> (vector<16xf64>)
// VEC: scf.if
// VEC: arith.truncf %{{.*}} : f64 to f32
// VEC: -> (vector<16xf64>)
// VEC: arith.subf %{{.*}} : vector<16xf32>
// VEC: scf.if
// VEC: math.sqrt %{{.*}} : f32
// VEC: -> (vector<16xf64>)
// VEC: arith.divf %{{.*}} : vector<16xf32>
// VEC-LABEL: func.func @optim_rule_centered(

// Relaxed rounding: nothing in a reduction's slice contracts or divides by
// a reciprocal, in either kernel (z = c / sd is reduced at level 2 and also
// used by the update); the update itself contracts.
// RELAXED-LABEL: func.func @optim_reduce_centered(
// RELAXED-NOT: fastmath
// RELAXED-LABEL: func.func @optim_rule_centered(
// RELAXED: scf.for
// RELAXED: scf.for
// RELAXED: %[[Z:.*]] = arith.divf %{{.*}}, %{{.*}} : vector<16xf32>
// RELAXED: arith.mulf %{{.*}}, %[[Z]] fastmath<contract> : vector<16xf32>

// A reduction of a reduction's result itself (a per-chunk value): stage 1
// loads the chunk's maximum and sums its broadcast over the coordinates.
optim.rule @direct(%p: f32, %g: f32, %t: i64) {
  %0 = optim.tensor_reduce max %g : f32
  %1 = optim.tensor_reduce sum %0 global : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}
// CHECK-LABEL: func.func @optim_reduce_direct(
// CHECK: arith.cmpi eq, %{{.*}}, %c0_i64{{[_0-9]*}} : i64
// CHECK: arith.maximumf
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %{{.*}}, %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS1]] {
// CHECK: %[[MX64:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[MX:.*]] = arith.truncf %[[MX64]] : f64 to f32
// CHECK: scf.for %{{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f64) {
// CHECK-NEXT: arith.index_cast
// CHECK-NEXT: %[[X:.*]] = arith.extf %[[MX]] : f32 to f64
// CHECK-NEXT: arith.addf %[[ACC]], %[[X]] : f64
// CHECK: return
// CHECK: @optim_reductions_direct("max,sum@global:1\00")
