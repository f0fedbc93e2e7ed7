// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=4 --canonicalize --cse --split-input-file | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 --canonicalize --cse --split-input-file | FileCheck %s --check-prefix=SCALAR
// RUN: optim-opt %s --optim-lower-to-llvm | mlir-translate --mlir-to-llvmir | FileCheck %s --check-prefix=IR

// Random draws (KernelABI.h, version 8): every kernel takes `rng` last. A
// rule that draws loads rng[0] (the seed) once per call and rng[1 + c] (the
// chunk's first global index) once per chunk, and computes Philox4x32-10 on
// i64 lanes holding 32-bit words (one coordinate per lane: index +
// [0, 1, 2, 3]), with the multipliers 0xD2511F53 (3528531795) and
// 0xCD9E8D57 (3449720151) and the key bumps 0x9E3779B9 (2654435769) and
// 0xBB67AE85 (3144134277); the
// descriptor optim_random_<name> lists the sites' kinds.

// CHECK-LABEL: func.func @optim_rule_sgld(
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %[[RNG:[^:]*]]: !llvm.ptr) {
// CHECK-DAG: arith.constant dense<3528531795> : vector<4xi64>
// CHECK-DAG: arith.constant dense<3449720151> : vector<4xi64>
// CHECK-DAG: arith.constant 2654435769 : i64
// CHECK-DAG: arith.constant 3144134277 : i64
// CHECK-DAG: %[[IOTA:.*]] = arith.constant dense<[0, 1, 2, 3]> : vector<4xi64>
// CHECK: %[[SEED:.*]] = llvm.load %[[RNG]] {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: scf.for %[[C:.*]] =
// CHECK: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: %[[SLOT:.*]] = arith.addi %[[CI]], %{{.*}} : i64
// CHECK: %[[BASEP:.*]] = llvm.getelementptr %[[RNG]][%[[SLOT]]] : (!llvm.ptr, i64) -> !llvm.ptr, i64
// CHECK: %[[BASE:.*]] = llvm.load %[[BASEP]] {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: scf.for %[[I:.*]] =
// CHECK: %[[II:.*]] = arith.index_cast %[[I]] : index to i64
// CHECK: %[[FIRST:.*]] = arith.addi %[[BASE]], %[[II]] : i64
// CHECK: %[[SPLAT:.*]] = vector.broadcast %[[FIRST]] : i64 to vector<4xi64>
// CHECK: arith.addi %[[SPLAT]], %[[IOTA]] : vector<4xi64>
// Philox in i64 lanes (one vpmuludq per product): 20 multiplications.
// CHECK-COUNT-20: arith.muli %{{.*}}, %{{.*}} : vector<4xi64>
// CHECK: arith.uitofp %{{.*}} : vector<4xi32> to vector<4xf32>
// Box-Muller without libm, in f64 lanes: log by exponent and mantissa,
// cos by quarter turns (an fma recovers the phase's rounding error).
// CHECK-NOT: math.log
// CHECK: arith.bitcast %{{.*}} : vector<4xf64> to vector<4xi64>
// CHECK: arith.divf %{{.*}}, %{{.*}} : vector<4xf64>
// CHECK: math.sqrt %{{.*}} : vector<4xf64>
// CHECK: math.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<4xf64>
// CHECK: math.floor %{{.*}} : vector<4xf64>
// CHECK-NOT: math.cos
// CHECK: arith.truncf %{{.*}} : vector<4xf64> to vector<4xf32>
// CHECK: arith.uitofp %{{.*}} : vector<4xi32> to vector<4xf32>
// The scalar tail draws the same way, one coordinate at a time.
// CHECK: scf.for
// CHECK: arith.muli %{{.*}}, %c3528531795_i64 : i64
// CHECK: return
// The descriptor, beside the kernel.
// CHECK: llvm.mlir.global external constant @optim_random_sgld("normal,uniform\00")

// A rule that draws nothing takes rng and never reads it: no descriptor,
// no Philox.
// CHECK-NOT: optim_random_plain
// CHECK-LABEL: func.func @optim_rule_plain(
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %[[RNG2:[^:]*]]: !llvm.ptr) {
// CHECK-NOT: %[[RNG2]]
// CHECK-NOT: 3528531795
// CHECK: return

// SCALAR-LABEL: func.func @optim_rule_sgld(
// SCALAR: %[[SEED:.*]] = llvm.load %[[RNG:[^ ]*]] {alignment = 8 : i64} : !llvm.ptr -> i64
// SCALAR: arith.muli %{{.*}}, %c3528531795_i64 : i64
// SCALAR-NOT: vector<
// SCALAR: return
// SCALAR-LABEL: func.func @optim_rule_plain(
// SCALAR-NOT: 3528531795
// SCALAR: return

// IR: @optim_random_sgld = constant [15 x i8] c"normal,uniform\00"
// IR-NOT: @optim_random_plain
// IR: define void @optim_rule_sgld(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8)
// No libm call per lane: log and cos are arithmetic on <16 x double>.
// IR-NOT: @llvm.log.
// IR-NOT: @llvm.cos.
// IR: call <16 x double> @llvm.fma.v16f64
// IR: define void @optim_rule_plain(ptr %0, ptr %1, ptr %2, i64 %3, i64 %4, ptr %5, i64 %6, ptr %7, ptr %8)
optim.rule @sgld(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01) random(normal, uniform) {
  %z = optim.random normal site 0 : f32
  %u = optim.random uniform site 1 : f32
  %a = arith.mulf %lr, %g : f32
  %b = arith.mulf %z, %u : f32
  %c = arith.addf %a, %b : f32
  %q = arith.subf %p, %c : f32
  optim.yield %q : f32
}
optim.rule @plain(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01) {
  %a = arith.mulf %lr, %g : f32
  %q = arith.subf %p, %a : f32
  optim.yield %q : f32
}

// -----

// f64 draws use two words per uniform (w0, w1 -> 53 bits), and the reduce
// kernel recomputes a draw that a reduction reads, from the same rng.
// CHECK-LABEL: func.func @optim_reduce_dual(
// CHECK-SAME: %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[REDUCEDIN:[^:]*]]: !llvm.ptr, %[[STAGE:[^:]*]]: i64, %[[RNG:[^:]*]]: !llvm.ptr) {
// CHECK: llvm.load %[[RNG]] {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: arith.muli %{{.*}}, %{{.*}} : vector<4xi64>
// CHECK: arith.extui %{{.*}} : vector<4xi32> to vector<4xi64>
// CHECK: arith.uitofp %{{.*}} : vector<4xi64> to vector<4xf64>
// CHECK-LABEL: func.func @optim_rule_dual(
// CHECK-SAME: %[[REDUCED:[^:]*]]: !llvm.ptr, %[[RNG:[^:]*]]: !llvm.ptr) {
// CHECK: llvm.load %[[RNG]] {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: arith.muli %{{.*}}, %{{.*}} : vector<4xi64>
// CHECK: llvm.mlir.global external constant @optim_random_dual("uniform\00")
optim.rule @dual(%p: f64, %g: f64, %t: i64) random(uniform) {
  %u = optim.random uniform site 0 : f64
  %s = optim.tensor_reduce sum %u : f64
  %a = arith.mulf %s, %u : f64
  %q = arith.subf %p, %a : f64
  optim.yield %q : f64
}
