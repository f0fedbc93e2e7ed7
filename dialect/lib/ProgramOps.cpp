//===- ProgramOps.cpp - optim.rule and optim.layer ------------------------===//
//
// The two program ops carry a signature whose names live in attributes and
// whose values are the entry block's arguments. Their assembly spells each
// argument once (`%lr: f32 = 1.0e-3 const`): the SSA name is the
// hyperparameter's name, so the printed form reads like the source program.
//
//===----------------------------------------------------------------------===//

#include "optim/Dialect/OptimOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace mlir;
using namespace mlir::optim;

namespace {
/// One entry of a parenthesized signature list.
struct SignatureEntry {
  OpAsmParser::Argument arg;
  std::string name;
  double init = 0.0;
  bool hasInit = false;
  bool isConst = false;
  /// "row" or "col" after a state's initial value; empty otherwise.
  std::string axis;
};

enum class InitKind { None, Required };
} // namespace

/// Parses `(%name: type [= number [const]], ...)`. The name of each entry is
/// its SSA name without the `%`.
static ParseResult parseSignatureList(OpAsmParser &parser,
                                      SmallVectorImpl<SignatureEntry> &entries,
                                      InitKind initKind, bool allowConst,
                                      bool allowAxis = false) {
  return parser.parseCommaSeparatedList(
      OpAsmParser::Delimiter::Paren, [&]() -> ParseResult {
        SignatureEntry entry;
        if (parser.parseArgument(entry.arg, /*allowType=*/true))
          return failure();
        entry.name = entry.arg.ssaName.name.drop_front().str();
        if (initKind == InitKind::Required) {
          if (parser.parseEqual() || parser.parseFloat(entry.init))
            return failure();
          entry.hasInit = true;
          if (allowConst && succeeded(parser.parseOptionalKeyword("const")))
            entry.isConst = true;
          if (allowAxis) {
            if (succeeded(parser.parseOptionalKeyword("row")))
              entry.axis = "row";
            else if (succeeded(parser.parseOptionalKeyword("col")))
              entry.axis = "col";
          }
        }
        entries.push_back(std::move(entry));
        return success();
      });
}

static ArrayAttr namesOf(Builder &b, ArrayRef<SignatureEntry> entries) {
  SmallVector<Attribute> names;
  for (const SignatureEntry &e : entries)
    names.push_back(b.getStringAttr(e.name));
  return b.getArrayAttr(names);
}

static SmallVector<double> initsOf(ArrayRef<SignatureEntry> entries) {
  return llvm::map_to_vector(entries,
                             [](const SignatureEntry &e) { return e.init; });
}

static void appendArgs(SmallVectorImpl<OpAsmParser::Argument> &args,
                       ArrayRef<SignatureEntry> entries) {
  for (const SignatureEntry &e : entries)
    args.push_back(e.arg);
}

/// The shortest decimal that reads back as exactly `value`, in a form the MLIR
/// float-literal syntax accepts (it needs a '.'): 0.999, not
/// 0.99899999999999999.
static std::string formatExact(double value) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (strtod(buf, nullptr) == value)
      break;
  }
  std::string s = buf;
  if (s.find('.') == std::string::npos) {
    size_t e = s.find('e');
    s.insert(e == std::string::npos ? s.size() : e, ".0");
  }
  return s;
}

static void printInit(OpAsmPrinter &p, double value) {
  p << " = " << formatExact(value);
}

//===----------------------------------------------------------------------===//
// RuleOp
//===----------------------------------------------------------------------===//

FloatType RuleOp::getElementType() {
  if (getBody().empty() || getBodyBlock().getNumArguments() == 0)
    return {};
  return dyn_cast<FloatType>(getParam().getType());
}

