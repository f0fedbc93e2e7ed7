// Every diagnostic of the optim dialect: custom-parser errors, ODS
// constraints and the C++ verifiers.
// RUN: optim-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// optim.rule: custom parser
//===----------------------------------------------------------------------===//

// expected-error @+1 {{expected exactly 3 built-in arguments (p, g, t), got 2}}
optim.rule @two_builtins(%p: f32, %g: f32) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{expected exactly 3 built-in arguments (p, g, t), got 4}}
optim.rule @four_builtins(%p: f32, %g: f32, %t: i64, %x: f32) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{expected '='}}
optim.rule @hyper_without_default(%p: f32, %g: f32, %t: i64) hyper(%lr: f32) {
  optim.yield %p : f32
}

// -----

// expected-error @+2 {{unexpected decimal integer literal for a floating point value}}
// expected-note @+1 {{add a trailing dot to make the literal a float}}
optim.rule @integer_default(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 1) {
  optim.yield %p : f32
}

// -----

// Only hyperparameters can be const.
// expected-error @+1 {{expected ')'}}
optim.rule @const_state(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0 const) {
  optim.yield %p, %m : f32, f32
}

// -----

// Weights have no initial value.
// expected-error @+1 {{expected ')'}}
optim.rule @weight_init(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x2xf32> = 0.0) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{expected ':'}}
optim.rule @untyped(%p, %g: f32, %t: i64) {
  optim.yield %p : f32
}

// -----

// The clauses come in the order hyper, state, weights.
// expected-error @+1 {{expected '{' to begin a region}}
optim.rule @clause_order(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0) hyper(%lr: f32 = 0.1) {
  optim.yield %p, %m : f32, f32
}

// -----

// expected-error @+1 {{expected valid '@'-identifier for symbol name}}
optim.rule (%p: f32, %g: f32, %t: i64) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{empty block: expect at least a terminator}}
optim.rule @empty(%p: f32, %g: f32, %t: i64) {
}

// -----

// expected-error @+1 {{'optim.rule' op region #0 ('body') failed to verify constraint: region with 1 blocks}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "no_block", weight_names = []}> ({
}) : () -> ()

//===----------------------------------------------------------------------===//
// optim.rule: signature
//===----------------------------------------------------------------------===//

// -----

// In the custom form the names are SSA names, so the parser catches a
// duplicate; the verifier catches it in the generic form below.
// expected-note @+2 {{previously referenced here}}
// expected-error @+1 {{region entry argument '%m' is already in use}}
optim.rule @duplicate_parsed(%p: f32, %g: f32, %t: i64) hyper(%m: f32 = 0.1) state(%m: f32 = 0.0) {
  optim.yield %p, %m : f32, f32
}

// -----

// expected-error @+1 {{'optim.rule' op duplicate name 'lr'}}
"optim.rule"() <{hyper_const = array<i1: false, false>, hyper_defaults = array<f64: 0.1, 0.2>, hyper_names = ["lr", "lr"], state_inits = array<f64>, state_names = [], sym_name = "duplicate_hyper", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %a: f32, %b: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// A state may not reuse the name of a hyperparameter.
// expected-error @+1 {{'optim.rule' op duplicate name 'm'}}
"optim.rule"() <{hyper_const = array<i1: false>, hyper_defaults = array<f64: 0.1>, hyper_names = ["m"], state_inits = array<f64: 0.0>, state_names = ["m"], sym_name = "duplicate_across", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %a: f32, %b: f32):
  "optim.yield"(%p, %b) : (f32, f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op duplicate name 'w'}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64: 0.0>, state_names = ["w"], sym_name = "duplicate_weight", weight_names = ["w"]}> ({
^bb0(%p: f32, %g: f32, %t: i64, %a: f32, %b: tensor<1x2xf32>):
  "optim.yield"(%p, %a) : (f32, f32) -> ()
}) : () -> ()

// -----

// The built-in names are reserved in the generic form too.
// expected-error @+1 {{'optim.rule' op duplicate name 'g'}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "g_as_weight", weight_names = ["g"]}> ({
^bb0(%p: f32, %g: f32, %t: i64, %w: tensor<1x2xf32>):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// p, g and t are reserved: the built-in arguments are then named otherwise.
// expected-error @+1 {{'optim.rule' op duplicate name 'p'}}
optim.rule @p_as_hyper(%x: f32, %y: f32, %z: i64) hyper(%p: f32 = 0.1) {
  optim.yield %x : f32
}

// -----

// expected-error @+1 {{'optim.rule' op duplicate name 't'}}
optim.rule @t_as_state(%x: f32, %y: f32, %z: i64) state(%t: f32 = 0.0) {
  optim.yield %x, %t : f32, f32
}

// -----

// expected-error @+1 {{'optim.rule' op name 'a.b' is not an identifier}}
optim.rule @not_identifier(%p: f32, %g: f32, %t: i64) hyper(%a.b: f32 = 0.1) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op name '' is not an identifier}}
"optim.rule"() <{hyper_const = array<i1: false>, hyper_defaults = array<f64: 1.0>, hyper_names = [""], state_inits = array<f64>, state_names = [], sym_name = "empty_name", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %h: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op hyperparameter 'lr' has a non-finite default}}
optim.rule @inf_default(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0x7FF0000000000000) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op hyperparameter 'lr' has a non-finite default}}
"optim.rule"() <{hyper_const = array<i1: false>, hyper_defaults = array<f64: 0x7FF8000000000000>, hyper_names = ["lr"], state_inits = array<f64>, state_names = [], sym_name = "nan_default", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %lr: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op state 'm' has a non-finite initial value}}
optim.rule @inf_state(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0xFFF0000000000000) {
  optim.yield %p, %m : f32, f32
}

