// The verifier's errors for draw sites (optim.random) and the rule's list.
// RUN: optim-opt %s -split-input-file -verify-diagnostics

optim.rule @undeclared(%p: f32, %g: f32, %t: i64) {
  // expected-error @+1 {{site 0 is not declared by the rule (it declares 0 draw sites in 'random(...)')}}
  %a = optim.random normal site 0 : f32
  optim.yield %a : f32
}

// -----

optim.rule @out_of_range(%p: f32, %g: f32, %t: i64) random(uniform) {
  // expected-error @+1 {{site 1 is not declared by the rule (it declares 1 draw sites in 'random(...)')}}
  %a = optim.random uniform site 1 : f32
  optim.yield %a : f32
}

// -----

optim.rule @wrong_kind(%p: f32, %g: f32, %t: i64) random(uniform, normal) {
  // expected-error @+1 {{draws normal at site 0, but the rule declares that site uniform}}
  %a = optim.random normal site 0 : f32
  optim.yield %a : f32
}

// -----

optim.rule @wrong_type(%p: f32, %g: f32, %t: i64) random(uniform) {
  // expected-error @+1 {{result must have the rule's element type 'f32', got 'f64'}}
  %a = optim.random uniform site 0 : f64
  %b = arith.truncf %a : f64 to f32
  optim.yield %b : f32
}

// -----

// expected-error @+1 {{expected 'uniform' or 'normal', got 'gaussian'}}
optim.rule @bad_kind(%p: f32, %g: f32, %t: i64) random(gaussian) {
  optim.yield %p : f32
}

// -----

// expected-error @+1 {{draw site 0 has kind 'gaussian'; expected 'uniform' or 'normal'}}
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], random = ["gaussian"], state_inits = array<f64>, state_names = [], sym_name = "generic_bad_kind", weight_names = []}> ({
^bb0(%p: f32, %g: f32, %t: i64):
  "optim.yield"(%p) : (f32) -> ()
}) : () -> ()

// -----

func.func @outside() -> f32 {
  // expected-error @+1 {{'optim.random' op outside an 'optim.rule'}}
  %a = optim.random normal site 0 : f32
  return %a : f32
}

// -----

optim.rule @bad_enum(%p: f32, %g: f32, %t: i64) random(normal) {
  // expected-error @+1 {{expected string or keyword containing one of the following enum values for attribute 'kind' [uniform, normal]}}
  %a = optim.random cauchy site 0 : f32
  optim.yield %a : f32
}

// -----

// expected-error @+1 {{'optim.rule' op has an empty 'random()' list; a rule that draws nothing has none}}
optim.rule @empty_list(%p: f32, %g: f32, %t: i64) random() {
  optim.yield %p : f32
}
