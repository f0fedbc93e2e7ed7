// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels | FileCheck %s --check-prefix=VEC
// RUN: optim-opt %s --optim-lower-to-llvm | FileCheck %s --check-prefix=LLVM

// Row and column states and reductions (KernelABI.h version 10, "Axes"): a
// factored second moment (a row state r from a row mean, a column state c
// from a column max, an SM3-like min(r, c)), a per-coordinate state m, and a
// tensor mean of the new r (level 1). Chunks are rectangles: lengths holds
// nr, nc, r0, c0 per chunk, and a chunk has 2 + S + A + 2X = 2 + 3 + 2 + 4
// pointers: p, g, m, r, c (current buffers), r and c's next buffers, the
// partials of the row and column reductions, then their combined results.
optim.rule @factored(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.01, %b2: f32 = 0.999) state(%m: f32 = 0.0, %r: f32 = 0.0 row, %c: f32 = 0.0 col) {
  %g2 = arith.mulf %g, %g : f32
  %rm = optim.tensor_reduce mean %g2 row : f32
  %cx = optim.tensor_reduce max %g2 col : f32
  %one = arith.constant 1.0 : f32
  %ib = arith.subf %one, %b2 : f32
  %r1 = arith.mulf %b2, %r : f32
  %r2 = arith.mulf %ib, %rm : f32
  %rn = arith.addf %r1, %r2 : f32
  %cn = arith.maximumf %c, %cx : f32
  %tm = optim.tensor_reduce mean %rn : f32
  %v0 = arith.minimumf %rn, %cn : f32
  %v = arith.divf %v0, %tm : f32
  %s = math.sqrt %v : f32
  %u = arith.divf %g, %s : f32
  %mn = arith.addf %m, %u : f32
  %lu = arith.mulf %lr, %mn : f32
  %p2 = arith.subf %p, %lu : f32
  optim.yield %p2, %mn, %rn, %cn : f32, f32, f32, f32
}

// Stage 0 of the reduce kernel: the row mean and the column max of g * g.
// CHECK-LABEL: func.func @optim_reduce_factored(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr, %[[LENGTHS:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[REDUCED:[^:]*]]: !llvm.ptr, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr) {
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK: scf.for %[[CI:.*]] = %{{.*}} to %{{.*}} step
// CHECK-NEXT: %[[C:.*]] = arith.index_cast %[[CI]] : index to i64
// CHECK-NEXT: %c11_i64 = arith.constant 11 : i64
// CHECK-NEXT: %[[FIRST:.*]] = arith.muli %[[C]], %c11_i64 : i64
// CHECK-COUNT-7: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[RPART:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[CPART:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// Four lengths per chunk: nr, nc, r0, c0.
// CHECK: %[[L4:.*]] = arith.muli %[[C]], %c4_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[LA0:.*]] = llvm.getelementptr %[[LENGTHS]][%[[L4]]]
// CHECK-NEXT: %[[NR:.*]] = llvm.load %[[LA0]] {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: arith.addi %[[L4]], %c1_i64
// CHECK-NEXT: llvm.getelementptr %[[LENGTHS]]
// CHECK-NEXT: %[[NC:.*]] = llvm.load
// CHECK: arith.addi %[[L4]], %c2_i64
// CHECK-NEXT: llvm.getelementptr %[[LENGTHS]]
// CHECK-NEXT: %[[R0:.*]] = llvm.load
// CHECK: arith.addi %[[L4]], %c3_i64
// CHECK-NEXT: llvm.getelementptr %[[LENGTHS]]
// CHECK-NEXT: llvm.load
// The column partials start at max's identity, for the chunk's nc columns.
// CHECK: %[[NCI:.*]] = arith.index_cast %[[NC]] : i64 to index
// CHECK-NEXT: scf.for %[[J0:.*]] = %c0 to %[[NCI]] step %c1 {
// CHECK-NEXT: %[[J:.*]] = arith.index_cast %[[J0]] : index to i64
// CHECK-NEXT: %[[NEGINF:.*]] = arith.constant 0xFFF0000000000000 : f64
// CHECK-NEXT: %[[CPJ:.*]] = llvm.getelementptr %[[CPART]][%[[J]]]
// CHECK-NEXT: llvm.store %[[NEGINF]], %[[CPJ]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// Row by row: row r at chunk offset r * nc.
// CHECK: %[[NRI:.*]] = arith.index_cast %[[NR]] : i64 to index
// CHECK-NEXT: scf.for %[[RI:.*]] = %c0 to %[[NRI]] step %c1 {
// CHECK-NEXT: %[[R:.*]] = arith.index_cast %[[RI]] : index to i64
// CHECK-NEXT: %[[ROW:.*]] = arith.muli %[[R]], %[[NC]] : i64
// CHECK-NEXT: llvm.getelementptr %{{.*}}[%[[ROW]]]
// CHECK-NEXT: %[[GROW:.*]] = llvm.getelementptr %{{.*}}[%[[ROW]]]
// The row's columns: the mean accumulates in f64, the max merges into the
// column partials in memory.
// CHECK: %[[SUM:.*]] = scf.for %[[JJ:.*]] = %c0 to %[[NCI]] step %{{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f64) {
// CHECK-NEXT: %[[JI:.*]] = arith.index_cast %[[JJ]] : index to i64
// CHECK-NEXT: %[[GA:.*]] = llvm.getelementptr %[[GROW]][%[[JI]]]
// CHECK-NEXT: %[[GV:.*]] = llvm.load %[[GA]] {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[SQ:.*]] = arith.mulf %[[GV]], %[[GV]] : f32
// CHECK-NEXT: %[[X:.*]] = arith.extf %[[SQ]] : f32 to f64
// CHECK-NEXT: %[[NEXT:.*]] = arith.addf %[[ACC]], %[[X]] : f64
// CHECK-NEXT: %[[X2:.*]] = arith.extf %[[SQ]] : f32 to f64
// CHECK-NEXT: %[[CA:.*]] = llvm.getelementptr %[[CPART]][%[[JI]]]
// CHECK-NEXT: %[[OLD:.*]] = llvm.load %[[CA]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[MAX:.*]] = arith.maximumf %[[OLD]], %[[X2]] : f64
// CHECK-NEXT: llvm.store %[[MAX]], %[[CA]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: scf.yield %[[NEXT]] : f64
// CHECK-NEXT: }
// The row's partial overwrites partial[r].
// CHECK-NEXT: %[[RA:.*]] = llvm.getelementptr %[[RPART]][%[[R]]]
// CHECK-NEXT: llvm.store %[[SUM]], %[[RA]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: }

