// RUN: optim-opt %s --optim-differentiate | FileCheck %s

// A learned rule: log_sign, an LSTM cell, a linear head, vector states,
// indexing and a reduction. The weights come after the states in both
// functions; their cotangents (per coordinate) come last in the VJP's
// results, produced by the adjoint ops of the learned blocks.

// CHECK-LABEL: func.func @optim_step_cell(
// CHECK-SAME: %{{.*}}: vector<2xf32>, %{{.*}}: tensor<8x5xf32>, %{{.*}}: tensor<1x3xf32>) -> (f32, vector<2xf32>, vector<2xf32>)

// CHECK-LABEL: func.func @optim_vjp_cell(
// CHECK-SAME: %[[P:[^:]*]]: f32, %[[G:[^:]*]]: f32, %{{[^:]*}}: i64, %[[LR:[^:]*]]: f32, %[[K:[^:]*]]: f32, %[[H:[^:]*]]: vector<2xf32>, %[[C:[^:]*]]: vector<2xf32>, %[[W:[^:]*]]: tensor<8x5xf32>, %[[V:[^:]*]]: tensor<1x3xf32>, %[[DP:[^:]*]]: f32, %[[DH1:[^:]*]]: vector<2xf32>, %[[DC1:[^:]*]]: vector<2xf32>)
// CHECK-SAME: -> (f32, vector<2xf32>, vector<2xf32>, f32, f32, tensor<8x5xf32>, tensor<1x3xf32>)
// CHECK-SAME: attributes {optim.vjp_layout = array<i64: 2, 2, 2>, optim.vjp_of = @cell}
// The forward step is recomputed first.
// CHECK: %[[X:.*]] = optim.log_sign %[[G]], %[[K]]
// CHECK: %[[HO:.*]], %[[CO:.*]] = optim.lstm_cell %[[X]], %[[H]], %[[C]], %[[W]]
// CHECK: %[[Y:.*]] = optim.linear %[[HO]], %[[V]]
// Reduction -> broadcast of the cotangent, added to that of h'.
// CHECK: %[[BC:.*]] = vector.broadcast %{{.*}} : f32 to vector<2xf32>
// CHECK: %[[DHA:.*]] = arith.addf %[[DH1]], %[[BC]] : vector<2xf32>
// Indexing -> insert into zeros, added to the cotangent of c'.
// CHECK: %[[INS:.*]] = vector.insert %{{.*}}, %{{.*}} [1] : f32 into vector<2xf32>
// CHECK: %[[DCO:.*]] = arith.addf %[[DC1]], %[[INS]] : vector<2xf32>
// CHECK: %[[DXL:.*]], %[[DV:.*]] = optim.linear_vjp %[[HO]], %[[V]], %{{.*}} : vector<2xf32>, tensor<1x3xf32>, f32
// CHECK: %[[DHO:.*]] = arith.addf %[[DHA]], %[[DXL]] : vector<2xf32>
// CHECK: %[[DX:.*]], %[[DH:.*]], %[[DC:.*]], %[[DW:.*]] = optim.lstm_cell_vjp %[[X]], %[[H]], %[[C]], %[[W]], %[[DHO]], %[[DCO]]
// log_sign's cotangent flows to k (and to g, which gets none): above the
// threshold d/dk (log|g| / k) = -log|g| / k^2.
// CHECK: math.log
// CHECK: %[[DK:.*]] = arith.select
// CHECK: return %[[DP]], %[[DH]], %[[DC]], %{{.*}}, %[[DK]], %[[DW]], %[[DV]]
optim.rule @cell(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1, %k: f32 = 3.0) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x5xf32>, %v: tensor<1x3xf32>) {
  %x = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %h1, %c1 = optim.lstm_cell %x, %h, %c, %w : vector<2xf32>, vector<2xf32>, tensor<8x5xf32>
  %y = optim.linear %h1, %v : vector<2xf32>, tensor<1x3xf32> -> f32
  %e = vector.extract %c1[1] : f32 from vector<2xf32>
  %s = vector.reduction <add>, %h1 : vector<2xf32> into f32
  %a = arith.mulf %y, %e : f32
  %b = arith.addf %a, %s : f32
  %u = arith.mulf %lr, %b : f32
  %q = arith.addf %p, %u : f32
  optim.yield %q, %h1, %c1 : f32, vector<2xf32>, vector<2xf32>
}
