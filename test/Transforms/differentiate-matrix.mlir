// RUN: optim-opt %s --optim-differentiate | FileCheck %s

// A matrix function (newton_schulz, KernelABI.h version 11) is a
// pseudo-state of the VJP functions like a row or column reduction
// ("Reverse mode of rules with axes"): its result NS(X) at the coordinate
// is an argument, the first function returns the coordinate's cotangent of
// it, and the reductions function seeds the operand with the carried
// cotangent of X at the coordinate (the runtime maps each matrix's
// cotangent of NS(X) to X's), neither scaled nor masked. Its slots among
// the R reductions stay 0.
optim.rule @ns(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02, %c: f32 = 0.5) {
  %n = optim.tensor_reduce norm %g : f32
  %x = arith.mulf %c, %p : f32
  %o = optim.tensor_reduce newton_schulz %x matrix : f32
  %0 = arith.divf %o, %n : f32
  %1 = arith.mulf %lr, %0 : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}

// p, g, t, lr, c, NS(X) and its tie slot, the cotangents of p' and of the
// pseudo-states, rho of both reductions.
// CHECK-LABEL: func.func @optim_vjp_ns(
// CHECK-SAME: %{{[^:]*}}: f32, %{{[^:]*}}: f32, %{{[^:]*}}: i64, %[[LR:[^:]*]]: f32, %{{[^:]*}}: f32, %[[O:[^:]*]]: f32, %{{[^:]*}}: f32,
// CHECK-SAME: %[[DP:[^:]*]]: f32, %{{[^:]*}}: f32, %{{[^:]*}}: f32, %[[N:[^:]*]]: f32, %{{[^:]*}}: f32)
// CHECK-SAME: optim.vjp_layout = array<i64: 2, 2, 0, 2>
// CHECK: arith.divf %[[O]], %[[N]]
// CHECK: return %[[DP]], %[[DO:[^,]*]], %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %{{[^,]*}}, %[[Z:[^,]*]], %{{[^,]*}}, %{{[^ ]*}} :

// CHECK-LABEL: func.func @optim_vjp_reductions_ns(
// CHECK-SAME: %[[P2:[^:]*]]: f32, %{{[^:]*}}: f32, %{{[^:]*}}: i64, %{{[^:]*}}: f32, %[[C2:[^:]*]]: f32, %{{[^:]*}}: f32, %{{[^:]*}}: f32,
// CHECK-SAME: %[[DP2:[^:]*]]: f32, %[[DX:[^:]*]]: f32, %{{[^:]*}}: f32,
// CHECK-SAME: optim.vjp_reductions
// X = c p: dp += dX c, dc = dX p.
// CHECK-DAG: %[[DPX:.*]] = arith.mulf %[[DX]], %[[C2]]
// CHECK-DAG: arith.mulf %[[DX]], %[[P2]]
// CHECK: %[[DPNEW:.*]] = arith.addf %[[DP2]], %[[DPX]]
// CHECK: return %[[DPNEW]],
