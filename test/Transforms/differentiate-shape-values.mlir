// RUN: optim-opt %s --optim-differentiate | FileCheck %s

// The shape values rows() and cols() (KernelABI.h version 11) are constants
// of the parameter's shape: the step and the first VJP read them from their
// reduced-value arguments like any reduced value (and return what reaches
// them, which the runtime ignores), and the reductions VJP seeds nothing
// through their operands, so that a rule whose only reductions are shape
// values gets back the carried cotangents unchanged.
optim.rule @cols(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) {
  %c0 = arith.constant 0.0 : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %0 = arith.divf %lr, %nc : f32
  %1 = arith.mulf %0, %g : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}

// CHECK-LABEL: func.func @optim_step_cols
// CHECK-SAME: (%{{.*}}: f32, %[[G:.*]]: f32, %{{.*}}: i64, %[[LR:.*]]: f32, %[[NC:.*]]: f32) -> f32
// CHECK: arith.divf %[[LR]], %[[NC]]

// dp = dp', dlr = -dp' g / cols, drho(cols) = dp' g lr / cols^2.
// CHECK-LABEL: func.func @optim_vjp_cols
// CHECK-SAME: (%{{.*}}: f32, %[[G:.*]]: f32, %{{.*}}: i64, %[[LR:.*]]: f32, %[[DP:.*]]: f32, %[[NC:.*]]: f32) -> (f32, f32, f32, f32)
// CHECK-SAME: optim.vjp_layout = array<i64: 1, 0, 0, 1>
// CHECK: %[[Q:.*]] = arith.divf %[[LR]], %[[NC]]
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]]
// CHECK: %[[T:.*]] = arith.mulf %[[NEG]], %[[G]]
// CHECK: %[[DQ:.*]] = arith.mulf %[[NEG]], %[[Q]]
// CHECK: %[[DLR:.*]] = arith.divf %[[T]], %[[NC]]
// CHECK: %[[R:.*]] = arith.mulf %[[DLR]], %[[Q]]
// CHECK: %[[DNC:.*]] = arith.negf %[[R]]
// CHECK: return %[[DP]], %[[DLR]], %[[DNC]], %{{.*}} : f32, f32, f32, f32

// CHECK-LABEL: func.func @optim_vjp_reductions_cols
// CHECK-SAME: (%{{.*}}: f32, %{{.*}}: f32, %{{.*}}: i64, %{{.*}}: f32, %[[CARRIED:.*]]: f32, %{{.*}}: f32, %{{.*}}: f32) -> (f32, f32, f32)
// CHECK-SAME: optim.vjp_reductions
// The recomputed step, then nothing flows back (no negf of the subf's
// adjoint, no addf onto the carried cotangent).
// CHECK: arith.subf
// CHECK-NOT: arith.negf
// CHECK-NOT: arith.addf
// CHECK: return %[[CARRIED]], %[[ZERO:.*]], %[[ZERO2:.*]] : f32, f32, f32
