// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file -verify-diagnostics
// RUN: not optim-opt %s --optim-lower-rules-to-gpu=vector-bits=96 --split-input-file 2>&1 | FileCheck %s --check-prefix=BITS
// BITS: error: vector-bits must be 32, 64 or 128

// expected-error @+1 {{'optim.rule' op has the vector state 'h': the GPU code generator supports scalar states only (learned rules are not compiled for GPUs yet)}}
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

