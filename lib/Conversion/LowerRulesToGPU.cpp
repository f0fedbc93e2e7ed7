//===- LowerRulesToGPU.cpp - optim.rule to one CUDA kernel per rule -------===//
//
// One rule becomes one `gpu.func` kernel with the GPU ABI of KernelABI.h:
// a launch covers a whole chunk table (block b = chunk begin + b), the
// block's threads stride over the chunk's coordinates. Values that do not
// depend on p, g or the state ("uniform") are computed once per thread
// before any loop; the rest is cloned into a loop that handles 128 bits of
// every input per thread and iteration (when the chunk's pointers allow it)
// and into a scalar loop for what remains. Every coordinate is read once and
// written once.
//
//===----------------------------------------------------------------------===//

#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::optim {
#define GEN_PASS_DEF_LOWERRULESTOGPU
#include "optim/Conversion/Passes.h.inc"
} // namespace mlir::optim

using namespace mlir;
using namespace mlir::optim;

namespace {

/// Must match OPTIM_RULE_SYMBOL_PREFIX and OPTIM_GPU_MODULE_NAME.
constexpr llvm::StringLiteral kSymbolPrefix = "optim_rule_";
constexpr llvm::StringLiteral kModuleName = "optim_kernels";
/// CUDA's global address space.
constexpr unsigned kGlobal = 1;

class GPURuleLowering {
public:
  GPURuleLowering(RuleOp rule, gpu::GPUModuleOp gpuModule, unsigned vectorBits,
                  bool relaxed)
      : rule(rule), gpuModule(gpuModule), vectorBits(vectorBits),
        relaxed(relaxed) {}

  LogicalResult run();

private:
  LogicalResult classify();
  Value i64Const(OpBuilder &b, int64_t v) {
    return arith::ConstantIntOp::create(b, rule.getLoc(), v, 64);
  }
  Value gep(OpBuilder &b, Type elt, Value base, Value i64Index) {
    return LLVM::GEPOp::create(b, rule.getLoc(), base.getType(), elt, base,
                               ValueRange{i64Index});
  }
  /// The coordinate loop over [lb, ub) with `step`, `lanes` coordinates per
  /// thread and iteration.
  void emitCoordinateLoop(OpBuilder &b, Value lb, Value ub, Value step,
                          unsigned lanes, ArrayRef<Value> bases);

  RuleOp rule;
  gpu::GPUModuleOp gpuModule;
  unsigned vectorBits;
  bool relaxed;
  FloatType elt;
  Type globalPtr;
  llvm::DenseSet<Value> varying;
  SmallVector<Operation *> varyingOps;
  IRMapping uniform;
  llvm::DenseMap<Value, Value> reciprocals;
};

} // namespace

/// NVVM's correctly rounded square root of `x` (scalar or vector), one lane
/// at a time: convert-gpu-to-nvvm refuses llvm.intr.sqrt, and libdevice's
/// __nv_sqrtf, which it calls for math.sqrt, is sqrt.approx.
static Value exactSqrt(OpBuilder &b, Location loc, Value x) {
  auto vec = dyn_cast<VectorType>(x.getType());
  Type elt = getElementTypeOrSelf(x.getType());
  StringAttr name = b.getStringAttr(elt.isF32() ? "llvm.nvvm.sqrt.rn.f"
                                                : "llvm.nvvm.sqrt.rn.d");
  if (!vec)
    return LLVM::CallIntrinsicOp::create(b, loc, elt, name, x).getResult(0);
  SmallVector<Value> roots;
  for (int64_t l = 0; l < vec.getNumElements(); ++l) {
    Value lane = vector::ExtractOp::create(b, loc, x, ArrayRef<int64_t>{l});
    roots.push_back(
        LLVM::CallIntrinsicOp::create(b, loc, elt, name, lane).getResult(0));
  }
  return vector::FromElementsOp::create(b, loc, vec, roots);
}

LogicalResult GPURuleLowering::classify() {
  varying.insert(rule.getParam());
  varying.insert(rule.getGrad());
  for (unsigned i = 0, e = rule.getNumStates(); i < e; ++i) {
    if (isa<VectorType>(rule.getState(i).getType()))
      return rule.emitOpError("has the vector state '")
             << cast<StringAttr>(rule.getStateNames()[i]).getValue()
             << "': the GPU code generator supports scalar states only "
                "(learned rules are not compiled for GPUs yet)";
    varying.insert(rule.getState(i));
  }
  if (rule.getNumWeights())
    return rule.emitOpError("has weights: the GPU code generator does not "
                            "compile learned rules yet");
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    bool isVarying = llvm::any_of(op.getOperands(),
                                  [&](Value v) { return varying.contains(v); });
    if (!isVarying)
      continue;
    auto isScalar = [&](Type t) { return t == elt || t.isInteger(1); };
    if (!op.hasTrait<OpTrait::Elementwise>() || op.getNumRegions() ||
        !llvm::all_of(op.getResultTypes(), isScalar) ||
        !llvm::all_of(op.getOperandTypes(),
                      [&](Type t) { return !isa<VectorType>(t); }))
      return op.emitOpError("cannot be computed per coordinate by the GPU "
                            "code generator yet");
    varyingOps.push_back(&op);
    for (Value r : op.getResults())
      varying.insert(r);
  }
  return success();
}

