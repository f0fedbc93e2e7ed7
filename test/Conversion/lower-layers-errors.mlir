// RUN: optim-opt %s --optim-lower-layers --split-input-file -verify-diagnostics

optim.layer @notqp inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>, w: tensor<2xf32>) {
  %0 = optim.eye : tensor<2x2xf32>
  %z, %nu, %lam = optim.qp Q(%0 : tensor<2x2xf32>) q(%y : tensor<2xf32>) -> tensor<2xf32>, tensor<0xf32>, tensor<0xf32>
  %1 = arith.negf %y : tensor<2xf32>
  // expected-error @-1 {{every output must be a result of the qp}}
  optim.return %z, %1 : tensor<2xf32>, tensor<2xf32>
}

// -----

optim.layer @noderivative inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  %0 = optim.eye : tensor<2x2xf32>
  // expected-error @+1 {{'math.absf' op optim-lower-layers: no derivative for this op in a layer's data}}
  %1 = math.absf %y : tensor<2xf32>
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

// expected-error @+1 {{the layer solves no qp}}
optim.layer @none inputs(%y: tensor<2xf32>) -> (z: tensor<2xf32>) {
  optim.return %y : tensor<2xf32>
}
