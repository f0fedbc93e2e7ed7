// Valid IR that the lowerings leave optim ops in: the pipeline to LLVM ends
// with an error at each such op (optim-check-lowered) rather than with LLVM
// dialect IR that still holds them, and optim-opt exits with 1.
// RUN: optim-opt %s -split-input-file -verify-diagnostics --optim-lower-to-llvm
// RUN: optim-opt %s -split-input-file -verify-diagnostics --optim-check-lowered
// RUN: not optim-opt %s -split-input-file --optim-lower-to-llvm 2>&1 | FileCheck %s

// A step function of a learned rule without its VJP function: only
// optim-lower-vjp-to-kernels lowers it, together with that function.
// (A note of each error; one expectation matches both.)
// expected-note @+1 {{in a function that optim-differentiate derived from rule @cell: optim-lower-vjp-to-kernels lowers it (with the rule's optim.vjp_of function), as optim-lower-to-llvm{vjp=true} does}}
func.func @optim_step_cell(%g: f32, %k: f32, %h: vector<2xf32>, %w: tensor<8x5xf32>) -> vector<2xf32> attributes {optim.step_of = @cell} {
  // CHECK: check-lowered-errors.mlir:[[# @LINE + 2]]:8: error: 'optim.log_sign' op outside an 'optim.rule' or 'optim.layer' is not lowered
  // expected-error @+1 {{'optim.log_sign' op outside an 'optim.rule' or 'optim.layer' is not lowered}}
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  // CHECK: check-lowered-errors.mlir:[[# @LINE + 2]]:14: error: 'optim.lstm_cell' op outside
  // expected-error @+1 {{'optim.lstm_cell' op outside an 'optim.rule' or 'optim.layer' is not lowered}}
  %h2, %c2 = optim.lstm_cell %0, %h, %h, %w : vector<2xf32>, vector<2xf32>, tensor<8x5xf32>
  return %h2 : vector<2xf32>
}

// -----

// A tensor reduction in a step function (written by hand: optim-differentiate
// refuses rules with reductions) is left for optim-check-lowered to report.
// expected-note @+1 {{in a function that optim-differentiate derived from rule @normalized}}
func.func @optim_step_normalized(%p: f32, %g: f32, %t: i64) -> f32 attributes {optim.step_of = @normalized} {
  // CHECK: check-lowered-errors.mlir:[[# @LINE + 2]]:8: error: 'optim.tensor_reduce' op outside an 'optim.rule' or 'optim.layer' is not lowered
  // expected-error @+1 {{'optim.tensor_reduce' op outside an 'optim.rule' or 'optim.layer' is not lowered}}
  %0 = optim.tensor_reduce norm %g : f32
  %1 = arith.divf %g, %0 : f32
  %2 = arith.subf %p, %1 : f32
  return %2 : f32
}

// -----

// A rule and a layer in a nested module: the lowerings take those at the
// top level only. One error each, none for the ops of their bodies.
module {
  module {
    // CHECK: check-lowered-errors.mlir:[[# @LINE + 2]]:5: error: 'optim.rule' op was not lowered
    // expected-error @+1 {{'optim.rule' op was not lowered: the lowerings take the rules and layers at the top level of the module}}
    optim.rule @nested(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0) {
      %0 = optim.log_sign %g, %g : f32 -> vector<2xf32>
      optim.yield %p, %0 : f32, vector<2xf32>
    }
    // expected-error @+1 {{'optim.layer' op was not lowered}}
    optim.layer @proj inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
      %z, %nu, %lam = optim.qp q(%y : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
      optim.return %z : tensor<2xf32>
    }
  }
}
