// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file -verify-diagnostics

// The result of a learned op is not reduced.
optim.rule @learned(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>, %head: tensor<1x3xf32>) {
  %x = vector.broadcast %g : f32 to vector<1xf32>
  %h2, %c2 = optim.lstm_cell %x, %h, %c, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  // expected-note @+1 {{computed here}}
  %y = optim.linear %h2, %head : vector<2xf32>, tensor<1x3xf32> -> f32
  // expected-error @+1 {{'optim.tensor_reduce' op reduces a value computed by 'optim.linear': the CPU code generator does not reduce the results of learned ops}}
  %n = optim.tensor_reduce norm %y : f32
  %0 = arith.divf %y, %n : f32
  %1 = arith.addf %p, %0 : f32
  optim.yield %1, %h2, %c2 : f32, vector<2xf32>, vector<2xf32>
}

// -----

// The reduced value has the rule's element type.
optim.rule @wide(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %0 = arith.extf %lr : f32 to f64
  // expected-error @+1 {{'optim.tensor_reduce' op reduces a value of type 'f64' in a rule of element type 'f32'}}
  %1 = optim.tensor_reduce sum %0 : f64
  %2 = arith.truncf %1 : f64 to f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}