// -----

// Finite as f64, but inf once it becomes an f32 constant.
// expected-error @+1 {{'optim.rule' op hyperparameter 'big' has a default (1.0e+39) out of the range of 'f32'}}
optim.rule @f32_overflow(%p: f32, %g: f32, %t: i64) hyper(%big: f32 = 1.0e39) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' has an initial value (-1.0e+300) out of the range of 'f32'}}
optim.rule @f32_overflow_state(%p: f32, %g: f32, %t: i64) state(%m: f32 = -1.0e300) {
  optim.yield %p, %m : f32, f32
}

// -----

// expected-error @+1 {{'optim.rule' op has 1 hyperparameter names but 2 defaults and 1 const flags}}
"optim.rule"() <{hyper_const = array<i1: false>, hyper_defaults = array<f64: 1.0, 2.0>, hyper_names = ["lr"], state_inits = array<f64>, state_names = [], sym_name = "defaults_count", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %lr: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op has 1 hyperparameter names but 1 defaults and 0 const flags}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64: 1.0>, hyper_names = ["lr"], state_inits = array<f64>, state_names = [], sym_name = "const_count", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %lr: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op has 1 state names but 0 initial values}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = ["m"], sym_name = "inits_count", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %m: f32):
  "optim.yield"(%p, %m) : (f32, f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op body has 4 arguments, but the signature needs 3 (p, g, t, 0 hyperparameters, 0 states, 0 weights)}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "extra_arg", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %x: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op body has 3 arguments, but the signature needs 5 (p, g, t, 1 hyperparameters, 1 states, 0 weights)}}
"optim.rule"() <{hyper_const = array<i1: false>, hyper_defaults = array<f64: 1.0>, hyper_names = ["lr"], state_inits = array<f64: 0.0>, state_names = ["m"], sym_name = "missing_args", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op body has 3 arguments, but the signature needs 4 (p, g, t, 0 hyperparameters, 0 states, 0 weights, 1 inputs)}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], input_names = ["h"], state_inits = array<f64>, state_names = [], sym_name = "missing_input", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// An input is one value per coordinate, of the element type.
// expected-error @+1 {{'optim.rule' op input 'h' must have the element type 'f32', got 'vector<2xf32>'}}
optim.rule @vector_input(%p: f32, %g: f32, %t: i64) input(%h: vector<2xf32>) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op input 'h' must have the element type 'f64', got 'f32'}}
optim.rule @f32_input(%p: f64, %g: f64, %t: i64) input(%h: f32) {
  optim.yield %p : f64
}

// -----

// Inputs are named like states: unique, and not p, g or t.
// expected-error @+1 {{'optim.rule' op duplicate name 'm'}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], input_names = ["m"], state_inits = array<f64: 0.0>, state_names = ["m"], sym_name = "input_named_like_state", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %m: f32, %h: f32):
  "optim.yield"(%p, %m) : (f32, f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op duplicate name 'g'}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], input_names = ["g"], state_inits = array<f64>, state_names = [], sym_name = "input_named_g", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64, %h: f32):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.rule' op p must be f32 or f64, got 'i32'}}
optim.rule @int_p(%p: i32, %g: i32, %t: i64) {
  optim.yield %p : i32
}

// -----

// expected-error @+1 {{'optim.rule' op p must be f32 or f64, got 'f16'}}
optim.rule @f16_p(%p: f16, %g: f16, %t: i64) {
  optim.yield %p : f16
}

// -----

// expected-error @+1 {{'optim.rule' op p must be f32 or f64, got 'vector<4xf32>'}}
optim.rule @vector_p(%p: vector<4xf32>, %g: vector<4xf32>, %t: i64) {
  optim.yield %p : vector<4xf32>
}

// -----

