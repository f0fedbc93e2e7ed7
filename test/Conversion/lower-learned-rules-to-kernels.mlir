// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file | FileCheck %s
// A host with 16 vector registers of 8 floats (AVX2) gets learned-vector-width
// 4 from the compiler: blocks of 16 coordinates (4 x 16 accumulators, not 4 x
// 64), activations on 8 lanes, then 4 and 1; update rules keep vector-width.
// RUN: optim-opt %s --optim-lower-rules-to-kernels="learned-vector-width=4" --split-input-file | FileCheck %s --check-prefix=W4

// The learned rule of examples/l2l.optim. Blocks of 4 x 16 = 64 coordinates
// (then 16, then 1); each hidden unit's four gate rows accumulate side by
// side with fused multiply-adds, the inputs read in place, segment by
// segment (x, then h); the activations run on 32 lanes at a time as
// polynomials, with two divisions per cell, and no libm call is left.
// CHECK-LABEL: func.func @optim_rule_l2l(
// CHECK-NOT: math.tanh
// CHECK-NOT: math.log
// CHECK: scf.for %{{.*}} step %c64
// The next block's lines of p and g, into L2 (the states are the cells').
// CHECK: scf.for %{{.*}} to %c1
// CHECK-COUNT-4: "llvm.intr.prefetch"(%{{.*}}) <{cache = 1 : i32, hint = 2 : i32, rw = 0 : i32}>
// CHECK: scf.for %{{.*}} to %c1
// CHECK-COUNT-4: "llvm.intr.prefetch"(%{{.*}}) <{cache = 1 : i32, hint = 2 : i32, rw = 0 : i32}>
// CHECK-NOT: "llvm.intr.prefetch"
// The polynomial log of log_sign, on the whole block.
// CHECK: math.fma %{{.*}} : vector<64xf32>
// lstm1: the hidden units: the next block's lines of the unit's component
// of c1 and h1 (4 each, into L1), then x (2 components) and h (20).
// CHECK: scf.for %{{.*}} to %c20
// CHECK-COUNT-8: "llvm.intr.prefetch"(%{{.*}}) <{cache = 1 : i32, hint = 3 : i32, rw = 0 : i32}>
// CHECK-NOT: "llvm.intr.prefetch"
// CHECK: scf.for %{{.*}} to %c2 step %{{.*}} iter_args({{.*}}) -> (vector<64xf32>, vector<64xf32>, vector<64xf32>, vector<64xf32>)
// CHECK-COUNT-4: math.fma %{{.*}} : vector<64xf32>
// CHECK: scf.for %{{.*}} to %c20{{.*}} iter_args({{.*}}) -> (vector<64xf32>, vector<64xf32>, vector<64xf32>, vector<64xf32>)
// CHECK-COUNT-4: math.fma %{{.*}} : vector<64xf32>
// CHECK: scf.for %{{.*}} to %c2
// CHECK-NOT: scf.for
// CHECK: arith.divf %{{.*}} : vector<32xf32>
// CHECK-NOT: scf.for
// CHECK: arith.divf %{{.*}} : vector<32xf32>
// CHECK-NOT: arith.divf
// The new c1 and h1 go straight to the state (and h1 to a buffer for lstm2).
// CHECK: llvm.store %{{.*}} {alignment = 4 : i64} : vector<32xf32>, !llvm.ptr
// CHECK: llvm.store %{{.*}} {alignment = 4 : i64} : vector<32xf32>, !llvm.ptr
// CHECK: llvm.store %{{.*}} {alignment = 128 : i64} : vector<32xf32>, !llvm.ptr
// lstm2: h1 from the buffer (20), then h2 (20).
// CHECK: scf.for %{{.*}} to %c20{{.*}} iter_args({{.*}}) -> (vector<64xf32>, vector<64xf32>, vector<64xf32>, vector<64xf32>)
// CHECK: scf.for %{{.*}} to %c20{{.*}} iter_args({{.*}}) -> (vector<64xf32>, vector<64xf32>, vector<64xf32>, vector<64xf32>)
// The 16-lane and single-coordinate loops do the same per lane (and do
// not prefetch).
// CHECK: scf.for %{{.*}} step %c16
// CHECK-NOT: llvm.intr.prefetch
// CHECK: arith.divf %{{.*}} : vector<16xf32>
// CHECK: scf.for %{{.*}} step %c1
// CHECK: arith.divf %{{.*}} : f32
// W4-LABEL: func.func @optim_rule_l2l(
// W4: scf.for %{{.*}} step %c16
// W4: scf.for %{{.*}} to %c20{{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// W4: arith.divf %{{.*}} : vector<8xf32>
// W4: scf.for %{{.*}} step %c4
// W4: arith.divf %{{.*}} : vector<4xf32>
// W4: scf.for %{{.*}} step %c1
// W4-NOT: vector<64xf32>
optim.rule @l2l(%p: f32, %g: f32, %t: i64) hyper(%scale: f32 = 0.1, %k: f32 = 1.0e+01 const) state(%h1: vector<20xf32> = 0.0, %c1: vector<20xf32> = 0.0, %h2: vector<20xf32> = 0.0, %c2: vector<20xf32> = 0.0) weights(%lstm1: tensor<80x23xf32>, %lstm2: tensor<80x41xf32>, %head: tensor<1x21xf32>) {
  %0 = optim.log_sign %g, %k : f32 -> vector<2xf32>
  %h_out, %c_out = optim.lstm_cell %0, %h1, %c1, %lstm1 : vector<2xf32>, vector<20xf32>, tensor<80x23xf32>
  %h_out_0, %c_out_1 = optim.lstm_cell %h_out, %h2, %c2, %lstm2 : vector<20xf32>, vector<20xf32>, tensor<80x41xf32>
  %1 = optim.linear %h_out_0, %head : vector<20xf32>, tensor<1x21xf32> -> f32
  %2 = arith.mulf %scale, %1 : f32
  %3 = arith.addf %p, %2 : f32
  optim.yield %3, %h_out, %c_out, %h_out_0, %c_out_1 : f32, vector<20xf32>, vector<20xf32>, vector<20xf32>, vector<20xf32>
}

