// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file | FileCheck %s
// LSTM cell results that cannot be written to their state as they are
// computed, and a c input in registers, go through arrays of the thread's
// private memory (one per value, indexed by hidden unit).

// The new h goes to state h, but the old h is read after the cell: the new
// h waits in scratch, and the state is written at the end.
// CHECK-LABEL: gpu.func @optim_rule_reread
// CHECK-SAME: private(%[[H:.*]] : memref<2xf32, #gpu.address_space<private>>)
// CHECK: scf.for %[[U:.*]] = %c0{{.*}} to %c2
// CHECK: memref.store %{{.*}}, %[[H]][%[[U]]] : memref<2xf32, #gpu.address_space<private>>
// CHECK: }
// CHECK: memref.load %[[H]][%c0{{.*}}]
// CHECK: memref.load %[[H]][%c1{{.*}}]
optim.rule @reread(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  %h_out, %c_out = optim.lstm_cell %0, %h, %c, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %1 = vector.reduction <add>, %h : vector<2xf32> into f32
  %2 = arith.subf %p, %1 : f32
  optim.yield %2, %h_out, %c_out : f32, vector<2xf32>, vector<2xf32>
}

// -----

// The new c is clipped before it goes to its state.
// CHECK-LABEL: gpu.func @optim_rule_notfinal
// CHECK-SAME: private(%[[C:.*]] : memref<2xf32, #gpu.address_space<private>>)
// CHECK: scf.for %[[U:.*]] = %c0{{.*}} to %c2
// CHECK: memref.store %{{.*}}, %[[C]][%[[U]]]
// CHECK: }
// CHECK: %[[C0:.*]] = memref.load %[[C]][%c0{{.*}}]
// CHECK: arith.maximumf %[[C0]]
optim.rule @notfinal(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  %lo = arith.constant dense<-0.5> : vector<2xf32>
  %h_out, %c_out = optim.lstm_cell %0, %h, %c, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %1 = arith.maximumf %c_out, %lo : vector<2xf32>
  %2 = vector.reduction <add>, %h_out : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %h_out, %1 : f32, vector<2xf32>, vector<2xf32>
}

// -----

// c is a value in registers (g broadcast): stored to scratch before the
// loop over hidden units, which reads unit u's component from there.
// CHECK-LABEL: gpu.func @optim_rule_cinreg
// CHECK-SAME: private(%[[CIN:.*]] : memref<2xf32, #gpu.address_space<private>>)
// CHECK: memref.store %[[G:.*]], %[[CIN]][%c0{{.*}}]
// CHECK: memref.store %[[G]], %[[CIN]][%c1{{.*}}]
// CHECK: scf.for %[[U:.*]] = %c0{{.*}} to %c2
// CHECK: memref.load %[[CIN]][%[[U]]]
optim.rule @cinreg(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>) {
  %0 = vector.broadcast %g : f32 to vector<1xf32>
  %1 = vector.broadcast %g : f32 to vector<2xf32>
  %h_out, %c_out = optim.lstm_cell %0, %h, %1, %w : vector<1xf32>, vector<2xf32>, tensor<8x4xf32>
  %2 = vector.reduction <add>, %h_out : vector<2xf32> into f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %h_out, %c_out : f32, vector<2xf32>, vector<2xf32>
}
