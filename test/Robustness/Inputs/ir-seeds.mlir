// Hand-written optim-dialect programs that the front end never emits, for
// test/Robustness/mangled-ir.test (mangle-ir.py): each one, and each mutant
// of it, is refused by the verifier with a located error or passes every
// pass of optim-opt cleanly. One program per split.

// A rule without hyperparameters or state that ignores p.
optim.rule @nostate(%p: f32, %g: f32, %t: i64) {
  optim.yield %g : f32
}

// -----

// f64, one state, no hyperparameter.
optim.rule @r(%p: f64, %g: f64, %t: i64) state(%m: f64 = 0.0) {
  %0 = arith.addf %m, %g : f64
  %1 = arith.subf %p, %0 : f64
  optim.yield %1, %0 : f64, f64
}

// -----

// Size-1 vector states, a scalar LSTM input, a 1-output head.
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<1xf32> = 0.0, %c: vector<1xf32> = 0.0) weights(%w: tensor<4x3xf32>, %o: tensor<1x2xf32>) {
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<1xf32>, tensor<4x3xf32>
  %y = optim.linear %h2, %o : vector<1xf32>, tensor<1x2xf32> -> f32
  %n = arith.subf %p, %y : f32
  optim.yield %n, %h2, %c2 : f32, vector<1xf32>, vector<1xf32>
}

// -----

// A vector state passed through unchanged.
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<3xf32> = 1.0) {
  optim.yield %p, %h : f32, vector<3xf32>
}

// -----

// A linear map from a scalar to a vector state.
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<3xf32> = 0.0) weights(%w: tensor<3x2xf32>) {
  %y = optim.linear %g, %w : f32, tensor<3x2xf32> -> vector<3xf32>
  optim.yield %p, %y : f32, vector<3xf32>
}

// -----

// linear to vector<1> and back to a scalar.
optim.rule @r(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x2xf32>) {
  %y = optim.linear %g, %w : f32, tensor<1x2xf32> -> vector<1xf32>
  %z = optim.linear %y, %w : vector<1xf32>, tensor<1x2xf32> -> f32
  optim.yield %z : f32
}

// -----

// log_sign results unused, one with p as k.
optim.rule @r(%p: f32, %g: f32, %t: i64) hyper(%k: f32 = 10.0) {
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %1 = optim.log_sign %p, %g : f32 -> vector<2xf32>
  optim.yield %p : f32
}

// -----

// log_sign of a constant (folded) feeding a linear map.
optim.rule @r(%p: f32, %g: f32, %t: i64) hyper(%k: f32 = 10.0 const) weights(%w: tensor<1x3xf32>) {
  %c = arith.constant 0.5 : f32
  %0 = optim.log_sign %c, %k : f32 -> vector<2xf32>
  %y = optim.linear %0, %w : vector<2xf32>, tensor<1x3xf32> -> f32
  optim.yield %y : f32
}

// -----

// An LSTM cell whose results are unused.
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<2xf32>, tensor<8x4xf32>
  optim.yield %p, %h, %c : f32, vector<2xf32>, vector<2xf32>
}

// -----

// Weights of rank 3, 1 and 0, unused.
optim.rule @r(%p: f32, %g: f32, %t: i64) weights(%w: tensor<2x3x4xf32>, %v: tensor<0xf32>, %s: tensor<f32>) {
  optim.yield %p : f32
}

// -----

// optim ops in a func.func, outside any rule.
func.func @f(%g: f32, %k: f32, %h: vector<2xf32>, %c: vector<2xf32>, %w: tensor<8x4xf32>) -> vector<2xf32> {
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<2xf32>, tensor<8x4xf32>
  %e = optim.eye : tensor<3x3xf32>
  return %h2 : vector<2xf32>
}

// -----

