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

// optim-differentiate refuses rules with tensor reductions; a VJP function
// written by hand with one is refused too.
func.func @optim_vjp_normalized(%p: f32, %g: f32, %t: i64, %dp: f32) -> (f32) attributes {optim.vjp_layout = array<i64: 0, 0, 0>, optim.vjp_of = @normalized} {
  // expected-error @+1 {{'optim.tensor_reduce' op cannot be lowered: the reverse mode of tensor reductions is not implemented}}
  %0 = optim.tensor_reduce sum %g : f32
  %1 = arith.mulf %dp, %0 : f32
  return %1 : f32
}
