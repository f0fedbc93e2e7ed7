// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=8 --canonicalize --cse --split-input-file | FileCheck %s

// Per-coordinate inputs (KernelABI.h, version 7): a chunk has 2 + I + S
// pointers, p, g, the inputs in declaration order, then the states. Sophia
// with one input (h) and two states (m, hh): stride 5, h in slot 2, m and
// hh in slots 3 and 4; h is read like g (loaded, prefetched, never
// written), m and hh are written back.

// CHECK-LABEL: func.func @optim_rule_sophia(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr,
// CHECK-DAG: %[[C5:.*]] = arith.constant 5 : i64
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : i64
// CHECK-DAG: %[[C3:.*]] = arith.constant 3 : i64
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : i64
// CHECK-DAG: %[[C1:.*]] = arith.constant 1 : i64
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: %[[FIRST:.*]] = arith.muli %[[CI]], %[[C5]] : i64
// CHECK: %[[A0:.*]] = llvm.getelementptr %[[PTRS]][%[[FIRST]]]
// CHECK: %[[PB:.*]] = llvm.load %[[A0]]
// CHECK: %[[S1:.*]] = arith.addi %[[FIRST]], %[[C1]] : i64
// CHECK: %[[A1:.*]] = llvm.getelementptr %[[PTRS]][%[[S1]]]
// CHECK: %[[GB:.*]] = llvm.load %[[A1]]
// CHECK: %[[S2:.*]] = arith.addi %[[FIRST]], %[[C2]] : i64
// CHECK: %[[A2:.*]] = llvm.getelementptr %[[PTRS]][%[[S2]]]
// CHECK: %[[HB:.*]] = llvm.load %[[A2]]
// CHECK: %[[S3:.*]] = arith.addi %[[FIRST]], %[[C3]] : i64
// CHECK: %[[A3:.*]] = llvm.getelementptr %[[PTRS]][%[[S3]]]
// CHECK: %[[MB:.*]] = llvm.load %[[A3]]
// CHECK: %[[S4:.*]] = arith.addi %[[FIRST]], %[[C4]] : i64
// CHECK: %[[A4:.*]] = llvm.getelementptr %[[PTRS]][%[[S4]]]
// CHECK: %[[HHB:.*]] = llvm.load %[[A4]]
// The vector loop of long chunks: five streams loaded and prefetched,
// three stored.
// CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %c8
// CHECK: %[[II:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: %[[PA:.*]] = llvm.getelementptr %[[PB]][%[[II]]]
// CHECK: %[[PV:.*]] = llvm.load %[[PA]] {{.*}} -> vector<8xf32>
// CHECK: %[[GA:.*]] = llvm.getelementptr %[[GB]][%[[II]]]
// CHECK: %[[GV:.*]] = llvm.load %[[GA]] {{.*}} -> vector<8xf32>
// CHECK: %[[HA:.*]] = llvm.getelementptr %[[HB]][%[[II]]]
// CHECK: %[[HV:.*]] = llvm.load %[[HA]] {{.*}} -> vector<8xf32>
// CHECK: %[[MA:.*]] = llvm.getelementptr %[[MB]][%[[II]]]
// CHECK: %[[MV:.*]] = llvm.load %[[MA]] {{.*}} -> vector<8xf32>
// CHECK: %[[HHA:.*]] = llvm.getelementptr %[[HHB]][%[[II]]]
// CHECK: %[[HHV:.*]] = llvm.load %[[HHA]] {{.*}} -> vector<8xf32>
// CHECK-COUNT-5: llvm.intr.prefetch
// CHECK: arith.mulf %{{.*}}, %[[GV]] : vector<8xf32>
// CHECK: arith.mulf %{{.*}}, %[[HHV]] : vector<8xf32>
// CHECK: arith.mulf %{{.*}}, %[[HV]] : vector<8xf32>
// CHECK: llvm.store %{{.*}}, %[[PA]]
// CHECK-NEXT: llvm.store %{{.*}}, %[[MA]]
// CHECK-NEXT: llvm.store %{{.*}}, %[[HHA]]
// CHECK-NOT: llvm.store %{{.*}}, %[[HA]]
// CHECK-NOT: llvm.store %{{.*}}, %[[GA]]
// The scalar tail reads h from the same slot.
// CHECK: scf.for %[[J:.*]] = %{{.*}} to %{{.*}} step %c1
// CHECK: %[[JI:.*]] = arith.index_cast %[[J]] : index to i64
// CHECK: llvm.getelementptr %[[HB]][%[[JI]]]
// CHECK-NOT: optim.rule
optim.rule @sophia(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.0001, %beta1: f32 = 0.965, %beta2: f32 = 0.99, %rho: f32 = 0.04, %eps: f32 = 1.0e-15) state(%m: f32 = 0.0, %hh: f32 = 0.0) input(%h: f32) {
  %cst = arith.constant 1.000000e+00 : f32
  %0 = arith.mulf %beta1, %m : f32
  %1 = arith.subf %cst, %beta1 : f32
  %2 = arith.mulf %1, %g : f32
  %3 = arith.addf %0, %2 : f32
  %4 = arith.mulf %beta2, %hh : f32
  %5 = arith.subf %cst, %beta2 : f32
  %6 = arith.mulf %5, %h : f32
  %7 = arith.addf %4, %6 : f32
  %8 = arith.mulf %rho, %7 : f32
  %9 = arith.maximumf %8, %eps : f32
  %10 = arith.divf %3, %9 : f32
  %cm1 = arith.constant -1.000000e+00 : f32
  %11 = arith.maximumf %10, %cm1 : f32
  %12 = arith.minimumf %11, %cst : f32
  %13 = arith.mulf %lr, %12 : f32
  %14 = arith.subf %p, %13 : f32
  optim.yield %14, %3, %7 : f32, f32, f32
}

// -----

// Two inputs declared apart and a state: stride 2 + 2 + 1 = 5; the inputs
// keep their order (a in slot 2, z in slot 3), the state comes after them
// (slot 4). An input that nothing reads is neither loaded nor prefetched.
// CHECK-LABEL: func.func @optim_rule_two(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr,
// CHECK-DAG: %[[C5:.*]] = arith.constant 5 : i64
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : i64
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : i64
// CHECK-NOT: arith.constant 3 : i64
// CHECK: %[[FIRST:.*]] = arith.muli %{{.*}}, %[[C5]] : i64
// CHECK: %[[S2:.*]] = arith.addi %[[FIRST]], %[[C2]] : i64
// CHECK: %[[A2:.*]] = llvm.getelementptr %[[PTRS]][%[[S2]]]
// CHECK: %[[AB:.*]] = llvm.load %[[A2]]
// CHECK-NOT: llvm.load
// CHECK: %[[S4:.*]] = arith.addi %[[FIRST]], %[[C4]] : i64
// CHECK: %[[A4:.*]] = llvm.getelementptr %[[PTRS]][%[[S4]]]
// CHECK: %[[SB:.*]] = llvm.load %[[A4]]
// CHECK: scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %c8
// CHECK: %[[II:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: llvm.getelementptr %[[AB]][%[[II]]]
// CHECK: %[[SA:.*]] = llvm.getelementptr %[[SB]][%[[II]]]
// CHECK: llvm.store %{{.*}}, %[[SA]]
optim.rule @two(%p: f32, %g: f32, %t: i64) state(%s: f32 = 0.0) input(%a: f32, %z: f32) {
  %0 = arith.mulf %a, %g : f32
  %1 = arith.addf %s, %0 : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2, %1 : f32, f32
}
