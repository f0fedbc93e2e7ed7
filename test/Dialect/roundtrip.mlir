// Round trip of every op of the optim dialect through the custom assembly
// and through the generic form.
// RUN: optim-opt %s | optim-opt | FileCheck %s
// RUN: optim-opt %s --mlir-print-op-generic | optim-opt | FileCheck %s
// RUN: optim-opt %s --mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

//===----------------------------------------------------------------------===//
// optim.rule, optim.yield
//===----------------------------------------------------------------------===//

// A rule with no hyperparameter, state or weights.
// CHECK-LABEL: optim.rule @bare(%p: f32, %g: f32, %t: i64) {
// CHECK-NEXT:    %[[NEW:.*]] = arith.subf %p, %g : f32
// CHECK-NEXT:    optim.yield %[[NEW]] : f32
// CHECK-NEXT:  }
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "bare", weight_names = []}>
// GENERIC: ^bb0(%{{.*}}: f32, %{{.*}}: f32, %{{.*}}: i64):
// GENERIC: "optim.yield"(%{{.*}}) : (f32) -> ()
optim.rule @bare(%p: f32, %g: f32, %t: i64) {
  %0 = arith.subf %p, %g : f32
  optim.yield %0 : f32
}

// The names of the built-in arguments are not part of the op: they print as
// p, g and t whatever the source called them.
// CHECK-LABEL: optim.rule @renamed(%p: f64, %g: f64, %t: i64) {
// CHECK-NEXT:    %[[STEP:.*]] = arith.sitofp %t : i64 to f64
// CHECK-NEXT:    %[[A:.*]] = arith.mulf %g, %[[STEP]] : f64
// CHECK-NEXT:    %[[B:.*]] = arith.subf %p, %[[A]] : f64
// CHECK-NEXT:    optim.yield %[[B]] : f64
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "renamed", weight_names = []}>
optim.rule @renamed(%param: f64, %grad: f64, %step: i64) {
  %0 = arith.sitofp %step : i64 to f64
  %1 = arith.mulf %grad, %0 : f64
  %2 = arith.subf %param, %1 : f64
  optim.yield %2 : f64
}

// Hyperparameters only, one of them const; defaults must come back exactly.
// CHECK-LABEL: optim.rule @sgd(%p: f32, %g: f32, %t: i64)
// CHECK-SAME: hyper(%lr: f32 = 0.01, %wd: f32 = 0.0001 const) {
// CHECK:        arith.mulf %wd, %p : f32
// CHECK:        arith.mulf %lr, %{{.*}} : f32
// CHECK:        optim.yield %{{.*}} : f32
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1: false, true>, hyper_defaults = array<f64: 1.000000e-02, 1.000000e-04>, hyper_names = ["lr", "wd"], state_inits = array<f64>, state_names = [], sym_name = "sgd", weight_names = []}>
optim.rule @sgd(%p: f32, %g: f32, %t: i64)
    hyper(%lr: f32 = 0.01, %wd: f32 = 1.0e-4 const) {
  %0 = arith.mulf %wd, %p : f32
  %1 = arith.addf %g, %0 : f32
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3 : f32
}

// Defaults that have no short exact decimal in binary: the printer writes the
// shortest decimal that reads back as the same double (0.999, not
// 0.99899999999999999), negative values, tiny values, zero of either sign, a
// subnormal and the largest double (in an f64 rule).
// CHECK-LABEL: optim.rule @defaults(%p: f64, %g: f64, %t: i64)
// CHECK-SAME: hyper(%a: f64 = 0.999, %b: f64 = 1.0e-08, %c: f64 = -0.5 const,
// CHECK-SAME: %d: f64 = 0.30000000000000004, %e: f64 = -1.0e-12, %f: f64 = 0.0,
// CHECK-SAME: %h: f64 = -0.0, %i: f64 = 5.0e-324, %j: f64 = 1.7976931348623157e+308,
// CHECK-SAME: %k: f64 = 1.0e+01 const, %l: f64 = 3.0)
// CHECK-SAME: state(%m: f64 = -2.5, %n: f64 = 1.0e-30)
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1: false, false, true, false, false, false, false, false, false, true, false>, hyper_defaults = array<f64: 0.99899999999999999, 1.000000e-08, -5.000000e-01, 0.30000000000000004, -9.9999999999999998E-13, 0.000000e+00, -0.000000e+00, 4.940660e-324, 1.7976931348623157E+308, 1.000000e+01, 3.000000e+00>, hyper_names = ["a", "b", "c", "d", "e", "f", "h", "i", "j", "k", "l"], state_inits = array<f64: -2.500000e+00, 1.000000e-30>, state_names = ["m", "n"], sym_name = "defaults", weight_names = []}>
optim.rule @defaults(%p: f64, %g: f64, %t: i64)
    hyper(%a: f64 = 0.999, %b: f64 = 1.0e-8, %c: f64 = -0.5 const,
          %d: f64 = 0.30000000000000004, %e: f64 = -1.0e-12, %f: f64 = 0.0,
          %h: f64 = -0.0, %i: f64 = 4.9406564584124654e-324,
          %j: f64 = 1.7976931348623157e+308, %k: f64 = 10.0 const,
          %l: f64 = 3.0)
    state(%m: f64 = -2.5, %n: f64 = 1.0e-30) {
  optim.yield %p, %m, %n : f64, f64, f64
}

