// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels=relaxed-fp --split-input-file | FileCheck %s --check-prefix=RELAXED
// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 --split-input-file | FileCheck %s --check-prefix=SCALAR

// LAMB with global-norm scaling: the trust ratio ||p|| / ||u|| of the
// tensor, and ||g|| over every tensor. The first pass computes p, u and g
// per coordinate (u: from m, g, v and p), squares them in f64 and sums them
// per lane; the lanes are added in order, then the scalar tail, and each
// chunk's three partials are stored at partials[c * 3 + r]. Nothing else is
// written: not p, not m, not v.

// CHECK-LABEL: func.func @optim_reduce_lamb(
// CHECK-SAME: %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr) {
// Every reduction is of level 0: stage 0 only (KernelABI.h version 9).
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: %[[FIRST:.*]] = arith.muli %[[CI]], %c3_i64{{[_0-9]*}} : i64
// CHECK: %[[Z0:.*]] = arith.constant 0.000000e+00 : f64
// CHECK: %[[ACC:.*]]:3 = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[A0:.*]] = %{{.*}}, %[[A1:.*]] = %{{.*}}, %[[A2:.*]] = %{{.*}}) -> (vector<16xf64>, vector<16xf64>, vector<16xf64>) {
// CHECK: %[[M:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK: %[[G:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK: %[[V:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK: math.sqrt %{{.*}} : vector<16xf32>
// CHECK: %[[P:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// CHECK: %[[U:.*]] = arith.addf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NEXT: %[[XP:.*]] = arith.extf %[[P]] : vector<16xf32> to vector<16xf64>
// CHECK-NEXT: %[[SP:.*]] = arith.mulf %[[XP]], %[[XP]] : vector<16xf64>
// CHECK-NEXT: %[[NP:.*]] = arith.addf %[[A0]], %[[SP]] : vector<16xf64>
// CHECK-NEXT: %[[XU:.*]] = arith.extf %[[U]] : vector<16xf32> to vector<16xf64>
// CHECK-NEXT: %[[SU:.*]] = arith.mulf %[[XU]], %[[XU]] : vector<16xf64>
// CHECK-NEXT: %[[NU:.*]] = arith.addf %[[A1]], %[[SU]] : vector<16xf64>
// CHECK-NEXT: %[[XG:.*]] = arith.extf %[[G]] : vector<16xf32> to vector<16xf64>
// CHECK-NEXT: %[[SG:.*]] = arith.mulf %[[XG]], %[[XG]] : vector<16xf64>
// CHECK-NEXT: %[[NG:.*]] = arith.addf %[[A2]], %[[SG]] : vector<16xf64>
// CHECK-NEXT: scf.yield %[[NP]], %[[NU]], %[[NG]] : vector<16xf64>, vector<16xf64>, vector<16xf64>
// CHECK-NEXT: }
// Lane 0 first, then 1, ... 15.
// CHECK-NEXT: %[[L0:.*]] = vector.extract %[[ACC]]#0[0] : f64 from vector<16xf64>
// CHECK-NEXT: %[[T0:.*]] = arith.addf %[[Z0]], %[[L0]] : f64
// CHECK-NEXT: %[[L1:.*]] = vector.extract %[[ACC]]#0[1] : f64 from vector<16xf64>
// CHECK-NEXT: arith.addf %[[T0]], %[[L1]] : f64
// CHECK: vector.extract %[[ACC]]#0[15]
// CHECK: vector.extract %[[ACC]]#2[15]
// CHECK-NEXT: %[[T2:.*]] = arith.addf %{{.*}}, %{{.*}} : f64
// The scalar tail goes on from the vector loop's total.
// CHECK: %[[TAIL:.*]]:3 = scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %[[T2]]) -> (f64, f64, f64) {
// CHECK: arith.extf %{{.*}} : f32 to f64
// CHECK: }
// CHECK-NEXT: %[[K0:.*]] = arith.constant 0 : i64
// CHECK-NEXT: %[[S0:.*]] = arith.addi %[[FIRST]], %[[K0]] : i64
// CHECK-NEXT: %[[PP0:.*]] = llvm.getelementptr %[[PARTIALS]][%[[S0]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: llvm.store %[[TAIL]]#0, %[[PP0]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: %[[K1:.*]] = arith.constant 1 : i64
// CHECK-NEXT: %[[S1:.*]] = arith.addi %[[FIRST]], %[[K1]] : i64
// CHECK-NEXT: %[[PP1:.*]] = llvm.getelementptr %[[PARTIALS]][%[[S1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: llvm.store %[[TAIL]]#1, %[[PP1]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK: llvm.store %[[TAIL]]#2, %{{.*}} {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NOT: scf.if
// CHECK: return

