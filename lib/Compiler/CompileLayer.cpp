//===- CompileLayer.cpp - JIT-compile a QP layer's data functions ---------===//
//
// The layer's signature is read from optim.layer before lowering; its data
// functions (optim-lower-layers) are JIT-compiled; optim::Layer runs them
// around the runtime's QP solver.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Compiler.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimOps.h"
#include "optim/Frontend/Frontend.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

using namespace optim;

namespace {

std::vector<int64_t> shapeOf(mlir::Type t) {
  auto r = mlir::cast<mlir::RankedTensorType>(t);
  return {r.getShape().begin(), r.getShape().end()};
}

/// The runtime's view of a layer; mirrors optim-lower-layers' choice of
/// which operands are batched (those computed from an input).
LayerInfo describeLayer(mlir::optim::LayerOp layer, mlir::optim::QPOp qp) {
  LayerInfo info;
  info.name = layer.getSymName().str();
  info.dtype = mlir::getElementTypeOrSelf(qp.getQvec().getType()).isF64()
                   ? DType::F64
                   : DType::F32;
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    info.inputs.push_back(
        {mlir::cast<mlir::StringAttr>(layer.getInputNames()[i]).str(),
         shapeOf(layer.getInput(i).getType())});
  for (unsigned i = 0; i < layer.getNumWeights(); ++i)
    info.weights.push_back(
        {mlir::cast<mlir::StringAttr>(layer.getWeightNames()[i]).str(),
         shapeOf(layer.getWeight(i).getType())});
  mlir::Operation *ret = layer.getBodyBlock().getTerminator();
  for (unsigned i = 0; i < ret->getNumOperands(); ++i) {
    mlir::Value v = ret->getOperand(i);
    info.outputs.push_back(
        {mlir::cast<mlir::StringAttr>(layer.getOutputNames()[i]).str(),
         shapeOf(v.getType())});
    info.outputKinds.push_back(
        int(mlir::cast<mlir::OpResult>(v).getResultNumber()));
  }
  info.n = shapeOf(qp.getQvec().getType())[0];
  info.m = qp.getB() ? shapeOf(qp.getB().getType())[0] : 0;
  info.p = qp.getH() ? shapeOf(qp.getH().getType())[0] : 0;
  info.hasQ = bool(qp.getQmat());
  info.tol = qp.getTol().convertToDouble();
  info.maxIter = qp.getMaxIter();
  llvm::DenseSet<mlir::Value> batched;
  for (unsigned i = 0; i < layer.getNumInputs(); ++i)
    batched.insert(layer.getInput(i));
  for (mlir::Operation &op : layer.getBodyBlock().without_terminator())
    if (llvm::any_of(op.getOperands(),
                     [&](mlir::Value v) { return batched.contains(v); }))
      for (mlir::Value r : op.getResults())
        batched.insert(r);
  mlir::Value ops[6] = {qp.getQmat(), qp.getQvec(), qp.getA(),
                        qp.getB(),    qp.getG(),    qp.getH()};
  for (int k = 0; k < 6; ++k)
    info.batched[k] = ops[k] && batched.contains(ops[k]);
  return info;
}

} // namespace

Layer Compiler::compileLayerFile(const std::string &path,
                                 const std::string &layer) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (std::error_code ec = buffer.getError())
    throw Error("optim::Compiler: cannot read '" + path + "': " + ec.message());
  return compileLayerSource((*buffer)->getBuffer(), path, layer);
}

