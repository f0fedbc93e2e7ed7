// RUN: optim-opt %s --optim-lower-layers --split-input-file -verify-diagnostics

optim.layer @notqp inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>, w: tensor<2xf32>) {
  %0 = optim.eye : tensor<2x2xf32>
  %z, %nu, %lam = optim.qp Q(%0 : tensor<2x2xf32>) q(%y : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  %1 = arith.negf %y : tensor<2xf32>
  // expected-error @-1 {{every output of a layer must be a result of its qp (z, nu or lam), not a value computed from them}}
  optim.return %z, %1 : tensor<2xf32>, tensor<2xf32>
}

// -----

optim.layer @noderivative inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %0 = optim.eye : tensor<2x2xf32>
  // The front end never writes erf; IR written by hand may.
  // expected-error @+1 {{'math.erf' op optim-lower-layers: no derivative for this op in a layer's data}}
  %1 = math.erf %y : tensor<2xf32>
  %z, %nu, %lam = optim.qp Q(%0 : tensor<2x2xf32>) q(%1 : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

optim.layer @dense inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %0 = optim.eye : tensor<2x2xf32>
  // expected-error @+1 {{only splat constants are supported in a layer's data}}
  %c = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
  %1 = arith.addf %y, %c : tensor<2xf32>
  %z, %nu, %lam = optim.qp Q(%0 : tensor<2x2xf32>) q(%1 : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<2xf32>
}

// -----

// expected-error @+1 {{layer 'none' solves no qp}}
optim.layer @none inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  optim.return %y : tensor<2xf32>
}