// expected-error @+1 {{'optim.rule' op g must have the type of p ('f32'), got 'f64'}}
optim.rule @g_type(%p: f32, %g: f64, %t: i64) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op t must be i64, got 'i32'}}
optim.rule @t_i32(%p: f32, %g: f32, %t: i32) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op t must be i64, got 'f32'}}
optim.rule @t_float(%p: f32, %g: f32, %t: f32) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op hyperparameter 'lr' must have the element type 'f32', got 'f64'}}
optim.rule @hyper_type(%p: f32, %g: f32, %t: i64) hyper(%lr: f64 = 0.1) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op hyperparameter 'lr' must have the element type 'f32', got 'vector<2xf32>'}}
optim.rule @hyper_vector(%p: f32, %g: f32, %t: i64) hyper(%lr: vector<2xf32> = 0.1) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' must be 'f32' or a 1-D vector of 'f32', got 'f64'}}
optim.rule @state_type(%p: f32, %g: f32, %t: i64) state(%m: f64 = 0.0) {
  optim.yield %p, %m : f32, f64
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' must be 'f32' or a 1-D vector of 'f32', got 'vector<2x2xf32>'}}
optim.rule @state_2d(%p: f32, %g: f32, %t: i64) state(%m: vector<2x2xf32> = 0.0) {
  optim.yield %p, %m : f32, vector<2x2xf32>
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' must be 'f32' or a 1-D vector of 'f32', got 'vector<[4]xf32>'}}
optim.rule @state_scalable(%p: f32, %g: f32, %t: i64) state(%m: vector<[4]xf32> = 0.0) {
  optim.yield %p, %m : f32, vector<[4]xf32>
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' must be 'f32' or a 1-D vector of 'f32', got 'vector<4xf64>'}}
optim.rule @state_vector_type(%p: f32, %g: f32, %t: i64) state(%m: vector<4xf64> = 0.0) {
  optim.yield %p, %m : f32, vector<4xf64>
}

// -----

// expected-error @+1 {{'optim.rule' op state 'm' must be 'f32' or a 1-D vector of 'f32', got 'tensor<4xf32>'}}
optim.rule @state_tensor(%p: f32, %g: f32, %t: i64) state(%m: tensor<4xf32> = 0.0) {
  optim.yield %p, %m : f32, tensor<4xf32>
}

// -----

// expected-error @+1 {{'optim.rule' op weights 'w' must be a statically shaped tensor of 'f32', got 'tensor<?x3xf32>'}}
optim.rule @weights_dynamic(%p: f32, %g: f32, %t: i64) weights(%w: tensor<?x3xf32>) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op weights 'w' must be a statically shaped tensor of 'f32', got 'tensor<2x3xf64>'}}
optim.rule @weights_type(%p: f32, %g: f32, %t: i64) weights(%w: tensor<2x3xf64>) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op weights 'w' must be a statically shaped tensor of 'f32', got 'vector<3xf32>'}}
optim.rule @weights_vector(%p: f32, %g: f32, %t: i64) weights(%w: vector<3xf32>) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{'optim.rule' op weights 'w' must be a statically shaped tensor of 'f32', got 'tensor<*xf32>'}}
optim.rule @weights_unranked(%p: f32, %g: f32, %t: i64) weights(%w: tensor<*xf32>) {
  optim.yield %p : f32
}

//===----------------------------------------------------------------------===//
// optim.yield
//===----------------------------------------------------------------------===//

// -----

optim.rule @yield_too_few(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0, %v: f32 = 0.0) {
  // expected-error @+1 {{'optim.yield' op must yield the new p and 2 state value(s) (3 in all), got 2}}
  optim.yield %p, %m : f32, f32
}

// -----

optim.rule @yield_too_many(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.yield' op must yield the new p and 0 state value(s) (1 in all), got 2}}
  optim.yield %p, %g : f32, f32
}

// -----

optim.rule @yield_nothing(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.yield' op must yield the new p and 0 state value(s) (1 in all), got 0}}
  "optim.yield"() : () -> ()
}

// -----

optim.rule @yield_p_type(%p: f32, %g: f32, %t: i64) {
  %0 = arith.extf %p : f32 to f64
  // expected-error @+1 {{'optim.yield' op new p must have type 'f32', got 'f64'}}
  optim.yield %0 : f64
}

// -----

optim.rule @yield_state_type(%p: f32, %g: f32, %t: i64) state(%m: vector<4xf32> = 0.0) {
  // expected-error @+1 {{'optim.yield' op new value of state 'm' must have type 'vector<4xf32>', got 'f32'}}
  optim.yield %p, %g : f32, f32
}

// -----

// The states are yielded in declaration order.
optim.rule @yield_state_order(%p: f32, %g: f32, %t: i64) state(%m: f32 = 0.0, %h: vector<2xf32> = 0.0) {
  // expected-error @+1 {{'optim.yield' op new value of state 'm' must have type 'f32', got 'vector<2xf32>'}}
  optim.yield %p, %h, %m : f32, vector<2xf32>, f32
}

// -----

func.func @yield_outside_rule(%x: f32) {
  // expected-error @+1 {{'optim.yield' op expects parent op 'optim.rule'}}
  optim.yield %x : f32
}

// -----

optim.layer @yield_in_layer inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.yield' op expects parent op 'optim.rule'}}
  optim.yield %y : tensor<2xf32>
}

//===----------------------------------------------------------------------===//
// optim.layer, optim.return
//===----------------------------------------------------------------------===//

// -----

// expected-error @+1 {{expected '->'}}
optim.layer @no_arrow inputs(%y: tensor<2xf32>) {
  optim.return %y : tensor<2xf32>
}

// -----

// expected-error @+1 {{expected ':'}}
optim.layer @untyped_output inputs(%y: tensor<2xf32>) -> (z) {
  optim.return %y : tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op must have at least one output}}
optim.layer @no_output inputs(%y: tensor<2xf32>) -> () {
  "optim.return"() : () -> ()
}

// -----

// expected-error @+1 {{'optim.layer' op region #0 ('body') failed to verify constraint: region with 1 blocks}}
"optim.layer"() <{input_names = [], output_names = ["z"], output_types = [tensor<2xf32>], sym_name = "no_block", weight_names = []}> ({
}) : () -> ()

// -----