ParseResult RuleOp::parse(OpAsmParser &parser, OperationState &result) {
  Builder &b = parser.getBuilder();
  auto &props = result.getOrAddProperties<RuleOp::Properties>();
  StringAttr symName;
  if (parser.parseSymbolName(symName))
    return failure();
  props.sym_name = symName;

  SmallVector<SignatureEntry> builtins, hypers, states, weights, inputs;
  SMLoc builtinLoc = parser.getCurrentLocation();
  if (parseSignatureList(parser, builtins, InitKind::None, false))
    return failure();
  if (builtins.size() != kNumBuiltinArgs)
    return parser.emitError(builtinLoc)
           << "expected exactly 3 built-in arguments (p, g, t), got "
           << builtins.size();
  if (succeeded(parser.parseOptionalKeyword("hyper")) &&
      parseSignatureList(parser, hypers, InitKind::Required, true))
    return failure();
  if (succeeded(parser.parseOptionalKeyword("state")) &&
      parseSignatureList(parser, states, InitKind::Required, false,
                         /*allowAxis=*/true))
    return failure();
  if (succeeded(parser.parseOptionalKeyword("weights")) &&
      parseSignatureList(parser, weights, InitKind::None, false))
    return failure();
  if (succeeded(parser.parseOptionalKeyword("input")) &&
      parseSignatureList(parser, inputs, InitKind::None, false))
    return failure();
  // random(normal, uniform): the kinds of the draw sites, in site order.
  if (succeeded(parser.parseOptionalKeyword("random"))) {
    SmallVector<Attribute> kinds;
    if (parser.parseCommaSeparatedList(
            OpAsmParser::Delimiter::Paren, [&]() -> ParseResult {
              SMLoc kindLoc = parser.getCurrentLocation();
              StringRef kind;
              if (parser.parseKeyword(&kind))
                return failure();
              if (!symbolizeRandomKind(kind))
                return parser.emitError(kindLoc)
                       << "expected 'uniform' or 'normal', got '" << kind
                       << "'";
              kinds.push_back(b.getStringAttr(kind));
              return success();
            }))
      return failure();
    props.random = b.getArrayAttr(kinds);
  }

  props.hyper_names = namesOf(b, hypers);
  props.hyper_defaults = b.getDenseF64ArrayAttr(initsOf(hypers));
  props.hyper_const = b.getDenseBoolArrayAttr(llvm::map_to_vector(
      hypers, [](const SignatureEntry &e) { return e.isConst; }));
  props.state_names = namesOf(b, states);
  props.state_inits = b.getDenseF64ArrayAttr(initsOf(states));
  // Left unset when every state is per coordinate: such rules keep their
  // generic form.
  if (llvm::any_of(states,
                   [](const SignatureEntry &e) { return !e.axis.empty(); })) {
    SmallVector<Attribute> axes;
    for (const SignatureEntry &e : states)
      axes.push_back(b.getStringAttr(e.axis.empty() ? "none" : e.axis));
    props.state_axes = b.getArrayAttr(axes);
  }
  props.weight_names = namesOf(b, weights);
  // Left unset without inputs (the default, empty), so that the generic form
  // of a rule without inputs is what it always was.
  if (!inputs.empty())
    props.input_names = namesOf(b, inputs);

  if (parser.parseOptionalAttrDictWithKeyword(result.attributes))
    return failure();

  SmallVector<OpAsmParser::Argument> args;
  appendArgs(args, builtins);
  appendArgs(args, hypers);
  appendArgs(args, states);
  appendArgs(args, weights);
  appendArgs(args, inputs);
  Region *body = result.addRegion();
  return parser.parseRegion(*body, args);
}

/// True when the signature attributes and the block agree in size, so that
/// the custom form can be printed; invalid IR falls back to the generic form.
static bool hasConsistentSignature(RuleOp op) {
  if (op.getBody().empty())
    return false;
  return op.getHyperDefaults().size() == op.getNumHypers() &&
         op.getHyperConst().size() == op.getNumHypers() &&
         op.getStateInits().size() == op.getNumStates() &&
         op.getBodyBlock().getNumArguments() ==
             RuleOp::kNumBuiltinArgs + op.getNumHypers() + op.getNumStates() +
                 op.getNumWeights() + op.getNumInputs();
}

