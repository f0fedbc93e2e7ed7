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

// The new h goes to state h as it is computed, but the old h is read later.
optim.rule @reread(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  // expected-error @+1 {{'optim.lstm_cell' op result h must be the new value of a state that no later operation reads the old value of: the GPU code generator writes it there as it is computed}}
  %h_out, %c_out = optim.lstm_cell %0, %h, %c, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %1 = vector.reduction <add>, %h : vector<2xf32> into f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2, %h_out, %c_out : f32, vector<2xf32>, vector<2xf32>
}

// -----

// The new c is changed before it goes to a state (a clipped c): it has no
// state to be written to as it is computed.
optim.rule @notfinal(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  %lo = arith.constant dense<-0.5> : vector<2xf32>
  // expected-error @+1 {{'optim.lstm_cell' op result c is not the final value of a state: the GPU code generator writes an LSTM cell's results straight to their states, so each must be assigned to a state that nothing changes afterwards}}
  %h_out, %c_out = optim.lstm_cell %0, %h, %c, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %1 = arith.maximumf %c_out, %lo : vector<2xf32>
  %2 = vector.reduction <add>, %h_out : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %h_out, %1 : f32, vector<2xf32>, vector<2xf32>
}

// -----

// c must come from memory (a state), where each hidden unit reads its own.
optim.rule @cinreg(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  %1 = vector.broadcast %g : f32 to vector<2xf32>
  // expected-error @+1 {{'optim.lstm_cell' op reads c from a value that is not in a state: not supported by the GPU code generator yet}}
  %h_out, %c_out = optim.lstm_cell %0, %h, %1, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %2 = vector.reduction <add>, %h_out : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %h_out, %c_out : f32, vector<2xf32>, vector<2xf32>
}
