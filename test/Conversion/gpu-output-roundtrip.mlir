// optim-opt reads back what its GPU lowerings print (the gpu dialect is
// registered): before, the output of --optim-lower-rules-to-gpu and
// --optim-lower-layers-to-gpu failed to parse ("Dialect `gpu' not found").
// RUN: optim-opt %s --optim-lower-rules-to-gpu --optim-lower-layers-to-gpu | optim-opt | FileCheck %s

// CHECK: module attributes {gpu.container_module}
// CHECK: gpu.module @optim_kernels
// CHECK: gpu.func @optim_rule_sgd
// CHECK: gpu.func @optim_layer_proj_qp

optim.rule @sgd(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %0 = arith.mulf %lr, %g : f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1 : f32
}

optim.layer @proj inputs(%y: tensor<3xf32>) -> (z: tensor<3xf32>) {
  %Q = optim.eye : tensor<3x3xf32>
  %q = arith.negf %y : tensor<3xf32>
  %z, %nu, %lam = optim.qp Q(%Q : tensor<3x3xf32>) q(%q : tensor<3xf32>) -> tensor<3xf32>, tensor<0xf32>, tensor<0xf32>
  optim.return %z : tensor<3xf32>
}
