// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file -verify-diagnostics




optim.rule @product(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 1.0) {
  %0 = vector.broadcast %g : f32 to vector<2xf32>
  %1 = arith.mulf %h, %0 : vector<2xf32>
  // expected-error @+1 {{'vector.reduction' op cannot be computed per coordinate by the CPU code generator yet}}
  %2 = vector.reduction <mul>, %1 : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, vector<2xf32>
}
