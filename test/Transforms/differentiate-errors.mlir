// RUN: optim-opt %s --optim-differentiate --split-input-file -verify-diagnostics

// An op the language never produces has no derivative rule.
optim.rule @sine(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'math.sin' op cannot be differentiated yet}}
  %0 = math.sin %g : f32
  %1 = arith.addf %p, %0 : f32
  optim.yield %1 : f32
}

// -----

// Only additive reductions (sum, mean, dot) are differentiated.
optim.rule @product(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  // expected-error @+1 {{'vector.reduction' op cannot be differentiated yet}}
  %0 = vector.reduction <mul>, %h : vector<2xf32> into f32
  %1 = arith.addf %p, %0 : f32
  optim.yield %1, %h : f32, vector<2xf32>
}

// -----

optim.rule @dynamic(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  %i = arith.constant 1 : index
  // expected-error @+1 {{'vector.extract' op cannot be differentiated yet}}
  %0 = vector.extract %h[%i] : f32 from vector<2xf32>
  %1 = arith.addf %p, %0 : f32
  optim.yield %1, %h : f32, vector<2xf32>
}

// -----

// The adjoint of a tensor-wide reduction is not per coordinate.
optim.rule @normalized(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op cannot be differentiated: the reverse mode of tensor reductions is not implemented}}
  %0 = optim.tensor_reduce norm %g : f32
  %1 = arith.divf %g, %0 : f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2 : f32
}
