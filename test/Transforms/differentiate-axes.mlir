// RUN: optim-opt %s --optim-differentiate --split-input-file -verify-diagnostics

// Row and column states and reductions (KernelABI.h version 10) have no
// reverse mode: the first row or column state is reported at its
// declaration (through the drivers: reverse-axes.optim) ...
// expected-error @+1 {{row state 'r' cannot be differentiated (reverse mode of row and column states and reductions is not supported)}}
optim.rule @row_state(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0, %r: f32 = 0.0 row) {
  %0 = arith.addf %r, %r : f32
  %1 = arith.subf %p, %g : f32
  optim.yield %1, %g, %0 : f32, f32, f32
}

// -----

// ... and without one, the first row or column reduction.
optim.rule @col_reduction(%p: f32, %g: f32, %t: i64) {
  %0 = optim.tensor_reduce norm %g : f32
  // expected-error @+1 {{col_max(...) cannot be differentiated (reverse mode of row and column states and reductions is not supported)}}
  %1 = optim.tensor_reduce max %g col : f32
  %2 = arith.divf %g, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}
