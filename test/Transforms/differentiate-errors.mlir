// RUN: optim-opt %s --optim-differentiate --split-input-file -verify-diagnostics

// An op the language never produces has no derivative rule.
optim.rule @erf(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'math.erf' op cannot be differentiated yet}}
  %0 = math.erf %g : f32
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

// The reduced values are arguments of the rule's element type.
optim.rule @wide(%p: f32, %g: f32, %t: i64) {
  %0 = arith.constant 2.0 : f64
  // expected-error @+1 {{'optim.tensor_reduce' op cannot be differentiated: it reduces a value of type 'f64' in a rule of element type 'f32'}}
  %1 = optim.tensor_reduce sum %0 : f64
  %2 = arith.truncf %1 : f64 to f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}