// State only: no hyper(...) clause.
// CHECK-LABEL: optim.rule @state_only(%p: f32, %g: f32, %t: i64) state(%s: f32 = 0.0) {
// CHECK-NEXT:    %[[S:.*]] = arith.addf %s, %g : f32
// CHECK-NEXT:    optim.yield %p, %[[S]] : f32, f32
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64: 0.000000e+00>, state_names = ["s"], sym_name = "state_only", weight_names = []}>
optim.rule @state_only(%p: f32, %g: f32, %t: i64) state(%s: f32 = 0.0) {
  %0 = arith.addf %s, %g : f32
  optim.yield %p, %0 : f32, f32
}

// The example of the op's documentation.
// CHECK-LABEL: optim.rule @momentum(%p: f32, %g: f32, %t: i64)
// CHECK-SAME: hyper(%lr: f32 = 0.01, %mu: f32 = 0.9) state(%buf: f32 = 0.0) {
// CHECK-NEXT:    %[[A:.*]] = arith.mulf %mu, %buf : f32
// CHECK-NEXT:    %[[B:.*]] = arith.addf %[[A]], %g : f32
// CHECK-NEXT:    %[[C:.*]] = arith.mulf %lr, %[[B]] : f32
// CHECK-NEXT:    %[[D:.*]] = arith.subf %p, %[[C]] : f32
// CHECK-NEXT:    optim.yield %[[D]], %[[B]] : f32, f32
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1: false, false>, hyper_defaults = array<f64: 1.000000e-02, 9.000000e-01>, hyper_names = ["lr", "mu"], state_inits = array<f64: 0.000000e+00>, state_names = ["buf"], sym_name = "momentum", weight_names = []}>
optim.rule @momentum(%p: f32, %g: f32, %t: i64)
    hyper(%lr: f32 = 1.000000e-02, %mu: f32 = 9.000000e-01)
    state(%buf: f32 = 0.000000e+00) {
  %0 = arith.mulf %mu, %buf : f32
  %1 = arith.addf %0, %g : f32
  %2 = arith.mulf %lr, %1 : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %1 : f32, f32
}

// Vector states, with nonzero initial values, next to a scalar one.
// CHECK-LABEL: optim.rule @vector_state(%p: f32, %g: f32, %t: i64)
// CHECK-SAME: state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = -1.0, %n: f32 = 0.5) {
// CHECK:        vector.broadcast %g : f32 to vector<4xf32>
// CHECK:        optim.yield %p, %{{.*}}, %c, %n : f32, vector<4xf32>, vector<4xf32>, f32
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64: 0.000000e+00, -1.000000e+00, 5.000000e-01>, state_names = ["h", "c", "n"], sym_name = "vector_state", weight_names = []}>
// GENERIC: "optim.yield"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (f32, vector<4xf32>, vector<4xf32>, f32) -> ()
optim.rule @vector_state(%p: f32, %g: f32, %t: i64)
    state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = -1.0, %n: f32 = 0.5) {
  %0 = vector.broadcast %g : f32 to vector<4xf32>
  %1 = arith.addf %h, %0 : vector<4xf32>
  optim.yield %p, %1, %c, %n : f32, vector<4xf32>, vector<4xf32>, f32
}

