//===- Pipelines.cpp - pass pipelines from the dialect to LLVM ------------===//

#include "optim/Compiler/Pipelines.h"
#include "optim/Conversion/Passes.h"
#include "optim/Transforms/Passes.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void ::optim::buildLowerRulesPipeline(OpPassManager &pm,
                                      const CPUPipelineOptions &options) {
  // Layers first: their data functions are plain scf/arith/llvm code.
  pm.addPass(mlir::optim::createLowerLayers());
  pm.addPass(mlir::optim::createFoldConstantHyperparameters());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (options.vjp) {
    pm.addPass(mlir::optim::createDifferentiate());
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
    mlir::optim::LowerVJPToKernelsOptions vjp;
    vjp.vectorWidth = options.vectorWidth;
    vjp.vectorRegisterBytes = options.vectorRegisterBytes;
    vjp.vectorRegisters = options.vectorRegisters;
    pm.addPass(mlir::optim::createLowerVJPToKernels(vjp));
  }
  mlir::optim::LowerRulesToKernelsOptions lower;
  lower.vectorWidth = options.vectorWidth;
  lower.learnedVectorWidth = options.learnedVectorWidth;
  lower.relaxedFP = options.relaxedFP;
  lower.prefetchDistance = options.prefetchDistance;
  pm.addPass(mlir::optim::createLowerRulesToKernels(lower));
  // Bottom-up: the kernel's loops hold the body unrolled per component
  // (tens of thousands of ops for a state h[1024]), and the top-down
  // driver's repeated dead-op checks of those loops made this quadratic
  // (5 s at 1024 components, over a minute at 4096; 0.3 s bottom-up).
  GreedyRewriteConfig bottomUp;
  bottomUp.setUseTopDownTraversal(false);
  pm.addPass(createCanonicalizerPass(bottomUp));
  pm.addPass(createCSEPass());
  // Broadcasts of uniform values are created in the loops; hoist them.
  pm.addPass(createLoopInvariantCodeMotionPass());
  // The conversions to LLVM would leave an optim op in place.
  pm.addPass(mlir::optim::createCheckLowered());
}

void ::optim::buildKernelsToLLVMPipeline(OpPassManager &pm) {
  pm.addPass(createSCFToControlFlowPass());
  // Intrinsics where LLVM has them (sqrt, exp, log, pow, tanh, ...), libm
  // for the rest (cbrt). Before the vector conversion: libm calls are
  // scalar, and the lanes they extract and insert are vector ops.
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createConvertVectorToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

namespace {
struct OptimLowerToLLVMOptions
    : public PassPipelineOptions<OptimLowerToLLVMOptions> {
  Option<unsigned> vectorWidth{*this, "vector-width",
                               llvm::cl::desc("SIMD lanes (coordinates)"),
                               llvm::cl::init(16)};
  Option<unsigned> learnedVectorWidth{
      *this, "learned-vector-width",
      llvm::cl::desc("SIMD lanes of learned rules (0: vector-width)"),
      llvm::cl::init(0)};
  Option<unsigned> vectorRegisterBytes{
      *this, "vector-register-bytes",
      llvm::cl::desc("Bytes of a SIMD register (sizes the VJP's tiles)"),
      llvm::cl::init(64)};
  Option<unsigned> vectorRegisters{
      *this, "vector-registers",
      llvm::cl::desc("SIMD registers of the target (sizes the VJP's tiles)"),
      llvm::cl::init(32)};
  Option<bool> relaxedFP{
      *this, "relaxed-fp",
      llvm::cl::desc("Reciprocals of uniform divisors and fused multiply-adds"),
      llvm::cl::init(false)};
  Option<unsigned> prefetchDistance{
      *this, "prefetch-distance",
      llvm::cl::desc("Bytes an update rule prefetches ahead (0: none)"),
      llvm::cl::init(1024)};
  Option<bool> vjp{*this, "vjp",
                   llvm::cl::desc("Also generate each rule's VJP kernel"),
                   llvm::cl::init(false)};
};
} // namespace

void ::optim::registerPipelines() {
  PassPipelineRegistration<OptimLowerToLLVMOptions>(
      "optim-lower-to-llvm",
      "Lower optim rules to fused kernels in the LLVM dialect",
      [](OpPassManager &pm, const OptimLowerToLLVMOptions &options) {
        CPUPipelineOptions cpu;
        cpu.vectorWidth = options.vectorWidth;
        cpu.learnedVectorWidth = options.learnedVectorWidth;
        cpu.vectorRegisterBytes = options.vectorRegisterBytes;
        cpu.vectorRegisters = options.vectorRegisters;
        cpu.relaxedFP = options.relaxedFP;
        cpu.prefetchDistance = options.prefetchDistance;
        cpu.vjp = options.vjp;
        buildLowerRulesPipeline(pm, cpu);
        buildKernelsToLLVMPipeline(pm);
      });
}
