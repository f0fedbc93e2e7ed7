// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file -verify-diagnostics

// Learned ops read their operands where they lie, per coordinate: a rule
// with a row or column state does not lower them (the front end refuses such
// rules too).
optim.rule @learned_row(%p: f32, %g: f32, %t: i64) state(%r: f32 = 0.0 row) weights(%head: tensor<1x2xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  // expected-error @+1 {{'optim.linear' op cannot be computed by the CPU code generator in a rule with row or column states or reductions}}
  %1 = optim.linear %0, %head : vector<1xf32>, tensor<1x2xf32> -> f32
  %2 = arith.mulf %1, %r : f32
  %3 = arith.addf %p, %2 : f32
  optim.yield %3, %r : f32, f32
}

// -----

// Likewise with a column reduction only.
optim.rule @learned_col(%p: f32, %g: f32, %t: i64) weights(%head: tensor<1x2xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  // expected-error @+1 {{'optim.linear' op cannot be computed by the CPU code generator in a rule with row or column states or reductions}}
  %1 = optim.linear %0, %head : vector<1xf32>, tensor<1x2xf32> -> f32
  %2 = optim.tensor_reduce sum %g col : f32
  %3 = arith.mulf %1, %2 : f32
  %4 = arith.addf %p, %3 : f32
  optim.yield %4 : f32
}

// -----

// A row reduction of a value of another type than the rule's.
optim.rule @mixed(%p: f32, %g: f32, %t: i64) {
  %0 = arith.constant 2.0 : f64
  // expected-error @+1 {{'optim.tensor_reduce' op reduces a value of type 'f64' in a rule of element type 'f32'}}
  %1 = optim.tensor_reduce sum %0 row : f64
  %2 = arith.truncf %1 : f64 to f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}
