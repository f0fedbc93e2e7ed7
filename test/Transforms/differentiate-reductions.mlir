// RUN: optim-opt %s --optim-differentiate --split-input-file | FileCheck %s

// A rule with tensor reductions: each reduction's result is an argument
// (rho_r, body order) of the step and of both VJP functions. The VJP holds
// them constant and also returns drho_r and the tie indicators; the
// reductions VJP seeds each reduced operand x_r with its cotangent u_r
// (sum, mean), u_r x_r (norm), u_r where x_r == rho_r (max, min), and adds
// what flows back to the incoming cotangents of p and the state.
//
// x = p m; p' = p - (s a + n hi) g; m' = x.

// CHECK-LABEL: func.func @optim_step_kinds(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %[[T:[^:]*]]: i64, %[[LR:[^:]*]]: f32, %[[M:[^:]*]]: f32,
// CHECK-SAME: %[[S:[^:]*]]: f32, %[[A:[^:]*]]: f32, %[[N:[^:]*]]: f32, %[[HI:[^:]*]]: f32, %[[LO:[^:]*]]: f32) -> (f32, f32)
// CHECK-SAME: attributes {optim.step_of = @kinds}
// CHECK-NOT: optim.tensor_reduce
// CHECK: %[[SA:.*]] = arith.mulf %[[S]], %[[A]] : f32
// CHECK: %[[NH:.*]] = arith.mulf %[[N]], %[[HI]] : f32
// CHECK: return

// CHECK-LABEL: func.func @optim_vjp_kinds(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %[[T:[^:]*]]: i64, %[[LR:[^:]*]]: f32, %[[M:[^:]*]]: f32, %[[DP:[^:]*]]: f32, %[[DM:[^:]*]]: f32,
// CHECK-SAME: %[[S:[^:]*]]: f32, %[[A:[^:]*]]: f32, %[[N:[^:]*]]: f32, %[[HI:[^:]*]]: f32, %[[LO:[^:]*]]: f32)
// CHECK-SAME: -> (f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK-SAME: attributes {optim.vjp_layout = array<i64: 1, 1, 0, 5>, optim.vjp_of = @kinds}
// CHECK-NOT: optim.tensor_reduce
// CHECK: %[[X:.*]] = arith.mulf %[[P]], %[[M]] : f32
// CHECK: %[[SUM:.*]] = arith.addf %{{.*}}, %{{.*}} : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[DP]] : f32
// CHECK: %[[DSUM:.*]] = arith.mulf %[[NEG]], %[[G]] : f32
// CHECK: %[[DN:.*]] = arith.mulf %[[DSUM]], %[[HI]] : f32
// CHECK: %[[DHI:.*]] = arith.mulf %[[DSUM]], %[[N]] : f32
// CHECK: %[[DS:.*]] = arith.mulf %[[DSUM]], %[[A]] : f32
// CHECK: %[[DA:.*]] = arith.mulf %[[DSUM]], %[[S]] : f32
// Nothing reaches lr or the min of it here: zeros.
// CHECK: %[[Z0:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[Z1:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[Z2:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[Z3:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[Z4:.*]] = arith.constant 0.000000e+00 : f32
// The tie indicators of max and min: 1 where the operand equals rho.
// CHECK: %[[ATHI:.*]] = arith.cmpf oeq, %[[X]], %[[HI]] : f32
// CHECK: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[TIEHI:.*]] = arith.select %[[ATHI]], %[[ONE]], %[[ZERO]] : f32
// CHECK: %[[ATLO:.*]] = arith.cmpf oeq, %[[LR]], %[[LO]] : f32
// CHECK: %[[TIELO:.*]] = arith.select %[[ATLO]]
// dp, dm, dlr; drho (sum, mean, norm, max, min); ties (0 for sum, mean, norm).
// CHECK: return %{{.*}}, %{{.*}}, %[[Z0]], %[[DS]], %[[DA]], %[[DN]], %[[DHI]], %[[Z1]], %[[Z2]], %[[Z3]], %[[Z4]], %[[TIEHI]], %[[TIELO]]

