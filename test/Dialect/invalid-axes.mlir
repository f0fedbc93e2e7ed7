// The verifiers of row and column states and reductions (KernelABI.h
// version 10): what the front end reports first with its own diagnostics,
// checked again on IR written or mangled by hand.
// RUN: optim-opt %s -split-input-file -verify-diagnostics

// A row or column reduction is never global.
optim.rule @axis_and_global(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op reduces along rows and over every parameter at once; a row or column reduction is never global}}
  %0 = "optim.tensor_reduce"(%g) <{axis = 0 : i32, global, kind = 0 : i32}> : (f32) -> f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

// The new value of a row state must be the same along the row.
optim.rule @row_per_coordinate(%p: f32, %g: f32, %t: i64) state(%r: f32 = 0.0 row) {
  %0 = arith.addf %r, %g : f32
  // expected-error @+1 {{'optim.yield' op new value of row state 'r' varies along the row (it is computed from per-coordinate values); reduce them with a row reduction}}
  optim.yield %p, %0 : f32, f32
}

// -----

// A column reduction varies along a row.
optim.rule @row_from_col(%p: f32, %g: f32, %t: i64) state(%r: f32 = 0.0 row) {
  %0 = optim.tensor_reduce mean %g col : f32
  // expected-error @+1 {{'optim.yield' op new value of row state 'r' varies along the row}}
  optim.yield %p, %0 : f32, f32
}

// -----

// Column states alike; a draw is per coordinate.
optim.rule @col_per_coordinate(%p: f32, %g: f32, %t: i64) state(%c: f32 = 0.0 col) random(uniform) {
  %0 = optim.random uniform site 0 : f32
  %1 = arith.mulf %c, %0 : f32
  // expected-error @+1 {{'optim.yield' op new value of col state 'c' varies along the col (it is computed from per-coordinate values); reduce them with a col reduction}}
  optim.yield %p, %1 : f32, f32
}

// -----

// Uniform values, row states and row reductions are fine for a row state.
optim.rule @row_ok(%p: f32, %g: f32, %t: i64) hyper(%beta: f32 = 0.9) state(%r: f32 = 0.0 row, %c: f32 = 0.0 col) {
  %0 = optim.tensor_reduce max %g row : f32
  %1 = optim.tensor_reduce norm %g : f32
  %2 = arith.mulf %beta, %r : f32
  %3 = arith.addf %2, %0 : f32
  %4 = arith.addf %3, %1 : f32
  %5 = optim.tensor_reduce min %g col : f32
  %6 = arith.mulf %r, %c : f32
  %7 = arith.subf %p, %6 : f32
  optim.yield %7, %4, %5 : f32, f32, f32
}

// -----

// A row state is one scalar per row: no vector.
// expected-error @+1 {{'optim.rule' op row state 'h' must be a scalar of 'f32', got 'vector<2xf32>'}}
optim.rule @vector_row_state(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0 row) {
  optim.yield %p, %h : f32, vector<2xf32>
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' has axis 'diagonal'; expected 'none', 'row' or 'col'}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_axes = ["diagonal"], state_inits = array<f64: 0.0>, state_names = ["m"], sym_name = "bad_axis", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %m: f32):
  "optim.yield"(%p, %m) : (f32, f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op has 1 states but 2 state axes}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_axes = ["row", "none"], state_inits = array<f64: 0.0>, state_names = ["m"], sym_name = "axes_count", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %m: f32):
  "optim.yield"(%p, %m) : (f32, f32) -> ()
}) : () -> ()

// -----

// An unknown axis in the custom form: not a state attribute at all.
// expected-error @+1 {{expected ')'}}
optim.rule @diagonal(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0 diagonal) {
  optim.yield %p, %m : f32, f32
}

// -----

optim.rule @bad_reduce_axis(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{expected ':'}}
  %0 = optim.tensor_reduce sum %g diagonal : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}