// Per-coordinate inputs (`input h, z` in the language): the last block
// arguments, after the states (and weights); `input(...)` is printed only
// when there are some. Sophia's update with the Hessian estimate %h.
// CHECK-LABEL: optim.rule @sophia(%p: f32, %g: f32, %t: i64)
// CHECK-SAME: hyper(%lr: f32 = 0.0001, %rho: f32 = 0.04)
// CHECK-SAME: state(%m: f32 = 0.0, %hh: f32 = 0.0) input(%h: f32, %z: f32) {
// CHECK-NEXT:    %[[HH:.*]] = arith.addf %hh, %h : f32
// CHECK-NEXT:    %[[D:.*]] = arith.mulf %rho, %[[HH]] : f32
// CHECK-NEXT:    %[[U:.*]] = arith.divf %m, %[[D]] : f32
// CHECK-NEXT:    %[[S:.*]] = arith.mulf %lr, %[[U]] : f32
// CHECK-NEXT:    %[[N:.*]] = arith.addf %[[S]], %z : f32
// CHECK-NEXT:    %[[NEW:.*]] = arith.subf %p, %[[N]] : f32
// CHECK-NEXT:    optim.yield %[[NEW]], %g, %[[HH]] : f32, f32, f32
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1: false, false>, hyper_defaults = array<f64: 1.000000e-04, 4.000000e-02>, hyper_names = ["lr", "rho"], input_names = ["h", "z"], state_inits = array<f64: 0.000000e+00, 0.000000e+00>, state_names = ["m", "hh"], sym_name = "sophia", weight_names = []}>
// GENERIC: ^bb0(%{{.*}}: f32, %{{.*}}: f32, %{{.*}}: i64, %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32):
optim.rule @sophia(%p: f32, %g: f32, %t: i64)
    hyper(%lr: f32 = 1.0e-4, %rho: f32 = 0.04)
    state(%m: f32 = 0.0, %hh: f32 = 0.0) input(%h: f32, %z: f32) {
  %0 = arith.addf %hh, %h : f32
  %1 = arith.mulf %rho, %0 : f32
  %2 = arith.divf %m, %1 : f32
  %3 = arith.mulf %lr, %2 : f32
  %4 = arith.addf %3, %z : f32
  %5 = arith.subf %p, %4 : f32
  optim.yield %5, %g, %0 : f32, f32, f32
}

// Inputs after weights, in an f64 learned rule.
// CHECK-LABEL: optim.rule @learned_input(%p: f64, %g: f64, %t: i64) weights(%w: tensor<1x2xf64>) input(%h: f64) {
// CHECK-NEXT:    %[[Y:.*]] = optim.linear %h, %w : f64, tensor<1x2xf64> -> f64
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], input_names = ["h"], state_inits = array<f64>, state_names = [], sym_name = "learned_input", weight_names = ["w"]}>
optim.rule @learned_input(%p: f64, %g: f64, %t: i64) weights(%w: tensor<1x2xf64>) input(%h: f64) {
  %y = optim.linear %h, %w : f64, tensor<1x2xf64> -> f64
  %0 = arith.addf %p, %y : f64
  optim.yield %0 : f64
}

