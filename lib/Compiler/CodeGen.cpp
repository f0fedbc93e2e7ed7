//===- CodeGen.cpp - LLVM-dialect modules to host machine code ------------===//

#include "optim/Compiler/CodeGen.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

#include <algorithm>
#include <mutex>

using namespace optim;

void optim::initializeNativeTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

llvm::Expected<std::unique_ptr<llvm::TargetMachine>>
optim::createHostTargetMachine() {
  initializeNativeTarget();
  auto builder = llvm::orc::JITTargetMachineBuilder::detectHost();
  if (!builder)
    return builder.takeError();
  builder->setRelocationModel(llvm::Reloc::PIC_);
  builder->setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  return builder->createTargetMachine();
}

optim::HostVectorRegisters optim::hostVectorRegisters() {
  llvm::StringMap<bool> features = llvm::sys::getHostCPUFeatures();
  llvm::Triple host(llvm::sys::getProcessTriple());
  if (host.isAArch64())
    return {16, 32};
  if (features.lookup("avx512f"))
    return {64, 32};
  if (features.lookup("avx"))
    return {32, 16};
  return {16, 16};
}

unsigned optim::hostLearnedVectorWidth(const HostVectorRegisters &r) {
  return std::max(1u, r.count * r.bytes / 128);
}

std::string optim::describeTarget(const llvm::TargetMachine &tm) {
  return tm.getTargetTriple().str() + " " + tm.getTargetCPU().str() + " " +
         tm.getTargetFeatureString().str();
}

llvm::Expected<std::unique_ptr<llvm::Module>>
optim::translateAndOptimize(mlir::ModuleOp module, llvm::LLVMContext &context,
                            llvm::TargetMachine &tm) {
  mlir::registerBuiltinDialectTranslation(*module->getContext());
  mlir::registerLLVMDialectTranslation(*module->getContext());
  std::unique_ptr<llvm::Module> llvmModule =
      mlir::translateModuleToLLVMIR(module, context, "optim");
  if (!llvmModule)
    return llvm::createStringError("cannot translate the kernels to LLVM IR");
  llvmModule->setDataLayout(tm.createDataLayout());
  llvmModule->setTargetTriple(tm.getTargetTriple());
  auto optimize = mlir::makeOptimizingTransformer(/*optLevel=*/3,
                                                  /*sizeLevel=*/0, &tm);
  if (llvm::Error err = optimize(llvmModule.get()))
    return std::move(err);
  return llvmModule;
}

llvm::Expected<std::string> optim::emitObject(llvm::Module &module,
                                              llvm::TargetMachine &tm) {
  llvm::SmallVector<char, 0> bytes;
  llvm::raw_svector_ostream os(bytes);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr,
                             llvm::CodeGenFileType::ObjectFile))
    return llvm::createStringError("the target cannot emit object files");
  pm.run(module);
  return std::string(bytes.begin(), bytes.end());
}