// CHECK-LABEL: func.func @optim_vjp_reductions_kinds(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %[[T:[^:]*]]: i64, %[[LR:[^:]*]]: f32, %[[M:[^:]*]]: f32, %[[DP:[^:]*]]: f32, %[[DM:[^:]*]]: f32,
// CHECK-SAME: %[[S:[^:]*]]: f32, %[[A:[^:]*]]: f32, %[[N:[^:]*]]: f32, %[[HI:[^:]*]]: f32, %[[LO:[^:]*]]: f32,
// CHECK-SAME: %[[US:[^:]*]]: f32, %[[UA:[^:]*]]: f32, %[[UN:[^:]*]]: f32, %[[UHI:[^:]*]]: f32, %[[ULO:[^:]*]]: f32) -> (f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK-SAME: attributes {optim.vjp_layout = array<i64: 1, 1, 0, 5>, optim.vjp_of = @kinds, optim.vjp_reductions}
// CHECK-NOT: optim.tensor_reduce
// CHECK: %[[X:.*]] = arith.mulf %[[P]], %[[M]] : f32
// x is reduced three times: sum (u), global norm (u x), max (u at ties).
// The mean is of g, which has no cotangent: its seed goes nowhere.
// CHECK: %[[SEEDN:.*]] = arith.mulf %[[UN]], %[[X]] : f32
// CHECK: %[[DX1:.*]] = arith.addf %[[US]], %[[SEEDN]] : f32
// CHECK: %[[ATHI:.*]] = arith.cmpf oeq, %[[X]], %[[HI]] : f32
// CHECK: %[[SEEDHI:.*]] = arith.select %[[ATHI]], %[[UHI]], %{{.*}} : f32
// CHECK: %[[DX:.*]] = arith.addf %[[DX1]], %[[SEEDHI]] : f32
// The min of lr: its seed is lr's cotangent.
// CHECK: %[[ATLO:.*]] = arith.cmpf oeq, %[[LR]], %[[LO]] : f32
// CHECK: %[[DLR:.*]] = arith.select %[[ATLO]], %[[ULO]], %{{.*}} : f32
// The max's seed is 0 off the ties: what flows back from it is a strong
// zero (0 where the cotangent is 0, whatever the forward values).
// CHECK: %[[MULM:.*]] = arith.mulf %[[DX]], %[[M]] : f32
// CHECK: %[[ZM:.*]] = arith.cmpf oeq, %[[DX]], %{{.*}} : f32
// CHECK: %[[FROMM:.*]] = arith.select %[[ZM]], %{{.*}}, %[[MULM]] : f32
// CHECK: %[[MULP:.*]] = arith.mulf %[[DX]], %[[P]] : f32
// CHECK: %[[ZP:.*]] = arith.cmpf oeq, %[[DX]], %{{.*}} : f32
// CHECK: %[[FROMP:.*]] = arith.select %[[ZP]], %{{.*}}, %[[MULP]] : f32
// CHECK: %[[DPOUT:.*]] = arith.addf %[[DP]], %[[FROMM]] : f32
// CHECK: %[[DMOUT:.*]] = arith.addf %[[DM]], %[[FROMP]] : f32
// No reduction reads another's result: nothing flows back to rho.
// CHECK: %[[NONE:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: return %[[DPOUT]], %[[DMOUT]], %[[DLR]], %[[NONE]], %[[NONE]], %[[NONE]], %[[NONE]], %[[NONE]] : f32, f32, f32, f32, f32, f32, f32, f32
optim.rule @kinds(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) state(%m: f32 = 0.0) {
  %x = arith.mulf %p, %m : f32
  %s = optim.tensor_reduce sum %x : f32
  %a = optim.tensor_reduce mean %g : f32
  %n = optim.tensor_reduce norm %x global : f32
  %hi = optim.tensor_reduce max %x : f32
  %lo = optim.tensor_reduce min %lr global : f32
  %0 = arith.mulf %s, %a : f32
  %1 = arith.mulf %n, %hi : f32
  %2 = arith.addf %0, %1 : f32
  %3 = arith.mulf %2, %g : f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4, %x : f32, f32
}

// -----

// No path from the reductions' operands to p, the state or a
// hyperparameter: the reductions VJP passes the incoming cotangents through
// unchanged. Global reductions are differentiated as per-tensor ones (the
// runtime's combine differs, not the functions).
// CHECK-LABEL: func.func @optim_vjp_clip(
// CHECK-SAME: %[[DP:[^:]*]]: f64, %[[RHO:[^:]*]]: f64) -> (f64, f64, f64, f64)
// CHECK-SAME: optim.vjp_layout = array<i64: 1, 0, 0, 1>
// CHECK-LABEL: func.func @optim_vjp_reductions_clip(
// CHECK-SAME: %[[P:[^:]*]]: f64, %[[G:[^:]*]]: f64, %[[T:[^:]*]]: i64, %[[LR:[^:]*]]: f64, %[[DP:[^:]*]]: f64, %[[RHO:[^:]*]]: f64, %[[U:[^:]*]]: f64) -> (f64, f64, f64)
// CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f64
// CHECK: %[[NONE:.*]] = arith.constant 0.000000e+00 : f64
// CHECK: return %[[DP]], %[[ZERO]], %[[NONE]] : f64, f64, f64
optim.rule @clip(%p: f64, %g: f64, %t: i64) hyper(%lr: f64 = 0.1) {
  %n = optim.tensor_reduce norm %g global : f64
  %0 = arith.divf %g, %n : f64
  %1 = arith.mulf %lr, %0 : f64
  %2 = arith.subf %p, %1 : f64
  optim.yield %2 : f64
}

