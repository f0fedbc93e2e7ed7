//===- CompileLayer.cpp - JIT-compile a QP layer's data functions ---------===//
//
// The layer's signature is read from optim.layer before lowering; its data
// functions (optim-lower-layers) are JIT-compiled; optim::Layer runs them
// around the runtime's QP solver.
//
//===----------------------------------------------------------------------===//

#include "CompilerImpl.h"
#include "JIT.h"
#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Compiler.h"
#include "optim/Compiler/Describe.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"

#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace optim;


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
  impl->lastWasCached = false;
  impl->lastWarnings.clear();
  mlir::OwningOpRef<mlir::ModuleOp> module = parseProgram(
      context, source, bufferName, options().precision, &impl->lastWarnings);
  auto selected =
      keepOnly<mlir::optim::LayerOp>(*module, layerName, bufferName, "layer");
  std::string name = selected.getSymName().str();

  PassErrors errors(context, source, bufferName);
  // describeLayer reads the qp's sizes.
  if (!mlir::optim::findCompilableQP(selected))
    errors.fail("optim::Compiler: cannot compile layer '" + name + "'");
  LayerInfo info = describeLayer(selected);

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
