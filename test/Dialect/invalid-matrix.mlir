// The verifier of matrix functions and shape values (KernelABI.h version
// 11): newton_schulz goes with the `matrix` axis and nothing else does;
// rows and cols take no axis and no `global`; the Newton-Schulz parameters
// are those the runtime can run (what the front end reports first with its
// own diagnostics, checked again on IR written or mangled by hand).
// RUN: optim-opt %s -split-input-file -verify-diagnostics

optim.rule @ns_without_matrix(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op newton_schulz is a function of each matrix: it needs the `matrix` axis}}
  %0 = optim.tensor_reduce newton_schulz %g : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @ns_on_rows(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op newton_schulz is a function of each matrix: it needs the `matrix` axis}}
  %0 = optim.tensor_reduce newton_schulz %g row : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @sum_on_matrix(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op only newton_schulz works on the `matrix` axis}}
  %0 = optim.tensor_reduce sum %g matrix : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @ns_global(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op newton_schulz is a function of each matrix of one parameter; it is never `global`}}
  %0 = optim.tensor_reduce newton_schulz %g global matrix : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @rows_with_axis(%p: f32, %g: f32, %t: i64) {
  %c0 = arith.constant 0.0 : f32
  // expected-error @+1 {{'optim.tensor_reduce' op 'rows' is the parameter's number of rows; it takes neither an axis nor `global`}}
  %0 = optim.tensor_reduce rows %c0 row : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @cols_global(%p: f32, %g: f32, %t: i64) {
  %c0 = arith.constant 0.0 : f32
  // expected-error @+1 {{'optim.tensor_reduce' op 'cols' is the parameter's number of cols; it takes neither an axis nor `global`}}
  %0 = optim.tensor_reduce cols %c0 global : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @steps_negative(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_steps must be in [0, 100], not -1}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_steps = -1 : i32} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @steps_too_many(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_steps must be in [0, 100], not 101}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_steps = 101 : i32} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @two_coefficients(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_coefficients must be three finite numbers (a, b, c)}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_coefficients = array<f64: 3.4445, -4.775>} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @nan_coefficient(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_coefficients must be three finite numbers (a, b, c)}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_coefficients = array<f64: 3.4445, 0x7FF8000000000000, 2.0315>} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @eps_zero(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_eps must be a positive finite number, not 0}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_eps = 0.0 : f64} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @eps_negative(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_eps must be a positive finite number, not -1.000000e-07}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_eps = -1.0e-7 : f64} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @eps_infinite(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_eps must be a positive finite number, not INF}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_eps = 0x7FF0000000000000 : f64} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @bad_steps_type(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op attribute 'ns_steps' failed to satisfy constraint: 32-bit signless integer attribute}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_steps = 3 : i64} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @ns_params_on_sum(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_steps, ns_coefficients and ns_eps are parameters of newton_schulz only; 'sum' takes none}}
  %0 = optim.tensor_reduce sum %g {ns_steps = 3 : i32} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

optim.rule @eps_underflows_f32(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op ns_eps 1.000000e-50 rounds to 0 in f32}}
  %0 = optim.tensor_reduce newton_schulz %g matrix {ns_eps = 1.0e-50 : f64} : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}