// Per-coordinate ops in a step function of a rule (valid IR that only
// optim-lower-vjp-to-kernels, with the rule's VJP function, would lower).
func.func @optim_step_f(%g: f32, %k: f32, %h: vector<2xf32>, %c: vector<2xf32>, %w: tensor<8x5xf32>) -> vector<2xf32> attributes {optim.step_of = @f} {
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %h2, %c2 = optim.lstm_cell %0, %h, %c, %w : vector<2xf32>, vector<2xf32>, tensor<8x5xf32>
  return %h2 : vector<2xf32>
}

// -----

// A rule in a nested module, which no lowering takes (a lone top-level
// module is the module itself).
module {
  module {
    optim.rule @nested(%p: f32, %g: f32, %t: i64) {
      optim.yield %g : f32
    }
  }
}

// -----

// An f16 layer (the lowerings take f32 and f64 only).
optim.layer @l inputs(%y: tensor<3xf16>) -> (z: tensor<3xf16>) {
  %Q = optim.eye : tensor<3x3xf16>
  %q = arith.negf %y : tensor<3xf16>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<3x3xf16>) q(%q : tensor<3xf16>) -> tensor<3xf16>, tensor<0xf16>, tensor<0xf16>
  optim.return %z : tensor<3xf16>
}

// -----

// A bf16 LP.
optim.layer @l inputs(%y: tensor<3xbf16>) -> (z: tensor<3xbf16>) {
  %q = arith.negf %y : tensor<3xbf16>
  %z, %nu, %lam = optim.qp q(%q : tensor<3xbf16>) -> tensor<3xbf16>, tensor<0xbf16>, tensor<0xbf16>
  optim.return %z : tensor<3xbf16>
}

// -----

// An LP: no Q, q = h = y, lam returned.
optim.layer @l inputs(%y: tensor<1xf32>) -> (z: tensor<1xf32>, lam: tensor<1xf32>) {
  %G = optim.eye : tensor<1x1xf32>
  %z, %nu, %lam = optim.qp q(%y : tensor<1xf32>) ineq(%G, %y : tensor<1x1xf32>, tensor<1xf32>) -> tensor<1xf32>, tensor<0xf32>, tensor<1xf32>
  optim.return %z, %lam : tensor<1xf32>, tensor<1xf32>
}

// -----

// q = h = y.
optim.layer @l inputs(%y: tensor<1xf32>) -> (z: tensor<1xf32>) {
  %G = optim.eye : tensor<1x1xf32>
  %z, %nu, %lam = optim.qp q(%y : tensor<1xf32>) ineq(%G, %y : tensor<1x1xf32>, tensor<1xf32>) -> tensor<1xf32>, tensor<0xf32>, tensor<1xf32>
  optim.return %z : tensor<1xf32>
}

// -----

// Q = A = I, q = b = y.
optim.layer @l inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %Q = optim.eye : tensor<2x2xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<2x2xf32>) q(%y : tensor<2xf32>) eq(%Q, %y : tensor<2x2xf32>, tensor<2xf32>) -> tensor<2xf32>, tensor<2xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

// A layer that returns its input and solves no qp.
optim.layer @l inputs(%y: tensor<3xf32>) -> (z: tensor<3xf32>) {
  optim.return %y : tensor<3xf32>
}

// -----

