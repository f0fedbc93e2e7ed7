// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file | FileCheck %s

// A matrix function (KernelABI.h, "Matrix functions on CUDA"): the chunk
// table has 2 + S + A + 2X = 6 pointers (p, g, r, r's next buffer, the
// matrix buffer twice). The reduce kernel's stage stores g, the value
// newton_schulz takes, into the first of the pair at the coordinate
// (row r, column j at r * nc + j); the rule kernel reads NS(X) there
// through the second, as an f32 per coordinate (not a double per chunk).
// The module gets the four matrix kernels, each calling its block
// function from lib/Device/MatrixNVPTX.cpp with the block's coordinates
// first: blockIdx.z (the batch's matrix), then y and x of a product's tile
// or x and gridDim.x of a grid-stride loop.

// CHECK-LABEL: gpu.func @optim_reduce_muon(
// CHECK: arith.constant 6 : i64
// CHECK-COUNT-4: llvm.addrspacecast
// CHECK: %[[MAT:.*]] = llvm.addrspacecast %{{.*}} : !llvm.ptr to !llvm.ptr<1>
// CHECK: llvm.addrspacecast
// CHECK: scf.for %[[I:.*]] = %thread_id_x to %{{.*}} step %block_dim_x {
// CHECK: %[[K:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: %[[G:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK: %[[AT:.*]] = llvm.getelementptr %[[MAT]][%[[K]]] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, f32
// CHECK: llvm.store %[[G]], %[[AT]] {alignment = 4 : i64} : f32, !llvm.ptr<1>
// CHECK: gpu.return

// CHECK: llvm.func @optim_matrix_gemm_f32_block(i64, i64, i64, i64, i64, i64, f32, !llvm.ptr, i64, i64, i64, !llvm.ptr, i64, i64, i64, f32, !llvm.ptr, i64, !llvm.ptr, i64, i64, !llvm.ptr)
// CHECK: gpu.func @optim_matrix_gemm_f32(%{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: f32, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: f32, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: !llvm.ptr, %{{.*}}: i64, %{{.*}}: i64, %{{.*}}: !llvm.ptr) kernel {
// CHECK: %[[BZ:.*]] = arith.index_cast %block_id_z
// CHECK: %[[BX:.*]] = arith.index_cast %block_id_x
// CHECK: %[[BY:.*]] = arith.index_cast %block_id_y
// CHECK: llvm.call @optim_matrix_gemm_f32_block(%[[BZ]], %[[BY]], %[[BX]],
// CHECK: llvm.func @optim_matrix_combine_f32_block(i64, i64, i64, i64, i64, f32, !llvm.ptr, i64, f32, !llvm.ptr, i64, !llvm.ptr, i64)
// CHECK: gpu.func @optim_matrix_combine_f32(
// CHECK: llvm.call @optim_matrix_combine_f32_block(
// CHECK: llvm.func @optim_matrix_sumsq_f32_block(i64, i64, i64, !llvm.ptr, i64, i64, !llvm.ptr)
// CHECK: gpu.func @optim_matrix_sumsq_f32(
// CHECK: %[[SZ:.*]] = arith.index_cast %block_id_z
// CHECK: %[[SX:.*]] = arith.index_cast %block_id_x
// CHECK: %[[SG:.*]] = arith.index_cast %grid_dim_x
// CHECK: llvm.call @optim_matrix_sumsq_f32_block(%[[SZ]], %[[SX]], %[[SG]],
// CHECK: llvm.func @optim_matrix_scale_f32_block(i64, i64, i64, !llvm.ptr, i64, i64, i64, !llvm.ptr, i64, i64, i64, i64, i64, !llvm.ptr, i64, f64)
// CHECK: gpu.func @optim_matrix_scale_f32(
// CHECK: llvm.call @optim_matrix_scale_f32_block(

// CHECK-LABEL: gpu.func @optim_rule_muon(
// CHECK-COUNT-5: llvm.addrspacecast
// CHECK: %[[RES:.*]] = llvm.addrspacecast %{{.*}} : !llvm.ptr to !llvm.ptr<1>
// CHECK: scf.for
// CHECK: %[[O:.*]] = llvm.getelementptr %[[RES]][%{{.*}}] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, f32
// CHECK: %[[NS:.*]] = llvm.load %[[O]] {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK: arith.mulf %{{.*}}, %[[NS]] : f32
optim.rule @muon(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) state(%r: f32 = 0.0 row) {
  %o = optim.tensor_reduce newton_schulz %g matrix : f32
  %0 = arith.mulf %lr, %o : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1, %r : f32, f32
}

// -----

// Two rules of one element type share the matrix kernels; f64 gets its own.
// CHECK-LABEL: gpu.module @optim_kernels
// CHECK-COUNT-1: gpu.func @optim_matrix_gemm_f32(
// CHECK-NOT: gpu.func @optim_matrix_gemm_f32(
// CHECK: gpu.func @optim_matrix_gemm_f64(
// CHECK-NOT: gpu.func @optim_matrix_gemm_f
optim.rule @a(%p: f32, %g: f32, %t: i64) {
  %o = optim.tensor_reduce newton_schulz %g matrix : f32
  %1 = arith.subf %p, %o : f32
  optim.yield %1 : f32
}
optim.rule @b(%p: f32, %g: f32, %t: i64) {
  %o = optim.tensor_reduce newton_schulz %g matrix : f32
  %1 = arith.addf %p, %o : f32
  optim.yield %1 : f32
}
optim.rule @c(%p: f64, %g: f64, %t: i64) {
  %o = optim.tensor_reduce newton_schulz %g matrix : f64
  %1 = arith.subf %p, %o : f64
  optim.yield %1 : f64
}