// The rule kernel: a ninth argument, the reduced values; per chunk, the
// three reductions are loaded from reduced[c * 3 + r] and truncated, and
// the trust ratio and the scale are computed from them once, before the
// coordinate loops, which only broadcast the product lr * scale.
// CHECK-LABEL: func.func @optim_rule_lamb(
// CHECK-SAME: %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %[[REDUCED:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr) {
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: %[[FIRST:.*]] = arith.muli %[[CI]], %c3_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[K0:.*]] = arith.constant 0 : i64
// CHECK-NEXT: %[[S0:.*]] = arith.addi %[[FIRST]], %[[K0]] : i64
// CHECK-NEXT: %[[RP0:.*]] = llvm.getelementptr %[[REDUCED]][%[[S0]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: %[[D0:.*]] = llvm.load %[[RP0]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[PN:.*]] = arith.truncf %[[D0]] : f64 to f32
// CHECK: %[[D1:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[UN:.*]] = arith.truncf %[[D1]] : f64 to f32
// CHECK-NEXT: %[[TRUST:.*]] = arith.divf %[[PN]], %[[UN]] : f32
// CHECK: %[[D2:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[GN:.*]] = arith.truncf %[[D2]] : f64 to f32
// CHECK-NEXT: %[[CLIP:.*]] = arith.divf %{{.*}}, %[[GN]] : f32
// CHECK-NEXT: %[[SCALE:.*]] = arith.mulf %[[TRUST]], %[[CLIP]] : f32
// CHECK-NEXT: %[[STEP:.*]] = arith.mulf %{{.*}}, %[[SCALE]] : f32
// CHECK-NOT: f64
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c16
// CHECK: vector.broadcast %[[STEP]] : f32 to vector<16xf32>
// CHECK-COUNT-3: llvm.store %{{.*}} : vector<16xf32>, !llvm.ptr
// CHECK-NOT: f64
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1
// CHECK-NOT: f64
// CHECK: return

// With relaxed-fp, what is reduced (u) never contracts, in either kernel:
// LLVM contracts depending on the surrounding code, and the first pass must
// reduce the values that the rule kernel computes. The rest (the step,
// lr * scale * u subtracted from p) contracts.
// RELAXED-LABEL: func.func @optim_reduce_lamb(
// RELAXED-NOT: fastmath
// RELAXED-LABEL: func.func @optim_rule_lamb(
// RELAXED: scf.for
// RELAXED: scf.for
// RELAXED: math.sqrt %{{.*}} : vector<16xf32>
// RELAXED-NOT: fastmath
// RELAXED: arith.mulf %{{.*}} fastmath<contract> : vector<16xf32>
// RELAXED-NEXT: arith.subf %{{.*}} fastmath<contract> : vector<16xf32>

// SCALAR-LABEL: func.func @optim_reduce_lamb(
// SCALAR-NOT: vector<
// SCALAR: scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (f64, f64, f64)
// SCALAR-NOT: vector<
// SCALAR-LABEL: func.func @optim_rule_lamb(
optim.rule @lamb(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.001, %beta1: f32 = 0.9, %beta2: f32 = 0.999, %eps: f32 = 1.0e-06, %wd: f32 = 0.01, %maxnorm: f32 = 1.0) state(%m: f32 = 0.0, %v: f32 = 0.0) {
  %one = arith.constant 1.000000e+00 : f32
  %0 = arith.mulf %beta1, %m : f32
  %1 = arith.subf %one, %beta1 : f32
  %2 = arith.mulf %1, %g : f32
  %m2 = arith.addf %0, %2 : f32
  %3 = arith.mulf %beta2, %v : f32
  %4 = arith.subf %one, %beta2 : f32
  %5 = arith.mulf %4, %g : f32
  %6 = arith.mulf %5, %g : f32
  %v2 = arith.addf %3, %6 : f32
  %7 = math.sqrt %v2 : f32
  %8 = arith.addf %7, %eps : f32
  %9 = arith.divf %m2, %8 : f32
  %10 = arith.mulf %wd, %p : f32
  %u = arith.addf %9, %10 : f32
  %pn = optim.tensor_reduce norm %p : f32
  %un = optim.tensor_reduce norm %u : f32
  %trust = arith.divf %pn, %un : f32
  %gn = optim.tensor_reduce norm %g global : f32
  %clip = arith.divf %maxnorm, %gn : f32
  %scale = arith.mulf %trust, %clip : f32
  %11 = arith.mulf %lr, %scale : f32
  %12 = arith.mulf %11, %u : f32
  %p2 = arith.subf %p, %12 : f32
  optim.yield %p2, %m2, %v2 : f32, f32, f32
}

