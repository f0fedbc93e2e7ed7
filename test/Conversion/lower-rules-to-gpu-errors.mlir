// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file -verify-diagnostics
// RUN: not optim-opt %s --optim-lower-rules-to-gpu=vector-bits=96 --split-input-file 2>&1 | FileCheck %s --check-prefix=BITS
// BITS: error: vector-bits must be 32, 64 or 128

// expected-error @+1 {{'optim.rule' op has the vector state 'h': the GPU code generator supports vector states in learned rules (rules with weights) only}}
optim.rule @product(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  %0 = vector.broadcast %g : f32 to vector<2xf32>
  %1 = arith.mulf %h, %0 : vector<2xf32>
  %2 = vector.reduction <add>, %1 : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, vector<2xf32>
}

// -----

optim.rule @scaled(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'vector.broadcast' op cannot be computed per coordinate by the GPU code generator yet}}
  %0 = vector.broadcast %g : f32 to vector<2xf32>
  %1 = vector.reduction <add>, %0 : vector<2xf32> into f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}


// -----

// Weights live in shared memory: 48 KiB at most (here 13,000 f32).
// expected-error @+1 {{'optim.rule' op has 52000 bytes of weights: the GPU code generator keeps them in shared memory, at most 49152 bytes}}
optim.rule @huge(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x13000xf32>) {
  %0 = vector.broadcast %g : f32 to vector<12999xf32>
  %1 = optim.linear %0, %w : vector<12999xf32>, tensor<1x13000xf32> -> f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}

// -----

// The two passes over memory of a rule with tensor reductions exist on the
// CPU only.
optim.rule @lars(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  // expected-error @+1 {{'optim.tensor_reduce' op tensor reductions are not supported by the CUDA code generator yet}}
  %0 = optim.tensor_reduce norm %p : f32
  %1 = optim.tensor_reduce norm %g : f32
  %2 = arith.divf %0, %1 : f32
  %3 = arith.mulf %lr, %2 : f32
  %4 = arith.mulf %3, %g : f32
  %5 = arith.subf %p, %4 : f32
  optim.yield %5 : f32
}