// A learned rule: hyperparameters (one const), vector states, weights, and
// every learned-rule op. The LSTM cell takes a vector input (the output of
// log_sign, then the hidden state of the first cell) and a scalar one; the
// linear map has a scalar and a vector result.
// CHECK-LABEL: optim.rule @learned(%p: f32, %g: f32, %t: i64)
// CHECK-SAME: hyper(%scale: f32 = 0.1, %k: f32 = 1.0e+01 const)
// CHECK-SAME: state(%h1: vector<3xf32> = 0.0, %c1: vector<3xf32> = 0.0, %h2: vector<2xf32> = 0.0, %c2: vector<2xf32> = 0.0)
// CHECK-SAME: weights(%cell1: tensor<12x6xf32>, %cell2: tensor<8x4xf32>, %head: tensor<1x4xf32>, %proj: tensor<2x2xf32>) {
// CHECK-NEXT:    %[[X:.*]] = optim.log_sign %g, %k : f32 -> vector<2xf32>
// CHECK-NEXT:    %[[H1:.*]], %[[C1:.*]] = optim.lstm_cell %[[X]], %h1, %c1, %cell1 : vector<2xf32>, vector<3xf32>, tensor<12x6xf32>
// CHECK-NEXT:    %[[H2:.*]], %[[C2:.*]] = optim.lstm_cell %g, %h2, %c2, %cell2 : f32, vector<2xf32>, tensor<8x4xf32>
// CHECK-NEXT:    %[[OUT:.*]] = optim.linear %[[H1]], %head : vector<3xf32>, tensor<1x4xf32> -> f32
// CHECK-NEXT:    %[[V:.*]] = optim.linear %g, %proj : f32, tensor<2x2xf32> -> vector<2xf32>
// CHECK-NEXT:    %[[STEP:.*]] = arith.mulf %scale, %[[OUT]] : f32
// CHECK-NEXT:    %[[NEW:.*]] = arith.addf %p, %[[STEP]] : f32
// CHECK-NEXT:    optim.yield %[[NEW]], %[[H1]], %[[C1]], %[[V]], %[[C2]] : f32, vector<3xf32>, vector<3xf32>, vector<2xf32>, vector<2xf32>
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1: false, true>, hyper_defaults = array<f64: 1.000000e-01, 1.000000e+01>, hyper_names = ["scale", "k"], state_inits = array<f64: 0.000000e+00, 0.000000e+00, 0.000000e+00, 0.000000e+00>, state_names = ["h1", "c1", "h2", "c2"], sym_name = "learned", weight_names = ["cell1", "cell2", "head", "proj"]}>
// GENERIC: {{.*}} = "optim.log_sign"(%{{.*}}, %{{.*}}) : (f32, f32) -> vector<2xf32>
// GENERIC: {{.*}} = "optim.lstm_cell"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (vector<2xf32>, vector<3xf32>, vector<3xf32>, tensor<12x6xf32>) -> (vector<3xf32>, vector<3xf32>)
// GENERIC: {{.*}} = "optim.lstm_cell"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (f32, vector<2xf32>, vector<2xf32>, tensor<8x4xf32>) -> (vector<2xf32>, vector<2xf32>)
// GENERIC: {{.*}} = "optim.linear"(%{{.*}}, %{{.*}}) : (vector<3xf32>, tensor<1x4xf32>) -> f32
// GENERIC: {{.*}} = "optim.linear"(%{{.*}}, %{{.*}}) : (f32, tensor<2x2xf32>) -> vector<2xf32>
// GENERIC: "optim.yield"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) : (f32, vector<3xf32>, vector<3xf32>, vector<2xf32>, vector<2xf32>) -> ()
optim.rule @learned(%p: f32, %g: f32, %t: i64)
    hyper(%scale: f32 = 0.1, %k: f32 = 10.0 const)
    state(%h1: vector<3xf32> = 0.0, %c1: vector<3xf32> = 0.0,
          %h2: vector<2xf32> = 0.0, %c2: vector<2xf32> = 0.0)
    weights(%cell1: tensor<12x6xf32>, %cell2: tensor<8x4xf32>,
            %head: tensor<1x4xf32>, %proj: tensor<2x2xf32>) {
  %x = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %h1n, %c1n = optim.lstm_cell %x, %h1, %c1, %cell1 : vector<2xf32>, vector<3xf32>, tensor<12x6xf32>
  %h2n, %c2n = optim.lstm_cell %g, %h2, %c2, %cell2 : f32, vector<2xf32>, tensor<8x4xf32>
  %out = optim.linear %h1n, %head : vector<3xf32>, tensor<1x4xf32> -> f32
  %v = optim.linear %g, %proj : f32, tensor<2x2xf32> -> vector<2xf32>
  %0 = arith.mulf %scale, %out : f32
  %1 = arith.addf %p, %0 : f32
  optim.yield %1, %h1n, %c1n, %v, %c2n : f32, vector<3xf32>, vector<3xf32>, vector<2xf32>, vector<2xf32>
}

// Weights without hyperparameters or states, in an f64 rule; log_sign of f64.
// CHECK-LABEL: optim.rule @weights_only(%p: f64, %g: f64, %t: i64) weights(%w: tensor<1x3xf64>) {
// CHECK-NEXT:    %[[X:.*]] = optim.log_sign %g, %g : f64 -> vector<2xf64>
// CHECK-NEXT:    %[[Y:.*]] = optim.linear %[[X]], %w : vector<2xf64>, tensor<1x3xf64> -> vector<1xf64>
// CHECK-NEXT:    %[[S:.*]] = vector.extract %[[Y]][0] : f64 from vector<1xf64>
// CHECK-NEXT:    optim.yield %[[S]] : f64
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "weights_only", weight_names = ["w"]}>
// GENERIC: {{.*}} = "optim.log_sign"(%{{.*}}, %{{.*}}) : (f64, f64) -> vector<2xf64>
// GENERIC: {{.*}} = "optim.linear"(%{{.*}}, %{{.*}}) : (vector<2xf64>, tensor<1x3xf64>) -> vector<1xf64>
optim.rule @weights_only(%p: f64, %g: f64, %t: i64) weights(%w: tensor<1x3xf64>) {
  %x = optim.log_sign %g, %g : f64 -> vector<2xf64>
  %y = optim.linear %x, %w : vector<2xf64>, tensor<1x3xf64> -> vector<1xf64>
  %s = vector.extract %y[0] : f64 from vector<1xf64>
  optim.yield %s : f64
}