// expected-error @+1 {{'optim.layer' op has 2 output names but 1 output types}}
"optim.layer"() <{input_names = ["y"], output_names = ["a", "b"], output_types = [tensor<2xf32>], sym_name = "names_types", weight_names = []}> ({
^bb0(%y: tensor<2xf32>):
  "optim.return"(%y) : (tensor<2xf32>) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.layer' op body has 1 arguments, but the signature needs 2 (1 inputs, 1 weights)}}
"optim.layer"() <{input_names = ["y"], output_names = ["z"], output_types = [tensor<2xf32>], sym_name = "layer_args", weight_names = ["w"]}> ({
^bb0(%y: tensor<2xf32>):
  "optim.return"(%y) : (tensor<2xf32>) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.layer' op duplicate name 'y'}}
"optim.layer"() <{input_names = ["y"], output_names = ["z"], output_types = [tensor<2xf32>], sym_name = "duplicate_input", weight_names = ["y"]}> ({
^bb0(%y: tensor<2xf32>, %w: tensor<2xf32>):
  "optim.return"(%y) : (tensor<2xf32>) -> ()
}) : () -> ()

// -----

// expected-error @+1 {{'optim.layer' op name '1x' is not an identifier}}
"optim.layer"() <{input_names = ["1x"], output_names = ["z"], output_types = [tensor<2xf32>], sym_name = "input_not_identifier", weight_names = []}> ({
^bb0(%y: tensor<2xf32>):
  "optim.return"(%y) : (tensor<2xf32>) -> ()
}) : () -> ()

// -----

// An output may not reuse the name of an input.
// expected-error @+1 {{'optim.layer' op duplicate name 'y'}}
optim.layer @duplicate_output inputs(%y: tensor<2xf32>) -> (y: tensor<2xf32>) {
  optim.return %y : tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op duplicate name 'z'}}
optim.layer @duplicate_outputs inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>, z: tensor<2xf32>) {
  optim.return %y, %y : tensor<2xf32>, tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op name 'a.b' is not an identifier}}
optim.layer @output_not_identifier inputs(%y: tensor<2xf32>) -> (a.b: tensor<2xf32>) {
  optim.return %y : tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op inputs and weights must be statically shaped float tensors, got 'tensor<?xf32>'}}
optim.layer @dynamic_input inputs(%y: tensor<?xf32>) -> (z: tensor<2xf32>) {
  %0 = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op inputs and weights must be statically shaped float tensors, got 'tensor<2xi32>'}}
optim.layer @int_weights weights(%w: tensor<2xi32>) -> (z: tensor<2xf32>) {
  %0 = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op inputs and weights must be statically shaped float tensors, got 'f32'}}
optim.layer @scalar_input inputs(%y: f32) -> (z: tensor<2xf32>) {
  %0 = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op outputs must be statically shaped float tensors, got 'tensor<?xf32>'}}
optim.layer @dynamic_output inputs(%y: tensor<2xf32>) -> (z: tensor<?xf32>) {
  %0 = tensor.cast %y : tensor<2xf32> to tensor<?xf32>
  optim.return %0 : tensor<?xf32>
}

// -----

// expected-error @+1 {{'optim.layer' op outputs must be statically shaped float tensors, got 'tensor<2xi32>'}}
optim.layer @int_output inputs(%y: tensor<2xf32>) -> (z: tensor<2xi32>) {
  %0 = arith.fptosi %y : tensor<2xf32> to tensor<2xi32>
  optim.return %0 : tensor<2xi32>
}

// -----

