//===- CompileLayer.cpp - JIT-compile a QP layer's data functions ---------===//
//
// The layer's signature is read from optim.layer before lowering; its data
// functions (optim-lower-layers) are JIT-compiled; optim::Layer runs them
// around the runtime's QP solver.
//
//===----------------------------------------------------------------------===//

#include "JIT.h"
#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Compiler.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/MemoryBuffer.h"

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
  mlir::MLIRContext context;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      parseProgram(context, source, bufferName, options().precision);
  auto selected =
      keepOnly<mlir::optim::LayerOp>(*module, layerName, bufferName, "layer");
  mlir::optim::QPOp qp;
  for (auto q : selected.getBodyBlock().getOps<mlir::optim::QPOp>())
    qp = q;
  std::string name = selected.getSymName().str();

  PassErrors errors(context);
  if (!qp)
    throw Error("optim::Compiler: layer '" + name + "' solves no qp");
  LayerInfo info = describeLayer(selected, qp);

  mlir::PassManager pm(&context);
  buildLowerRulesPipeline(pm, CPUPipelineOptions());
  buildKernelsToLLVMPipeline(pm);
  errors.run(pm, *module,
             "optim::Compiler: cannot compile layer '" + name + "'");

  auto tm = createHostTargetMachine();
  if (!tm)
    throw Error("optim::Compiler: no code generator for this host: " +
                llvm::toString(tm.takeError()));
  std::unique_ptr<mlir::ExecutionEngine> engine =
      createJIT(*module, std::move(*tm), /*enableObjectDump=*/false,
                "layer '" + name + "'");
  auto lookup = [&](const std::string &symbol) {
    return lookupSymbol(*engine, symbol);
  };
  std::string prefix = OPTIM_LAYER_SYMBOL_PREFIX + name;
  auto data = reinterpret_cast<optim_layer_data_fn>(lookup(prefix + "_data"));
  auto vjp = reinterpret_cast<optim_layer_vjp_fn>(lookup(prefix + "_vjp"));
  std::shared_ptr<mlir::ExecutionEngine> owner(std::move(engine));
  return Layer(std::move(info), data, vjp, std::move(owner));
}
