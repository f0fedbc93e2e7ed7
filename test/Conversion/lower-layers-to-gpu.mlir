// RUN: optim-opt %s --optim-lower-layers-to-gpu --canonicalize --cse | FileCheck %s
// RUN: optim-opt %s --optim-lower-layers-to-gpu=threads=64 --canonicalize | FileCheck %s --check-prefix=T64
// RUN: optim-opt %s --optim-lower-layers-to-gpu=shared-bytes=0 --canonicalize | FileCheck %s --check-prefix=NOSHARED
// RUN: not optim-opt %s --optim-lower-layers-to-gpu=threads=100 2>&1 | FileCheck %s --check-prefix=BAD

// A small Sudoku-shaped layer (n = 4, m = 2, p = 4) becomes one kernel: block
// e writes problem e's operands in float64 to its slice of the workspace
// (the elements spread over the threads: from the thread id, step the block
// size), synchronizes, then calls the block solver with the dimensions, the
// qp's tol and max_iter, problem e's slices of z, nu, lam, status and
// iterations, the solver's workspace after the operands, and the shared
// memory it may use (optim::qpblock::kernelLayout: 32 threads for a problem
// this small; Q at 0, q at 16, A at 20, b at 28, G at 30, h at 46, 50
// doubles of data; the whole solver fits in the shared memory budget).
//
// The backward: _qp_grad (block e calls the solver's backward with problem
// e's operands, the incoming gradients, its slice of the operands'
// cotangents (50 doubles a problem), the offsets, and what the forward
// kept), _qp_reduce (the shared operands' cotangents, Q, A, b, G, h,
// summed over the batch in float64), and _qp_vjp (the layer's VJP over the
// whole grid: dpuzzle = -dq per element; dA = dA + db exp(log_z0)^T and
// dlog_z0 = exp(log_z0) A^T db from the sums).

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
  %z, %nu, %lam = optim.qp Q(%1 : tensor<4x4xf32>) q(%2 : tensor<4xf32>) eq(%A, %4 : tensor<2x4xf32>, tensor<2xf32>) ineq(%6, %cst_0 : tensor<4x4xf32>, tensor<4xf32>) {tol = 1.0e-7 : f64, max_iter = 50 : i64} -> tensor<4xf32>, tensor<2xf32>, tensor<4xf32>
  optim.return %z : tensor<4xf32>
}

// CHECK-NOT: optim.layer
// CHECK: module attributes {gpu.container_module}
// CHECK: gpu.module @optim_kernels
// CHECK: llvm.func @optim_qp_block_solve(!llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64, i64, i64, f64, i64, !llvm.ptr, !llvm.ptr, !llvm.ptr, i32, !llvm.ptr, !llvm.ptr, !llvm.ptr, !llvm.ptr, i64)
// CHECK-LABEL: gpu.func @optim_layer_sudoku_qp(
// CHECK-SAME: %[[PUZ:[^:]*]]: !llvm.ptr, %[[A:[^:]*]]: !llvm.ptr, %[[LZ:[^:]*]]: !llvm.ptr, %[[Z:[^:]*]]: !llvm.ptr, %[[NU:[^:]*]]: !llvm.ptr, %[[LAM:[^:]*]]: !llvm.ptr, %[[ST:[^:]*]]: !llvm.ptr, %[[IT:[^:]*]]: !llvm.ptr, %[[WORK:[^:]*]]: !llvm.ptr) kernel
// CHECK-SAME: known_block_size = array<i32: 32, 1, 1>
// CHECK-DAG: %[[E:.*]] = gpu.block_id x
// CHECK-DAG: %[[TID:.*]] = gpu.thread_id x
// CHECK-DAG: %[[NT:.*]] = gpu.block_dim x
// CHECK: %[[E64:.*]] = arith.index_cast %[[E]] : index to i64
// CHECK: %[[OFF:.*]] = arith.muli %[[E64]], %{{.*}} : i64
// CHECK: %[[BASE:.*]] = llvm.getelementptr %[[WORK]][%[[OFF]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// Q = 0.1 I, in f32 then widened, at offset 0.
// CHECK: scf.for %{{.*}} = %[[TID]] to %{{.*}} step %[[NT]]
// CHECK: arith.select
// CHECK: arith.mulf
// CHECK: arith.extf {{.*}} : f32 to f64
// CHECK: llvm.store {{.*}} : f64, !llvm.ptr
// q = -puzzle of problem e, at offset 16.
// CHECK: llvm.getelementptr %[[BASE]][16]
// CHECK: scf.for %{{.*}} = %[[TID]] to %{{.*}} step %[[NT]]
// CHECK: llvm.getelementptr %[[PUZ]]
// CHECK: arith.negf
// CHECK: arith.extf
// A at 20, b = A exp(log_z0) at 28 (a loop over A's row), G at 30, h at 46.
// CHECK: llvm.getelementptr %[[BASE]][20]
// CHECK: llvm.getelementptr %[[BASE]][28]
// CHECK: scf.for {{.*}} iter_args
// CHECK: math.exp
// CHECK: llvm.getelementptr %[[BASE]][30]
// CHECK: llvm.getelementptr %[[BASE]][46]
// CHECK: gpu.barrier
// CHECK: llvm.getelementptr %[[BASE]][50]
// CHECK: llvm.call @optim_qp_block_solve(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}})
// CHECK: gpu.return