// expected-error @+1 {{'optim.layer' op outputs must be statically shaped float tensors, got 'f32'}}
optim.layer @scalar_output inputs(%y: tensor<2xf32>) -> (z: f32) {
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @return_count inputs(%y: tensor<2xf32>) -> (a: tensor<2xf32>, b: tensor<2xf32>) {
  // expected-error @+1 {{'optim.return' op must return 2 output(s), got 1}}
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @return_type inputs(%y: tensor<2xf32>) weights(%w: tensor<3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.return' op output 'z' must have type 'tensor<2xf32>', got 'tensor<3xf32>'}}
  optim.return %w : tensor<3xf32>
}

// -----

optim.layer @return_scalar inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %0 = arith.constant 0.0 : f32
  // expected-error @+1 {{'optim.return' op operand #0 must be variadic of ranked tensor of any type values, but got 'f32'}}
  "optim.return"(%0) : (f32) -> ()
}

// -----

optim.rule @return_in_rule(%p: f32, %g: f32, %t: i64) {
  %0 = tensor.from_elements %p : tensor<1xf32>
  // expected-error @+1 {{'optim.return' op expects parent op 'optim.layer'}}
  optim.return %0 : tensor<1xf32>
}

//===----------------------------------------------------------------------===//
// optim.log_sign
//===----------------------------------------------------------------------===//

// -----

optim.rule @log_sign_size(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.log_sign' op result must be 'vector<2xf32>', got 'vector<3xf32>'}}
  %0 = optim.log_sign %g, %g : f32 -> vector<3xf32>
  optim.yield %p : f32
}

// -----

optim.rule @log_sign_element(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.log_sign' op result must be 'vector<2xf32>', got 'vector<2xf64>'}}
  %0 = optim.log_sign %g, %g : f32 -> vector<2xf64>
  optim.yield %p : f32
}

// -----

optim.rule @log_sign_scalable(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.log_sign' op result #0 must be fixed-length vector of floating-point values of ranks 1, but got 'vector<[2]xf32>'}}
  %0 = optim.log_sign %g, %g : f32 -> vector<[2]xf32>
  optim.yield %p : f32
}

// -----

optim.rule @log_sign_scalar(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.log_sign' op result #0 must be fixed-length vector of floating-point values of ranks 1, but got 'f32'}}
  %0 = "optim.log_sign"(%g, %g) : (f32, f32) -> f32
  optim.yield %p : f32
}

// -----

optim.rule @log_sign_k_type(%p: f32, %g: f32, %t: i64) {
  %k = arith.constant 1.0 : f64
  // expected-error @+1 {{'optim.log_sign' op failed to verify that all of {g, k} have same type}}
  %0 = "optim.log_sign"(%g, %k) : (f32, f64) -> vector<2xf32>
  optim.yield %p : f32
}

// -----

optim.rule @log_sign_int(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.log_sign' op operand #0 must be floating-point, but got 'i64'}}
  %0 = "optim.log_sign"(%t, %t) : (i64, i64) -> vector<2xi64>
  optim.yield %p : f32
}

//===----------------------------------------------------------------------===//
// optim.lstm_cell
//===----------------------------------------------------------------------===//

// -----

optim.rule @lstm_weights(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) weights(%w: tensor<16x8xf32>) {
  %x = optim.log_sign %g, %g : f32 -> vector<2xf32>
  // expected-error @+1 {{'optim.lstm_cell' op weights of an LSTM cell with input size 2 and hidden size 4 must be 'tensor<16x7xf32>' ([W_ih | W_hh | b]), got 'tensor<16x8xf32>'}}
  %h2, %c2 = optim.lstm_cell %x, %h, %c, %w : vector<2xf32>, vector<4xf32>, tensor<16x8xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

// -----

// A scalar input has size 1.
optim.rule @lstm_scalar_weights(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) weights(%w: tensor<4x6xf32>) {
  // expected-error @+1 {{'optim.lstm_cell' op weights of an LSTM cell with input size 1 and hidden size 4 must be 'tensor<16x6xf32>' ([W_ih | W_hh | b]), got 'tensor<4x6xf32>'}}
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<4xf32>, tensor<4x6xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

// -----

optim.rule @lstm_weights_element(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) {
  %w = arith.constant dense<0.0> : tensor<16x6xf64>
  // expected-error @+1 {{'optim.lstm_cell' op weights of an LSTM cell with input size 1 and hidden size 4 must be 'tensor<16x6xf32>' ([W_ih | W_hh | b]), got 'tensor<16x6xf64>'}}
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<4xf32>, tensor<16x6xf64>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

// -----

optim.rule @lstm_weights_rank(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) {
  %w = arith.constant dense<0.0> : tensor<96xf32>
  // expected-error @+1 {{'optim.lstm_cell' op weights of an LSTM cell with input size 1 and hidden size 4 must be 'tensor<16x6xf32>' ([W_ih | W_hh | b]), got 'tensor<96xf32>'}}
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<4xf32>, tensor<96xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

// -----

optim.rule @lstm_input_element(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) weights(%w: tensor<16x6xf32>) {
  %x = arith.extf %g : f32 to f64
  // expected-error @+1 {{'optim.lstm_cell' op input and state element types differ: 'f64' vs 'vector<4xf32>'}}
  %h2, %c2 = optim.lstm_cell %x, %h, %c, %w : f64, vector<4xf32>, tensor<16x6xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

// -----

optim.rule @lstm_cell_type(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<16x6xf32>) {
  // expected-error @+1 {{'optim.lstm_cell' op failed to verify that all of {h, c, h_out, c_out} have same type}}
  %h2, %c2 = "optim.lstm_cell"(%g, %h, %c, %w) : (f32, vector<4xf32>, vector<2xf32>, tensor<16x6xf32>) -> (vector<4xf32>, vector<4xf32>)
  optim.yield %p, %h2, %c : f32, vector<4xf32>, vector<2xf32>
}

// -----

optim.rule @lstm_scalar_state(%p: f32, %g: f32, %t: i64) {
  %w = arith.constant dense<0.0> : tensor<4x3xf32>
  // expected-error @+1 {{'optim.lstm_cell' op operand #1 must be fixed-length vector of floating-point values of ranks 1, but got 'f32'}}
  %h2, %c2 = "optim.lstm_cell"(%g, %g, %g, %w) : (f32, f32, f32, tensor<4x3xf32>) -> (f32, f32)
  optim.yield %p : f32
}

// -----

optim.rule @lstm_scalable_input(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) weights(%w: tensor<16x9xf32>) {
  %x = vector.broadcast %g : f32 to vector<[4]xf32>
  // expected-error @+1 {{'optim.lstm_cell' op operand #0 must be floating-point or fixed-length vector of floating-point values of ranks 1, but got 'vector<[4]xf32>'}}
  %h2, %c2 = optim.lstm_cell %x, %h, %c, %w : vector<[4]xf32>, vector<4xf32>, tensor<16x9xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

// -----

optim.rule @lstm_dynamic_weights(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0, %c: vector<4xf32> = 0.0) {
  %w0 = arith.constant dense<0.0> : tensor<16x6xf32>
  %w = tensor.cast %w0 : tensor<16x6xf32> to tensor<?x6xf32>
  // expected-error @+1 {{'optim.lstm_cell' op operand #3 must be statically shaped tensor of any type values, but got 'tensor<?x6xf32>'}}
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<4xf32>, tensor<?x6xf32>
  optim.yield %p, %h2, %c2 : f32, vector<4xf32>, vector<4xf32>
}

//===----------------------------------------------------------------------===//
// optim.linear
//===----------------------------------------------------------------------===//

// -----

optim.rule @linear_weights(%p: f32, %g: f32, %t: i64) state(%h: vector<4xf32> = 0.0) weights(%w: tensor<1x4xf32>) {
  // expected-error @+1 {{'optim.linear' op weights of a linear map from 4 to 1 must be 'tensor<1x5xf32>' ([W | b]), got 'tensor<1x4xf32>'}}
  %y = optim.linear %h, %w : vector<4xf32>, tensor<1x4xf32> -> f32
  optim.yield %y, %h : f32, vector<4xf32>
}

// -----

optim.rule @linear_vector_result(%p: f32, %g: f32, %t: i64) weights(%w: tensor<2x2xf32>) {
  // expected-error @+1 {{'optim.linear' op weights of a linear map from 1 to 3 must be 'tensor<3x2xf32>' ([W | b]), got 'tensor<2x2xf32>'}}
  %y = optim.linear %g, %w : f32, tensor<2x2xf32> -> vector<3xf32>
  optim.yield %p : f32
}

// -----

optim.rule @linear_weights_element(%p: f32, %g: f32, %t: i64) {
  %w = arith.constant dense<0.0> : tensor<1x2xf64>
  // expected-error @+1 {{'optim.linear' op weights of a linear map from 1 to 1 must be 'tensor<1x2xf32>' ([W | b]), got 'tensor<1x2xf64>'}}
  %y = optim.linear %g, %w : f32, tensor<1x2xf64> -> f32
  optim.yield %y : f32
}

// -----

optim.rule @linear_result_element(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x2xf32>) {
  // expected-error @+1 {{'optim.linear' op result element type must be 'f32'}}
  %y = optim.linear %g, %w : f32, tensor<1x2xf32> -> f64
  optim.yield %p : f32
}

// -----

optim.rule @linear_scalable(%p: f32, %g: f32, %t: i64) weights(%w: tensor<4x2xf32>) {
  // expected-error @+1 {{'optim.linear' op result #0 must be floating-point or fixed-length vector of floating-point values of ranks 1, but got 'vector<[4]xf32>'}}
  %y = optim.linear %g, %w : f32, tensor<4x2xf32> -> vector<[4]xf32>
  optim.yield %p : f32
}

// -----

optim.rule @linear_int(%p: f32, %g: f32, %t: i64) weights(%w: tensor<1x2xf32>) {
  // expected-error @+1 {{'optim.linear' op operand #0 must be floating-point or fixed-length vector of floating-point values of ranks 1, but got 'i64'}}
  %y = optim.linear %t, %w : i64, tensor<1x2xf32> -> f32
  optim.yield %p : f32
}

//===----------------------------------------------------------------------===//
// optim.tensor_reduce
//===----------------------------------------------------------------------===//

// -----

// A per-coordinate vector is not reduced over the tensor (reduce one
// component, or its sum, instead): the custom form refuses its type, the
// generic form fails the operand constraint.
optim.rule @reduce_vector(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
  // expected-error @+1 {{custom op 'optim.tensor_reduce' invalid kind of type specified}}
  %0 = optim.tensor_reduce sum %h : vector<2xf32>
  optim.yield %p, %h : f32, vector<2xf32>
}

// -----

optim.rule @reduce_vector_generic(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
  // expected-error @+1 {{'optim.tensor_reduce' op operand #0 must be floating-point, but got 'vector<2xf32>'}}
  %0 = "optim.tensor_reduce"(%h) <{kind = 0 : i32}> : (vector<2xf32>) -> vector<2xf32>
  optim.yield %p, %h : f32, vector<2xf32>
}

// -----

optim.rule @reduce_result_type(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{'optim.tensor_reduce' op failed to verify that all of {value, result} have same type}}
  %0 = "optim.tensor_reduce"(%g) <{kind = 0 : i32}> : (f32) -> f64
  optim.yield %p : f32
}

// -----

optim.rule @reduce_kind(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'kind' [sum, mean, norm, max, min, newton_schulz, rows, cols]}}
  %0 = optim.tensor_reduce prod %g : f32
  optim.yield %p : f32
}

//===----------------------------------------------------------------------===//
// optim.eye, optim.matvec
//===----------------------------------------------------------------------===//

// -----

optim.layer @eye_non_square inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.eye' op result must be a square float matrix, got 'tensor<2x3xf32>'}}
  %0 = optim.eye : tensor<2x3xf32>
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @eye_rank inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.eye' op result must be a square float matrix, got 'tensor<2xf32>'}}
  %0 = optim.eye : tensor<2xf32>
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @eye_int inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.eye' op result must be a square float matrix, got 'tensor<2x2xi32>'}}
  %0 = optim.eye : tensor<2x2xi32>
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @eye_dynamic inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.eye' op result #0 must be statically shaped tensor of any type values, but got 'tensor<?x?xf32>'}}
  %0 = optim.eye : tensor<?x?xf32>
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @matvec_ranks weights(%A: tensor<2x3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matvec' op expects a matrix, a vector and a vector result}}
  %0 = optim.matvec %A, %A : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

optim.layer @matvec_element weights(%A: tensor<2x3xf32>, %x: tensor<3xf64>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matvec' op operands and result must share one float element type}}
  %0 = optim.matvec %A, %x : tensor<2x3xf32>, tensor<3xf64> -> tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

optim.layer @matvec_int inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %A = arith.constant dense<0> : tensor<2x3xi32>
  %x = arith.constant dense<0> : tensor<3xi32>
  // expected-error @+1 {{'optim.matvec' op operands and result must share one float element type}}
  %0 = optim.matvec %A, %x : tensor<2x3xi32>, tensor<3xi32> -> tensor<2xi32>
  optim.return %y : tensor<2xf32>
}

// -----

optim.layer @matvec_columns weights(%A: tensor<2x3xf32>, %x: tensor<4xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matvec' op matrix has 3 columns but the vector has 4 elements}}
  %0 = optim.matvec %A, %x : tensor<2x3xf32>, tensor<4xf32> -> tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

optim.layer @matvec_rows weights(%A: tensor<2x3xf32>, %x: tensor<3xf32>) -> (z: tensor<3xf32>) {
  // expected-error @+1 {{'optim.matvec' op result must have 2 elements, got 3}}
  %0 = optim.matvec %A, %x : tensor<2x3xf32>, tensor<3xf32> -> tensor<3xf32>
  optim.return %0 : tensor<3xf32>
}

// -----

optim.layer @matmul_ranks weights(%A: tensor<2x3xf32>, %x: tensor<3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matmul' op expects two matrices and a matrix result}}
  %0 = optim.matmul %A, %x : tensor<2x3xf32>, tensor<3xf32> -> tensor<2xf32>
  optim.return %0 : tensor<2xf32>
}

// -----

optim.layer @matmul_inner weights(%A: tensor<2x3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matmul' op left matrix has 3 columns but the right one has 2 rows}}
  %0 = optim.matmul %A, %A : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2x3xf32>
  %z = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @matmul_result weights(%A: tensor<2x3xf32>, %B: tensor<3x4xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matmul' op result must be 2x4, got 'tensor<4x2xf32>'}}
  %0 = optim.matmul %A, %B : tensor<2x3xf32>, tensor<3x4xf32> -> tensor<4x2xf32>
  %z = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @matmul_element weights(%A: tensor<2x3xf32>, %B: tensor<3x4xf64>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.matmul' op operands and result must share one float element type}}
  %0 = optim.matmul %A, %B : tensor<2x3xf32>, tensor<3x4xf64> -> tensor<2x4xf32>
  %z = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @transpose_shape weights(%A: tensor<2x3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.transpose' op result must be 3x2, got 'tensor<2x3xf32>'}}
  %0 = optim.transpose %A : tensor<2x3xf32> -> tensor<2x3xf32>
  %z = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @diag_shape weights(%v: tensor<3xf32>) -> (z: tensor<3xf32>) {
  // expected-error @+1 {{'optim.diag' op result must be 3x3, got 'tensor<3x2xf32>'}}
  %0 = optim.diag %v : tensor<3xf32> -> tensor<3x2xf32>
  optim.return %v : tensor<3xf32>
}

// -----

optim.layer @vstack_columns weights(%A: tensor<2x3xf32>, %B: tensor<2x2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.vstack' op parts must have the result's 3 columns, got 'tensor<2x2xf32>'}}
  %0 = optim.vstack %A, %B : tensor<2x3xf32>, tensor<2x2xf32> -> tensor<4x3xf32>
  %z = arith.constant dense<0.0> : tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @vstack_rows weights(%a: tensor<2xf32>, %b: tensor<3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.vstack' op result must have 5 rows (the parts'), got 4}}
  %0 = optim.vstack %a, %b : tensor<2xf32>, tensor<3xf32> -> tensor<4xf32>
  optim.return %a : tensor<2xf32>
}

// -----

optim.layer @vstack_mixed weights(%a: tensor<2xf32>, %B: tensor<2x2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.vstack' op parts must all be vectors of the result's element type, got 'tensor<2x2xf32>'}}
  %0 = optim.vstack %a, %B : tensor<2xf32>, tensor<2x2xf32> -> tensor<4xf32>
  optim.return %a : tensor<2xf32>
}

// -----

optim.layer @transpose_vector weights(%x: tensor<3xf32>) -> (z: tensor<3xf32>) {
  // expected-error @+1 {{'optim.transpose' op expects a matrix and a matrix result}}
  %0 = optim.transpose %x : tensor<3xf32> -> tensor<3xf32>
  optim.return %0 : tensor<3xf32>
}

//===----------------------------------------------------------------------===//
// optim.qp
//===----------------------------------------------------------------------===//

// -----

optim.layer @qp_q_matrix weights(%q: tensor<2x2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op q must be a float vector, got 'tensor<2x2xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2x2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_q_int inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %q = arith.constant dense<0> : tensor<2xi32>
  // expected-error @+1 {{'optim.qp' op q must be a float vector, got 'tensor<2xi32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xi32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_empty weights(%q: tensor<0xf32>) -> (z: tensor<0xf32>) {
  // expected-error @+1 {{'optim.qp' op must have at least one variable}}
  %z, %nu, %lam = optim.qp q(%q : tensor<0xf32>) -> tensor<0xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<0xf32>
}

// -----

optim.layer @qp_Q_shape weights(%Q: tensor<3x3xf32>, %q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op Q must have shape [2, 2], got 'tensor<3x3xf32>'}}
  %z, %nu, %lam = optim.qp Q(%Q : tensor<3x3xf32>) q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_Q_element weights(%Q: tensor<2x2xf64>, %q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op Q must have element type 'f32', got 'tensor<2x2xf64>'}}
  %z, %nu, %lam = optim.qp Q(%Q : tensor<2x2xf64>) q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_A_without_b weights(%q: tensor<2xf32>, %A: tensor<1x2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op A and b must be given together}}
  %z, %nu, %lam = "optim.qp"(%q, %A) <{operandSegmentSizes = array<i32: 0, 1, 1, 0, 0, 0>}> : (tensor<2xf32>, tensor<1x2xf32>) -> (tensor<2xf32>, tensor<1xf32>, tensor<0xf32>)
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_b_without_A weights(%q: tensor<2xf32>, %b: tensor<1xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op A and b must be given together}}
  %z, %nu, %lam = "optim.qp"(%q, %b) <{operandSegmentSizes = array<i32: 0, 1, 0, 1, 0, 0>}> : (tensor<2xf32>, tensor<1xf32>) -> (tensor<2xf32>, tensor<1xf32>, tensor<0xf32>)
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_G_without_h weights(%q: tensor<2xf32>, %G: tensor<1x2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op G and h must be given together}}
  %z, %nu, %lam = "optim.qp"(%q, %G) <{operandSegmentSizes = array<i32: 0, 1, 0, 0, 1, 0>}> : (tensor<2xf32>, tensor<1x2xf32>) -> (tensor<2xf32>, tensor<0xf32>, tensor<1xf32>)
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_A_rank weights(%q: tensor<2xf32>, %A: tensor<2xf32>, %b: tensor<1xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op A must be a non-empty [m, 2] matrix, got 'tensor<2xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) eq(%A, %b : tensor<2xf32>, tensor<1xf32>) -> tensor<2xf32>, tensor<1xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_A_empty weights(%q: tensor<2xf32>, %A: tensor<0x2xf32>, %b: tensor<0xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op A must be a non-empty [m, 2] matrix, got 'tensor<0x2xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) eq(%A, %b : tensor<0x2xf32>, tensor<0xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_A_columns weights(%q: tensor<2xf32>, %A: tensor<1x3xf32>, %b: tensor<1xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op A must have shape [1, 2], got 'tensor<1x3xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) eq(%A, %b : tensor<1x3xf32>, tensor<1xf32>) -> tensor<2xf32>, tensor<1xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_b_shape weights(%q: tensor<2xf32>, %A: tensor<1x2xf32>, %b: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op b must have shape [1], got 'tensor<2xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) eq(%A, %b : tensor<1x2xf32>, tensor<2xf32>) -> tensor<2xf32>, tensor<1xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_b_element weights(%q: tensor<2xf32>, %A: tensor<1x2xf32>, %b: tensor<1xf64>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op b must have element type 'f32', got 'tensor<1xf64>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) eq(%A, %b : tensor<1x2xf32>, tensor<1xf64>) -> tensor<2xf32>, tensor<1xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_G_rank weights(%q: tensor<2xf32>, %G: tensor<2x2x2xf32>, %h: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op G must be a non-empty [p, 2] matrix, got 'tensor<2x2x2xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) ineq(%G, %h : tensor<2x2x2xf32>, tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<2xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_G_columns weights(%q: tensor<2xf32>, %G: tensor<3x1xf32>, %h: tensor<3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op G must have shape [3, 2], got 'tensor<3x1xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) ineq(%G, %h : tensor<3x1xf32>, tensor<3xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<3xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_h_shape weights(%q: tensor<2xf32>, %G: tensor<3x2xf32>, %h: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op h must have shape [3], got 'tensor<2xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) ineq(%G, %h : tensor<3x2xf32>, tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<3xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_z_shape weights(%q: tensor<2xf32>) -> (z: tensor<3xf32>) {
  // expected-error @+1 {{'optim.qp' op result z must have shape [2], got 'tensor<3xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<3xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<3xf32>
}

// -----

optim.layer @qp_z_element weights(%q: tensor<2xf32>) -> (z: tensor<2xf64>) {
  // expected-error @+1 {{'optim.qp' op result z must have element type 'f32', got 'tensor<2xf64>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<2xf64>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf64>
}

// -----

// Without equalities, nu is empty.
optim.layer @qp_nu_shape weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op result nu must have shape [0], got 'tensor<1xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) -> tensor<2xf32>, tensor<1xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_lam_shape weights(%q: tensor<2xf32>, %G: tensor<3x2xf32>, %h: tensor<3xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op result lam must have shape [3], got 'tensor<0xf32>'}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) ineq(%G, %h : tensor<3x2xf32>, tensor<3xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_tol_zero weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op tol must be positive}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) {tol = 0.0 : f64} -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_tol_negative weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op tol must be positive}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) {tol = -1.0e-6 : f64} -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_tol_nan weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op tol must be positive}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) {tol = 0x7FF8000000000000 : f64} -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_max_iter_zero weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op max_iter must be positive}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) {max_iter = 0 : i64} -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_max_iter_negative weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op max_iter must be positive}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) {max_iter = -5 : i64} -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_tol_type weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  // expected-error @+1 {{'optim.qp' op attribute 'tol' failed to satisfy constraint: 64-bit float attribute}}
  %z, %nu, %lam = optim.qp q(%q : tensor<2xf32>) {tol = 1.0e-3 : f32} -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @qp_dynamic weights(%q: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %qd = tensor.cast %q : tensor<2xf32> to tensor<?xf32>
  // expected-error @+1 {{'optim.qp' op operand #0 must be statically shaped tensor of any type values, but got 'tensor<?xf32>'}}
  %z, %nu, %lam = optim.qp q(%qd : tensor<?xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}