Layer Compiler::compileLayerSource(std::string_view source,
                                   const std::string &bufferName,
                                   const std::string &layerName) {
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(
      llvm::MemoryBuffer::getMemBufferCopy(
          llvm::StringRef(source.data(), source.size()), bufferName),
      llvm::SMLoc());
  std::string diagnostics;
  llvm::raw_string_ostream diagStream(diagnostics);
  DiagnosticEngine diags(sourceMgr, diagStream);
  mlir::MLIRContext context;
  context.printOpOnDiagnostic(false);
  FrontendOptions frontend;
  frontend.precision =
      options().precision == DType::F64 ? Precision::F64 : Precision::F32;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      compileToMLIR(context, diags, frontend);
  if (!module)
    throw Error(diagnostics.empty() ? "optim::Compiler: compilation failed"
                                    : diagnostics);

  mlir::optim::LayerOp selected;
  std::string available;
  unsigned count = 0;
  for (auto layer : module->getOps<mlir::optim::LayerOp>()) {
    available += (available.empty() ? "" : ", ") + layer.getSymName().str();
    ++count;
    if (layerName.empty() ? !selected : layer.getSymName() == layerName)
      selected = layer;
  }
  if (layerName.empty() && count > 1)
    throw Error("optim::Compiler: '" + bufferName +
                "' defines several layers (" + available +
                "); name the one to compile");
  if (!selected)
    throw Error(
        "optim::Compiler: '" + bufferName + "' has no layer" +
        (layerName.empty() ? std::string() : " named '" + layerName + "'") +
        (available.empty() ? "" : " (it has: " + available + ")"));
  for (mlir::Operation &op :
       llvm::make_early_inc_range(module->getBody()->getOperations()))
    if (&op != selected.getOperation())
      op.erase();
  mlir::optim::QPOp qp;
  for (auto q : selected.getBodyBlock().getOps<mlir::optim::QPOp>())
    qp = q;
  std::string name = selected.getSymName().str();

  std::string passErrors;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    if (d.getSeverity() == mlir::DiagnosticSeverity::Error) {
      std::string loc;
      if (auto flc = mlir::dyn_cast<mlir::FileLineColLoc>(d.getLocation()))
        loc = (flc.getFilename().str() + ":" + std::to_string(flc.getLine()) +
               ":" + std::to_string(flc.getColumn()));
      else
        llvm::raw_string_ostream(loc) << d.getLocation();
      passErrors += loc + ": error: " + d.str() + "\n";
    }
    return mlir::success();
  });
  if (!qp)
    throw Error("optim::Compiler: layer '" + name + "' solves no qp");
  LayerInfo info = describeLayer(selected, qp);

  mlir::PassManager pm(&context);
  buildLowerRulesPipeline(pm, CPUPipelineOptions());
  buildKernelsToLLVMPipeline(pm);
  if (mlir::failed(pm.run(*module)))
    throw Error("optim::Compiler: cannot compile layer '" + name + "': " +
                (passErrors.empty() ? "lowering failed\n" : passErrors));

  auto tm = createHostTargetMachine();
  if (!tm)
    throw Error("optim::Compiler: no code generator for this host: " +
                llvm::toString(tm.takeError()));
  mlir::registerBuiltinDialectTranslation(context);
  mlir::registerLLVMDialectTranslation(context);
  std::function<llvm::Error(llvm::Module *)> transformer =
      mlir::makeOptimizingTransformer(/*optLevel=*/3, /*sizeLevel=*/0,
                                      tm->get());
  mlir::ExecutionEngineOptions engineOptions;
  engineOptions.transformer = transformer;
  engineOptions.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  auto engine =
      mlir::ExecutionEngine::create(*module, engineOptions, std::move(*tm));
  if (!engine)
    throw Error("optim::Compiler: JIT compilation of layer '" + name +
                "' failed: " + llvm::toString(engine.takeError()));
  auto lookup = [&](const std::string &symbol) {
    auto address = (*engine)->lookup(symbol);
    if (!address)
      throw Error("optim::Compiler: the JIT has no symbol '" + symbol +
                  "': " + llvm::toString(address.takeError()));
    return *address;
  };
  std::string prefix = OPTIM_LAYER_SYMBOL_PREFIX + name;
  auto data = reinterpret_cast<optim_layer_data_fn>(lookup(prefix + "_data"));
  auto vjp = reinterpret_cast<optim_layer_vjp_fn>(lookup(prefix + "_vjp"));
  std::shared_ptr<mlir::ExecutionEngine> owner(std::move(*engine));
  return Layer(std::move(info), data, vjp, std::move(owner));
}
