// RUN: optim-opt %s --optim-lower-rules-to-gpu --split-input-file | FileCheck %s

// A learned rule (2-layer LSTM + linear head, as examples/l2l.optim, smaller):
// the weights are extra kernel arguments after the hyperparameters; the
// block copies them into one workgroup buffer and synchronizes before any
// coordinate; each thread then takes one coordinate at a time (no vector
// lanes), the LSTM loops over hidden units with the gate rows read from
// shared memory, and each new state component is stored to global memory
// (component j at base + j * stride + i) as soon as it is computed. The
// shared copy of an lstm_cell's weights [4H, cols] is gate-interleaved:
// row q * H + j, column k at ((j * cols + k) * 4 + q), so the loop reads the
// four gate weights of an input with one 16-byte aligned vector load (the
// buffer is 16-byte aligned; every tensor starts at a multiple of 4).

// CHECK-LABEL: gpu.func @optim_rule_tiny(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: !llvm.ptr<1>, %[[STRIDES:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: i64, %{{[^:]*}}: i64, %[[SCALE:[^:]*]]: f32, %{{[^:]*}}: f32, %[[W1:[^:]*]]: !llvm.ptr<1>, %[[W2:[^:]*]]: !llvm.ptr<1>, %[[W3:[^:]*]]: !llvm.ptr<1>, %{{[^:]*}}: !llvm.ptr<1>)
// CHECK-SAME: workgroup(%[[SHARED:.*]] : memref<123xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}) kernel
// CHECK: %[[TID:.*]] = gpu.thread_id x
// CHECK: %[[THREADS:.*]] = gpu.block_dim x
// CHECK: scf.for %[[E:.*]] = %[[TID]] to %c72 step %[[THREADS]]
// CHECK: llvm.getelementptr %[[W1]]
// CHECK-DAG: %[[ROW:.*]] = arith.divui %[[E]], %c6
// CHECK-DAG: %[[COL:.*]] = arith.remui %[[E]], %c6
// CHECK-DAG: %[[UNIT:.*]] = arith.remui %[[ROW]], %c3
// CHECK-DAG: %[[GATE:.*]] = arith.divui %[[ROW]], %c3
// CHECK: %[[UC:.*]] = arith.muli %[[UNIT]], %c6
// CHECK: %[[GROUP:.*]] = arith.addi %[[UC]], %[[COL]]
// CHECK: %[[G4:.*]] = arith.muli %[[GROUP]], %c4
// CHECK: %[[AT:.*]] = arith.addi %[[G4]], %[[GATE]]
// CHECK: %[[TO:.*]] = arith.addi %[[AT]], %c0
// CHECK: memref.store %{{.*}}, %[[SHARED]][%[[TO]]]
// CHECK: scf.for %{{.*}} = %[[TID]] to %c48 step %[[THREADS]]
// CHECK: llvm.getelementptr %[[W2]]
// CHECK: arith.divui %{{.*}}, %c6
// CHECK: memref.store
// The head stays row-major, at offset 120.
// CHECK: scf.for %[[E3:.*]] = %[[TID]] to %c3 step %[[THREADS]]
// CHECK: llvm.getelementptr %[[W3]]
// CHECK-NOT: arith.divui
// CHECK: %[[TO3:.*]] = arith.addi %[[E3]], %c120
// CHECK: memref.store %{{.*}}, %[[SHARED]][%[[TO3]]]
// CHECK: gpu.barrier
// CHECK: llvm.getelementptr %[[STRIDES]]
// CHECK: scf.for %{{.*}} = %[[TID]] to %{{.*}} step %[[THREADS]]
// log_sign: the CPU kernel's f32 polynomial for log, no math.log.
// CHECK-NOT: math.log
// The first cell's h in registers, then a loop over its 3 hidden units.
// CHECK-COUNT-3: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// c[0] before the loop and c[j + 1] at the top of unit j: each c is loaded a
// unit ahead of its use (the last unit reloads its own).
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%{{.*}} = %[[C0:[0-9]+]]) -> (f32)
// CHECK: arith.minsi %{{.*}}, %c2{{.*}} : i64
// CHECK: %[[CNEXT:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// Bias first, then one vector load and four FMAs per input.
// CHECK-NOT: memref.load
// CHECK: %[[BIAS:.*]] = vector.load %[[SHARED]][%{{.*}}] {alignment = 16 : i64} : memref<123xf32, #gpu.address_space<workgroup>>, vector<4xf32>
// CHECK-COUNT-4: vector.extract %[[BIAS]]
// CHECK: %[[W0:.*]] = vector.load %[[SHARED]][%{{.*}}] {alignment = 16 : i64}
// CHECK: %[[W00:.*]] = vector.extract %[[W0]][0]
// CHECK: %[[W01:.*]] = vector.extract %[[W0]][1]
// CHECK: %[[W02:.*]] = vector.extract %[[W0]][2]
// CHECK: %[[W03:.*]] = vector.extract %[[W0]][3]
// CHECK-NEXT: math.fma %[[W00]]
// CHECK-NEXT: math.fma %[[W01]]
// CHECK-NEXT: math.fma %[[W02]]
// CHECK-NEXT: math.fma %[[W03]]
// CHECK-COUNT-4: vector.load %[[SHARED]][%{{.*}}] {alignment = 16 : i64}
// CHECK-NOT: memref.load %[[SHARED]]
// CHECK: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr<1>
// CHECK: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr<1>
// CHECK: scf.yield %[[CNEXT]] : f32
// The second cell reads the first's new h back (2 loads) with its old h.
// CHECK-COUNT-5: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK: scf.for
// CHECK-COUNT-6: vector.load %[[SHARED]]
// CHECK-NOT: memref.load %[[SHARED]]
// CHECK-COUNT-2: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr<1>
// The head reads h2 back, then p is written.
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK: memref.load %[[SHARED]]
// CHECK: llvm.store %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr<1>
// CHECK-NEXT: }
// CHECK-NEXT: gpu.return
optim.rule @tiny(%p: f32, %g: f32, %t: i64) hyper(%scale: f32 = 0.1, %k: f32 = 1.0e+01 const) state(%h1: vector<3xf32> = 0.0, %c1: vector<3xf32> = 0.0, %h2: vector<2xf32> = 0.0, %c2: vector<2xf32> = 0.0) weights(%lstm1: tensor<12x6xf32>, %lstm2: tensor<8x6xf32>, %head: tensor<1x3xf32>) {
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %h_out, %c_out = optim.lstm_cell %0, %h1, %c1, %lstm1 : vector<2xf32>, vector<3xf32>, tensor<12x6xf32>
  %h_out_0, %c_out_1 = optim.lstm_cell %h_out, %h2, %c2, %lstm2 : vector<3xf32>, vector<2xf32>, tensor<8x6xf32>
  %1 = optim.linear %h_out_0, %head : vector<2xf32>, tensor<1x3xf32> -> f32
  %2 = arith.mulf %scale, %1 : f32
  %3 = arith.addf %p, %2 : f32
  optim.yield %3, %h_out, %c_out, %h_out_0, %c_out_1 : f32, vector<3xf32>, vector<3xf32>, vector<2xf32>, vector<2xf32>
}

// -----

// States written at the end are all loaded before the first store: a
// yield that swaps two states reads both old values.
// CHECK-LABEL: gpu.func @optim_rule_swap(
// CHECK: gpu.barrier
// CHECK: scf.for
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr<1> -> f32
// CHECK-NOT: llvm.load
// CHECK-COUNT-3: llvm.store
// CHECK-NOT: llvm.store
// CHECK: gpu.return
optim.rule @swap(%p: f32, %g: f32, %t: i64) state(%a: f32 = 0.0, %b: f32 = 1.0) weights(%w: tensor<1x2xf32>) {
  %0 = optim.linear %g, %w : f32, tensor<1x2xf32> -> f32
  %1 = arith.subf %p, %0 : f32
  optim.yield %1, %b, %a : f32, f32, f32
}