// Tensor reductions of every kind, over the tensor or (global) over every
// tensor; the kind is an enum (an i32 in the generic form).
// CHECK-LABEL: optim.rule @reductions(%p: f32, %g: f32, %t: i64) {
// CHECK-NEXT:    %[[A:.*]] = optim.tensor_reduce sum %g : f32
// CHECK-NEXT:    %[[B:.*]] = optim.tensor_reduce mean %p global : f32
// CHECK-NEXT:    %[[C:.*]] = optim.tensor_reduce norm %g : f32
// CHECK-NEXT:    %[[D:.*]] = optim.tensor_reduce max %p global : f32
// CHECK-NEXT:    %[[E:.*]] = optim.tensor_reduce min %g : f32
// CHECK-NEXT:    %[[S:.*]] = arith.addf %[[A]], %[[B]] : f32
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "reductions", weight_names = []}>
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{kind = 0 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{global, kind = 1 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{kind = 2 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{global, kind = 3 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{kind = 4 : i32, ns_coefficients = {{.*}}, ns_steps = 5 : i32}> : (f32) -> f32
optim.rule @reductions(%p: f32, %g: f32, %t: i64) {
  %a = optim.tensor_reduce sum %g : f32
  %b = optim.tensor_reduce mean %p global : f32
  %c = optim.tensor_reduce norm %g : f32
  %d = optim.tensor_reduce max %p global : f32
  %e = optim.tensor_reduce min %g : f32
  %0 = arith.addf %a, %b : f32
  %1 = arith.addf %0, %c : f32
  %2 = arith.addf %1, %d : f32
  %3 = arith.addf %2, %e : f32
  %4 = arith.subf %p, %3 : f32
  optim.yield %4 : f32
}

// An f64 reduction, and one whose result is unused: kept (the op is not
// pure, every reduction has its slot).
// CHECK-LABEL: optim.rule @unused_reduction(%p: f64, %g: f64, %t: i64) {
// CHECK-NEXT:    optim.tensor_reduce norm %g global : f64
// CHECK-NEXT:    optim.yield %p : f64
optim.rule @unused_reduction(%p: f64, %g: f64, %t: i64) {
  %0 = optim.tensor_reduce norm %g global : f64
  optim.yield %p : f64
}

// Discardable attributes survive in an attribute dictionary.
// CHECK-LABEL: optim.rule @with_attrs(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.5) attributes {note = "x"} {
// GENERIC-LABEL: "optim.rule"() <{hyper_const = array<i1: false>, hyper_defaults = array<f64: 5.000000e-01>, hyper_names = ["lr"], state_inits = array<f64>, state_names = [], sym_name = "with_attrs", weight_names = []}>
optim.rule @with_attrs(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.5)
    attributes {note = "x"} {
  optim.yield %p : f32
}

//===----------------------------------------------------------------------===//
// optim.layer, optim.return, optim.eye, optim.matvec, optim.matmul,
// optim.transpose, optim.qp
//===----------------------------------------------------------------------===//

// The example of the layer documentation: Q only, no equality, no inequality.
// CHECK-LABEL: optim.layer @proj inputs(%y: tensor<3xf32>) -> (z: tensor<3xf32>) {
// CHECK-NEXT:    %[[Q:.*]] = optim.eye : tensor<3x3xf32>
// CHECK-NEXT:    %[[QV:.*]] = arith.negf %y : tensor<3xf32>
// CHECK-NEXT:    %[[Z:.*]], %{{.*}}, %{{.*}} = optim.qp Q(%[[Q]] : tensor<3x3xf32>) q(%[[QV]] : tensor<3xf32>) -> tensor<3xf32>, tensor<0xf32>, tensor<0xf32>
// CHECK-NEXT:    optim.return %[[Z]] : tensor<3xf32>
// GENERIC-LABEL: "optim.layer"() <{input_names = ["y"], output_names = ["z"], output_types = [tensor<3xf32>], sym_name = "proj", weight_names = []}>
// GENERIC: {{.*}} = "optim.eye"() : () -> tensor<3x3xf32>
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0>, tol = 1.000000e-08 : f64}> : (tensor<3x3xf32>, tensor<3xf32>) -> (tensor<3xf32>, tensor<0xf32>, tensor<0xf32>)
// GENERIC: "optim.return"(%{{.*}}) : (tensor<3xf32>) -> ()
optim.layer @proj inputs(%y: tensor<3xf32>) -> (z: tensor<3xf32>) {
  %Q = optim.eye : tensor<3x3xf32>
  %q = arith.negf %y : tensor<3xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<3x3xf32>) q(%q : tensor<3xf32>)
      -> tensor<3xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<3xf32>
}

// A box with a learned diagonal: optim.diag and optim.vstack.
// CHECK-LABEL: optim.layer @boxed weights(%d: tensor<2xf32>) -> (z: tensor<2xf32>) {
// CHECK-NEXT:    %[[D:.*]] = optim.diag %d : tensor<2xf32> -> tensor<2x2xf32>
// CHECK:         optim.vstack %{{.*}}, %{{.*}} : tensor<2x2xf32>, tensor<2x2xf32> -> tensor<4x2xf32>
// GENERIC-LABEL: sym_name = "boxed"
// GENERIC: "optim.diag"
// GENERIC: "optim.vstack"
optim.layer @boxed weights(%d: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %D = optim.diag %d : tensor<2xf32> -> tensor<2x2xf32>
  %I = optim.eye : tensor<2x2xf32>
  %N = arith.negf %I : tensor<2x2xf32>
  %G = optim.vstack %I, %N : tensor<2x2xf32>, tensor<2x2xf32> -> tensor<4x2xf32>
  %h = arith.constant dense<1.0> : tensor<4xf32>
  %z, %nu, %lam = optim.qp Q(%D : tensor<2x2xf32>) q(%d : tensor<2xf32>)
      ineq(%G, %h : tensor<4x2xf32>, tensor<4xf32>)
      -> tensor<2xf32>, tensor<0xf32>, tensor<4xf32>
  optim.return %z : tensor<2xf32>
}

// OptNet's Q = L L^T + 0.1 I: optim.transpose and optim.matmul.
// CHECK-LABEL: optim.layer @factored weights(%L: tensor<3x2xf32>) -> (z: tensor<3xf32>) {
// CHECK-NEXT:    %[[T:.*]] = optim.transpose %L : tensor<3x2xf32> -> tensor<2x3xf32>
// CHECK-NEXT:    %[[P:.*]] = optim.matmul %L, %[[T]] : tensor<3x2xf32>, tensor<2x3xf32> -> tensor<3x3xf32>
// GENERIC-LABEL: sym_name = "factored"
// GENERIC: {{.*}} = "optim.transpose"(%{{.*}}) : (tensor<3x2xf32>) -> tensor<2x3xf32>
// GENERIC: {{.*}} = "optim.matmul"(%{{.*}}, %{{.*}}) : (tensor<3x2xf32>, tensor<2x3xf32>) -> tensor<3x3xf32>
optim.layer @factored weights(%L: tensor<3x2xf32>) -> (z: tensor<3xf32>) {
  %T = optim.transpose %L : tensor<3x2xf32> -> tensor<2x3xf32>
  %P = optim.matmul %L, %T : tensor<3x2xf32>, tensor<2x3xf32> -> tensor<3x3xf32>
  %I = optim.eye : tensor<3x3xf32>
  %Q = arith.addf %P, %I : tensor<3x3xf32>
  %q = arith.constant dense<1.0> : tensor<3xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<3x3xf32>) q(%q : tensor<3xf32>)
      -> tensor<3xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<3xf32>
}

// Inputs, weights, several outputs; every operand of the QP, and explicit
// tol and max_iter.
// CHECK-LABEL: optim.layer @full inputs(%x: tensor<4xf32>, %s: tensor<2xf32>)
// CHECK-SAME: weights(%A: tensor<2x4xf32>, %G: tensor<3x4xf32>)
// CHECK-SAME: -> (z: tensor<4xf32>, nu: tensor<2xf32>, lam: tensor<3xf32>) {
// CHECK:        %[[Q:.*]] = optim.eye : tensor<4x4xf32>
// CHECK:        %[[B:.*]] = optim.matvec %A, %x : tensor<2x4xf32>, tensor<4xf32> -> tensor<2xf32>
// CHECK:        %[[Z:.*]], %[[NU:.*]], %[[LAM:.*]] = optim.qp Q(%[[Q]] : tensor<4x4xf32>) q(%x : tensor<4xf32>)
// CHECK-SAME:     eq(%A, %[[B]] : tensor<2x4xf32>, tensor<2xf32>)
// CHECK-SAME:     ineq(%G, %{{.*}} : tensor<3x4xf32>, tensor<3xf32>)
// CHECK-SAME:     {max_iter = 50 : i64, tol = 2.500000e-01 : f64}
// CHECK-SAME:     -> tensor<4xf32>, tensor<2xf32>, tensor<3xf32>
// CHECK-NEXT:    optim.return %[[Z]], %[[NU]], %[[LAM]] : tensor<4xf32>, tensor<2xf32>, tensor<3xf32>
// GENERIC-LABEL: "optim.layer"() <{input_names = ["x", "s"], output_names = ["z", "nu", "lam"], output_types = [tensor<4xf32>, tensor<2xf32>, tensor<3xf32>], sym_name = "full", weight_names = ["A", "G"]}>
// GENERIC: {{.*}} = "optim.eye"() : () -> tensor<4x4xf32>
// GENERIC: {{.*}} = "optim.matvec"(%{{.*}}, %{{.*}}) : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2xf32>
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 50 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1>, tol = 2.500000e-01 : f64}> : (tensor<4x4xf32>, tensor<4xf32>, tensor<2x4xf32>, tensor<2xf32>, tensor<3x4xf32>, tensor<3xf32>) -> (tensor<4xf32>, tensor<2xf32>, tensor<3xf32>)
// GENERIC: "optim.return"(%{{.*}}, %{{.*}}, %{{.*}}) : (tensor<4xf32>, tensor<2xf32>, tensor<3xf32>) -> ()
optim.layer @full inputs(%x: tensor<4xf32>, %s: tensor<2xf32>)
    weights(%A: tensor<2x4xf32>, %G: tensor<3x4xf32>)
    -> (z: tensor<4xf32>, nu: tensor<2xf32>, lam: tensor<3xf32>) {
  %Q = optim.eye : tensor<4x4xf32>
  %b = optim.matvec %A, %x : tensor<2x4xf32>, tensor<4xf32> -> tensor<2xf32>
  %h = arith.constant dense<1.0> : tensor<3xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<4x4xf32>) q(%x : tensor<4xf32>)
      eq(%A, %b : tensor<2x4xf32>, tensor<2xf32>)
      ineq(%G, %h : tensor<3x4xf32>, tensor<3xf32>)
      {max_iter = 50 : i64, tol = 0.25 : f64}
      -> tensor<4xf32>, tensor<2xf32>, tensor<3xf32>
  optim.return %z, %nu, %lam : tensor<4xf32>, tensor<2xf32>, tensor<3xf32>
}

