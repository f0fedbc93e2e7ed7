// RUN: optim-opt %s --optim-differentiate --split-input-file -verify-diagnostics

// Matrix functions (KernelABI.h version 11) have no reverse mode: the first
// in the body is reported where it is computed (through the drivers:
// reverse-matrix.optim). The shape values rows() and cols() have one
// (differentiate-shape-values.mlir).
optim.rule @ns(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) {
  %n = optim.tensor_reduce norm %g : f32
  // expected-error @+1 {{newton_schulz(...) cannot be differentiated (reverse mode of matrix functions is not supported)}}
  %o = optim.tensor_reduce newton_schulz %g matrix : f32
  %0 = arith.divf %o, %n : f32
  %1 = arith.mulf %lr, %0 : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}

// -----

// Before any row or column state: the body's matrix function is named, not
// the state.
optim.rule @ns_first(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) state(%r: f32 = 0.0 row) {
  %c0 = arith.constant 0.0 : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  // expected-error @+1 {{newton_schulz(...) cannot be differentiated (reverse mode of matrix functions is not supported)}}
  %o = optim.tensor_reduce newton_schulz %g matrix : f32
  %q = arith.mulf %nr, %o : f32
  %0 = arith.mulf %lr, %q : f32
  %2 = arith.subf %p, %0 : f32
  optim.yield %2, %r : f32, f32
}
