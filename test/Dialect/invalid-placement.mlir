// Where optim ops may appear: per-coordinate ops in a rule body or in a step
// or VJP function that optim-differentiate derived from a rule (marked
// optim.step_of / optim.vjp_of), layer ops in a layer body. Anywhere else no
// lowering would take them and they would reach LLVM IR translation, so the
// verifier rejects them at their location, and optim-opt exits with 1.
// RUN: optim-opt %s -split-input-file -verify-diagnostics
// RUN: not optim-opt %s -split-input-file 2>&1 | FileCheck %s

// CHECK: invalid-placement.mlir:[[# @LINE + 3]]:8: error: 'optim.log_sign' op outside an 'optim.rule'
func.func @log_sign(%g: f32, %k: f32) -> vector<2xf32> {
  // expected-error @+1 {{'optim.log_sign' op outside an 'optim.rule': per-coordinate ops belong in a rule body, or in a function that optim-differentiate derived from one ('optim.step_of', 'optim.vjp_of')}}
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  return %0 : vector<2xf32>
}

// -----

func.func @lstm_cell(%x: f32, %h: vector<2xf32>, %w: tensor<8x4xf32>) -> vector<2xf32> {
  // expected-error @+1 {{'optim.lstm_cell' op outside an 'optim.rule'}}
  %h2, %c2 = optim.lstm_cell %x, %h, %h, %w : f32, vector<2xf32>, tensor<8x4xf32>
  return %h2 : vector<2xf32>
}

// -----

func.func @linear(%x: vector<2xf32>, %w: tensor<1x3xf32>) -> f32 {
  // expected-error @+1 {{'optim.linear' op outside an 'optim.rule'}}
  %y = optim.linear %x, %w : vector<2xf32>, tensor<1x3xf32> -> f32
  return %y : f32
}

// -----

func.func @lstm_cell_vjp(%x: f32, %h: vector<2xf32>, %w: tensor<8x4xf32>) -> tensor<8x4xf32> {
  // expected-error @+1 {{'optim.lstm_cell_vjp' op outside an 'optim.rule'}}
  %dx, %dh, %dc, %dw = optim.lstm_cell_vjp %x, %h, %h, %w, %h, %h : f32, vector<2xf32>, tensor<8x4xf32>
  return %dw : tensor<8x4xf32>
}

// -----

func.func @linear_vjp(%x: f32, %w: tensor<1x2xf32>, %dy: f32) -> tensor<1x2xf32> {
  // expected-error @+1 {{'optim.linear_vjp' op outside an 'optim.rule'}}
  %dx, %dw = optim.linear_vjp %x, %w, %dy : f32, tensor<1x2xf32>, f32
  return %dw : tensor<1x2xf32>
}

// -----

// In a region of a function (not directly in its body) all the same.
func.func @nested(%c: i1, %g: f32, %k: f32) {
  scf.if %c {
    // expected-error @+1 {{'optim.log_sign' op outside an 'optim.rule'}}
    %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  }
  return
}

// -----

// A layer is not a rule.
optim.layer @log_sign_in_layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %g = arith.constant 1.0 : f32
  // expected-error @+1 {{'optim.log_sign' op outside an 'optim.rule'}}
  %0 = optim.log_sign %g, %g : f32 -> vector<2xf32>
  optim.return %y : tensor<2xf32>
}

// -----

// CHECK: invalid-placement.mlir:[[# @LINE + 3]]:8: error: 'optim.eye' op outside an 'optim.layer'
func.func @eye() -> tensor<3x3xf32> {
  // expected-error @+1 {{'optim.eye' op outside an 'optim.layer': layer ops belong in a layer body}}
  %0 = optim.eye : tensor<3x3xf32>
  return %0 : tensor<3x3xf32>
}

// -----

func.func @matvec(%a: tensor<2x3xf32>, %x: tensor<3xf32>) -> tensor<2xf32> {
  // expected-error @+1 {{'optim.matvec' op outside an 'optim.layer'}}
  %0 = optim.matvec %a, %x : tensor<2x3xf32>, tensor<3xf32> -> tensor<2xf32>
  return %0 : tensor<2xf32>
}

// -----

func.func @qp(%q: tensor<2xf32>) -> tensor<2xf32> {
  // expected-error @+1 {{'optim.qp' op outside an 'optim.layer'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  return %z : tensor<2xf32>
}

// -----

// Neither in a rule, nor in the functions derived from one.
optim.rule @eye_in_rule(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.eye' op outside an 'optim.layer'}}
  %0 = optim.eye : tensor<2x2xf32>
  optim.yield %p : f32
}

// -----

