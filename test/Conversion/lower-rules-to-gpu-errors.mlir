// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file -verify-diagnostics
// RUN: not optim-opt %s --optim-lower-rules-to-gpu=vector-bits=96 --split-input-file 2>&1 | FileCheck %s --check-prefix=BITS
// BITS: error: vector-bits must be 32, 64 or 128

// Weights live in shared memory: 48 KiB at most (here 13,000 f32).
// expected-error @+1 {{learned rule 'huge' has 52000 bytes of weights: the GPU code generator keeps them in shared memory, at most 49152 bytes}}
optim.rule @huge(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x13000xf32>) {
  %0 = vector.broadcast %g : f32 to vector<12999xf32>
  %1 = optim.linear %0, %w : vector<12999xf32>, tensor<1x13000xf32> -> f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}

// -----

// The padding counts: every weights tensor starts at a multiple of 4
// elements (16 bytes) of the shared copy. 2 + 12,286 f32 would be 49,152
// bytes; %b starts at element 4, so the copy takes 49,160.
// expected-error @+1 {{learned rule 'padded' has 49160 bytes of weights: the GPU code generator keeps them in shared memory, at most 49152 bytes}}
optim.rule @padded(%p: f32, %g: f32, %t: i64) weights(%a: tensor<1x2xf32>, %b: tensor<1x12286xf32>) {
  %0 = optim.linear %g, %a : f32, tensor<1x2xf32> -> f32
  %1 = vector.broadcast %0 : f32 to vector<12285xf32>
  %2 = optim.linear %1, %b : vector<12285xf32>, tensor<1x12286xf32> -> f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}

// -----

// The learned kernel has no per-chunk values.
optim.rule @learned(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x3xf32>) {
  // expected-error @+1 {{learned rule 'learned' reduces over tensors (tensor_*/global_*), which the CUDA code generator does not do for learned rules; use --target=cpu}}
  %0 = optim.tensor_reduce norm %p : f32
  %1 = vector.broadcast %g : f32 to vector<2xf32>
  %2 = optim.linear %1, %w : vector<2xf32>, tensor<1x3xf32> -> f32
  %3 = arith.mulf %0, %2 : f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4 : f32
}
