//===- EmitGPU.cpp - optimc's CUDA outputs (lowered, ptx, cubin) ----------===//

#include "EmitGPU.h"
#include "optim/Compiler/Describe.h"
#include "optim/Dialect/OptimOps.h"
#include "optim/Manifest.h"

#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

using namespace optim;

static int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "optimc") << message << "\n";
  return 1;
}

/// Through a temporary file and a rename, like optimc's other outputs.
static int write(llvm::StringRef path, llvm::StringRef bytes) {
  if (llvm::Error err =
          llvm::writeToOutput(path, [&](llvm::raw_ostream &os) -> llvm::Error {
            os << bytes;
            return llvm::Error::success();
          }))
    return fail("cannot write '" + path +
                "': " + llvm::toString(std::move(err)));
  return 0;
}

int optim::emitGPU(mlir::ModuleOp module, const GPUEmitOptions &options) {
  const GPUPipelineOptions &pipeline = options.pipeline;
  if (std::string why = checkGPUArch(pipeline.arch); !why.empty())
    return fail("--gpu-arch: " + why);
  llvm::SmallVector<mlir::optim::RuleOp> rules(
      module.getOps<mlir::optim::RuleOp>());
  if (rules.empty())
    return fail("no rule to compile for the GPU");
  if (options.what == GPUEmit::Cubin && rules.size() != 1)
    return fail("--emit=cubin makes one rule at a time; name it with --rule");
  RuleInfo info = describeRule(rules.front());

  if (options.what == GPUEmit::Lowered) {
    registerGPUCodeGen(*module.getContext());
    mlir::PassManager pm(module.getContext());
    buildLowerRulesToGPUPipeline(pm, pipeline);
    if (mlir::failed(pm.run(module)))
      return 1;
    std::string text;
    llvm::raw_string_ostream os(text);
    module.print(os);
    return write(options.output, text);
  }

  llvm::Expected<std::string> ptx = compileToPTX(module, pipeline);
  if (!ptx)
    return fail(llvm::toString(ptx.takeError()));
  if (options.what == GPUEmit::PTX)
    return write(options.output, *ptx);

  std::string report;
  llvm::Expected<std::string> cubin = assemblePTX(
      *ptx, pipeline.arch, options.ptxasVerbose ? &report : nullptr);
  if (!cubin)
    return fail(llvm::toString(cubin.takeError()));
  if (options.ptxasVerbose)
    llvm::errs() << report;
  std::string output = options.output.empty() || options.output == "-"
                           ? info.name + ".cubin"
                           : options.output;
  llvm::SmallString<256> manifestPath(output);
  llvm::sys::path::replace_extension(manifestPath, ".manifest.json");
  Manifest manifest{info, OPTIM_RULE_SYMBOL_PREFIX + info.name,
                    describeGPUTarget(pipeline.arch), OPTIM_KERNEL_ABI_VERSION};
  if (int rc = write(output, *cubin))
    return rc;
  return write(manifestPath, writeManifest(manifest));
}
