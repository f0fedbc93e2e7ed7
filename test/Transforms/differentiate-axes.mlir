// RUN: optim-opt %s --optim-differentiate | FileCheck %s

// Row and column values (KernelABI.h version 10, "Reverse mode of rules
// with axes") are per-coordinate values of the VJP functions: a row or
// column state is a state like the others (the runtime gives each
// coordinate its row's value and sums the cotangents back over the row),
// and each row or column reduction adds two pseudo-states after the
// states: its result (value: rho at the coordinate; returned: the
// coordinate's share of its cotangent; in the reductions function it
// carries u at the coordinate and returns what reaches rho from higher
// levels) and a tie slot (returned: the max / min tie indicator). Its
// slots among the tensor reductions' rho and drho stay unused (0).
optim.rule @axes(%p: f32, %g: f32, %t: i64) state(%r: f32 = 0.0 row) {
  %0 = optim.tensor_reduce norm %g : f32
  %m = arith.mulf %p, %g : f32
  %1 = optim.tensor_reduce max %m col : f32
  %2 = arith.divf %g, %1 : f32
  %3 = arith.mulf %2, %0 : f32
  %4 = arith.subf %p, %3 : f32
  %5 = arith.mulf %r, %0 : f32
  optim.yield %4, %5 : f32, f32
}

// p, g, t, r, the col_max's pseudo-states (rho, tie), then the cotangents
// of p', r' and the pseudo-states, then rho of both reductions.
// CHECK-LABEL: func.func @optim_vjp_axes(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %{{[^:]*}}: i64, %[[R:[^:]*]]: f32, %[[MAX:[^:]*]]: f32, %{{[^:]*}}: f32,
// CHECK-SAME: %[[DP:[^:]*]]: f32, %[[DR:[^:]*]]: f32, %{{[^:]*}}: f32, %{{[^:]*}}: f32, %[[NORM:[^:]*]]: f32, %{{[^:]*}}: f32)
// CHECK-SAME: -> (f32, f32, f32, f32, f32, f32, f32, f32)
// CHECK-SAME: optim.vjp_layout = array<i64: 0, 3, 0, 2>
// The column maximum is read from its pseudo-state, the norm from rho.
// CHECK: %[[M:.*]] = arith.mulf %[[P]], %[[G]]
// CHECK: %[[Q:.*]] = arith.divf %[[G]], %[[MAX]]
// CHECK: arith.mulf %[[Q]], %[[NORM]]
// CHECK: %[[DRNEW:.*]] = arith.mulf %[[DR]], %[[NORM]]
// CHECK: %[[EQ:.*]] = arith.cmpf oeq, %[[M]], %[[MAX]]
// CHECK: %[[TIE:.*]] = arith.select %[[EQ]]
// dp, dr, the col_max's share and tie, then drho (the norm's; 0 for the
// col_max) and the tensor ties (0, 0).
// CHECK: %[[ZERO:.*]] = arith.constant 0.0
// CHECK: return %[[DP]], %[[DRNEW]], %{{[^,]*}}, %[[TIE]], %{{[^,]*}}, %[[ZERO]], %{{[^,]*}}, %{{[^ ]*}} : f32, f32, f32, f32, f32, f32, f32, f32

// The reductions function: u of the col_max comes in its pseudo-state's
// carried cotangent, seeds p through the tie, and adds to dp; the
// pseudo-states return 0 (no higher level reads the col_max).
// CHECK-LABEL: func.func @optim_vjp_reductions_axes(
// CHECK-SAME: %[[P2:[^:]*]]: f32, %[[G2:[^:]*]]: f32, %{{[^:]*}}: i64, %{{[^:]*}}: f32, %[[MAX2:[^:]*]]: f32, %{{[^:]*}}: f32,
// CHECK-SAME: %[[DP2:[^:]*]]: f32, %[[DR2:[^:]*]]: f32, %[[U:[^:]*]]: f32, %{{[^:]*}}: f32,
// CHECK-SAME: optim.vjp_reductions
// CHECK: %[[M2:.*]] = arith.mulf %[[P2]], %[[G2]]
// CHECK: %[[EQ2:.*]] = arith.cmpf oeq, %[[M2]], %[[MAX2]]
// CHECK: %[[SEED:.*]] = arith.select %[[EQ2]], %[[U]],
// CHECK: arith.mulf %[[SEED]], %[[G2]]
// CHECK: %[[DPNEW:.*]] = arith.addf %[[DP2]], %{{.*}}
// CHECK: %[[Z2:.*]] = arith.constant 0.0
// CHECK: return %[[DPNEW]], %[[DR2]], %[[Z2]], %[[Z2]], %[[Z2]], %[[Z2]] :