func.func @optim_step_r(%q: tensor<2xf32>) -> tensor<2xf32> attributes {optim.step_of = @r} {
  // expected-error @+1 {{'optim.qp' op outside an 'optim.layer'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  return %z : tensor<2xf32>
}

// -----

// Valid: a rule body, in a region of it too, and the derived functions.
optim.rule @in_rule(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
  %k = arith.constant 10.0 : f32
  %c = arith.cmpf ogt, %g, %k : f32
  %0 = scf.if %c -> vector<2xf32> {
    %1 = optim.log_sign %g, %k : f32 -> vector<2xf32>
    scf.yield %1 : vector<2xf32>
  } else {
    scf.yield %h : vector<2xf32>
  }
  optim.yield %p, %0 : f32, vector<2xf32>
}
func.func @optim_step_in_rule(%x: vector<2xf32>, %w: tensor<1x3xf32>) -> f32 attributes {optim.step_of = @in_rule} {
  %y = optim.linear %x, %w : vector<2xf32>, tensor<1x3xf32> -> f32
  return %y : f32
}
func.func @optim_vjp_in_rule(%x: f32, %w: tensor<1x2xf32>, %dy: f32) -> tensor<1x2xf32> attributes {optim.vjp_of = @in_rule, optim.vjp_layout = array<i64: 0, 0, 1>} {
  %dx, %dw = optim.linear_vjp %x, %w, %dy : f32, tensor<1x2xf32>, f32
  return %dw : tensor<1x2xf32>
}
optim.layer @in_layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %Q = optim.eye : tensor<2x2xf32>
  %q = optim.matvec %Q, %y : tensor<2x2xf32>, tensor<2xf32> -> tensor<2xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<2x2xf32>) q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

// The marks themselves: optim-lower-vjp-to-kernels reads them unchecked.
// expected-error @+1 {{'func.func' op 'optim.vjp_of' must name the rule (@rule), got 1 : i64}}
func.func @vjp_of_int(%p: f32) -> f32 attributes {optim.vjp_of = 1, optim.vjp_layout = array<i64: 0, 0, 0>} {
  return %p : f32
}

// -----

// expected-error @+1 {{'func.func' op 'optim.step_of' must name the rule (@rule), got "r"}}
func.func @step_of_string(%p: f32) -> f32 attributes {optim.step_of = "r"} {
  return %p : f32
}

// -----

// expected-error @+1 {{'func.func' op 'optim.vjp_layout' must be array<i64: hyperparameters, states, weights> or array<i64: hyperparameters, states, weights, reductions>, or array<i64: hyperparameters, states, weights, reductions, inputs>, each count between 0 and the number of arguments, got array<i64: 0, 0>}}
func.func @layout_short(%p: f32) -> f32 attributes {optim.vjp_of = @r, optim.vjp_layout = array<i64: 0, 0>} {
  return %p : f32
}

// -----

// Four counts are a rule with tensor reductions, five one with inputs (the
// fifth count; the fourth may then be 0); six are nothing.
// expected-error @+1 {{'optim.vjp_layout' must be array<i64: hyperparameters, states, weights>}}
func.func @layout_long(%p: f32) -> f32 attributes {optim.vjp_of = @r, optim.vjp_layout = array<i64: 0, 0, 0, 1, 0, 0>} {
  return %p : f32
}

// -----

// expected-error @+1 {{'func.func' op 'optim.vjp_reductions' is a unit attribute, got 1 : i64}}
func.func @vjp_reductions_int(%p: f32) -> f32 attributes {optim.vjp_of = @r, optim.vjp_reductions = 1, optim.vjp_layout = array<i64: 0, 0, 0, 1>} {
  return %p : f32
}

// -----

// A negative count made the signature's argument count wrap around.
// expected-error @+1 {{'optim.vjp_layout' must be array<i64: hyperparameters, states, weights>}}
func.func @layout_negative(%p: f32, %g: f32, %t: i64) attributes {optim.vjp_of = @r, optim.vjp_layout = array<i64: -1, 0, 0>} {
  return
}

// -----

// expected-error @+1 {{'optim.vjp_layout' must be array<i64: hyperparameters, states, weights>}}
func.func @layout_huge(%p: f32) -> f32 attributes {optim.vjp_of = @r, optim.vjp_layout = array<i64: 0, 9223372036854775807, 0>} {
  return %p : f32
}

// -----

// expected-error @+1 {{'builtin.module' op 'optim.vjp_of' marks a function, not this op}}
module attributes {optim.vjp_of = @r} {
}

// -----

func.func @tensor_reduce(%g: f32) -> f32 {
  // expected-error @+1 {{'optim.tensor_reduce' op outside an 'optim.rule'}}
  %0 = optim.tensor_reduce sum %g : f32
  return %0 : f32
}
