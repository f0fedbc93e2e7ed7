// RUN: optim-opt %s --optim-lower-rules-to-kernels=vector-width=1 --split-input-file | FileCheck %s
// RUN: optim-opt %s --optim-lower-rules-to-kernels --split-input-file | FileCheck %s --check-prefix=VEC
// RUN: optim-opt %s --optim-lower-to-llvm --split-input-file | FileCheck %s --check-prefix=LLVM

// Matrix functions and shape values (KernelABI.h version 11). Muon's update
// (newton_schulz of a momentum, level 0), rows() and cols(), and a tensor
// sum of o * cols() (level 1: it reads the matrix function's result per
// coordinate and cols() from `reduced`). R = 4 slots; the rule has axes, so
// the chunk table is the rectangles' one with 2 + S + 2X = 2 + 1 + 2
// pointers per chunk: p, g, buf, then the matrix buffer twice (T *: written
// at the stage, read after it).
optim.rule @muon(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02, %mu: f32 = 0.95) state(%buf: f32 = 0.0) {
  %b1 = arith.mulf %mu, %buf : f32
  %b2 = arith.addf %b1, %g : f32
  %o = optim.tensor_reduce newton_schulz %b2 matrix : f32
  %c0 = arith.constant 0.0 : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %on = arith.mulf %o, %nc : f32
  %s1 = optim.tensor_reduce sum %on : f32
  %q = arith.divf %nr, %nc : f32
  %s = math.sqrt %q : f32
  %ls = arith.mulf %lr, %s : f32
  %d = arith.mulf %ls, %o : f32
  %d2 = arith.divf %d, %s1 : f32
  %p2 = arith.subf %p, %d2 : f32
  optim.yield %p2, %b2 : f32, f32
}