// -----

// f64: no extension, no truncation. max and min start from -inf and +inf
// and propagate NaN (maximumf, minimumf); mean accumulates a sum. A
// reduction of a uniform value sums its broadcast; one of a vector state's
// components reads component 1 at i + stride. A value that only reductions
// read (|g|) is not computed by the rule kernel.

// CHECK-LABEL: func.func @optim_reduce_extremes(
// CHECK-NOT: arith.extf
// CHECK: %[[LR:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK: scf.for
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK-NEXT: llvm.getelementptr
// CHECK-NEXT: %[[STRIDE:.*]] = llvm.load %{{.*}} : !llvm.ptr -> i64
// CHECK: %[[NINF:.*]] = arith.constant 0xFFF0000000000000 : f64
// CHECK-NEXT: %[[PINF:.*]] = arith.constant 0x7FF0000000000000 : f64
// CHECK-NEXT: %[[Z0:.*]] = arith.constant 0.000000e+00 : f64
// CHECK-NEXT: %[[Z1:.*]] = arith.constant 0.000000e+00 : f64
// CHECK: %[[VNINF:.*]] = arith.constant dense<0xFFF0000000000000> : vector<16xf64>
// CHECK-NEXT: %[[VPINF:.*]] = arith.constant dense<0x7FF0000000000000> : vector<16xf64>
// CHECK: %[[ACC:.*]]:4 = scf.for %[[I:.*]] = %{{.*}} iter_args(%[[A0:.*]] = %[[VNINF]], %[[A1:.*]] = %[[VPINF]], %[[A2:.*]] = %{{.*}}, %[[A3:.*]] = %{{.*}}) -> (vector<16xf64>, vector<16xf64>, vector<16xf64>, vector<16xf64>) {
// CHECK: %[[G:.*]] = llvm.load %{{.*}} : !llvm.ptr -> vector<16xf64>
// CHECK-NEXT: %[[ABS:.*]] = math.absf %[[G]] : vector<16xf64>
// CHECK: %[[H0:.*]] = llvm.load %{{.*}} : !llvm.ptr -> vector<16xf64>
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1 : i64
// CHECK-NEXT: %[[OFF:.*]] = arith.muli %[[STRIDE]], %[[ONE]] : i64
// CHECK-NEXT: %[[AT:.*]] = arith.addi %{{.*}}, %[[OFF]] : i64
// CHECK-NEXT: %[[H1P:.*]] = llvm.getelementptr %{{.*}}[%[[AT]]]
// CHECK-NEXT: %[[H1:.*]] = llvm.load %[[H1P]]
// CHECK-NEXT: %[[S:.*]] = arith.addf %[[H0]], %[[H1]] : vector<16xf64>
// CHECK-NEXT: %[[N0:.*]] = arith.maximumf %[[A0]], %[[ABS]] : vector<16xf64>
// CHECK-NEXT: %[[N1:.*]] = arith.minimumf %[[A1]], %[[G]] : vector<16xf64>
// CHECK-NEXT: %[[N2:.*]] = arith.addf %[[A2]], %[[S]] : vector<16xf64>
// CHECK-NEXT: %[[BLR:.*]] = vector.broadcast %[[LR]] : f64 to vector<16xf64>
// CHECK-NEXT: %[[N3:.*]] = arith.addf %[[A3]], %[[BLR]] : vector<16xf64>
// CHECK-NEXT: scf.yield %[[N0]], %[[N1]], %[[N2]], %[[N3]]
// CHECK: %[[E0:.*]] = vector.extract %[[ACC]]#0[0] : f64 from vector<16xf64>
// CHECK-NEXT: arith.maximumf %[[NINF]], %[[E0]] : f64
// CHECK: %[[E1:.*]] = vector.extract %[[ACC]]#1[0] : f64 from vector<16xf64>
// CHECK-NEXT: arith.minimumf %[[PINF]], %[[E1]] : f64
// CHECK: scf.for %{{.*}} iter_args({{.*}}) -> (f64, f64, f64, f64) {
// CHECK: arith.maximumf %{{.*}}, %{{.*}} : f64
// CHECK-NEXT: arith.minimumf %{{.*}}, %{{.*}} : f64
// CHECK-COUNT-4: llvm.store %{{.*}} {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NOT: llvm.store