// Every combination of the optional operands of optim.qp.
// CHECK-LABEL: optim.layer @qp_forms weights(%Q: tensor<2x2xf64>, %q: tensor<2xf64>, %A: tensor<1x2xf64>, %b: tensor<1xf64>, %G: tensor<3x2xf64>, %h: tensor<3xf64>)
// CHECK:      optim.qp q(%q : tensor<2xf64>) -> tensor<2xf64>, tensor<0xf64>, tensor<0xf64>
// CHECK-NEXT: optim.qp q(%q : tensor<2xf64>) eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>) -> tensor<2xf64>, tensor<1xf64>, tensor<0xf64>
// CHECK-NEXT: optim.qp q(%q : tensor<2xf64>) ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>) -> tensor<2xf64>, tensor<0xf64>, tensor<3xf64>
// CHECK-NEXT: optim.qp q(%q : tensor<2xf64>) eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>) ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>) -> tensor<2xf64>, tensor<1xf64>, tensor<3xf64>
// CHECK-NEXT: optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>) -> tensor<2xf64>, tensor<0xf64>, tensor<0xf64>
// CHECK-NEXT: optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>) eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>) -> tensor<2xf64>, tensor<1xf64>, tensor<0xf64>
// CHECK-NEXT: optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>) ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>) -> tensor<2xf64>, tensor<0xf64>, tensor<3xf64>
// CHECK-NEXT: optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>) eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>) ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>) -> tensor<2xf64>, tensor<1xf64>, tensor<3xf64>
// CHECK:      optim.return
// GENERIC-LABEL: "optim.layer"() <{input_names = [], output_names = ["z0", "z1", "z2", "z3", "z4", "z5", "z6", "z7"], output_types = [tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>], sym_name = "qp_forms", weight_names = ["Q", "q", "A", "b", "G", "h"]}>
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 0, 0>, tol = 1.000000e-08 : f64}> : (tensor<2xf64>) -> (tensor<2xf64>, tensor<0xf64>, tensor<0xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 0, 1, 1, 1, 0, 0>, tol = 1.000000e-08 : f64}> : (tensor<2xf64>, tensor<1x2xf64>, tensor<1xf64>) -> (tensor<2xf64>, tensor<1xf64>, tensor<0xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 0, 1, 0, 0, 1, 1>, tol = 1.000000e-08 : f64}> : (tensor<2xf64>, tensor<3x2xf64>, tensor<3xf64>) -> (tensor<2xf64>, tensor<0xf64>, tensor<3xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 0, 1, 1, 1, 1, 1>, tol = 1.000000e-08 : f64}> : (tensor<2xf64>, tensor<1x2xf64>, tensor<1xf64>, tensor<3x2xf64>, tensor<3xf64>) -> (tensor<2xf64>, tensor<1xf64>, tensor<3xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0>, tol = 1.000000e-08 : f64}> : (tensor<2x2xf64>, tensor<2xf64>) -> (tensor<2xf64>, tensor<0xf64>, tensor<0xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 0, 0>, tol = 1.000000e-08 : f64}> : (tensor<2x2xf64>, tensor<2xf64>, tensor<1x2xf64>, tensor<1xf64>) -> (tensor<2xf64>, tensor<1xf64>, tensor<0xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1>, tol = 1.000000e-08 : f64}> : (tensor<2x2xf64>, tensor<2xf64>, tensor<3x2xf64>, tensor<3xf64>) -> (tensor<2xf64>, tensor<0xf64>, tensor<3xf64>)
// GENERIC: {{.*}} = "optim.qp"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}) <{max_iter = 100 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1>, tol = 1.000000e-08 : f64}> : (tensor<2x2xf64>, tensor<2xf64>, tensor<1x2xf64>, tensor<1xf64>, tensor<3x2xf64>, tensor<3xf64>) -> (tensor<2xf64>, tensor<1xf64>, tensor<3xf64>)
optim.layer @qp_forms weights(%Q: tensor<2x2xf64>, %q: tensor<2xf64>,
                              %A: tensor<1x2xf64>, %b: tensor<1xf64>,
                              %G: tensor<3x2xf64>, %h: tensor<3xf64>)
    -> (z0: tensor<2xf64>, z1: tensor<2xf64>, z2: tensor<2xf64>, z3: tensor<2xf64>,
        z4: tensor<2xf64>, z5: tensor<2xf64>, z6: tensor<2xf64>, z7: tensor<2xf64>) {
  %z0, %nu0, %lam0 = optim.qp q(%q : tensor<2xf64>)
      -> tensor<2xf64>, tensor<0xf64>, tensor<0xf64>
  %z1, %nu1, %lam1 = optim.qp q(%q : tensor<2xf64>)
      eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>)
      -> tensor<2xf64>, tensor<1xf64>, tensor<0xf64>
  %z2, %nu2, %lam2 = optim.qp q(%q : tensor<2xf64>)
      ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>)
      -> tensor<2xf64>, tensor<0xf64>, tensor<3xf64>
  %z3, %nu3, %lam3 = optim.qp q(%q : tensor<2xf64>)
      eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>)
      ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>)
      -> tensor<2xf64>, tensor<1xf64>, tensor<3xf64>
  %z4, %nu4, %lam4 = optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>)
      -> tensor<2xf64>, tensor<0xf64>, tensor<0xf64>
  %z5, %nu5, %lam5 = optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>)
      eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>)
      -> tensor<2xf64>, tensor<1xf64>, tensor<0xf64>
  %z6, %nu6, %lam6 = optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>)
      ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>)
      -> tensor<2xf64>, tensor<0xf64>, tensor<3xf64>
  %z7, %nu7, %lam7 = optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf64>)
      eq(%A, %b : tensor<1x2xf64>, tensor<1xf64>)
      ineq(%G, %h : tensor<3x2xf64>, tensor<3xf64>)
      -> tensor<2xf64>, tensor<1xf64>, tensor<3xf64>
  optim.return %z0, %z1, %z2, %z3, %z4, %z5, %z6, %z7
      : tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>,
        tensor<2xf64>, tensor<2xf64>, tensor<2xf64>, tensor<2xf64>
}

// A layer without inputs (weights only) and a matvec to a different size.
// CHECK-LABEL: optim.layer @no_inputs weights(%W: tensor<2x3xf32>, %v: tensor<3xf32>) -> (y: tensor<2xf32>) {
// CHECK-NEXT:    %[[Y:.*]] = optim.matvec %W, %v : tensor<2x3xf32>, tensor<3xf32> -> tensor<2xf32>
// CHECK-NEXT:    optim.return %[[Y]] : tensor<2xf32>
// GENERIC-LABEL: "optim.layer"() <{input_names = [], output_names = ["y"], output_types = [tensor<2xf32>], sym_name = "no_inputs", weight_names = ["W", "v"]}>
// GENERIC: {{.*}} = "optim.matvec"(%{{.*}}, %{{.*}}) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2xf32>
optim.layer @no_inputs weights(%W: tensor<2x3xf32>, %v: tensor<3xf32>) -> (y: tensor<2xf32>) {
  %y = optim.matvec %W, %v : tensor<2x3xf32>, tensor<3xf32> -> tensor<2xf32>
  optim.return %y : tensor<2xf32>
}