void GPURuleLowering::emitCoordinateLoop(OpBuilder &b, Value lb, Value ub,
                                         Value step, unsigned lanes,
                                         ArrayRef<Value> bases) {
  Location loc = rule.getLoc();
  auto loop = scf::ForOp::create(b, loc, lb, ub, step);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(loop.getBody());
  Value i = arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                       loop.getInductionVar());
  auto laneType = [&](Type scalar) -> Type {
    return lanes == 1 ? scalar : VectorType::get({lanes}, scalar);
  };
  Type valueType = laneType(elt);
  unsigned align = lanes * elt.getWidth() / 8;

  llvm::DenseMap<Value, Value> map;
  SmallVector<Value> inputs = {rule.getParam(), rule.getGrad()};
  for (unsigned s = 0, e = rule.getNumStates(); s < e; ++s)
    inputs.push_back(rule.getState(s));
  SmallVector<Value> addrs;
  for (auto [input, base] : llvm::zip(inputs, bases)) {
    Value addr = gep(b, elt, base, i);
    addrs.push_back(addr);
    if (!input.use_empty())
      map[input] = LLVM::LoadOp::create(b, loc, valueType, addr, align);
  }

  llvm::DenseMap<Value, Value> broadcasts;
  auto operand = [&](Value v) -> Value {
    if (varying.contains(v))
      return map.lookup(v);
    Value &cached = broadcasts[v];
    if (!cached) {
      Value u = uniform.lookup(v);
      cached =
          lanes == 1
              ? u
              : vector::BroadcastOp::create(b, loc, laneType(u.getType()), u)
                    .getResult();
    }
    return cached;
  };
  auto fastmath = [&] {
    return relaxed ? arith::FastMathFlags::contract
                   : arith::FastMathFlags::none;
  };

  for (Operation *op : varyingOps) {
    if (auto div = dyn_cast<arith::DivFOp>(op)) {
      auto it = reciprocals.find(div.getRhs());
      if (it != reciprocals.end()) {
        Value r = it->second;
        if (lanes > 1)
          r = vector::BroadcastOp::create(b, loc, valueType, r);
        map[div.getResult()] = arith::MulFOp::create(
            b, loc, operand(div.getLhs()), r, arith::FastMathFlags::contract);
        continue;
      }
    }
    if (auto sqrt = dyn_cast<math::SqrtOp>(op); sqrt && !relaxed) {
      // libdevice's __nv_sqrtf, what convert-gpu-to-nvvm calls, is
      // sqrt.approx; the intrinsic is the correctly rounded sqrt.rn.
      map[sqrt.getResult()] = exactSqrt(b, loc, operand(sqrt.getOperand()));
      continue;
    }
    IRMapping opMap;
    for (Value v : op->getOperands())
      opMap.map(v, operand(v));
    Operation *clone = b.clone(*op, opMap);
    if (relaxed)
      if (auto fmi = dyn_cast<arith::ArithFastMathInterface>(clone))
        clone->setAttr(
            fmi.getFastMathAttrName(),
            arith::FastMathFlagsAttr::get(b.getContext(), fastmath()));
    for (auto [r, orig] : llvm::zip(clone->getResults(), op->getResults())) {
      r.setType(laneType(getElementTypeOrSelf(r.getType())));
      map[orig] = r;
    }
  }

  auto yield = cast<YieldOp>(rule.getBodyBlock().getTerminator());
  for (auto [k, value] : llvm::enumerate(yield.getValues())) {
    Value input = k == 0 ? rule.getParam() : rule.getState(k - 1);
    if (value == input)
      continue; // Unchanged: nothing to write.
    LLVM::StoreOp::create(b, loc, operand(value), addrs[k == 0 ? 0 : k + 1],
                          align);
  }
}

