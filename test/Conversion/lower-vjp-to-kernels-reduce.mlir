// RUN: optim-opt %s --optim-differentiate --canonicalize --cse --optim-lower-vjp-to-kernels=vector-width=4 --canonicalize --cse | FileCheck %s

// A rule with R = 2 reductions (the norm of x = p m per tensor, the global
// max of y = wd p), H = 2 hyperparameters and S = 1 state: two kernels with
// a tenth argument, `const double *reduced` (KernelABI.h, "Reverse mode of
// rules with tensor reductions"). 3 + 2S = 5 pointers per chunk.

// CHECK-NOT: func.func @optim_vjp_kernel_trust
// The VJP with the reduced values held constant: rho at reduced[c * 2 + r]
// (R per chunk), and P1 = H + W + 2R = 6 partials per chunk: dlr, dwd, then
// the chunk's sums of drho_0, drho_1, then the tie counts.
// CHECK-LABEL: func.func @optim_vjp_reduced_kernel_trust(
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr,
// CHECK-SAME: %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[REDUCED:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr)
// CHECK-DAG: %[[ONES:.*]] = arith.constant dense<1.000000e+00> : vector<4xf32>
// CHECK-DAG: %[[ZEROS:.*]] = arith.constant dense<0.000000e+00> : vector<4xf32>
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : i64
// CHECK-DAG: %[[C6:.*]] = arith.constant 6 : i64
// 6 lane slots (2 hyperparameters, 2 cotangents, 2 tie counts) of 4 and 1
// lanes.
// CHECK-DAG: llvm.alloca %c24_i64 x f32
// CHECK-DAG: llvm.alloca %[[C6]] x f32
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: %[[FIRST:.*]] = arith.muli %[[CI]], %[[C2]] : i64
// CHECK: %[[AT0:.*]] = llvm.getelementptr %[[REDUCED]][%[[FIRST]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK: %[[RHO0D:.*]] = llvm.load %[[AT0]] {{.*}} -> f64
// CHECK: %[[RHO0:.*]] = arith.truncf %[[RHO0D]] : f64 to f32
// CHECK: %[[SLOT1:.*]] = arith.addi %[[FIRST]], %c1_i64 : i64
// CHECK: %[[AT1:.*]] = llvm.getelementptr %[[REDUCED]][%[[SLOT1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK: %[[RHO1D:.*]] = llvm.load %[[AT1]] {{.*}} -> f64
// CHECK: %[[RHO1:.*]] = arith.truncf %[[RHO1D]] : f64 to f32
// The vector loop broadcasts them; the tie indicator of the max is 1 where
// wd p equals rho_1, added to lane slot 5 (elements 20..23).
// CHECK: scf.for %{{.*}} step %c4
// CHECK-DAG: vector.broadcast %[[RHO0]] : f32 to vector<4xf32>
// CHECK-DAG: %[[B1:.*]] = vector.broadcast %[[RHO1]] : f32 to vector<4xf32>
// CHECK: %[[TIE:.*]] = arith.cmpf oeq, %{{.*}}, %[[B1]] : vector<4xf32>
// CHECK: %[[IND:.*]] = arith.select %[[TIE]], %[[ONES]], %[[ZEROS]] : vector<4xi1>, vector<4xf32>
// CHECK: %[[SLOT5:.*]] = llvm.getelementptr %{{.*}}[20] : (!llvm.ptr) -> !llvm.ptr, f32
// CHECK: %[[OLD:.*]] = llvm.load %[[SLOT5]]
// CHECK: %[[NEW:.*]] = arith.addf %[[OLD]], %[[IND]] : vector<4xf32>
// CHECK: llvm.store %[[NEW]], %[[SLOT5]]
// CHECK: scf.for %{{.*}} step %c1
// CHECK: arith.cmpf oeq, %{{.*}}, %[[RHO1]] : f32
// The hyperparameters' sums at c * 6 + k, then the 2R reduced results at
// c * 6 + 2 + k.
// CHECK: %[[BASE:.*]] = arith.muli %[[CI]], %[[C6]] : i64
// CHECK: scf.for %{{.*}} = %c0 to %c2 step %c1
// CHECK: llvm.getelementptr %[[PARTIALS]]
// CHECK: scf.for %[[K:.*]] = %c0 to %c4 step %c1
// CHECK: %[[KI:.*]] = arith.index_cast %[[K]] : index to i64
// CHECK: %[[SLOT:.*]] = arith.addi %[[KI]], %[[C2]] : i64
// CHECK: %[[DST:.*]] = arith.addi %[[BASE]], %[[SLOT]] : i64
// CHECK: llvm.getelementptr %[[PARTIALS]][%[[DST]]]
// CHECK: return

