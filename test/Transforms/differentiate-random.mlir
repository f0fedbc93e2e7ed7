// RUN: optim-opt %s --optim-differentiate --canonicalize --cse | FileCheck %s
// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=4 --canonicalize --cse | FileCheck %s --check-prefix=KERNEL

// A draw is a constant of the reverse mode (KernelABI.h, version 8): the
// step and VJP functions keep the rule's optim.random (same kind and site:
// the VJP kernel recomputes the forward step's value from rng), and no
// cotangent flows to it. p' = p - lr (g + sigma z):
// dp = dp'; dlr = -dp' (g + sigma z); dsigma = -dp' lr z.

// CHECK-LABEL: func.func @optim_step_noisy(
// CHECK: optim.random normal site 0 : f32
// CHECK-LABEL: func.func @optim_vjp_noisy(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %[[T:[^:]*]]: i64, %[[LR:[^:]*]]: f32, %[[SIGMA:[^:]*]]: f32, %[[DP:[^:]*]]: f32) -> (f32, f32, f32)
// CHECK: %[[Z:.*]] = optim.random normal site 0 : f32
// CHECK: %[[SZ:.*]] = arith.mulf %[[SIGMA]], %[[Z]] : f32
// CHECK: %[[X:.*]] = arith.addf %[[G]], %[[SZ]] : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[DLR:.*]] = arith.mulf %[[NEG]], %[[X]] : f32
// CHECK: %[[NL:.*]] = arith.mulf %[[NEG]], %[[LR]] : f32
// CHECK: %[[DSIGMA:.*]] = arith.mulf %[[NL]], %[[Z]] : f32
// CHECK: return %[[DP]], %[[DLR]], %[[DSIGMA]] : f32, f32, f32

// The VJP kernel takes rng last, loads the seed once and each chunk's
// first global index, and runs Philox like the forward kernel.
// KERNEL-LABEL: func.func @optim_vjp_kernel_noisy(
// KERNEL-SAME: %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[RNG:[^:]*]]: !llvm.ptr) {
// KERNEL: llvm.load %[[RNG]] {alignment = 8 : i64} : !llvm.ptr -> i64
// KERNEL: scf.for
// KERNEL: llvm.getelementptr %[[RNG]][%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, i64
// KERNEL: arith.muli %{{.*}}, %{{.*}} : vector<4xi64>
// KERNEL: math.fma %{{.*}}, %{{.*}}, %{{.*}} : vector<4xf64>
// KERNEL: arith.muli %{{.*}}, %c3528531795_i64 : i64
// KERNEL: math.fma %{{.*}}, %{{.*}}, %{{.*}} : f64
optim.rule @noisy(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1, %sigma: f32 = 0.5) random(normal) {
  %z = optim.random normal site 0 : f32
  %0 = arith.mulf %sigma, %z : f32
  %1 = arith.addf %g, %0 : f32
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}
