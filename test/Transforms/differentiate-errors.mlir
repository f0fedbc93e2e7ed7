// RUN: optim-opt %s --optim-differentiate --split-input-file -verify-diagnostics

// expected-error @+1 {{'optim.rule' op has learned weights: differentiating learned rules is not implemented yet}}
optim.rule @learned(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x2xf32>) {
  %0 = optim.linear %g, %w : f32, tensor<1x2xf32> -> f32
  optim.yield %0 : f32
}

// -----

// expected-error @+1 {{'optim.rule' op state 'h' is a vector: differentiating vector states is not implemented yet}}
optim.rule @vec(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
  optim.yield %p, %h : f32, vector<2xf32>
}
