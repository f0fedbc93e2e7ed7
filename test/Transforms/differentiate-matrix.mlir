// RUN: optim-opt %s --optim-differentiate --split-input-file -verify-diagnostics

// Matrix functions and the shape values rows() and cols() (KernelABI.h
// version 11) have no reverse mode: the first of them in the body is
// reported where it is computed (through the drivers: reverse-matrix.optim).
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

// Before any row or column state: the body's matrix function or shape value
// is named, not the state.
optim.rule @rows_first(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) state(%r: f32 = 0.0 row) {
  %c0 = arith.constant 0.0 : f32
  // expected-error @+1 {{rows() cannot be differentiated (reverse mode of the shape values rows() and cols() is not supported)}}
  %nr = optim.tensor_reduce rows %c0 : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %q = arith.divf %nr, %nc : f32
  %0 = arith.mulf %lr, %q : f32
  %1 = arith.mulf %0, %g : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2, %r : f32, f32
}

// -----

optim.rule @cols(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) {
  %c0 = arith.constant 0.0 : f32
  // expected-error @+1 {{cols() cannot be differentiated (reverse mode of the shape values rows() and cols() is not supported)}}
  %nc = optim.tensor_reduce cols %c0 : f32
  %0 = arith.divf %lr, %nc : f32
  %1 = arith.mulf %0, %g : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}