// CHECK: llvm.func @optim_qp_block_backward(
// CHECK-LABEL: gpu.func @optim_layer_sudoku_qp_grad(
// CHECK-SAME: %[[GZ:[^:]*]]: !llvm.ptr, %[[GNU:[^:]*]]: !llvm.ptr, %[[GLAM:[^:]*]]: !llvm.ptr, %[[DOPS:[^:]*]]: !llvm.ptr, %[[GWORK:[^:]*]]: !llvm.ptr) kernel
// CHECK-SAME: known_block_size = array<i32: 32, 1, 1>
// CHECK: %[[GE:.*]] = arith.index_cast %{{.*}} : index to i64
// CHECK: %[[DOFF:.*]] = arith.muli %[[GE]], %c50_i64 : i64
// CHECK: %[[MYDOPS:.*]] = llvm.getelementptr %[[DOPS]][%[[DOFF]]]
// CHECK: llvm.call @optim_qp_block_backward({{.*}}, %[[GZ]], %[[GNU]], %[[GLAM]], %{{.*}}, %[[GE]], %[[MYDOPS]], %c0_i64, %c16_i64, %c20_i64, %c28_i64, %c30_i64, %c46_i64, {{.*}})

// CHECK-LABEL: gpu.func @optim_layer_sudoku_qp_reduce(%{{.*}}: !llvm.ptr, %{{.*}}: !llvm.ptr, %{{.*}}: i64) kernel
// CHECK: gpu.grid_dim x
// Q (16 elements), A (8), b (2), G (16), h (4); not q.
// CHECK: scf.for %{{.*}} = %{{.*}} to %c16 step
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (f64)
// CHECK: scf.for %{{.*}} = %{{.*}} to %c8 step
// CHECK: scf.for %{{.*}} = %{{.*}} to %c2 step
// CHECK: scf.for %{{.*}} = %{{.*}} to %c16 step
// CHECK: scf.for %{{.*}} = %{{.*}} to %c4 step
// CHECK-NEXT: arith.index_cast
// CHECK-NEXT: arith.addi %{{.*}}, %c46_i64
// CHECK: gpu.return

// CHECK-LABEL: gpu.func @optim_layer_sudoku_qp_vjp(
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %[[VA:[^:]*]]: !llvm.ptr, %[[VLZ:[^:]*]]: !llvm.ptr, %[[VDOPS:[^:]*]]: !llvm.ptr, %[[VDSH:[^:]*]]: !llvm.ptr, %[[DPUZ:[^:]*]]: !llvm.ptr, %[[DA:[^:]*]]: !llvm.ptr, %[[DLZ:[^:]*]]: !llvm.ptr, %{{[^:]*}}: i64) kernel
// dpuzzle = -dq of element e (batched: from dops, 50 doubles a problem).
// CHECK: llvm.getelementptr %[[VDOPS]]
// CHECK: arith.truncf {{.*}} : f64 to f32
// CHECK: arith.negf
// CHECK: llvm.getelementptr %[[DPUZ]]
// dA = dA + db exp(log_z0)^T (shared: from the sums).
// CHECK: llvm.getelementptr %[[VDSH]]
// CHECK: llvm.getelementptr %[[VDSH]]
// CHECK: math.exp
// CHECK: llvm.getelementptr %[[DA]]
// dlog_z0 = exp(log_z0) A^T db.
// CHECK: scf.for {{.*}} iter_args
// CHECK: llvm.getelementptr %[[VA]]
// CHECK: math.exp
// CHECK: llvm.getelementptr %[[DLZ]]

// T64: known_block_size = array<i32: 64, 1, 1>

// The solver's buffers all in global memory: 0 doubles of shared memory.
// NOSHARED: %[[ZERO:.*]] = arith.constant 0 : i64
// NOSHARED: llvm.call @optim_qp_block_solve({{.*}}, %[[ZERO]]) : (

// BAD: optim-lower-layers-to-gpu: threads must be a multiple of 32 up to 1024 (or 0)
