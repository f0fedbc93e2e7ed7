// RUN: optim-opt %s --optim-lower-layers --canonicalize --cse | FileCheck %s
// RUN: optim-opt %s --optim-lower-layers-to-gpu | optim-opt | FileCheck %s --check-prefix=GPU

// One value as two operands of the qp (q = h = y): each operand has its own
// cotangent slot, and y's cotangent is their sum. The slots were looked up
// by value, which found q's slot twice and left h's pointer null: a
// segfault of optim-opt.

optim.layer @lp inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %G = optim.eye : tensor<2x2xf32>
  %z, %nu, %lam = optim.qp q(%y : tensor<2xf32>) ineq(%G, %y : tensor<2x2xf32>, tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// CHECK-LABEL: func.func @optim_layer_lp_vjp(
// CHECK-SAME: %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %[[DDATA:.*]]: !llvm.ptr, %[[DIN:.*]]: !llvm.ptr, %{{.*}}: !llvm.ptr)
// The cotangents of q (slot 0) and h (slot 2; G is slot 1).
// CHECK-DAG: %[[DQ:.*]] = llvm.load %[[DDATA]] : !llvm.ptr -> !llvm.ptr
// CHECK-DAG: %[[HSLOT:.*]] = llvm.getelementptr %[[DDATA]][2]
// CHECK-DAG: %[[DH:.*]] = llvm.load %[[HSLOT]] : !llvm.ptr -> !llvm.ptr
// CHECK-DAG: %[[OUT:.*]] = llvm.load %[[DIN]] : !llvm.ptr -> !llvm.ptr
// CHECK: scf.for
// CHECK: scf.for
// CHECK-DAG: %[[A:.*]] = llvm.getelementptr %[[DH]][%{{.*}}]
// CHECK-DAG: %[[B:.*]] = llvm.getelementptr %[[DQ]][%{{.*}}]
// CHECK-DAG: %[[VA:.*]] = llvm.load %[[A]] : !llvm.ptr -> f32
// CHECK-DAG: %[[VB:.*]] = llvm.load %[[B]] : !llvm.ptr -> f32
// CHECK: %[[SUM:.*]] = arith.addf %[[VA]], %[[VB]] : f32
// CHECK: %[[DST:.*]] = llvm.getelementptr %[[OUT]][%{{.*}}]
// CHECK: llvm.store %[[SUM]], %[[DST]]

// The GPU's VJP kernel reads y's cotangent at both operands' offsets.
// GPU: gpu.func @optim_layer_lp_qp_vjp
// GPU-COUNT-2: llvm.load %{{.*}} : !llvm.ptr -> f64
// GPU: arith.addf
