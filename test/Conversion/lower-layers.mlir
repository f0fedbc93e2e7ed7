// RUN: optim-opt %s --optim-lower-layers --canonicalize --cse | FileCheck %s

// The OptNet Sudoku layer's data: Q = 0.1 I and G = -I, h = 0 and A, b = A
// exp(log_z0) are shared (written once), q = -puzzle batched (per element).
// The VJP maps the operands' cotangents to the input's (dq -> -dq) and the
// weights' (dA + db exp(log_z0)^T, and exp(log_z0) * A^T db).

optim.layer @sudoku inputs(%puzzle: tensor<4xf32>) weights(%A: tensor<2x4xf32>, %log_z0: tensor<4xf32>) -> (z: tensor<4xf32>) {
  %0 = optim.eye : tensor<4x4xf32>
  %cst = arith.constant 1.000000e-01 : f32
  %splat = tensor.splat %cst : tensor<4x4xf32>
  %1 = arith.mulf %splat, %0 : tensor<4x4xf32>
  %2 = arith.negf %puzzle : tensor<4xf32>
  %3 = math.exp %log_z0 : tensor<4xf32>
  %4 = optim.matvec %A, %3 : tensor<2x4xf32>, tensor<4xf32> -> tensor<2xf32>
  %5 = optim.eye : tensor<4x4xf32>
  %6 = arith.negf %5 : tensor<4x4xf32>
  %cst_0 = arith.constant dense<0.000000e+00> : tensor<4xf32>
  %z, %nu, %lam = optim.qp Q(%1 : tensor<4x4xf32>) q(%2 : tensor<4xf32>) eq(%A, %4 : tensor<2x4xf32>, tensor<2xf32>) ineq(%6, %cst_0 : tensor<4x4xf32>, tensor<4xf32>) -> tensor<4xf32>, tensor<2xf32>, tensor<4xf32>
  optim.return %z : tensor<4xf32>
}

// CHECK-NOT: optim.layer
// CHECK-LABEL: func.func @optim_layer_sudoku_data(
// CHECK-SAME: %[[IN:.*]]: !llvm.ptr, %[[W:.*]]: !llvm.ptr, %[[B:.*]]: i64, %[[DATA:.*]]: !llvm.ptr)
// CHECK: %[[NB:.*]] = arith.index_cast %[[B]] : i64 to index
// Q: one copy, the identity scaled by 0.1.
// CHECK: llvm.load %[[DATA]] : !llvm.ptr -> !llvm.ptr
// CHECK: scf.for
// CHECK: scf.for
// CHECK: arith.cmpi eq
// CHECK: arith.select
// CHECK: arith.mulf
// CHECK: llvm.store
// q: per batch element, -puzzle.
// CHECK: scf.for %{{.*}} = %{{.*}} to %[[NB]]
// CHECK: arith.negf
// CHECK: llvm.store
// b: a loop over a row of A times exp(log_z0).
// CHECK: scf.for {{.*}} iter_args
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: scf.yield
// CHECK: return

// CHECK-LABEL: func.func @optim_layer_sudoku_vjp(
// CHECK-SAME: %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr)
// d puzzle = -dq, per element.
// CHECK: arith.negf
// dA = dA + db exp(log_z0)^T
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK: arith.addf
// d log_z0 = exp(log_z0) * sum_i A[i, k] db[i]
// CHECK: scf.for {{.*}} iter_args
// CHECK: arith.mulf
// CHECK: arith.addf
// CHECK: scf.yield
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK: return