// -----

// In f64 the f32 approximations do not apply: log stays (libm, once per
// coordinate), and the activations are f64math's (LearnedMath.h): e^x and
// tanh from expm1 of a reduced argument, 2^n built from its bits, no call
// per lane.
// CHECK-LABEL: func.func @optim_rule_cell64(
// CHECK: math.log %{{.*}} : vector<64xf64>
// CHECK: math.roundeven %{{.*}} : vector<32xf64>
// CHECK: arith.bitcast %{{.*}} : vector<32xf64> to vector<32xi64>
// CHECK: arith.shli %{{.*}} : vector<32xi64>
// CHECK: math.copysign %{{.*}} : vector<32xf64>
// CHECK-NOT: math.tanh
// CHECK-NOT: math.exp %{{.*}} : vector<32xf64>
optim.rule @cell64(%p: f64, %g: f64, %t: i64) hyper(%k: f64 = 10.0 const) state(%h: vector<3xf64> = 0.0, %c: vector<3xf64> = 0.0) weights(%w: tensor<12x6xf64>, %head: tensor<1x4xf64>) {
  %0 = optim.log_sign %g, %k : f64 -> vector<2xf64>
  %h_out, %c_out = optim.lstm_cell %0, %h, %c, %w : vector<2xf64>, vector<3xf64>, tensor<12x6xf64>
  %1 = optim.linear %h_out, %head : vector<3xf64>, tensor<1x4xf64> -> f64
  %2 = arith.addf %p, %1 : f64
  optim.yield %2, %h_out, %c_out : f64, vector<3xf64>, vector<3xf64>
}
