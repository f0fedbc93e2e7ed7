// Round trip of matrix functions and shape values (KernelABI.h version 11)
// through the custom assembly and the generic form: `newton_schulz` with
// the `matrix` axis and its ns_* attributes (in the attribute dictionary
// where they differ from torch.optim.Muon's defaults: 5 steps,
// (3.4445, -4.7750, 2.0315), eps 1e-7), and `rows` / `cols` of a constant.
// RUN: optim-opt %s | optim-opt | FileCheck %s
// RUN: optim-opt %s --mlir-print-op-generic | optim-opt | FileCheck %s
// RUN: optim-opt %s --mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

// CHECK-LABEL: optim.rule @muon(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) state(%buf: f32 = 0.0) {
// CHECK-NEXT: %[[U:.*]] = arith.addf %buf, %g : f32
// CHECK-NEXT: %[[O:.*]] = optim.tensor_reduce newton_schulz %[[U]] matrix : f32
// CHECK-NEXT: %[[O3:.*]] = optim.tensor_reduce newton_schulz %[[U]] matrix {ns_steps = 3 : i32} : f32
// CHECK-NEXT: %[[OX:.*]] = optim.tensor_reduce newton_schulz %[[O]] matrix {ns_coefficients = array<f64: 1.500000e+00, -5.000000e-01, 0.000000e+00>, ns_eps = 1.000000e-03 : f64, ns_steps = 0 : i32} : f32
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-NEXT: %[[R:.*]] = optim.tensor_reduce rows %[[Z]] : f32
// CHECK-NEXT: %[[C:.*]] = optim.tensor_reduce cols %[[Z]] : f32
// GENERIC-LABEL: "optim.rule"()
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{axis = 2 : i32, kind = 5 : i32, ns_coefficients = array<f64: 3.444500e+00, -4.775000e+00, 2.031500e+00>, ns_eps = 9.9999999999999995E-8 : f64, ns_steps = 5 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{axis = 2 : i32, kind = 5 : i32, {{.*}}ns_steps = 3 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{axis = 2 : i32, kind = 5 : i32, ns_coefficients = array<f64: 1.500000e+00, -5.000000e-01, 0.000000e+00>, ns_eps = 1.000000e-03 : f64, ns_steps = 0 : i32}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{kind = 6 : i32, {{.*}}}> : (f32) -> f32
// GENERIC: "optim.tensor_reduce"(%{{.*}}) <{kind = 7 : i32, {{.*}}}> : (f32) -> f32
optim.rule @muon(%p: f32, %g: f32, %t: i64) hyper(%lr: f32 = 0.02) state(%buf: f32 = 0.0) {
  %u = arith.addf %buf, %g : f32
  %o = optim.tensor_reduce newton_schulz %u matrix : f32
  %o3 = optim.tensor_reduce newton_schulz %u matrix {ns_steps = 3 : i32} : f32
  %ox = optim.tensor_reduce newton_schulz %o matrix {ns_steps = 0 : i32, ns_coefficients = array<f64: 1.5, -0.5, 0.0>, ns_eps = 1.0e-3 : f64} : f32
  %c0 = arith.constant 0.0 : f32
  %r = optim.tensor_reduce rows %c0 : f32
  %c = optim.tensor_reduce cols %c0 : f32
  %ratio = arith.divf %r, %c : f32
  %s = arith.addf %o3, %ox : f32
  %upd = arith.mulf %ratio, %s : f32
  %step = arith.mulf %lr, %upd : f32
  %new = arith.subf %p, %step : f32
  optim.yield %new, %u : f32, f32
}

// In f64, with the generic form's explicit defaults read back as defaults.
// CHECK-LABEL: optim.rule @generic
// CHECK-NEXT: optim.tensor_reduce newton_schulz %g matrix : f64
// CHECK-NEXT: %[[Z:.*]] = arith.constant 0.000000e+00 : f64
// CHECK-NEXT: optim.tensor_reduce rows %[[Z]] : f64
"optim.rule"() <{hyper_const = array<i1>, hyper_defaults = array<f64>, hyper_names = [], state_inits = array<f64>, state_names = [], sym_name = "generic", weight_names = []}> ({
^bb0(%p: f64, %g: f64, %t: i64):
  %0 = "optim.tensor_reduce"(%g) <{axis = 2 : i32, kind = 5 : i32, ns_coefficients = array<f64: 3.4445, -4.7750, 2.0315>, ns_eps = 1.0e-7 : f64, ns_steps = 5 : i32}> : (f64) -> f64
  %z = arith.constant 0.0 : f64
  %1 = "optim.tensor_reduce"(%z) <{kind = 6 : i32}> : (f64) -> f64
  %2 = arith.mulf %0, %1 : f64
  %3 = arith.subf %p, %2 : f64
  "optim.yield"(%3) : (f64) -> ()
}) : () -> ()
