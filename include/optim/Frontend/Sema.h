//===- Sema.h - semantic checks of the .optim language ----------*- C++ -*-===//
//
// Resolves every name to its declaration, computes the type (shape) of every
// expression, and reports every misuse with a located diagnostic. After a
// successful check, MLIRGen can build the dialect without further checks.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_FRONTEND_SEMA_H
#define OPTIM_FRONTEND_SEMA_H

#include "optim/Frontend/AST.h"
#include "optim/Frontend/Diagnostics.h"

#include <memory>
#include <vector>

namespace optim {

enum class Precision { F32, F64 };

/// A declaration: a built-in input, a parameter, a state, weights, a layer
/// input, or a name bound by `let`/`output`.
struct Symbol {
  enum Kind {
    Param,
    Grad,
    Step,
    Hyper,
    LayerParam,
    State,
    Weights,
    Input,
    Let,
    Output
  };
  enum WeightsKind { LSTM, Linear, Tensor };

  Kind kind;
  std::string name;
  llvm::SMLoc loc;
  ast::Type type;
  /// Position in its list: the i-th hyperparameter, state, weights, input.
  unsigned index = 0;

  // Hyperparameters and layer parameters.
  double value = 0.0;
  bool isInteger = false;
  bool isConst = false;
  // States.
  double init = 0.0;
  /// `state z = p`: the buffer starts at 0 (init) and the declaration
  /// assigns the value of its expression at the first step (t == 1).
  bool initAtFirstStep = false;
  bool assigned = false;
  /// `row state` / `col state`: one value per row (column) of the
  /// parameter's matrices (KernelABI.h version 10).
  ast::AxisKind axis = ast::AxisKind::None;
  // Weights.
  bool used = false;
  WeightsKind weightsKind = Tensor;
  int64_t inSize = 0, outSize = 0; // outSize is the hidden size of an LSTM.
  /// The shape of the weights tensor: [4H, I+H+1] or [O, I+1] or declared.
  llvm::SmallVector<int64_t, 2> tensorShape;
};

/// The result of checking one program: its declarations, in the order of the
/// compiled signature.
struct CheckedProgram {
  const ast::Program *program = nullptr;
  std::vector<std::unique_ptr<Symbol>> storage;
  Symbol *param = nullptr, *grad = nullptr, *step = nullptr;
  std::vector<Symbol *> hypers, layerParams, states, weights, inputs, outputs;
};

struct CheckedModule {
  std::vector<CheckedProgram> programs;
};

struct SemaOptions {
  Precision precision = Precision::F32;
};

/// Checks `module` (and annotates its expressions with types). Returns false
/// after reporting at least one error.
bool checkModule(ast::Module &module, CheckedModule &result,
                 DiagnosticEngine &diags, const SemaOptions &options = {});

} // namespace optim

#endif // OPTIM_FRONTEND_SEMA_H