// Stage 0: mu * buf + g, stored in the element type at row r * nc + j of the
// chunk's matrix buffer (its first pointer); no partial is written.
// CHECK-LABEL: func.func @optim_reduce_muon(
// CHECK-SAME: %[[PTRS:[^:]*]]: !llvm.ptr, %[[LENGTHS:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %{{[^:]*}}: i64, %{{[^:]*}}: !llvm.ptr, %[[PARTIALS:[^:]*]]: !llvm.ptr, %[[REDUCED:[^:]*]]: !llvm.ptr, %[[STAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr) {
// CHECK: %[[MU:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[STAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK: %[[C5:.*]] = arith.muli %{{.*}}, %c5_i64 : i64
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[BUF:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[OUT:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[NC:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: scf.for %[[RI:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK-NEXT: %[[R:.*]] = arith.index_cast %[[RI]] : index to i64
// CHECK: arith.cmpi eq, %{{.*}}, %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[ROW:.*]] = arith.muli %[[R]], %[[NC]] : i64
// CHECK-NEXT: %[[OUTROW:.*]] = llvm.getelementptr %[[OUT]][%[[ROW]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK: scf.for %[[JI:.*]] = %c0 to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[J:.*]] = arith.index_cast %[[JI]] : index to i64
// CHECK: %[[BV:.*]] = llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[MB:.*]] = arith.mulf %[[MU]], %[[BV]] : f32
// CHECK: %[[X:.*]] = arith.addf %[[MB]], %{{.*}} : f32
// CHECK-NEXT: %[[AT:.*]] = llvm.getelementptr %[[OUTROW]][%[[J]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: llvm.store %[[X]], %[[AT]] {alignment = 4 : i64} : f32, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NOT: llvm.store
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %[[STAGE]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS1]] {
// Stage 1: cols() from reduced[c * 4 + 2], the matrix function's result
// from the second pointer at row r * nc + j, their product summed in f64
// into partials[c * 4 + 3]; the buffer is not written.
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[IN:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[NC1:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[FIRST:.*]] = arith.muli %{{.*}}, %c4_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %c2_i64{{[_0-9]*}} = arith.constant 2 : i64
// CHECK-NEXT: %[[SLOT2:.*]] = arith.addi %[[FIRST]], %c2_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[AT2:.*]] = llvm.getelementptr %[[REDUCED]][%[[SLOT2]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: %[[COLS64:.*]] = llvm.load %[[AT2]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[COLS:.*]] = arith.truncf %[[COLS64]] : f64 to f32
// CHECK: scf.for %[[RI1:.*]] = %c0 to %{{.*}} step %c1 iter_args(%{{.*}} = %{{.*}}) -> (f64) {
// CHECK-NEXT: %[[R1:.*]] = arith.index_cast %[[RI1]] : index to i64
// CHECK-NEXT: %[[ROW1:.*]] = arith.muli %[[R1]], %[[NC1]] : i64
// CHECK-COUNT-3: llvm.getelementptr %{{.*}}[%[[ROW1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: %[[INROW:.*]] = llvm.getelementptr %[[IN]][%[[ROW1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK: scf.for %[[JI1:.*]] = %c0 to %{{.*}} step %{{.*}} iter_args(%[[ACC:.*]] = %{{.*}}) -> (f64) {
// CHECK-NEXT: %[[J1:.*]] = arith.index_cast %[[JI1]] : index to i64
// CHECK-NEXT: %[[OAT:.*]] = llvm.getelementptr %[[INROW]][%[[J1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: %[[OV:.*]] = llvm.load %[[OAT]] {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[ON:.*]] = arith.mulf %[[OV]], %[[COLS]] : f32
// CHECK-NEXT: %[[ON64:.*]] = arith.extf %[[ON]] : f32 to f64
// CHECK-NEXT: %[[SUM:.*]] = arith.addf %[[ACC]], %[[ON64]] : f64
// CHECK-NEXT: scf.yield %[[SUM]] : f64
// CHECK: %[[SLOT3:.*]] = arith.addi %[[FIRST]], %c3_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[PAT:.*]] = llvm.getelementptr %[[PARTIALS]][%[[SLOT3]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: llvm.store %{{.*}}, %[[PAT]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NOT: llvm.store
// CHECK: return
// The descriptor spells newton_schulz's parameters (optim::reductionsDescriptor).
// CHECK: llvm.mlir.global external constant @optim_reductions_muon("newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix,rows,cols,sum:1\00")

// The rule kernel: rows(), cols() and the sum from reduced[c * 4 + 1 .. 3]
// once per chunk, the matrix function's result per coordinate from the
// second pointer.
// CHECK-LABEL: func.func @optim_rule_muon(
// CHECK-SAME: %[[RREDUCED:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr) {
// CHECK-COUNT-4: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: %[[RIN:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[RNC:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[RFIRST:.*]] = arith.muli %{{.*}}, %c4_i64{{[_0-9]*}} : i64
// CHECK: llvm.getelementptr %[[RREDUCED]][%{{.*}}]
// CHECK: %[[NROWS:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: llvm.getelementptr %[[RREDUCED]][%{{.*}}]
// CHECK: %[[NCOLS:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK: llvm.getelementptr %[[RREDUCED]][%{{.*}}]
// CHECK: %[[S1:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %[[Q:.*]] = arith.divf %[[NROWS]], %[[NCOLS]] : f32
// CHECK-NEXT: math.sqrt %[[Q]] : f32
// CHECK: scf.for %[[RRI:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK-NEXT: %[[RR:.*]] = arith.index_cast %[[RRI]] : index to i64
// CHECK-NEXT: %[[RROW:.*]] = arith.muli %[[RR]], %[[RNC]] : i64
// CHECK-COUNT-3: llvm.getelementptr %{{.*}}[%[[RROW]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: %[[RINROW:.*]] = llvm.getelementptr %[[RIN]][%[[RROW]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK: scf.for %[[RJI:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[RJ:.*]] = arith.index_cast %[[RJI]] : index to i64
// CHECK: %[[ROAT:.*]] = llvm.getelementptr %[[RINROW]][%[[RJ]]] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// CHECK-NEXT: %[[ROV:.*]] = llvm.load %[[ROAT]] {alignment = 4 : i64} : !llvm.ptr -> f32
// CHECK-NEXT: %[[D:.*]] = arith.mulf %{{.*}}, %[[ROV]] : f32
// CHECK-NEXT: arith.divf %[[D]], %[[S1]] : f32
// CHECK: llvm.mlir.global external constant @optim_states_muon("1\00")

// Vectors: the stage stores 16 lanes at once and the tail one; the rule
// kernel and stage 1 load 16 lanes of the result.
// VEC-LABEL: func.func @optim_reduce_muon(
// VEC: %[[X:.*]] = arith.addf %{{.*}}, %{{.*}} : vector<16xf32>
// VEC-NEXT: %[[AT:.*]] = llvm.getelementptr %{{.*}}[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// VEC-NEXT: llvm.store %[[X]], %[[AT]] {alignment = 4 : i64} : vector<16xf32>, !llvm.ptr
// VEC: %[[XT:.*]] = arith.addf %{{.*}}, %{{.*}} : f32
// VEC-NEXT: %[[ATT:.*]] = llvm.getelementptr %{{.*}}[%{{.*}}] : (!llvm.ptr, i64) -> !llvm.ptr, f32
// VEC-NEXT: llvm.store %[[XT]], %[[ATT]] {alignment = 4 : i64} : f32, !llvm.ptr
// VEC: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>
// VEC-NEXT: vector.broadcast %{{.*}} : f32 to vector<16xf32>
// VEC-NEXT: arith.mulf %{{.*}}, %{{.*}} : vector<16xf32>
// VEC-NEXT: arith.extf %{{.*}} : vector<16xf32> to vector<16xf64>
// VEC-LABEL: func.func @optim_rule_muon(
// VEC: llvm.load %{{.*}} {alignment = 4 : i64} : !llvm.ptr -> vector<16xf32>

// LLVM: llvm.mlir.global external constant @optim_reductions_muon("newton_schulz(5;3.4445;-4.775;2.0315;1e-07)@matrix,rows,cols,sum:1\00")
// LLVM: llvm.func @optim_rule_muon(

// -----

// Parameters other than the defaults are spelled in the descriptor as
// optim::descriptorNumber spells them (the shortest round trip), in f64; a
// matrix function of another's result (level 1) and a row reduction: stage
// 1 stores the second operand where the first was read.
optim.rule @ns2(%p: f64, %g: f64, %t: i64) {
  %o = optim.tensor_reduce newton_schulz %g matrix {ns_steps = 3 : i32, ns_coefficients = array<f64: 2.0, -1.5, 0.5>, ns_eps = 1.0e-5} : f64
  %rm = optim.tensor_reduce mean %g row : f64
  %o2 = optim.tensor_reduce newton_schulz %o matrix {ns_steps = 0 : i32, ns_coefficients = array<f64: 0.1, 0.2, 0.30000000000000004>} : f64
  %x = arith.mulf %o2, %rm : f64
  %p2 = arith.subf %p, %x : f64
  optim.yield %p2 : f64
}
// Stage 1: the first function's result (pointer 5: the second of its pair,
// after p, g and the three first pointers) is stored into the second's
// buffer (pointer 4: the first of its pair), row r at r * nc.
// CHECK-LABEL: func.func @optim_reduce_ns2(
// CHECK: %[[IS1:.*]] = arith.cmpi eq, %{{.*}}, %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS1]] {
// CHECK: %[[C8:.*]] = arith.muli %{{.*}}, %c8_i64 : i64
// CHECK: %[[A4:.*]] = arith.addi %[[C8]], %c4_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[G4:.*]] = llvm.getelementptr %{{.*}}[%[[A4]]]
// CHECK-NEXT: %[[OUT2:.*]] = llvm.load %[[G4]] {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK-NEXT: %c5_i64{{[_0-9]*}} = arith.constant 5 : i64
// CHECK-NEXT: %[[A5:.*]] = arith.addi %[[C8]], %c5_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[G5:.*]] = llvm.getelementptr %{{.*}}[%[[A5]]]
// CHECK-NEXT: %[[IN1:.*]] = llvm.load %[[G5]] {alignment = 8 : i64} : !llvm.ptr -> !llvm.ptr
// CHECK: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[NC2:.*]] = llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: scf.for %[[RI2:.*]] = %c0 to %{{.*}} step %c1 {
// CHECK-NEXT: %[[R2:.*]] = arith.index_cast %[[RI2]] : index to i64
// CHECK-NEXT: %[[ROWA:.*]] = arith.muli %[[R2]], %[[NC2]] : i64
// CHECK: %[[IN1ROW:.*]] = llvm.getelementptr %[[IN1]][%[[ROWA]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK: %[[ROWB:.*]] = arith.muli %[[R2]], %[[NC2]] : i64
// CHECK-NEXT: %[[OUT2ROW:.*]] = llvm.getelementptr %[[OUT2]][%[[ROWB]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK: scf.for %[[JI:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK-NEXT: %[[J:.*]] = arith.index_cast %[[JI]] : index to i64
// CHECK-NEXT: %[[IAT:.*]] = llvm.getelementptr %[[IN1ROW]][%[[J]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: %[[V:.*]] = llvm.load %[[IAT]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[OAT:.*]] = llvm.getelementptr %[[OUT2ROW]][%[[J]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: llvm.store %[[V]], %[[OAT]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK: llvm.mlir.global external constant @optim_reductions_ns2("newton_schulz(3;2;-1.5;0.5;1e-05)@matrix,mean@row,newton_schulz(0;0.1;0.2;0.30000000000000004;1e-07)@matrix:1\00")

// -----

// Shape values only: no pass computes anything. The reduce kernel exists
// (the library defines it for any rule with reductions) but its stage 0
// writes nothing; the rule kernel (the usual chunk table: no axes) reads
// both from reduced[c * 2 + r].
optim.rule @shapes(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %c0 = arith.constant 0.0 : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %q = arith.divf %nr, %nc : f32
  %lq = arith.mulf %lr, %q : f32
  %u = arith.mulf %lq, %g : f32
  %p2 = arith.subf %p, %u : f32
  optim.yield %p2 : f32
}
// CHECK-LABEL: func.func @optim_reduce_shapes(
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %{{.*}}, %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK-NEXT: }
// CHECK-NEXT: return
// CHECK: llvm.mlir.global external constant @optim_reductions_shapes("rows,cols\00")
// CHECK-LABEL: func.func @optim_rule_shapes(
// CHECK-SAME: %[[SREDUCED:[^:]*]]: !llvm.ptr, %{{[^:]*}}: !llvm.ptr) {
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 8 : i64} : !llvm.ptr -> i64
// CHECK: %[[SFIRST:.*]] = arith.muli %{{.*}}, %c2_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %c0_i64{{[_0-9]*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[SS0:.*]] = arith.addi %[[SFIRST]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: llvm.getelementptr %[[SREDUCED]][%[[SS0]]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[SR:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: %c1_i64{{[_0-9]*}} = arith.constant 1 : i64
// CHECK-NEXT: %[[SS1:.*]] = arith.addi %[[SFIRST]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: llvm.getelementptr %[[SREDUCED]][%[[SS1]]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[SC:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NEXT: arith.divf %[[SR]], %[[SC]] : f32

// -----

// Stage 0 reads the shape values it needs: the norm of g * rows() (level 0)
// loads rows() from reduced[c * 3 + 0] before the coordinate loop and
// writes partials[c * 3 + 1] only.
optim.rule @scaled(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.1) {
  %c0 = arith.constant 0.0 : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  %gr = arith.mulf %g, %nr : f32
  %n = optim.tensor_reduce norm %gr : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %d = arith.addf %n, %nc : f32
  %u = arith.divf %g, %d : f32
  %lu = arith.mulf %lr, %u : f32
  %p2 = arith.subf %p, %lu : f32
  optim.yield %p2 : f32
}
// CHECK-LABEL: func.func @optim_reduce_scaled(
// CHECK-SAME: %[[PPARTIALS:[^:]*]]: !llvm.ptr, %[[PREDUCED:[^:]*]]: !llvm.ptr, %[[PSTAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr) {
// CHECK: %[[IS0:.*]] = arith.cmpi eq, %[[PSTAGE]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: scf.if %[[IS0]] {
// CHECK: %[[PFIRST:.*]] = arith.muli %{{.*}}, %c3_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %c0_i64{{[_0-9]*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[P0:.*]] = arith.addi %[[PFIRST]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[PAT0:.*]] = llvm.getelementptr %[[PREDUCED]][%[[P0]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: %[[PR64:.*]] = llvm.load %[[PAT0]] {alignment = 8 : i64} : !llvm.ptr -> f64
// CHECK-NEXT: %[[PR:.*]] = arith.truncf %[[PR64]] : f64 to f32
// CHECK-NOT: %[[PREDUCED]]
// CHECK: arith.mulf %{{.*}}, %[[PR]] : f32
// CHECK-NOT: %[[PREDUCED]]
// CHECK: %[[PS1:.*]] = arith.addi %[[PFIRST]], %c1_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %[[PAT1:.*]] = llvm.getelementptr %[[PPARTIALS]][%[[PS1]]] : (!llvm.ptr, i64) -> !llvm.ptr, f64
// CHECK-NEXT: llvm.store %{{.*}}, %[[PAT1]] {alignment = 8 : i64} : f64, !llvm.ptr
// CHECK-NEXT: }
// CHECK-NEXT: }
// CHECK-NEXT: return
// CHECK: llvm.mlir.global external constant @optim_reductions_scaled("rows,norm,cols\00")

// -----

// With axes: a row reduction of g * cols() (level 0) and rows() beside it;
// the stage reads cols() from reduced[c * 3 + 0] and writes the row
// partials only.
optim.rule @rowscaled(%p: f32, %g: f32, %t: i64) {
  %c0 = arith.constant 0.0 : f32
  %nc = optim.tensor_reduce cols %c0 : f32
  %gc = arith.mulf %g, %nc : f32
  %rs = optim.tensor_reduce sum %gc row : f32
  %nr = optim.tensor_reduce rows %c0 : f32
  %x = arith.divf %rs, %nr : f32
  %p2 = arith.subf %p, %x : f32
  optim.yield %p2 : f32
}
// CHECK-LABEL: func.func @optim_reduce_rowscaled(
// CHECK-SAME: %[[WREDUCED:[^:]*]]: !llvm.ptr, %[[WSTAGE:[^:]*]]: i64, %{{[^:]*}}: !llvm.ptr) {
// CHECK: scf.if
// CHECK: %[[WFIRST:.*]] = arith.muli %{{.*}}, %c3_i64{{[_0-9]*}} : i64
// CHECK-NEXT: %c0_i64{{[_0-9]*}} = arith.constant 0 : i64
// CHECK-NEXT: %[[W0:.*]] = arith.addi %[[WFIRST]], %c0_i64{{[_0-9]*}} : i64
// CHECK-NEXT: llvm.getelementptr %[[WREDUCED]][%[[W0]]]
// CHECK-NEXT: llvm.load
// CHECK-NEXT: %[[WC:.*]] = arith.truncf %{{.*}} : f64 to f32
// CHECK-NOT: %[[WREDUCED]]
// CHECK: arith.mulf %{{.*}}, %[[WC]] : f32
// CHECK-NOT: %[[WFIRST]]
// CHECK: return
// CHECK: llvm.mlir.global external constant @optim_reductions_rowscaled("cols,sum@row,rows\00")
