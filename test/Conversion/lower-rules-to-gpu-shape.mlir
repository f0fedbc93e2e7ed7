// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file | FileCheck %s

// Shape values rows() and cols() on the GPU (KernelABI.h version 11): the
// runtime fills their slots of `reduced` before any launch. Stage 0 of the
// reduce kernel reads rows() (slot 0 of 3) for the norm of g * rows(),
// writes partials[c * 3 + 1] only, never a shape value's slot; the rule
// kernel reads all three once per thread.
optim.rule @scaled(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %c0 = arith.constant 0.0 : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  %gr = arith.mulf %g, %nr : f32
  %n = optim.tensor_reduce norm %gr : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %d = arith.addf %n, %nc : f32
  %u = arith.divf %g, %d : f32
  %lu = arith.mulf %lr, %u : f32
  %p2 = arith.subf %p, %lu : f32
  optim.yield %p2 : f32
}

// CHECK: llvm.mlir.global external constant @optim_reductions_scaled("rows,norm,cols\00") {addr_space = 1 : i32}
// CHECK-LABEL: gpu.func @optim_reduce_scaled(
// CHECK-SAME: %[[PARTIALS:[^:]*]]: !llvm.ptr<1>, %[[REDUCED:[^:]*]]: !llvm.ptr<1>, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr<1>) workgroup
// CHECK: %[[C:.*]] = arith.addi %{{.*}}, %{{.*}} : i64
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK-NEXT: %c3_i64 = arith.constant 3 : i64
// CHECK-NEXT: %[[FIRST:.*]] = arith.muli %[[C]], %c3_i64 : i64
// CHECK-NEXT: %c0_i64{{[_0-9]*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[S0:.*]] = arith.addi %[[FIRST]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[AT0:.*]] = llvm.getelementptr %[[REDUCED]][%[[S0]]] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, f64
// CHECK-NEXT: %[[R64:.*]] = llvm.load %[[AT0]] invariant {alignment = 8 : i64} : !llvm.ptr<1> -> f64
// CHECK-NEXT: %[[R:.*]] = arith.truncf %[[R64]] : f64 to f32
// CHECK-NOT: %[[REDUCED]]
// CHECK: scf.for
// CHECK: %[[GV:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK-NEXT: %[[GR:.*]] = arith.mulf %[[GV]], %[[R]] : f32
// CHECK-NEXT: %[[GR64:.*]] = arith.extf %[[GR]] : f32 to f64
// CHECK-NEXT: arith.mulf %[[GR64]], %[[GR64]] : f64
// CHECK-NOT: %[[REDUCED]]
// CHECK: %[[S1:.*]] = arith.addi %{{.*}}, %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[AT1:.*]] = llvm.getelementptr %[[PARTIALS]][%[[S1]]] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, f64
// CHECK-NEXT: llvm.store %{{.*}}, %[[AT1]] {alignment = 8 : i64} : f64, !llvm.ptr<1>
// CHECK-NOT: llvm.store
// CHECK: gpu.return

// CHECK-LABEL: gpu.func @optim_rule_scaled(
// CHECK-SAME: %[[RREDUCED:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: !llvm.ptr<1>) kernel
// CHECK-COUNT-3: llvm.getelementptr %[[RREDUCED]]

// -----

// Shape values only: the reduce kernel is defined (its stage 0 computes and
// writes nothing: the runtime never launches it), the rule kernel reads
// rows() and cols() from reduced[c * 2 + r].
optim.rule @shapes(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %c0 = arith.constant 0.0 : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %q = arith.divf %nr, %nc : f32
  %lq = arith.mulf %lr, %q : f32
  %u = arith.mulf %lq, %g : f32
  %p2 = arith.subf %p, %u : f32
  optim.yield %p2 : f32
}

// CHECK: llvm.mlir.global external constant @optim_reductions_shapes("rows,cols\00") {addr_space = 1 : i32}
// CHECK-LABEL: gpu.func @optim_reduce_shapes(
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %{{.*}}, %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK-NEXT: }
// CHECK-NEXT: gpu.return
// CHECK-LABEL: gpu.func @optim_rule_shapes(
// CHECK-SAME: %[[SREDUCED:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: !llvm.ptr<1>) kernel
// CHECK: llvm.load %{{.*}} invariant {alignment = 8 : i64} : !llvm.ptr<1> -> i64
// CHECK: %[[SFIRST:.*]] = arith.muli %{{.*}}, %c2_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %c0_i64{{[_0-9]*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[SS0:.*]] = arith.addi %[[SFIRST]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: llvm.getelementptr %[[SREDUCED]][%[[SS0]]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[SR:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %c1_i64{{[_0-9]*}} = arith.constant 1 : i64
// CHECK-NEXT: %[[SS1:.*]] = arith.addi %[[SFIRST]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: llvm.getelementptr %[[SREDUCED]][%[[SS1]]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[SC:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: arith.divf %[[SR]], %[[SC]] : f32
