// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file -verify-diagnostics




optim.rule @product(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  %0 = vector.broadcast %g : f32 to vector<2xf32>
  %1 = arith.mulf %h, %0 : vector<2xf32>
  // expected-error @+1 {{'vector.reduction' op cannot be computed per coordinate by the CPU code generator yet}}
  %2 = vector.reduction <mul>, %1 : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, vector<2xf32>
}

// -----

// A broadcast of a vector is not a per-coordinate scalar spread over the
// components: refused, not lowered as a broadcast of its first component.
optim.rule @spread(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  // expected-error @+1 {{'vector.broadcast' op cannot be computed per coordinate by the CPU code generator yet}}
  %0 = vector.broadcast %h : vector<2xf32> to vector<2xf32>
  %1 = vector.reduction <add>, %0 : vector<2xf32> into f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2, %h : f32, vector<2xf32>
}

// -----

// vector.insert and vector.from_elements only move components: lowered.
optim.rule @assemble(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  %0 = vector.from_elements %g, %p : vector<2xf32>
  %1 = vector.insert %g, %0 [1] : f32 into vector<2xf32>
  %2 = arith.addf %h, %1 : vector<2xf32>
  %3 = vector.reduction <add>, %2 : vector<2xf32> into f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4, %2 : f32, vector<2xf32>
}

// -----

// A poison position (-1) is refused, not used as an index.
optim.rule @poison(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  // expected-error @+1 {{'vector.extract' op cannot be computed per coordinate by the CPU code generator yet}}
  %0 = vector.extract %h[-1] : f32 from vector<2xf32>
  %1 = arith.subf %p, %0 : f32
  optim.yield %1, %h : f32, vector<2xf32>
}