// The VJP through the reduced operands: rho then u at reduced[c * 4 + k]
// (2R per chunk); rho_0 is unused (the norm's seed is u_0 x); P = H + W + R
// = 4 partials per chunk, the last R the cotangents of rho that flow back
// from higher levels (0 here: both reductions are of level 0). The incoming
// cotangents of p and m are read and overwritten with their sums.
// CHECK-LABEL: func.func @optim_vjp_reductions_kernel_trust(
// CHECK-SAME: %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[REDUCED:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr)
// CHECK-DAG: %[[C4:.*]] = arith.constant 4 : i64
// CHECK-DAG: %[[C2:.*]] = arith.constant 2 : i64
// CHECK-DAG: %[[C1:.*]] = arith.constant 1 : i64
// CHECK-DAG: %[[C3:.*]] = arith.constant 3 : i64
// CHECK: scf.for %[[C:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[CI:.*]] = arith.index_cast %[[C]] : index to i64
// CHECK: %[[FIRST:.*]] = arith.muli %[[CI]], %[[C4]] : i64
// CHECK: %[[S1:.*]] = arith.addi %[[FIRST]], %[[C1]] : i64
// CHECK: llvm.getelementptr %[[REDUCED]][%[[S1]]]
// CHECK: %[[RHO1:.*]] = arith.truncf
// CHECK: %[[S2:.*]] = arith.addi %[[FIRST]], %[[C2]] : i64
// CHECK: llvm.getelementptr %[[REDUCED]][%[[S2]]]
// CHECK: %[[U0:.*]] = arith.truncf
// CHECK: %[[S3:.*]] = arith.addi %[[FIRST]], %[[C3]] : i64
// CHECK: llvm.getelementptr %[[REDUCED]][%[[S3]]]
// CHECK: %[[U1:.*]] = arith.truncf
// The seeds: u_1 where wd p == rho_1 (max), u_0 x (norm).
// CHECK: scf.for %{{.*}} step %c4
// CHECK-DAG: %[[BR1:.*]] = vector.broadcast %[[RHO1]] : f32 to vector<4xf32>
// CHECK-DAG: %[[BU1:.*]] = vector.broadcast %[[U1]] : f32 to vector<4xf32>
// CHECK-DAG: %[[BU0:.*]] = vector.broadcast %[[U0]] : f32 to vector<4xf32>
// CHECK: %[[X:.*]] = arith.mulf %[[P:.*]], %[[M:.*]] : vector<4xf32>
// CHECK: %[[Y:.*]] = arith.mulf %{{.*}}, %[[P]] : vector<4xf32>
// CHECK: %[[SEED0:.*]] = arith.mulf %[[BU0]], %[[X]] : vector<4xf32>
// CHECK: %[[AT:.*]] = arith.cmpf oeq, %[[Y]], %[[BR1]] : vector<4xf32>
// CHECK: arith.select %[[AT]], %[[BU1]], %{{.*}} : vector<4xi1>, vector<4xf32>
// CHECK: %[[DPIN:.*]] = llvm.load %[[DPPTR:.*]] {{.*}} -> vector<4xf32>
// CHECK: %[[DP:.*]] = arith.addf %[[DPIN]], %{{.*}} : vector<4xf32>
// CHECK: %[[DMIN:.*]] = llvm.load %[[DMPTR:.*]] {{.*}} -> vector<4xf32>
// CHECK: %[[DM:.*]] = arith.addf %[[DMIN]], %{{.*}} : vector<4xf32>
// CHECK: llvm.store %[[DP]], %[[DPPTR]]
// CHECK: llvm.store %[[DM]], %[[DMPTR]]
// CHECK: scf.for %{{.*}} step %c1
// The chunk's first partial, c * 4, is its first reduced value's (CSE).
// CHECK: scf.for %{{.*}} = %c0 to %c2 step %c1
// CHECK: arith.addi %[[FIRST]]
// CHECK: llvm.getelementptr %[[PARTIALS]]
// CHECK: scf.for %[[K:.*]] = %c0 to %c2 step %c1
// CHECK: %[[KI:.*]] = arith.index_cast %[[K]] : index to i64
// CHECK: %[[SLOT:.*]] = arith.addi %[[KI]], %c2_i64 : i64
// CHECK: %[[AT:.*]] = arith.addi %[[FIRST]], %[[SLOT]] : i64
// CHECK: llvm.getelementptr %[[PARTIALS]][%[[AT]]]
// CHECK-NOT: scf.for
// CHECK: return
// The per-coordinate functions are gone (the kernels are created before
// them).
// CHECK-NOT: func.func
optim.rule @trust(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1, %wd: f32 = 0.01) state(%m: f32 = 0.0) {
  %x = arith.mulf %p, %m : f32
  %n = optim.tensor_reduce norm %x : f32
  %y = arith.mulf %wd, %p : f32
  %hi = optim.tensor_reduce max %y global : f32
  %0 = arith.mulf %n, %hi : f32
  %1 = arith.mulf %0, %lr : f32
  %2 = arith.mulf %1, %g : f32
  %3 = arith.subf %p, %2 : f32
  optim.yield %3, %x : f32, f32
}
