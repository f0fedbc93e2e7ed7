// RUN: optim-opt %s --optim-differentiate --split-input-file | FileCheck %s
// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=4 --canonicalize --cse --split-input-file | FileCheck %s --check-prefix=KERNEL

// A per-coordinate input is a constant of the step, like g: it follows the
// weights in both functions' arguments (as in the rule's block), gets no
// cotangent, and optim.vjp_layout counts it last ([H, S, W, R, I], R = 0
// here). m' = m h + g, p' = p - lr m':
// dp = dp'; dm = h (dm' - lr dp'); dlr = -m' dp'.

// CHECK-LABEL: func.func @optim_step_scaled(
// CHECK-SAME: %[[P:.*]]: f32, %[[G:.*]]: f32, %[[T:.*]]: i64, %[[LR:.*]]: f32, %[[M:.*]]: f32, %[[H:.*]]: f32) -> (f32, f32)
// CHECK-SAME: optim.step_of = @scaled

// CHECK-LABEL: func.func @optim_vjp_scaled(
// CHECK-SAME: %[[P:.*]]: f32, %[[G:.*]]: f32, %[[T:.*]]: i64, %[[LR:.*]]: f32, %[[M:.*]]: f32, %[[H:.*]]: f32, %[[DP:.*]]: f32, %[[DM:.*]]: f32) -> (f32, f32, f32)
// CHECK-SAME: optim.vjp_layout = array<i64: 1, 1, 0, 0, 1>
// CHECK: %[[MH:.*]] = arith.mulf %[[M]], %[[H]] : f32
// CHECK: %[[NEW:.*]] = arith.addf %[[MH]], %[[G]] : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[DLR:.*]] = arith.mulf %[[NEG]], %[[NEW]] : f32
// CHECK: %[[X:.*]] = arith.mulf %[[NEG]], %[[LR]] : f32
// CHECK: %[[DNEW:.*]] = arith.addf %[[DM]], %[[X]] : f32
// CHECK: %[[DMOUT:.*]] = arith.mulf %[[DNEW]], %[[H]] : f32
// CHECK: return %[[DP]], %[[DMOUT]], %[[DLR]] : f32, f32, f32

// The VJP kernel's chunk table: 3 + I + 2S = 6 pointers (p, g, h, m, dp,
// dm); h is read from slot 2, m from slot 3, and dm (slot 5) overwritten.
// KERNEL-LABEL: func.func @optim_vjp_kernel_scaled(
// KERNEL-SAME: %[[PTRS:[^:]*]]: !llvm.ptr,
// KERNEL-DAG: %[[C2:.*]] = arith.constant 2 : i64
// KERNEL-DAG: %[[C3:.*]] = arith.constant 3 : i64
// KERNEL-DAG: %[[C5:.*]] = arith.constant 5 : i64
// KERNEL-DAG: %[[C6:.*]] = arith.constant 6 : i64
// KERNEL-DAG: %[[C1:.*]] = arith.constant 1 : i64
// KERNEL-DAG: %[[C4:.*]] = arith.constant 4 : i64
// KERNEL: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
// KERNEL: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// KERNEL: %[[FIRST:.*]] = arith.muli %[[CI]], %[[C6]] : i64
// KERNEL: %[[S1:.*]] = arith.addi %[[FIRST]], %[[C1]] : i64
// KERNEL: %[[A1:.*]] = llvm.getelementptr %[[PTRS]][%[[S1]]]
// KERNEL: %[[GB:.*]] = llvm.load %[[A1]]
// KERNEL: %[[S2:.*]] = arith.addi %[[FIRST]], %[[C2]] : i64
// KERNEL: %[[A2:.*]] = llvm.getelementptr %[[PTRS]][%[[S2]]]
// KERNEL: %[[HB:.*]] = llvm.load %[[A2]]
// KERNEL: %[[S3:.*]] = arith.addi %[[FIRST]], %[[C3]] : i64
// KERNEL: %[[A3:.*]] = llvm.getelementptr %[[PTRS]][%[[S3]]]
// KERNEL: %[[MB:.*]] = llvm.load %[[A3]]
// KERNEL: %[[S4:.*]] = arith.addi %[[FIRST]], %[[C4]] : i64
// KERNEL: %[[A4:.*]] = llvm.getelementptr %[[PTRS]][%[[S4]]]
// KERNEL: %[[DPB:.*]] = llvm.load %[[A4]]
// KERNEL: %[[S5:.*]] = arith.addi %[[FIRST]], %[[C5]] : i64
// KERNEL: %[[A5:.*]] = llvm.getelementptr %[[PTRS]][%[[S5]]]
// KERNEL: %[[DMB:.*]] = llvm.load %[[A5]]
// The vector loop: m h + g, and dm = (dm' - lr dp') h, written in place.
// KERNEL: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %c4
// KERNEL: %[[II:.*]] = arith.index_cast %[[I]] : index to i64
// KERNEL: %[[MA:.*]] = llvm.getelementptr %[[MB]][%[[II]]]
// KERNEL: %[[MV:.*]] = llvm.load %[[MA]] {{.*}} -> vector<4xf32>
// KERNEL: %[[HA:.*]] = llvm.getelementptr %[[HB]][%[[II]]]
// KERNEL: %[[HV:.*]] = llvm.load %[[HA]] {{.*}} -> vector<4xf32>
// KERNEL: arith.mulf %[[MV]], %[[HV]] : vector<4xf32>
// KERNEL: llvm.getelementptr %[[GB]][%[[II]]]
// KERNEL: llvm.getelementptr %[[DPB]][%[[II]]]
// KERNEL: %[[DMA:.*]] = llvm.getelementptr %[[DMB]][%[[II]]]
// KERNEL: %[[DMV:.*]] = llvm.load %[[DMA]]
// KERNEL: %[[SUM:.*]] = arith.addf %[[DMV]], %{{.*}} : vector<4xf32>
// KERNEL: %[[DMN:.*]] = arith.mulf %[[SUM]], %[[HV]] : vector<4xf32>
// KERNEL: llvm.store %[[DMN]], %[[DMA]]
optim.rule @scaled(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) state(%m: f32 = 0.0) input(%h: f32) {
  %0 = arith.mulf %m, %h : f32
  %1 = arith.addf %0, %g : f32
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, f32
}

// -----

// With a tensor reduction of an input: the layout counts both ([H, S, W, R,
// I] = [1, 0, 0, 1, 1]); the reduced value follows the cotangents.
// CHECK-LABEL: func.func @optim_vjp_reduced(
// CHECK-SAME: %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: i64, %{{.*}}: f32, %[[A:.*]]: f32, %[[DP:.*]]: f32, %[[RHO:.*]]: f32) -> (f32, f32, f32, f32)
// CHECK-SAME: optim.vjp_layout = array<i64: 1, 0, 0, 1, 1>
// CHECK-LABEL: func.func @optim_vjp_reductions_reduced(
// CHECK-SAME: optim.vjp_layout = array<i64: 1, 0, 0, 1, 1>
// KERNEL-LABEL: func.func @optim_vjp_reduced_kernel_reduced(
// KERNEL-LABEL: func.func @optim_vjp_reductions_kernel_reduced(
optim.rule @reduced(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) input(%a: f32) {
  %0 = arith.mulf %a, %g : f32
  %s = optim.tensor_reduce sum %0 : f32
  %1 = arith.mulf %lr, %s : f32
  %2 = arith.mulf %1, %a : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}