// -----

// A reduced value that nothing uses still has its slot, its (zero)
// cotangent and its tie indicator.
// CHECK-LABEL: func.func @optim_vjp_unused(
// CHECK-SAME: -> (f32, f32, f32)
// CHECK: %[[X:.*]] = math.exp
// CHECK: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[TIE:.*]] = arith.cmpf oeq, %[[X]]
// CHECK: %[[IND:.*]] = arith.select %[[TIE]]
// CHECK: return %{{.*}}, %[[ZERO]], %[[IND]] : f32, f32, f32
// CHECK-LABEL: func.func @optim_vjp_reductions_unused(
// CHECK: math.exp
// CHECK: arith.cmpf oeq
optim.rule @unused(%p: f32, %g: f32, %t: i64) {
  %0 = math.exp %p : f32
  %1 = optim.tensor_reduce max %0 global : f32
  %2 = arith.subf %p, %g : f32
  optim.yield %2 : f32
}

// -----

// Nested reductions (KernelABI.h version 9): the sum reduces p / n, n the
// norm of p p (level 0), so the sum is of level 1. The runtime calls the
// reductions VJP once per level, highest first, with u_r = 0 for the other
// levels: each seed is a strong zero (what flows back from it is 0 where it
// is 0), and the function also returns what reaches each reduced value,
// here dn = -(u_s / n) (p / n), which the runtime adds to D_n before the
// level-0 pass.
// CHECK-LABEL: func.func @optim_vjp_reductions_nested(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %[[T:[^:]*]]: i64, %[[DP:[^:]*]]: f32, %[[N:[^:]*]]: f32, %[[S:[^:]*]]: f32, %[[UN:[^:]*]]: f32, %[[US:[^:]*]]: f32) -> (f32, f32, f32)
// CHECK-SAME: attributes {optim.vjp_layout = array<i64: 0, 0, 0, 2>, optim.vjp_of = @nested, optim.vjp_reductions}
// CHECK: %[[X:.*]] = arith.mulf %[[P]], %[[P]] : f32
// CHECK: %[[Y:.*]] = arith.divf %[[P]], %[[N]] : f32
// CHECK: %[[SEEDX:.*]] = arith.mulf %[[UN]], %[[X]] : f32
// CHECK: %[[DY:.*]] = arith.divf %[[US]], %[[N]] : f32
// CHECK: %[[ZS:.*]] = arith.cmpf oeq, %[[US]], %{{.*}} : f32
// CHECK: %[[DPY:.*]] = arith.select %[[ZS]], %{{.*}}, %[[DY]] : f32
// CHECK: %[[M:.*]] = arith.mulf %[[DY]], %[[Y]] : f32
// CHECK: %[[NEG:.*]] = arith.negf %[[M]] : f32
// CHECK: %[[ZS2:.*]] = arith.cmpf oeq, %[[US]], %{{.*}} : f32
// CHECK: %[[DN:.*]] = arith.select %[[ZS2]], %{{.*}}, %[[NEG]] : f32
// CHECK: %[[ZX:.*]] = arith.cmpf oeq, %[[SEEDX]], %{{.*}} : f32
// CHECK: %[[DPX:.*]] = arith.addf %[[DPY]], %{{.*}} : f32
// CHECK: %[[DPOUT:.*]] = arith.addf %[[DP]], %{{.*}} : f32
// CHECK: %[[NONE:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: return %[[DPOUT]], %[[DN]], %[[NONE]] : f32, f32, f32
optim.rule @nested(%p: f32, %g: f32, %t: i64) {
  %x = arith.mulf %p, %p : f32
  %n = optim.tensor_reduce norm %x : f32
  %y = arith.divf %p, %n : f32
  %s = optim.tensor_reduce sum %y : f32
  %0 = arith.subf %p, %s : f32
  optim.yield %0 : f32
}
