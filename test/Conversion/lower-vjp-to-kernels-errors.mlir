// RUN: optim-opt %s --optim-lower-vjp-to-kernels --split-input-file -verify-diagnostics

// A weight cotangent must be a sum of the learned blocks' contributions.
// expected-error @+1 {{'func.func' op weight cotangent 0 is not a sum of lstm_cell_vjp and linear_vjp contributions}}
func.func @optim_vjp_bad(%p: f32, %g: f32, %t: i64, %w: tensor<1x2xf32>, %dp: f32) -> (f32, tensor<1x2xf32>) attributes {optim.vjp_layout = array<i64: 0, 0, 1>, optim.vjp_of = @bad} {
  return %dp, %w : f32, tensor<1x2xf32>
}

// -----

// expected-error @+1 {{'func.func' op signature does not match its optim.vjp_layout}}
func.func @optim_vjp_short(%p: f32, %g: f32, %t: i64, %dp: f32) -> (f32) attributes {optim.vjp_layout = array<i64: 1, 0, 0>, optim.vjp_of = @short} {
  return %dp : f32
}

// -----

// expected-error @+1 {{'func.func' op CPU code generation supports f32 and f64 rules}}
func.func @optim_vjp_half(%p: f16, %g: f16, %t: i64, %dp: f16) -> (f16) attributes {optim.vjp_layout = array<i64: 0, 0, 0>, optim.vjp_of = @half} {
  return %dp : f16
}

// -----

// optim-differentiate passes reduced values as arguments; a VJP function
// written by hand with a reduction inside is refused.
func.func @optim_vjp_normalized(%p: f32, %g: f32, %t: i64, %dp: f32) -> (f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0>, optim.vjp_of = @normalized} {
  // expected-error @+1 {{'optim.tensor_reduce' op cannot be lowered in a VJP function: the reduced values are its arguments (optim.vjp_layout [hyperparameters, states, weights, reductions])}}
  %0 = optim.tensor_reduce sum %g : f32
  %1 = arith.mulf %dp, %0 : f32
  return %1 : f32
}

// -----

// With R reductions, the VJP takes R reduced values and returns 2R more
// results (their cotangents and the tie indicators): here one is missing.
// expected-error @+1 {{'func.func' op signature does not match its optim.vjp_layout}}
func.func @optim_vjp_short_ties(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32) -> (f32, f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @short_ties} {
  return %dp, %rho : f32, f32
}

// -----

// The VJP through the reductions takes rho and u (2R values): here only rho.
// expected-error @+1 {{'func.func' op signature does not match its optim.vjp_layout}}
func.func @optim_vjp_reductions_short(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32) -> (f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @short, optim.vjp_reductions} {
  return %dp : f32
}

// -----

// expected-error @+1 {{'func.func' op has an optim.vjp_layout that counts no tensor reductions: without them it is [hyperparameters, states, weights]}}
func.func @optim_vjp_none(%p: f32, %g: f32, %t: i64, %dp: f32) -> (f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 0>, optim.vjp_of = @none} {
  return %dp : f32
}

// -----

// expected-error @+1 {{'func.func' op is marked optim.vjp_reductions but its optim.vjp_layout counts no tensor reductions}}
func.func @optim_vjp_reductions_three(%p: f32, %g: f32, %t: i64, %dp: f32) -> (f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0>, optim.vjp_of = @three, optim.vjp_reductions} {
  return %dp : f32
}

// -----

// The kernel reads reduced values as doubles and rounds them to the rule's
// element type.
// expected-error @+1 {{'func.func' op reduced value argument 0 must be of the element type 'f32', got 'f64'}}
func.func @optim_vjp_wide(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f64) -> (f32, f32, f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @wide} {
  %z = arith.constant 0.0 : f32
  return %dp, %z, %z : f32, f32, f32
}

// -----

// expected-error @+1 {{'func.func' op result 2 (a cotangent of a reduced value or a tie indicator) must be of the element type 'f32', got 'f64'}}
func.func @optim_vjp_wide_tie(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32) -> (f32, f32, f64) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @wide_tie} {
  %z = arith.constant 0.0 : f32
  %w = arith.constant 0.0 : f64
  return %dp, %z, %w : f32, f32, f64
}

// -----

// A VJP function named as the step function it would erase.
// expected-error @+1 {{'func.func' op is marked optim.vjp_of but is named or marked as a step function}}
func.func @optim_step_r(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32) -> (f32, f32, f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @r} {
  %z = arith.constant 0.0 : f32
  return %dp, %z, %z : f32, f32, f32
}

// -----

// A declaration has no body to lower.
// expected-error @+1 {{'func.func' op marked optim.vjp_of has no body}}
func.func private @optim_vjp_r(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32) -> (f32, f32, f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @r}

// -----

// Both VJP functions of a rule with reductions share its step function,
// which is erased once, after both are lowered.
func.func @optim_step_r(%p: f32, %g: f32, %t: i64, %rho: f32) -> f32 attributes {optim.step_of = @r} {
  return %p : f32
}
func.func @optim_vjp_r(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32) -> (f32, f32, f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @r} {
  %z = arith.constant 0.0 : f32
  return %dp, %z, %z : f32, f32, f32
}
func.func @optim_vjp_reductions_r(%p: f32, %g: f32, %t: i64, %dp: f32, %rho: f32, %u: f32) -> (f32, f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0, 1>, optim.vjp_of = @r, optim.vjp_reductions} {
  %z = arith.constant 0.0 : f32
  return %dp, %z : f32, f32
}
