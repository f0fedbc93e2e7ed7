// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=4 --canonicalize --cse | FileCheck %s
// The register tiles follow the target's register file: with AVX-512's (the
// default, 32 of 64 bytes) dIn = W^T dz takes both input columns of a block
// of 64 coordinates at once (2 x 4 registers); with AVX2's (16 of 32 bytes)
// one at a time (8 registers), as two would spill.
// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=16 --canonicalize --cse | FileCheck %s --check-prefix=AVX512
// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels="vector-width=16 vector-register-bytes=32 vector-registers=16" --canonicalize --cse | FileCheck %s --check-prefix=AVX2
// AVX512: scf.for %{{.*}} = %c0 to %c8 step %c1 iter_args(%{{[^)]*}}) -> (vector<64xf32>, vector<64xf32>) {
// AVX2: scf.for %{{.*}} = %c0 to %c8 step %c1 iter_args(%{{[^,)]*}}) -> (vector<64xf32>) {
// AVX2-NOT: -> (vector<64xf32>, vector<64xf32>) {

// An LSTM cell (input 1, hidden 2: W is 8 x 4) and a linear head. The
// cell's weight gradient dW += dz [x; h; 1]^T is a reduction over the
// coordinates: the block's dz (8 rows, lanes = coordinates) is transposed
// 4 x 4 at a time, then dW, held column-major in an accumulator of
// 4 columns x 8 rows zeroed per chunk, is updated tile by tile, one FMA per
// coordinate, row vector and column. The head's 3 weights and no
// hyperparameter use per-lane accumulators (3 slots).

// CHECK-LABEL: func.func @optim_vjp_kernel_cell(
// CHECK-SAME: %[[WEIGHTS:[^:]*]]: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr)
// Lane accumulators of 3 slots (48, 12 and 3 floats), then dW.
// CHECK: llvm.getelementptr %[[WEIGHTS]][1]
// CHECK: llvm.alloca %c48_i64 x f32
// CHECK-NEXT: llvm.alloca %c12_i64 x f32
// CHECK-NEXT: llvm.alloca %c3_i64 x f32
// CHECK-NEXT: %[[DW:.*]] = llvm.alloca %c32_i64 x f32
// CHECK: scf.for
// Zeroed per chunk.
// CHECK: scf.for
// CHECK: llvm.getelementptr %[[DW]]
// CHECK: llvm.store %{{.*}} : f32, !llvm.ptr
// Blocks of 16 coordinates: the recomputed cell (four gate rows per unit
// side by side, rational activations with two divisions), then per unit
// the gate cotangents.
// CHECK: scf.for %{{.*}} step %c16
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: arith.divf
// CHECK: arith.divf
// CHECK-NOT: arith.divf
// CHECK: math.fma
// The product W^T dz for h (x is g's: no cotangent): a tile of 2 columns.
// CHECK: scf.for {{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>)
// The transpose: two rounds of 4 two-source shuffles.
// CHECK: vector.shuffle %{{.*}}, %{{.*}} [0, 4, 2, 6] : vector<4xf32>, vector<4xf32>
// CHECK: vector.shuffle %{{.*}}, %{{.*}} [1, 5, 3, 7] : vector<4xf32>, vector<4xf32>
// CHECK: vector.shuffle %{{.*}}, %{{.*}} [0, 1, 4, 5] : vector<4xf32>, vector<4xf32>
// CHECK: vector.shuffle %{{.*}}, %{{.*}} [2, 3, 6, 7] : vector<4xf32>, vector<4xf32>
// The dW tile (2 row vectors x 4 columns) from the accumulator, over the 16
// coordinates in order, and back.
// CHECK: %[[T0:.*]] = llvm.load %[[DW]] {{.*}} -> vector<4xf32>
// CHECK: scf.for %{{.*}} = %c0 to %c16 step %c1 iter_args(%{{.*}} = %[[T0]], {{.*}}) -> (vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>)
// CHECK: %[[X:.*]] = vector.broadcast %{{.*}} : f32 to vector<4xf32>
// CHECK-NEXT: math.fma %{{.*}}, %[[X]], %{{.*}} : vector<4xf32>
// CHECK: scf.yield
// CHECK: llvm.store %{{.*}}, %[[DW]] {{.*}} : vector<4xf32>, !llvm.ptr
// Then single vectors of 4 and single coordinates, whose dz needs no
// transpose: one coordinate's 8 gate cotangents are two row vectors.
// CHECK: scf.for %{{.*}} step %c4
// CHECK: scf.for %{{.*}} step %c1
// CHECK: iter_args({{.*}}) -> (vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>, vector<4xf32>)
// At the end of the chunk, dW back to row-major: partials[c * 35 + k] =
// acc[(k mod 4) * 8 + k / 4] (35 partials: W's 32, then the head's 3).
// CHECK: arith.divui %{{.*}}, %c4_i64
// CHECK: arith.remui %{{.*}}, %c4_i64
// CHECK: llvm.load %{{.*}} : !llvm.ptr -> f32
// CHECK: llvm.getelementptr %[[PARTIALS]]
optim.rule @cell(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %c: vector<2xf32> = 0.0) weights(%w: tensor<8x4xf32>, %head: tensor<1x3xf32>) {
  %h2, %c2 = optim.lstm_cell %g, %h, %c, %w : f32, vector<2xf32>, tensor<8x4xf32>
  %y = optim.linear %h2, %head : vector<2xf32>, tensor<1x3xf32> -> f32
  %q = arith.addf %p, %y : f32
  optim.yield %q, %h2, %c2 : f32, vector<2xf32>, vector<2xf32>
}
