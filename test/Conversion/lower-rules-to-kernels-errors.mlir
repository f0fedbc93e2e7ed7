// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file -verify-diagnostics

// expected-error @+1 {{'optim.rule' op state 'h' is a vector: CPU code generation of vector states is not implemented yet}}
optim.rule @vec(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0) {
  optim.yield %p, %h : f32, vector<4xf32>
}

// -----

// expected-error @+1 {{'optim.rule' op has learned weights: CPU code generation of learned rules is not implemented yet}}
optim.rule @learned(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x2xf32>) {
  %0 = optim.linear %g, %w : f32, tensor<1x2xf32> -> f32
  optim.yield %0 : f32
}

// -----

optim.rule @logsign(%p: f32, %g: f32, %t: i64) hyper(%k: f32 = 10.0) {
  // expected-error @+1 {{'optim.log_sign' op cannot be computed per coordinate by the CPU code generator yet}}
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %1 = vector.extract %0[0] : f32 from vector<2xf32>
  optim.yield %1 : f32
}
