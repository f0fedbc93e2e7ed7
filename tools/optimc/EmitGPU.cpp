//===- EmitGPU.cpp - optimc's CUDA outputs (lowered, ptx, cubin) ----------===//

#include "EmitGPU.h"
#include "ArtifactFiles.h"
#include "optim/Compiler/Describe.h"
#include "optim/Conversion/Passes.h"
#include "optim/Dialect/OptimOps.h"
#include "optim/LayerManifest.h"
#include "optim/Manifest.h"
#include "optim/QPBlock.h"

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
  llvm::SmallVector<mlir::optim::LayerOp> layers(
      module.getOps<mlir::optim::LayerOp>());
  if (rules.empty() && layers.empty())
    return fail("no rule or layer to compile for the GPU");
  if (options.what == GPUEmit::Cubin && rules.size() + layers.size() != 1)
    return fail("--emit=cubin makes one rule or layer at a time; name it with "
                "--rule");
  // describeLayer reads the qp's sizes; the error is located in the source.
  for (mlir::optim::LayerOp layer : layers)
    if (!mlir::optim::findCompilableQP(layer))
      return 1;
  // Described before lowering, which replaces them by kernels.
  RuleInfo info = rules.empty() ? RuleInfo() : describeRule(rules.front());
  LayerInfo layerInfo =
      layers.empty() ? LayerInfo() : describeLayer(layers.front());

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
  const std::string &name = rules.empty() ? layerInfo.name : info.name;
  std::string output = options.output.empty() || options.output == "-"
                           ? name + ".cubin"
                           : options.output;
  llvm::SmallString<256> manifestPath(output);
  llvm::sys::path::replace_extension(manifestPath, ".manifest.json");
  // The PTX goes beside the cubin, as a fatbin would carry it: a driver
  // that cannot use the cubin (older than the ptxas that made it, or a
  // newer architecture) compiles the PTX instead (Device::loadRule).
  llvm::SmallString<256> ptxPath(output);
  llvm::sys::path::replace_extension(ptxPath, ".ptx");
  const bool writePTX = ptxPath != output;
  // The manifest records both files' SHA-256, which the loaders check.
  const std::string cubinHash = tools::sha256Hex(*cubin);
  const std::string ptxHash = writePTX ? tools::sha256Hex(*ptx) : "";
  std::string manifestText;
  if (rules.empty()) {
    // The launch the kernel was compiled for (optim-lower-layers-to-gpu
    // computes the same layout).
    qpblock::KernelLayout lay = qpblock::kernelLayout(
        layerInfo.n, layerInfo.m, layerInfo.p, layerInfo.hasQ,
        pipeline.layerThreads, layerSharedBytes(pipeline));
    LayerManifest manifest;
    manifest.info = layerInfo;
    manifest.symbol =
        OPTIM_LAYER_SYMBOL_PREFIX + layerInfo.name + OPTIM_LAYER_GPU_SUFFIX;
    manifest.target = describeGPUTarget(pipeline.arch);
    manifest.threads = lay.threads;
    manifest.sharedBytes = lay.sharedBytes;
    manifest.workDoubles = lay.workDoubles;
    manifest.dataDoubles = lay.dataDoubles;
    manifest.artifactSha256 = cubinHash;
    manifest.ptxSha256 = ptxHash;
    manifestText = writeLayerManifest(manifest);
  } else {
    Manifest manifest{info, OPTIM_RULE_SYMBOL_PREFIX + info.name,
                      describeGPUTarget(pipeline.arch),
                      OPTIM_KERNEL_ABI_VERSION};
    manifest.artifactSha256 = cubinHash;
    manifest.ptxSha256 = ptxHash;
    manifestText = writeManifest(manifest);
  }
  // The cubin, its PTX and the manifest as one group (ArtifactFiles.h):
  // staged, then renamed into place, the manifest last.
  tools::StagedFiles files;
  std::string err = files.stage(output, *cubin);
  if (err.empty() && writePTX)
    err = files.stage(std::string(ptxPath), *ptx);
  if (err.empty())
    err = files.stage(std::string(manifestPath), manifestText);
  if (err.empty())
    err = files.commit();
  return err.empty() ? 0 : fail(err);
}