void RuleOp::print(OpAsmPrinter &p) {
  if (!hasConsistentSignature(*this)) {
    p.printGenericOp(*this, /*printOpName=*/false);
    return;
  }
  p << ' ';
  p.printSymbolName(getSymName());
  Block &block = getBodyBlock();
  p << '(';
  llvm::interleaveComma(block.getArguments().take_front(kNumBuiltinArgs), p,
                        [&](BlockArgument a) { p.printRegionArgument(a); });
  p << ')';
  if (getNumHypers()) {
    p << " hyper(";
    for (unsigned i = 0, e = getNumHypers(); i < e; ++i) {
      if (i)
        p << ", ";
      p.printRegionArgument(getHyper(i));
      printInit(p, getHyperDefaults()[i]);
      if (getHyperConst()[i])
        p << " const";
    }
    p << ')';
  }
  if (getNumStates()) {
    p << " state(";
    for (unsigned i = 0, e = getNumStates(); i < e; ++i) {
      if (i)
        p << ", ";
      p.printRegionArgument(getState(i));
      printInit(p, getStateInits()[i]);
      if (getStateAxis(i) != "none")
        p << ' ' << getStateAxis(i);
    }
    p << ')';
  }
  if (getNumWeights()) {
    p << " weights(";
    for (unsigned i = 0, e = getNumWeights(); i < e; ++i) {
      if (i)
        p << ", ";
      p.printRegionArgument(getWeight(i));
    }
    p << ')';
  }
  // Only when present, so that rules without inputs print as before.
  if (getNumInputs()) {
    p << " input(";
    for (unsigned i = 0, e = getNumInputs(); i < e; ++i) {
      if (i)
        p << ", ";
      p.printRegionArgument(getInput(i));
    }
    p << ')';
  }
  // Only when present: rules that draw nothing print as before.
  if (ArrayAttr kinds = getRandomAttr()) {
    p << " random(";
    llvm::interleaveComma(kinds, p, [&](Attribute a) {
      p << cast<StringAttr>(a).getValue();
    });
    p << ')';
  }
  p.printOptionalAttrDictWithKeyword(
      (*this)->getDiscardableAttrDictionary().getValue());
  p << ' ';
  p.printRegion(getBody(), /*printEntryBlockArgs=*/false,
                /*printBlockTerminators=*/true);
}

void RuleOp::getAsmBlockArgumentNames(Region &region,
                                      OpAsmSetValueNameFn setNameFn) {
  if (!hasConsistentSignature(*this))
    return;
  static const char *const builtinNames[] = {"p", "g", "t"};
  for (unsigned i = 0; i < kNumBuiltinArgs; ++i)
    setNameFn(getBodyBlock().getArgument(i), builtinNames[i]);
  for (unsigned i = 0, e = getNumHypers(); i < e; ++i)
    setNameFn(getHyper(i), cast<StringAttr>(getHyperNames()[i]).getValue());
  for (unsigned i = 0, e = getNumStates(); i < e; ++i)
    setNameFn(getState(i), cast<StringAttr>(getStateNames()[i]).getValue());
  for (unsigned i = 0, e = getNumWeights(); i < e; ++i)
    setNameFn(getWeight(i), cast<StringAttr>(getWeightNames()[i]).getValue());
  for (unsigned i = 0, e = getNumInputs(); i < e; ++i)
    setNameFn(getInput(i), getInputName(i));
}

