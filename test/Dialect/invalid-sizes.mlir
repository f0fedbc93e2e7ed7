// Sizes beyond the language's limit (65536 per vector or tensor extent),
// which the verifiers reject before deriving weight shapes from them: 4 H
// and I + H + 1 overflowed int64_t (undefined behavior), the CPU lowering of
// a vector state of 2^31 values did not end, the GPU layer's workspace n * n
// overflowed.
// RUN: optim-opt %s -split-input-file -verify-diagnostics

// (Per-coordinate ops in step and VJP functions of a rule, which optim-differentiate marks.)
func.func @lstm_huge(%x: f32, %h: vector<4611686018427387904xf32>, %w: tensor<1x1xf32>) attributes {optim.step_of = @r} {
  // expected-error @+1 {{per-coordinate vectors have at most 65536 values, got 'vector<4611686018427387904xf32>'}}
  %h2, %c2 = optim.lstm_cell %x, %h, %h, %w : f32, vector<4611686018427387904xf32>, tensor<1x1xf32>
  return
}

// -----

func.func @linear_huge(%x: vector<9223372036854775807xf32>, %w: tensor<1x2xf32>) attributes {optim.step_of = @r} {
  // expected-error @+1 {{per-coordinate vectors have at most 65536 values}}
  %y = optim.linear %x, %w : vector<9223372036854775807xf32>, tensor<1x2xf32> -> f32
  return
}

// -----

func.func @lstm_vjp_huge(%x: f32, %h: vector<65537xf32>, %w: tensor<1x1xf32>) attributes {optim.vjp_of = @r} {
  // expected-error @+1 {{per-coordinate vectors have at most 65536 values}}
  %dx, %dh, %dc, %dw = optim.lstm_cell_vjp %x, %h, %h, %w, %h, %h : f32, vector<65537xf32>, tensor<1x1xf32>
  return
}

// -----

func.func @linear_vjp_huge(%x: f32, %w: tensor<1x2xf32>, %dy: vector<65537xf32>) attributes {optim.vjp_of = @r} {
  // expected-error @+1 {{per-coordinate vectors have at most 65536 values}}
  %dx, %dw = optim.linear_vjp %x, %w, %dy : f32, tensor<1x2xf32>, vector<65537xf32>
  return
}

// -----

// expected-error @+1 {{per-coordinate vectors have at most 65536 values, got 'vector<2147483648xf32>'}}
optim.rule @huge_state(%p: f32, %g: f32, %t: i64) state(%h: vector<2147483648xf32> = 0.0) {
  optim.yield %p, %h : f32, vector<2147483648xf32>
}

// -----

optim.rule @huge_broadcast(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{per-coordinate vectors have at most 65536 values}}
  %v = vector.broadcast %g : f32 to vector<100000xf32>
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{weights 'w' have more than 1099511627776 elements}}
optim.rule @huge_weights(%p: f32, %g: f32, %t: i64) weights(%w: tensor<4611686018427387904x4xf32>) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{tensor extents are at most 65536, got 'tensor<4611686018427387904xf32>'}}
optim.layer @huge_input inputs(%y: tensor<4611686018427387904xf32>) -> (z: tensor<4611686018427387904xf32>) {
  %z, %nu, %lam = optim.qp q(%y : tensor<4611686018427387904xf32>) -> tensor<4611686018427387904xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<4611686018427387904xf32>
}

// -----

optim.layer @huge_constant inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{tensor extents in a layer are at most 65536, got 'tensor<2x70000xf32>'}}
  %G = arith.constant dense<1.0> : tensor<2x70000xf32>
  %z, %nu, %lam = optim.qp q(%y : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}