LogicalResult GPURuleLowering::run() {
  MLIRContext *ctx = rule.getContext();
  Location loc = rule.getLoc();
  elt = rule.getElementType();
  if (!elt || !(elt.isF32() || elt.isF64()))
    return rule.emitOpError("GPU code generation supports f32 and f64 rules");
  if (failed(classify()))
    return failure();
  globalPtr = LLVM::LLVMPointerType::get(ctx, kGlobal);
  Type genericPtr = LLVM::LLVMPointerType::get(ctx);

  OpBuilder b(ctx);
  b.setInsertionPointToEnd(gpuModule.getBody());
  Type i64 = b.getI64Type();
  // (ptrs, lengths, strides, begin, step, hyper_0 .. hyper_{H-1}).
  SmallVector<Type> argTypes = {globalPtr, globalPtr, globalPtr, i64, i64};
  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h)
    argTypes.push_back(elt);
  auto func =
      gpu::GPUFuncOp::create(b, loc, (kSymbolPrefix + rule.getSymName()).str(),
                             b.getFunctionType(argTypes, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  Value ptrs = entry.getArgument(0), lengths = entry.getArgument(1);
  Value begin = entry.getArgument(3), step = entry.getArgument(4);

  for (unsigned h = 0, e = rule.getNumHypers(); h < e; ++h) {
    BlockArgument arg = rule.getHyper(h);
    if (arg.use_empty())
      continue;
    uniform.map(
        arg, rule.getHyperConst()[h]
                 ? arith::ConstantOp::create(
                       b, loc, b.getFloatAttr(elt, rule.getHyperDefaults()[h]))
                       .getResult()
                 : Value(entry.getArgument(5 + h)));
  }
  uniform.map(rule.getStep(), step);
  // Uniform work (bias corrections), once per thread.
  for (Operation &op : rule.getBodyBlock().without_terminator()) {
    if (llvm::is_contained(varyingOps, &op))
      continue;
    if (auto sqrt = dyn_cast<math::SqrtOp>(op); sqrt && !relaxed)
      uniform.map(sqrt.getResult(),
                  exactSqrt(b, loc, uniform.lookup(sqrt.getOperand())));
    else
      b.clone(op, uniform);
  }
  if (relaxed)
    for (Operation *op : varyingOps)
      if (auto div = dyn_cast<arith::DivFOp>(op))
        if (!varying.contains(div.getRhs()) && !reciprocals.count(div.getRhs()))
          reciprocals[div.getRhs()] = arith::DivFOp::create(
              b, loc,
              arith::ConstantOp::create(b, loc, b.getFloatAttr(elt, 1.0)),
              uniform.lookup(div.getRhs()));

  // This block's chunk: its pointers (from the table in device memory, read
  // once per thread) and length.
  unsigned numPtrs = 2 + rule.getNumStates();
  Value block = arith::IndexCastOp::create(
      b, loc, i64, gpu::BlockIdOp::create(b, loc, gpu::Dimension::x));
  Value c = arith::AddIOp::create(b, loc, begin, block);
  Value first = arith::MulIOp::create(b, loc, c, i64Const(b, numPtrs));
  SmallVector<Value> bases;
  Value misaligned = i64Const(b, 0);
  for (unsigned k = 0; k < numPtrs; ++k) {
    Value slot = gep(b, genericPtr, ptrs,
                     arith::AddIOp::create(b, loc, first, i64Const(b, k)));
    auto load = LLVM::LoadOp::create(b, loc, genericPtr, slot, 8);
    load.setInvariant(true);
    Value base = LLVM::AddrSpaceCastOp::create(b, loc, globalPtr, load);
    bases.push_back(base);
    misaligned = arith::OrIOp::create(
        b, loc, misaligned, LLVM::PtrToIntOp::create(b, loc, i64, base));
  }
  auto n64 = LLVM::LoadOp::create(b, loc, i64, gep(b, i64, lengths, c), 8);
  n64.setInvariant(true);
  Value n = arith::IndexCastOp::create(b, loc, b.getIndexType(), n64);
  Value tid = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  Value threads = gpu::BlockDimOp::create(b, loc, gpu::Dimension::x);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);

  unsigned lanes = std::max(1u, vectorBits / elt.getWidth());
  Value vectorEnd = zero;
  if (lanes > 1) {
    unsigned bytes = lanes * elt.getWidth() / 8;
    Value aligned = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::eq,
        arith::AndIOp::create(b, loc, misaligned, i64Const(b, bytes - 1)),
        i64Const(b, 0));
    Value lanesIdx = arith::ConstantIndexOp::create(b, loc, lanes);
    Value whole = arith::SubIOp::create(
        b, loc, n, arith::RemUIOp::create(b, loc, n, lanesIdx));
    vectorEnd = arith::SelectOp::create(b, loc, aligned, whole, zero);
    emitCoordinateLoop(
        b, arith::MulIOp::create(b, loc, tid, lanesIdx), vectorEnd,
        arith::MulIOp::create(b, loc, threads, lanesIdx), lanes, bases);
  }
  emitCoordinateLoop(b, arith::AddIOp::create(b, loc, vectorEnd, tid), n,
                     threads, 1, bases);
  gpu::ReturnOp::create(b, loc);
  rule.erase();
  return success();
}

namespace {
struct LowerRulesToGPU
    : public mlir::optim::impl::LowerRulesToGPUBase<LowerRulesToGPU> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<RuleOp> rules(module.getOps<RuleOp>());
    if (rules.empty())
      return;
    if (vectorBits != 32 && vectorBits != 64 && vectorBits != 128) {
      module.emitError("vector-bits must be 32, 64 or 128");
      return signalPassFailure();
    }
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(module.getContext()));
    auto gpuModule = module.lookupSymbol<gpu::GPUModuleOp>(kModuleName);
    if (!gpuModule) {
      OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
      gpuModule = gpu::GPUModuleOp::create(b, module.getLoc(), kModuleName);
    }
    for (RuleOp rule : rules)
      if (failed(GPURuleLowering(rule, gpuModule, vectorBits, relaxedFP).run()))
        return signalPassFailure();
  }
};
} // namespace