static bool isIdentifier(StringRef name) {
  if (name.empty() || !(llvm::isAlpha(name[0]) || name[0] == '_'))
    return false;
  return llvm::all_of(name,
                      [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

/// Checks that every name is an identifier, unique within the program, and not
/// one of `reserved`.
static LogicalResult verifyNames(Operation *op, ArrayRef<ArrayAttr> lists,
                                 ArrayRef<StringRef> reserved) {
  llvm::StringSet<> seen;
  for (StringRef r : reserved)
    seen.insert(r);
  for (ArrayAttr list : lists) {
    for (Attribute a : list) {
      StringRef name = cast<StringAttr>(a).getValue();
      if (!isIdentifier(name))
        return op->emitOpError("name '") << name << "' is not an identifier";
      if (!seen.insert(name).second)
        return op->emitOpError("duplicate name '") << name << "'";
    }
  }
  return success();
}

LogicalResult RuleOp::verify() {
  if (getHyperDefaults().size() != getNumHypers() ||
      getHyperConst().size() != getNumHypers())
    return emitOpError("has ") << getNumHypers() << " hyperparameter names but "
                               << getHyperDefaults().size() << " defaults and "
                               << getHyperConst().size() << " const flags";
  if (getStateInits().size() != getNumStates())
    return emitOpError("has ") << getNumStates() << " state names but "
                               << getStateInits().size() << " initial values";
  for (auto [name, value] : llvm::zip(getHyperNames(), getHyperDefaults()))
    if (!std::isfinite(value))
      return emitOpError("hyperparameter '")
             << cast<StringAttr>(name).getValue()
             << "' has a non-finite default";
  for (auto [name, value] : llvm::zip(getStateNames(), getStateInits()))
    if (!std::isfinite(value))
      return emitOpError("state '") << cast<StringAttr>(name).getValue()
                                    << "' has a non-finite initial value";
  if (ArrayAttr axes = getStateAxesAttr()) {
    if (axes.size() != getNumStates())
      return emitOpError("has ") << getNumStates() << " states but "
                                 << axes.size() << " state axes";
    for (auto [name, axis] :
         llvm::zip(getStateNames(), axes.getAsValueRange<StringAttr>()))
      if (axis != "none" && axis != "row" && axis != "col")
        return emitOpError("state '")
               << cast<StringAttr>(name).getValue() << "' has axis '" << axis
               << "'; expected 'none', 'row' or 'col'";
  }
  // An empty list would print as `random()` and make the rule look like a
  // drawing one to whatever checks the attribute's presence.
  if (ArrayAttr kinds = getRandomAttr(); kinds && kinds.empty())
    return emitOpError("has an empty 'random()' list; a rule that draws "
                       "nothing has none");
  if (ArrayAttr kinds = getRandomAttr())
    for (auto [k, kind] : llvm::enumerate(kinds.getAsValueRange<StringAttr>()))
      if (!symbolizeRandomKind(kind))
        return emitOpError("draw site ")
               << k << " has kind '" << kind
               << "'; expected 'uniform' or 'normal'";
  SmallVector<ArrayAttr> names = {getHyperNames(), getStateNames(),
                                  getWeightNames()};
  if (ArrayAttr inputs = getInputNamesAttr())
    names.push_back(inputs);
  return verifyNames(*this, names, {"p", "g", "t"});
}

LogicalResult RuleOp::verifyRegions() {
  Block &block = getBodyBlock();
  unsigned expected = kNumBuiltinArgs + getNumHypers() + getNumStates() +
                      getNumWeights() + getNumInputs();
  if (block.getNumArguments() != expected) {
    InFlightDiagnostic diag =
        emitOpError("body has ")
        << block.getNumArguments() << " arguments, but the signature needs "
        << expected << " (p, g, t, " << getNumHypers() << " hyperparameters, "
        << getNumStates() << " states, " << getNumWeights() << " weights";
    if (getNumInputs())
      diag << ", " << getNumInputs() << " inputs";
    return diag << ")";
  }
  // The lowerings and the runtime ABI know only these two element types.
  auto elt = dyn_cast<FloatType>(getParam().getType());
  if (!elt || !(elt.isF32() || elt.isF64()))
    return emitOpError("p must be f32 or f64, got ") << getParam().getType();
  if (getGrad().getType() != elt)
    return emitOpError("g must have the type of p (")
           << elt << "), got " << getGrad().getType();
  if (!getStep().getType().isSignlessInteger(64))
    return emitOpError("t must be i64, got ") << getStep().getType();
  for (unsigned i = 0, e = getNumHypers(); i < e; ++i)
    if (getHyper(i).getType() != elt)
      return emitOpError("hyperparameter '")
             << cast<StringAttr>(getHyperNames()[i]).getValue()
             << "' must have the element type " << elt << ", got "
             << getHyper(i).getType();
  // Defaults are stored as f64 but become constants of the element type when
  // folded or loaded, so a value beyond its range would turn into inf.
  auto fitsElementType = [&](double value) {
    APFloat f(value);
    bool losesInfo;
    f.convert(elt.getFloatSemantics(), APFloat::rmNearestTiesToEven,
              &losesInfo);
    return f.isFinite();
  };
  for (auto [name, value] : llvm::zip(getHyperNames(), getHyperDefaults()))
    if (!fitsElementType(value))
      return emitOpError("hyperparameter '")
             << cast<StringAttr>(name).getValue() << "' has a default ("
             << formatExact(value) << ") out of the range of " << elt;
  for (auto [name, value] : llvm::zip(getStateNames(), getStateInits()))
    if (!fitsElementType(value))
      return emitOpError("state '")
             << cast<StringAttr>(name).getValue() << "' has an initial value ("
             << formatExact(value) << ") out of the range of " << elt;
  // Inputs are one value per coordinate, like g: the chunk table has one
  // plain stream per input (KernelABI.h), no vector layout.
  for (unsigned i = 0, e = getNumInputs(); i < e; ++i)
    if (getInput(i).getType() != elt)
      return emitOpError("input '")
             << getInputName(i)
             << "' must have the element type " << elt << ", got "
             << getInput(i).getType();
  for (unsigned i = 0, e = getNumStates(); i < e; ++i) {
    Type type = getState(i).getType();
    auto vec = dyn_cast<VectorType>(type);
    bool ok = type == elt || (vec && vec.getRank() == 1 && !vec.isScalable() &&
                              vec.getElementType() == elt);
    if (!ok)
      return emitOpError("state '")
             << cast<StringAttr>(getStateNames()[i]).getValue() << "' must be "
             << elt << " or a 1-D vector of " << elt << ", got " << type;
    // A row or column state is one number per row (column) in the
    // runtime's buffers (KernelABI.h version 10): no vector layout.
    if (getStateAxis(i) != "none" && type != elt)
      return emitOpError(getStateAxis(i))
             << " state '" << cast<StringAttr>(getStateNames()[i]).getValue()
             << "' must be a scalar of " << elt << ", got " << type;
  }
  for (unsigned i = 0, e = getNumWeights(); i < e; ++i) {
    auto tensor = dyn_cast<RankedTensorType>(getWeight(i).getType());
    if (!tensor || !tensor.hasStaticShape() || tensor.getElementType() != elt)
      return emitOpError("weights '")
             << cast<StringAttr>(getWeightNames()[i]).getValue()
             << "' must be a statically shaped tensor of " << elt << ", got "
             << getWeight(i).getType();
    // Counted without overflow: the lowerings multiply these sizes.
    int64_t count = 1;
    for (int64_t d : tensor.getShape()) {
      if (d != 0 && count > kMaxWeightElements / d)
        return emitOpError("weights '")
               << cast<StringAttr>(getWeightNames()[i]).getValue()
               << "' have more than " << kMaxWeightElements << " elements";
      count *= d;
    }
  }
  // Every per-coordinate vector (states, and what the body computes) is
  // unrolled or kept per coordinate by the kernels: bounded as in the
  // language.
  auto tooLong = [](Type type) {
    auto vec = dyn_cast<VectorType>(type);
    return vec && vec.getNumElements() > kMaxExtent;
  };
  for (BlockArgument arg : block.getArguments())
    if (tooLong(arg.getType()))
      return emitOpError("per-coordinate vectors have at most ")
             << kMaxExtent << " values, got " << arg.getType();
  WalkResult walk = getBody().walk([&](Operation *op) {
    for (Type type : op->getResultTypes())
      if (tooLong(type)) {
        op->emitOpError("per-coordinate vectors have at most ")
            << kMaxExtent << " values, got " << type;
        return WalkResult::interrupt();
      }
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

LogicalResult YieldOp::verify() {
  auto rule = cast<RuleOp>((*this)->getParentOp());
  if (!hasConsistentSignature(rule))
    return success(); // The rule's own verifier reports the mismatch.
  unsigned expected = 1 + rule.getNumStates();
  if (getValues().size() != expected)
    return emitOpError("must yield the new p and ")
           << rule.getNumStates() << " state value(s) (" << expected
           << " in all), got " << getValues().size();
  if (getValues()[0].getType() != rule.getParam().getType())
    return emitOpError("new p must have type ")
           << rule.getParam().getType() << ", got " << getValues()[0].getType();
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i)
    if (getValues()[i + 1].getType() != rule.getState(i).getType())
      return emitOpError("new value of state '")
             << cast<StringAttr>(rule.getStateNames()[i]).getValue()
             << "' must have type " << rule.getState(i).getType() << ", got "
             << getValues()[i + 1].getType();
  if (!rule.getStateAxesAttr())
    return success();
  // A row (column) state is stored once per row (column): every coordinate
  // of the row must compute the same new value (KernelABI.h version 10).
  llvm::DenseMap<Value, ValueAxis> axes = getValueAxes(rule);
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i) {
    StringRef axis = rule.getStateAxis(i);
    if (axis == "none")
      continue;
    ValueAxis allowed = axis == "row" ? ValueAxis::Row : ValueAxis::Col;
    Value v = getValues()[i + 1];
    ValueAxis got = axes.lookup(v);
    if (joinAxes(got, allowed) != allowed)
      return emitOpError("new value of ")
             << axis << " state '"
             << cast<StringAttr>(rule.getStateNames()[i]).getValue()
             << "' varies along the " << axis
             << " (it is computed from per-coordinate values); reduce them "
                "with a "
             << axis << " reduction";
  }
  return success();
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

ParseResult LayerOp::parse(OpAsmParser &parser, OperationState &result) {
  Builder &b = parser.getBuilder();
  auto &props = result.getOrAddProperties<LayerOp::Properties>();
  StringAttr symName;
  if (parser.parseSymbolName(symName))
    return failure();
  props.sym_name = symName;

  SmallVector<SignatureEntry> inputs, weights;
  if (succeeded(parser.parseOptionalKeyword("inputs")) &&
      parseSignatureList(parser, inputs, InitKind::None, false))
    return failure();
  if (succeeded(parser.parseOptionalKeyword("weights")) &&
      parseSignatureList(parser, weights, InitKind::None, false))
    return failure();

  SmallVector<Attribute> outNames, outTypes;
  if (parser.parseArrow() ||
      parser.parseCommaSeparatedList(
          OpAsmParser::Delimiter::Paren, [&]() -> ParseResult {
            StringRef name;
            Type type;
            if (parser.parseKeyword(&name) || parser.parseColonType(type))
              return failure();
            outNames.push_back(b.getStringAttr(name));
            outTypes.push_back(TypeAttr::get(type));
            return success();
          }))
    return failure();

  props.input_names = namesOf(b, inputs);
  props.weight_names = namesOf(b, weights);
  props.output_names = b.getArrayAttr(outNames);
  props.output_types = b.getArrayAttr(outTypes);
  if (parser.parseOptionalAttrDictWithKeyword(result.attributes))
    return failure();

  SmallVector<OpAsmParser::Argument> args;
  appendArgs(args, inputs);
  appendArgs(args, weights);
  return parser.parseRegion(*result.addRegion(), args);
}

static bool hasConsistentSignature(LayerOp op) {
  return !op.getBody().empty() &&
         op.getBodyBlock().getNumArguments() ==
             op.getNumInputs() + op.getNumWeights() &&
         op.getOutputNames().size() == op.getOutputTypes().size() &&
         llvm::all_of(op.getOutputTypes(),
                      [](Attribute a) { return isa<TypeAttr>(a); });
}

void LayerOp::print(OpAsmPrinter &p) {
  if (!hasConsistentSignature(*this)) {
    p.printGenericOp(*this, /*printOpName=*/false);
    return;
  }
  p << ' ';
  p.printSymbolName(getSymName());
  auto printList = [&](StringRef keyword, ValueRange values) {
    if (values.empty())
      return;
    p << ' ' << keyword << '(';
    llvm::interleaveComma(values, p, [&](Value v) {
      p.printRegionArgument(cast<BlockArgument>(v));
    });
    p << ')';
  };
  Block &block = getBodyBlock();
  printList("inputs", block.getArguments().take_front(getNumInputs()));
  printList("weights", block.getArguments().drop_front(getNumInputs()));
  p << " -> (";
  llvm::interleaveComma(
      llvm::zip(getOutputNames(), getOutputTypes()), p, [&](auto pair) {
        p << cast<StringAttr>(std::get<0>(pair)).getValue() << ": "
          << cast<TypeAttr>(std::get<1>(pair)).getValue();
      });
  p << ')';
  p.printOptionalAttrDictWithKeyword(
      (*this)->getDiscardableAttrDictionary().getValue());
  p << ' ';
  p.printRegion(getBody(), /*printEntryBlockArgs=*/false,
                /*printBlockTerminators=*/true);
}

void LayerOp::getAsmBlockArgumentNames(Region &region,
                                       OpAsmSetValueNameFn setNameFn) {
  if (!hasConsistentSignature(*this))
    return;
  for (unsigned i = 0, e = getNumInputs(); i < e; ++i)
    setNameFn(getInput(i), cast<StringAttr>(getInputNames()[i]).getValue());
  for (unsigned i = 0, e = getNumWeights(); i < e; ++i)
    setNameFn(getWeight(i), cast<StringAttr>(getWeightNames()[i]).getValue());
}

LogicalResult LayerOp::verify() {
  if (getOutputNames().size() != getOutputTypes().size())
    return emitOpError("has ")
           << getOutputNames().size() << " output names but "
           << getOutputTypes().size() << " output types";
  if (getOutputNames().empty())
    return emitOpError("must have at least one output");
  if (failed(verifyNames(
          *this, {getInputNames(), getWeightNames(), getOutputNames()}, {})))
    return failure();
  if (getBody().empty())
    return emitOpError("must have a body");
  unsigned expected = getNumInputs() + getNumWeights();
  if (getBodyBlock().getNumArguments() != expected)
    return emitOpError("body has ")
           << getBodyBlock().getNumArguments()
           << " arguments, but the signature needs " << expected << " ("
           << getNumInputs() << " inputs, " << getNumWeights() << " weights)";
  for (BlockArgument arg : getBodyBlock().getArguments()) {
    auto tensor = dyn_cast<RankedTensorType>(arg.getType());
    if (!tensor || !tensor.hasStaticShape() ||
        !isa<FloatType>(tensor.getElementType()))
      return emitOpError("inputs and weights must be statically shaped float "
                         "tensors, got ")
             << arg.getType();
  }
  for (Attribute a : getOutputTypes()) {
    Type type = cast<TypeAttr>(a).getValue();
    auto tensor = dyn_cast<RankedTensorType>(type);
    if (!tensor || !tensor.hasStaticShape() ||
        !isa<FloatType>(tensor.getElementType()))
      return emitOpError("outputs must be statically shaped float tensors, "
                         "got ")
             << type;
  }
  // The lowerings multiply extents (n * n workspaces, element counts, row-
  // major indices): every tensor of the layer is bounded as in the language.
  auto tooLarge = [](Type type) {
    auto tensor = dyn_cast<RankedTensorType>(type);
    return tensor && llvm::any_of(tensor.getShape(), [](int64_t d) {
             return d > kMaxExtent;
           });
  };
  for (BlockArgument arg : getBodyBlock().getArguments())
    if (tooLarge(arg.getType()))
      return emitOpError("tensor extents are at most ")
             << kMaxExtent << ", got " << arg.getType();
  WalkResult walk = getBody().walk([&](Operation *op) {
    for (Type type : op->getResultTypes())
      if (tooLarge(type)) {
        op->emitOpError("tensor extents in a layer are at most ")
            << kMaxExtent << ", got " << type;
        return WalkResult::interrupt();
      }
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

LogicalResult ReturnOp::verify() {
  auto layer = cast<LayerOp>((*this)->getParentOp());
  if (!hasConsistentSignature(layer))
    return success(); // The layer's own verifier reports the mismatch.
  ArrayAttr types = layer.getOutputTypes();
  if (getValues().size() != types.size())
    return emitOpError("must return ")
           << types.size() << " output(s), got " << getValues().size();
  for (auto [i, value, type] : llvm::enumerate(getValues(), types)) {
    auto typeAttr = dyn_cast<TypeAttr>(type);
    if (typeAttr && value.getType() != typeAttr.getValue())
      return emitOpError("output '")
             << cast<StringAttr>(layer.getOutputNames()[i]).getValue()
             << "' must have type " << typeAttr.getValue() << ", got "
             << value.getType();
  }
  return success();
}