// The rule kernel stores the maximum (per chunk) as the state hi.
// CHECK-LABEL: func.func @optim_rule_extremes(
// CHECK-SAME: %[[REDUCED:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr) {
// CHECK-NOT: arith.truncf
// CHECK: %[[MXP:.*]] = llvm.getelementptr %[[REDUCED]]
// CHECK-NEXT: %[[MX:.*]] = llvm.load %[[MXP]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NOT: math.absf
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c1
// CHECK-NOT: math.absf
// CHECK: llvm.store %[[MX]], %{{.*}} {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NOT: math.absf
// CHECK: return

// SCALAR-LABEL: func.func @optim_reduce_extremes(
// SCALAR-NOT: vector<16
// SCALAR-LABEL: func.func @optim_rule_extremes(
optim.rule @extremes(%p: f64, %g: f64, %t: i64) hyper(%lr: f64 = 0.1) state(%hi: f64 = 0.0, %h: vector<2xf64> = 0.0) {
  %a = math.absf %g : f64
  %mx = optim.tensor_reduce max %a : f64
  %mn = optim.tensor_reduce min %g global : f64
  %s = vector.reduction <add>, %h : vector<2xf64> into f64
  %mean = optim.tensor_reduce mean %s : f64
  %n = optim.tensor_reduce sum %lr : f64
  %0 = arith.subf %mx, %mn : f64
  %1 = arith.divf %mean, %n : f64
  %2 = arith.mulf %0, %1 : f64
  %3 = arith.mulf %2, %g : f64
  %4 = arith.subf %p, %3 : f64
  %5 = vector.broadcast %g : f64 to vector<2xf64>
  %6 = arith.addf %h, %5 : vector<2xf64>
  optim.yield %4, %mx, %6 : f64, f64, vector<2xf64>
}

// -----

// Relaxed rounding: a per-chunk divisor's reciprocal is computed once per
// chunk, next to the reduced value, and the coordinates multiply by it.

// RELAXED-LABEL: func.func @optim_rule_normalized(
// RELAXED: scf.for
// RELAXED: %[[N:.*]] = arith.truncf %{{.*}} : f64 to f32
// RELAXED: %[[RCP:.*]] = arith.divf %{{.*}}, %[[N]] : f32
// RELAXED: scf.for
// RELAXED: %[[B:.*]] = vector.broadcast %[[RCP]] : f32 to vector<16xf32>
// RELAXED: arith.mulf %{{.*}}, %[[B]] fastmath<contract> : vector<16xf32>
// RELAXED-NOT: arith.divf
// RELAXED: return

// A rule without reductions keeps the eight arguments (and rng) and has no
// first pass.
// CHECK-NOT: @optim_reduce_plain
// CHECK-LABEL: func.func @optim_rule_plain(
// CHECK-SAME: %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr) {
optim.rule @normalized(%p: f32, %g: f32, %t: i64) {
  %n = optim.tensor_reduce norm %g : f32
  %0 = arith.divf %g, %n : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}
optim.rule @plain(%p: f32, %g: f32, %t: i64) {
  %0 = arith.subf %p, %g : f32
  optim.yield %0 : f32
}

// -----

// A learned rule's coordinates take the four-vector blocks first: so does
// the first pass, so that every coordinate's value comes from the same path.

// CHECK-LABEL: func.func @optim_reduce_learned(
// CHECK: scf.for %{{.*}} -> (vector<64xf64>) {
// CHECK: scf.for %{{.*}} -> (vector<16xf64>) {
// CHECK: scf.for %{{.*}} -> (f64) {
// CHECK-LABEL: func.func @optim_rule_learned(
optim.rule @learned(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>, %head: tensor<1x3xf32>) {
  %n = optim.tensor_reduce norm %g : f32
  %x = vector.broadcast %g : f32 to vector<1xf32>
  %h2, %c2 = optim.lstm_cell %x, %h, %c, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %y = optim.linear %h2, %head : vector<2xf32>, tensor<1x3xf32> -> f32
  %1 = arith.mulf %y, %n : f32
  %2 = arith.addf %p, %1 : f32
  optim.yield %2, %h2, %c2 : f32, vector<2xf32>, vector<2xf32>
}