// Two qps in one layer.
optim.layer @l inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>, w: tensor<2xf32>) {
  %z, %nu, %lam = optim.qp q(%y : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  %w, %nu2, %lam2 = optim.qp q(%z : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z, %w : tensor<2xf32>, tensor<2xf32>
}

// -----

// A matrix input squared elementwise into Q, a rank-0 weight.
optim.layer @l inputs(%y: tensor<2x2xf32>) weights(%s: tensor<f32>) -> (z: tensor<2xf32>) {
  %Q = arith.mulf %y, %y : tensor<2x2xf32>
  %q = arith.constant dense<1.0> : tensor<2xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<2x2xf32>) q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

// A layer without inputs or weights.
optim.layer @l -> (z: tensor<2xf32>) {
  %q = arith.constant dense<1.0> : tensor<2xf32>
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

// An f64 input and f32 weights.
optim.layer @l inputs(%y: tensor<2xf64>) weights(%w: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %q = arith.negf %w : tensor<2xf32>
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

// The equality duals as the only output.
optim.layer @l inputs(%y: tensor<2xf32>) -> (nu: tensor<1xf32>) {
  %A = arith.constant dense<1.0> : tensor<1x2xf32>
  %b = arith.constant dense<1.0> : tensor<1xf32>
  %z, %nu, %lam = optim.qp q(%y : tensor<2xf32>) eq(%A, %b : tensor<1x2xf32>, tensor<1xf32>) -> tensor<2xf32>, tensor<1xf32>, tensor<0xf32>
  optim.return %nu : tensor<1xf32>
}

// -----

// Two rules and a layer in one module.
optim.rule @r(%p: f32, %g: f32, %t: i64) {
  optim.yield %p : f32
}
optim.rule @r2(%p: f32, %g: f32, %t: i64) {
  optim.yield %p : f32
}
optim.layer @l inputs(%y: tensor<1xf32>) -> (z: tensor<1xf32>) {
  %z, %nu, %lam = optim.qp q(%y : tensor<1xf32>) -> tensor<1xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<1xf32>
}

// -----

// scf.if in a rule body.
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0) {
  %c = arith.cmpf ogt, %g, %m : f32
  %r = scf.if %c -> f32 {
    scf.yield %g : f32
  } else {
    scf.yield %m : f32
  }
  optim.yield %r, %r : f32, f32
}

// -----

// vector ops on a vector state of a non-learned rule.
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0) {
  %b = vector.broadcast %g : f32 to vector<4xf32>
  %s = arith.addf %h, %b : vector<4xf32>
  %e = vector.extract %s[2] : f32 from vector<4xf32>
  %r = vector.reduction <add>, %s : vector<4xf32> into f32
  %n = arith.addf %p, %r : f32
  %m = arith.addf %n, %e : f32
  optim.yield %m, %s : f32, vector<4xf32>
}

// -----

// tensor.extract of a weight in a rule body.
optim.rule @r(%p: f32, %g: f32, %t: i64) weights(%w: tensor<2x3xf32>) {
  %c0 = arith.constant 0 : index
  %e = tensor.extract %w[%c0, %c0] : tensor<2x3xf32>
  %n = arith.mulf %p, %e : f32
  optim.yield %n : f32
}

// -----

// Yields a hyperparameter and swapped states.
optim.rule @r(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.5) state(%a: f32 = 0.0, %b: f32 = 1.0) {
  optim.yield %lr, %b, %a : f32, f32, f32
}

// -----

// Dead arithmetic.
optim.rule @r(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.5) {
  %0 = arith.mulf %g, %g : f32
  %1 = math.sqrt %0 : f32
  %2 = math.exp %1 : f32
  optim.yield %p : f32
}

// -----

// An LSTM of 2^62 hidden units (the verifier refuses it).
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<4611686018427387904xf32> = 0.0, %c: vector<4611686018427387904xf32> = 0.0) weights(%w: tensor<1x1xf32>) {
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<4611686018427387904xf32>, tensor<1x1xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4611686018427387904xf32>, vector<4611686018427387904xf32>
}


// -----

// A linear map from 2^63 - 1 inputs (refused), in a step function.
func.func @f(%x: vector<9223372036854775807xf32>, %w: tensor<1x2xf32>) -> f32 attributes {optim.step_of = @r} {
  %y = optim.linear %x, %w : vector<9223372036854775807xf32>, tensor<1x2xf32> -> f32
  return %y : f32
}


// -----

// A vector state of 2^31 values (refused).
optim.rule @r(%p: f32, %g: f32, %t: i64) state(%h: vector<2147483648xf32> = 0.0) {
  optim.yield %p, %h : f32, vector<2147483648xf32>
}


// -----

// A layer of 2^62 variables (refused).
optim.layer @huge inputs(%y: tensor<4611686018427387904xf32>) -> (z: tensor<4611686018427387904xf32>) {
  %z, %nu, %lam = optim.qp q(%y : tensor<4611686018427387904xf32>) -> tensor<4611686018427387904xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<4611686018427387904xf32>
}