// Stage 1: the tensor mean of the new r, from r's current value at [r] and
// the row mean's combined result at [r] (a double, rounded to f32), over the
// whole rectangle; slot c * 3 + 2 of partials.
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[STAGE]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS1]] {
// CHECK: %[[FIRST1:.*]] = arith.muli %{{.*}}, %c3_i64{{[_0-9]*}} : i64
// CHECK: %[[TOTAL:.*]] = scf.for %{{.*}} iter_args(%[[T:.*]] = %{{.*}}) -> (f64) {
// CHECK-NEXT: %[[R1:.*]] = arith.index_cast
// CHECK-NEXT: %[[ROW1:.*]] = arith.muli %[[R1]], %{{.*}} : i64
// CHECK-COUNT-3: llvm.getelementptr %{{.*}}[%[[ROW1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: %[[RCUR:.*]] = llvm.getelementptr %{{.*}}[%[[R1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: llvm.getelementptr %{{.*}}[%[[R1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: %[[RRED:.*]] = llvm.getelementptr %{{.*}}[%[[R1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// The new r is a row value: computed once per row, before the row's column
// loops, as the rule kernel computes it.
// CHECK: %[[RV:.*]] = llvm.load %[[RCUR]] {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[RV1:.*]] = arith.mulf %{{.*}}, %[[RV]] : f32
// CHECK-NEXT: %[[RM64:.*]] = llvm.load %[[RRED]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[RM:.*]] = arith.truncf %[[RM64]] : f64 to f32
// CHECK-NEXT: %[[RV2:.*]] = arith.mulf %{{.*}}, %[[RM]] : f32
// CHECK-NEXT: %[[RN:.*]] = arith.addf %[[RV1]], %[[RV2]] : f32
// CHECK: %[[RS:.*]] = scf.for %{{.*}} iter_args(%[[T2:.*]] = %[[T]]) -> (f64) {
// CHECK-NEXT: arith.index_cast
// CHECK-NEXT: %[[RX:.*]] = arith.extf %[[RN]] : f32 to f64
// CHECK-NEXT: %[[RT:.*]] = arith.addf %[[T2]], %[[RX]] : f64
// CHECK-NEXT: scf.yield %[[RT]] : f64
// CHECK-NEXT: }
// CHECK-NEXT: scf.yield %[[RS]] : f64
// CHECK-NEXT: }
// CHECK: %[[K2:.*]] = arith.addi %[[FIRST1]], %c2_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[PA:.*]] = llvm.getelementptr %[[PARTIALS]][%[[K2]]]
// CHECK-NEXT: llvm.store %[[TOTAL]], %[[PA]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: return
// CHECK: @optim_reductions_factored("mean@row,max@col,mean:1\00")

// The rule kernel: the tensor mean from reduced[c * 3 + 2] once per chunk;
// row states are written when c0 == 0, column states when r0 + r == 0.
// CHECK-LABEL: func.func @optim_rule_factored(
// CHECK-SAME: %[[RPTRS:[^:]*]]: !llvm.ptr, %[[RLENGTHS:[^:]*]]: !llvm.ptr
// CHECK: arith.muli %{{.*}}, %c11_i64 : i64
// CHECK-COUNT-3: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[RC:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[CC:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[RNEXT:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[CNEXT:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[RREDP:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[CREDP:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[Q4:.*]] = arith.muli %{{.*}}, %c4_i64{{[_0-9]*}} : i64
// CHECK-NEXT: llvm.getelementptr %[[RLENGTHS]][%[[Q4]]]
// CHECK-NEXT: %[[QNR:.*]] = llvm.load
// CHECK: llvm.getelementptr %[[RLENGTHS]]
// CHECK-NEXT: %[[QNC:.*]] = llvm.load
// CHECK: llvm.getelementptr %[[RLENGTHS]]
// CHECK-NEXT: %[[QR0:.*]] = llvm.load
// CHECK: llvm.getelementptr %[[RLENGTHS]]
// CHECK-NEXT: %[[QC0:.*]] = llvm.load
// CHECK: %[[TM64:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[TM:.*]] = arith.truncf %[[TM64]] : f64 to f32
// CHECK: %[[WROWS:.*]] = arith.cmpi eq, %[[QC0]], %c0_i64{{[_0-9]*}} : i64
// CHECK: scf.for %[[QRI:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK-NEXT: %[[QR:.*]] = arith.index_cast %[[QRI]] : index to i64
// CHECK-NEXT: %[[QROW:.*]] = arith.muli %[[QR]], %[[QNC]] : i64
// CHECK-NEXT: %[[PROW:.*]] = llvm.getelementptr %{{.*}}[%[[QROW]]]
// CHECK-NEXT: %[[GROW2:.*]] = llvm.getelementptr %{{.*}}[%[[QROW]]]
// CHECK-NEXT: %[[MROW:.*]] = llvm.getelementptr %{{.*}}[%[[QROW]]]
// CHECK-NEXT: %[[RAT:.*]] = llvm.getelementptr %[[RC]][%[[QR]]]
// CHECK-NEXT: %[[RNEXTAT:.*]] = llvm.getelementptr %[[RNEXT]][%[[QR]]]
// CHECK-NEXT: %[[RREDAT:.*]] = llvm.getelementptr %[[RREDP]][%[[QR]]]
// CHECK-NEXT: %[[ROWR:.*]] = arith.addi %[[QR0]], %[[QR]] : i64
// CHECK-NEXT: %{{.*}} = arith.constant 0 : i64
// Row values once per row, before the column loops: the row state r, the
// row mean's combined result and the new r computed from them.
// CHECK-NEXT: %[[RV3:.*]] = llvm.load %[[RAT]] {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[R1:.*]] = arith.mulf %{{.*}}, %[[RV3]] : f32
// CHECK-NEXT: %[[RMV64:.*]] = llvm.load %[[RREDAT]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[RMV:.*]] = arith.truncf %[[RMV64]] : f64 to f32
// CHECK-NEXT: %[[R2:.*]] = arith.mulf %{{.*}}, %[[RMV]] : f32
// CHECK-NEXT: %[[RNEW:.*]] = arith.addf %[[R1]], %[[R2]] : f32
// CHECK-NEXT: %[[WCOLS:.*]] = arith.cmpi eq, %[[ROWR]], %{{.*}} : i64
// CHECK: scf.for %[[QJI:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[QJ:.*]] = arith.index_cast %[[QJI]] : index to i64
// CHECK-NEXT: %[[PA2:.*]] = llvm.getelementptr %[[PROW]][%[[QJ]]]
// CHECK-NEXT: %[[PV:.*]] = llvm.load %[[PA2]]
// CHECK-NEXT: llvm.getelementptr %[[GROW2]][%[[QJ]]]
// CHECK-NEXT: %[[GV2:.*]] = llvm.load
// CHECK-NEXT: %[[MA:.*]] = llvm.getelementptr %[[MROW]][%[[QJ]]]
// CHECK-NEXT: %[[MV:.*]] = llvm.load %[[MA]]
// A column state: its column's value, per coordinate.
// CHECK-NEXT: %[[CA2:.*]] = llvm.getelementptr %[[CC]][%[[QJ]]]
// CHECK-NEXT: %[[CV:.*]] = llvm.load %[[CA2]] {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[CXA:.*]] = llvm.getelementptr %[[CREDP]][%[[QJ]]]
// CHECK-NEXT: %[[CX64:.*]] = llvm.load %[[CXA]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[CX:.*]] = arith.truncf %[[CX64]] : f64 to f32
// CHECK-NEXT: %[[CNEW:.*]] = arith.maximumf %[[CV]], %[[CX]] : f32
// CHECK-NEXT: %[[V0:.*]] = arith.minimumf %[[RNEW]], %[[CNEW]] : f32
// CHECK-NEXT: arith.divf %[[V0]], %[[TM]] : f32
// CHECK: %[[MNEW:.*]] = arith.addf %[[MV]], %{{.*}} : f32
// CHECK: %[[PNEW:.*]] = arith.subf %[[PV]], %{{.*}} : f32
// CHECK-NEXT: llvm.store %[[PNEW]], %[[PA2]]
// CHECK-NEXT: llvm.store %[[MNEW]], %[[MA]]
// The new r to next[r] from column 0 of a chunk with c0 == 0; the new c to
// next[j] from the matrix's first row. The current buffers are not written.
// CHECK-NEXT: %{{.*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[ATZERO:.*]] = arith.cmpi eq, %[[QJ]], %{{.*}} : i64
// CHECK-NEXT: %[[WR:.*]] = arith.andi %[[WROWS]], %[[ATZERO]] : i1
// CHECK-NEXT: scf.if %[[WR]] {
// CHECK-NEXT: llvm.store %[[RNEW]], %[[RNEXTAT]] {alignment = 4 : i64} : f32, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: scf.if %[[WCOLS]] {
// CHECK-NEXT: %[[CN:.*]] = llvm.getelementptr %[[CNEXT]][%[[QJ]]]
// CHECK-NEXT: llvm.store %[[CNEW]], %[[CN]] {alignment = 4 : i64} : f32, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: return

// A vector state and a draw in a rule with a row state: component k of row
// r, column j at base + r * nc + j + k * strides[c]; the draw at global
// index rng[1 + c] + r * nc + j. No reduction: no `reduced` argument.
optim.rule @rowvec(%p: f32, %g: f32, %t: i64) state(%h: vector<2xf32> = 0.0, %r: f32 = 1.0 row) random(uniform) {
  %u = optim.random uniform site 0 : f32
  %gu = arith.mulf %g, %u : f32
  %b = vector.broadcast %gu : f32 to vector<2xf32>
  %h2 = arith.addf %h, %b : vector<2xf32>
  %s = vector.reduction <add>, %h2 : vector<2xf32> into f32
  %sr = arith.mulf %s, %r : f32
  %p2 = arith.subf %p, %sr : f32
  optim.yield %p2, %h2, %r : f32, vector<2xf32>, f32
}

// CHECK-LABEL: func.func @optim_rule_rowvec(
// CHECK-SAME: %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %[[RNG:[^:]*]]: !llvm.ptr) {
// CHECK: arith.muli %{{.*}}, %c5_i64 : i64
// CHECK: %[[VC4:.*]] = arith.muli %{{.*}}, %c4_i64{{[_0-9]*}} : i64
// CHECK: arith.addi %[[VC4]], %c1_i64
// CHECK-NEXT: llvm.getelementptr
// CHECK-NEXT: %[[VNC:.*]] = llvm.load
// CHECK: arith.addi %[[VC4]], %c3_i64
// CHECK-NEXT: llvm.getelementptr
// CHECK-NEXT: llvm.load
// CHECK-NEXT: llvm.getelementptr
// CHECK-NEXT: %[[STRIDE:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: llvm.getelementptr %[[RNG]]
// CHECK-NEXT: %[[CHUNKRNG:.*]] = llvm.load
// CHECK: scf.for %[[VRI:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK-NEXT: %[[VR:.*]] = arith.index_cast %[[VRI]] : index to i64
// CHECK-NEXT: %[[VROW:.*]] = arith.muli %[[VR]], %[[VNC]] : i64
// CHECK-NEXT: llvm.getelementptr %{{.*}}[%[[VROW]]]
// CHECK-NEXT: llvm.getelementptr %{{.*}}[%[[VROW]]]
// CHECK-NEXT: %[[HROW:.*]] = llvm.getelementptr %{{.*}}[%[[VROW]]]
// CHECK-NEXT: %[[ROWRNG:.*]] = arith.addi %[[CHUNKRNG]], %[[VROW]] : i64
// CHECK: scf.for %[[VJI:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[VJ:.*]] = arith.index_cast %[[VJI]] : index to i64
// CHECK-NEXT: %[[DRAW:.*]] = arith.addi %[[ROWRNG]], %[[VJ]] : i64
// CHECK: %[[H0:.*]] = llvm.getelementptr %[[HROW]][%[[VJ]]]
// CHECK-NEXT: %c1_i64{{.*}} = arith.constant 1 : i64
// CHECK-NEXT: %[[K1:.*]] = arith.muli %[[STRIDE]], %c1_i64{{.*}} : i64
// CHECK-NEXT: %[[AT1:.*]] = arith.addi %[[VJ]], %[[K1]] : i64
// CHECK-NEXT: %[[H1:.*]] = llvm.getelementptr %[[HROW]][%[[AT1]]]
// CHECK: arith.andi %[[DRAW]], %c4294967295_i64

// With vectors: a row value is loaded once per iteration and broadcast, a
// column value is a vector load at the iteration's columns; the row state is
// stored from lane 0, the column state as a vector.
// VEC-LABEL: func.func @optim_reduce_factored(
// Stage 0: the row mean's lanes accumulate apart in f64 and are combined in
// lane order, then the tail; the column max merges vectors in memory.
// VEC: %[[RACC:.*]] = scf.for %{{.*}} -> (vector<16xf64>) {
// VEC: %[[VOLD:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> vector<16xf64>
// VEC-NEXT: %[[VMAX:.*]] = arith.maximumf %[[VOLD]], %{{.*}} : vector<16xf64>
// VEC-NEXT: llvm.store %[[VMAX]], %{{.*}} {alignment = 8 : i64} : vector<16xf64>, !llvm.ptr
// VEC: vector.extract %[[RACC]][0] : f64 from vector<16xf64>
// VEC: vector.extract %[[RACC]][15] : f64 from vector<16xf64>
// VEC: scf.for {{.*}} -> (f64) {
// VEC-LABEL: func.func @optim_rule_factored(
// VEC: scf.for
// Row values in scalars, once per row, before the row's column loops; the
// vector loops broadcast the new r into their lanes.
// VEC: %[[VR:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> f32
// VEC-NEXT: %[[VR1:.*]] = arith.mulf %{{.*}}, %[[VR]] : f32
// VEC-NEXT: %[[VRM:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> f64
// VEC-NEXT: %[[VRMT:.*]] = arith.truncf %[[VRM]] : f64 to f32
// VEC-NEXT: %[[VR2:.*]] = arith.mulf %{{.*}}, %[[VRMT]] : f32
// VEC-NEXT: %[[VRN:.*]] = arith.addf %[[VR1]], %[[VR2]] : f32
// VEC: scf.for
// VEC: %[[VCA:.*]] = llvm.getelementptr
// VEC-NEXT: llvm.load %[[VCA]] {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// VEC: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> vector<16xf64>
// VEC-NEXT: arith.truncf %{{.*}} : vector<16xf64> to vector<16xf32>
// VEC: %[[VRNV:.*]] = vector.broadcast %[[VRN]] : f32 to vector<16xf32>
// VEC-NEXT: arith.minimumf %[[VRNV]], %{{.*}} : vector<16xf32>
// VEC: scf.if %{{.*}} {
// VEC-NEXT: %[[LANE0:.*]] = vector.extract %{{.*}}[0] : f32 from vector<16xf32>
// VEC-NEXT: llvm.store %[[LANE0]], %{{.*}} {alignment = 4 : i64} : f32, !llvm.ptr
// VEC-NEXT: }
// VEC-NEXT: scf.if %{{.*}} {
// VEC-NEXT: llvm.getelementptr
// VEC-NEXT: llvm.store %{{.*}}, %{{.*}} {alignment = 4 : i64} : vector<16xf32>, !llvm.ptr
// VEC-NEXT: }

// The whole CPU pipeline takes it.
// LLVM-LABEL: llvm.func @optim_reduce_factored(
// LLVM: llvm.mlir.global external constant @optim_reductions_factored("mean@row,max@col,mean:1\00")
// LLVM-LABEL: llvm.func @optim_rule_factored(
// LLVM: llvm.mlir.global external constant @optim_states_factored("1,1@row,1@col\00")
// LLVM: llvm.mlir.global external constant @optim_states_rowvec("2,1@row\00")
