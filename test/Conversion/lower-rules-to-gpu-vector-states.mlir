// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file | FileCheck %s

// An update rule with a vector state h[2]: each component is a stream at
// h + j * stride + i (stride = strides[c], loaded once per thread), loaded
// and stored as a scalar state is; the vector ops become one op per
// component; the component offset in bytes (stride * 4) joins the
// alignment test of the 128-bit loop.

// CHECK-LABEL: gpu.func @optim_rule_product(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr<1>, %[[LENS:[^:]*]]: !llvm.ptr<1>, %[[STRIDES:[^:]*]]: !llvm.ptr<1>, %[[BEGIN:[^:]*]]: i64
// CHECK: %[[C:.*]] = arith.addi %[[BEGIN]], %{{.*}} : i64
// CHECK-COUNT-3: llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> !llvm.ptr
// CHECK: %[[PTRBITS:.*]] = arith.ori %{{.*}}, %{{.*}} : i64
// CHECK: llvm.getelementptr %[[LENS]][%[[C]]]
// CHECK: %[[SP:.*]] = llvm.getelementptr %[[STRIDES]][%[[C]]]
// CHECK: %[[STRIDE:.*]] = llvm.load %[[SP]] invariant {alignment = 8 : i64} : !llvm.ptr<1> -> i64
// CHECK: %[[BYTES:.*]] = arith.muli %[[STRIDE]], %c4_i64 : i64
// CHECK: %[[MIS:.*]] = arith.ori %[[PTRBITS]], %[[BYTES]] : i64
// CHECK: arith.andi %[[MIS]], %c15_i64 : i64
// CHECK: scf.for %[[I:.*]] = 
// CHECK: %[[I64:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: %[[P:.*]] = llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK: %[[G:.*]] = llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK: %[[H0A:.*]] = llvm.getelementptr %[[H:.*]][%[[I64]]]
// CHECK: %[[H0:.*]] = llvm.load %[[H0A]] {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK: %[[OFF:.*]] = arith.muli %[[STRIDE]], %c1_i64{{.*}} : i64
// CHECK: %[[AT:.*]] = arith.addi %[[I64]], %[[OFF]] : i64
// CHECK: %[[H1A:.*]] = llvm.getelementptr %[[H]][%[[AT]]]
// CHECK: %[[H1:.*]] = llvm.load %[[H1A]] {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK: %[[N0:.*]] = arith.mulf %[[H0]], %[[G]] : vector<4xf32>
// CHECK: %[[N1:.*]] = arith.mulf %[[H1]], %[[G]] : vector<4xf32>
// CHECK: %[[SUM:.*]] = arith.addf %[[N0]], %[[N1]] : vector<4xf32>
// CHECK: %[[NP:.*]] = arith.subf %[[P]], %[[SUM]] : vector<4xf32>
// CHECK: llvm.store %[[NP]], %{{.*}} {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<1>
// CHECK: llvm.store %[[N0]], %{{.*}} {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<1>
// CHECK: %[[SAT:.*]] = arith.addi %[[I64]], %{{.*}} : i64
// CHECK: %[[S1A:.*]] = llvm.getelementptr %[[H]][%[[SAT]]]
// CHECK: llvm.store %[[N1]], %[[S1A]] {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<1>
// CHECK: scf.for
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK-COUNT-3: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr<1>
// CHECK: gpu.return
optim.rule @product(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  %0 = vector.broadcast %g : f32 to vector<2xf32>
  %1 = arith.mulf %h, %0 : vector<2xf32>
  %2 = vector.reduction <add>, %1 : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, vector<2xf32>
}

// -----

// A uniform vector (a hyperparameter broadcast) is spread into its
// components once per thread; a component of the state (vector.extract) is
// its stream; a scalar inserted into the vector replaces one component; the
// reduce kernel reduces the component h[1], at h + stride + i (it loads
// every component of h; LLVM drops the unused loads: ptx-vector-states.test
// counts what is left).

// CHECK-LABEL: gpu.func @optim_reduce_mixed(
// The chunk's length, then its stride.
// CHECK: llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> i64
// CHECK: %[[STRIDE:.*]] = llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> i64
// CHECK: scf.for %[[I:[^ ]*]] = {{.*}} iter_args(%[[ACC:[^ ]*]] =
// CHECK: %[[I64:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: %[[OFF:.*]] = arith.muli %[[STRIDE]], %c1_i64{{.*}} : i64
// CHECK: %[[AT:.*]] = arith.addi %[[I64]], %[[OFF]] : i64
// CHECK: %[[A:.*]] = llvm.getelementptr %{{.*}}[%[[AT]]]
// CHECK: %[[H1:.*]] = llvm.load %[[A]] {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK: %[[X:.*]] = arith.extf %[[H1]] : f32 to f64
// CHECK: arith.addf %[[ACC]], %[[X]] : f64
// CHECK: scf.yield
// CHECK-LABEL: gpu.func @optim_rule_mixed(
// CHECK: scf.for
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK-NOT: llvm.load
// CHECK-COUNT-3: llvm.store %{{.*}} {alignment = 16 : i64} : vector<4xf32>, !llvm.ptr<1>
// CHECK: scf.for
// CHECK: gpu.return
optim.rule @mixed(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) state(%h: vector<2xf32> = 0.0) {
  %0 = vector.broadcast %lr : f32 to vector<2xf32>
  %1 = vector.broadcast %g : f32 to vector<2xf32>
  %2 = arith.mulf %0, %1 : vector<2xf32>
  %3 = arith.addf %h, %2 : vector<2xf32>
  %4 = vector.extract %h[1] : f32 from vector<2xf32>
  %5 = optim.tensor_reduce sum %4 : f32
  %6 = vector.insert %5, %3 [0] : f32 into vector<2xf32>
  %7 = vector.reduction <add>, %6 : vector<2xf32> into f32
  %8 = arith.subf %p, %7 : f32
  optim.yield %8, %6 : f32, vector<2xf32>
}

// -----

// log_sign in an update rule, even of a value shared by the coordinates (a
// hyperparameter), is computed per coordinate inside the loops (it once was
// cloned outside the rule, where the verifier refused an op "outside an
// 'optim.rule'"); its log is libdevice's (math.log), not the learned rules'
// polynomial.
// CHECK-LABEL: gpu.func @optim_rule_logsign_uniform(
// CHECK: scf.for
// CHECK: math.absf %{{.*}} : vector<4xf32>
// CHECK: math.log %{{.*}} : vector<4xf32>
// CHECK: scf.for
// CHECK: math.log %{{.*}} : f32
// CHECK-NOT: optim.log_sign
optim.rule @logsign_uniform(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %cst = arith.constant 1.000000e+01 : f32
  %0 = optim.log_sign %lr, %cst : f32 -> vector<2xf32>
  %1 = vector.extract %0[0] : f32 from vector<2xf32>
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.mulf %2, %g : f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4 : f32
}
