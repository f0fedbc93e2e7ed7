//===- optimc.cpp - the optim compiler driver -----------------------------===//
//
//   optimc FILE.optim [--emit=ast|mlir|lowered|llvm|obj|shared] [-o OUT]
//          [--rule NAME] [--precision=f32|f64] [--vector-width N]
//
// obj and shared also write a manifest (OUT with the extension replaced by
// .manifest.json) that optim::loadRule reads. Exit status: 0 on success, 1
// after diagnostics (a malformed program, an unreadable file, a program the
// code generator does not support yet), never a crash.
//
//===----------------------------------------------------------------------===//

#include "ArtifactFiles.h"
#include "EmitGPU.h"
#include "RepeatedOptions.h"
#include "Run.h"
#include "WriteError.h"
#include "optim/Compiler/CodeGen.h"
#include "optim/Compiler/Describe.h"
#include "optim/Compiler/Pipelines.h"
#include "optim/Dialect/OptimOps.h"
#include "optim/Frontend/Frontend.h"
#include "optim/Manifest.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

namespace cl = llvm::cl;

namespace {
enum class Emit { AST, MLIR, Lowered, LLVM, Object, Shared, PTX, Cubin };
enum class Target { CPU, CUDA };

cl::OptionCategory category("optimc options");
cl::opt<std::string> inputFilename(cl::Positional,
                                   cl::desc("<input .optim file, or - for "
                                            "standard input>"),
                                   cl::Required, cl::cat(category));
cl::opt<std::string> outputFilename(
    "o",
    cl::desc("Output file (default: standard output; for obj, shared and "
             "cubin, the rule's name with .o, .so or .cubin)"),
    cl::value_desc("filename"), cl::init(""), cl::cat(category));
cl::opt<Emit> emit(
    "emit", cl::desc("What to produce"), cl::init(Emit::MLIR),
    cl::values(
        clEnumValN(Emit::AST, "ast", "the checked syntax tree"),
        clEnumValN(Emit::MLIR, "mlir", "the optim dialect"),
        clEnumValN(Emit::Lowered, "lowered",
                   "the fused kernels (scf, vector, arith, math)"),
        clEnumValN(Emit::LLVM, "llvm", "optimized LLVM IR for this host"),
        clEnumValN(Emit::Object, "obj",
                   "an object file for this host, and its manifest"),
        clEnumValN(Emit::Shared, "shared",
                   "a shared library for optim::loadRule, and its manifest"),
        clEnumValN(Emit::PTX, "ptx", "PTX of the CUDA kernels (--target=cuda)"),
        clEnumValN(Emit::Cubin, "cubin",
                   "a cubin (ptxas) for optim::cuda::Device::loadRule, and "
                   "its manifest (--target=cuda)")),
    cl::cat(category));
cl::opt<std::string> ruleName("rule",
                              cl::desc("Compile only this rule or layer of "
                                       "the file"),
                              cl::value_desc("name"), cl::cat(category));
cl::opt<optim::Precision> precision(
    "precision", cl::desc("Floating-point type of parameters and state"),
    cl::init(optim::Precision::F32),
    cl::values(clEnumValN(optim::Precision::F32, "f32", "32-bit (default)"),
               clEnumValN(optim::Precision::F64, "f64", "64-bit")),
    cl::cat(category));
cl::opt<unsigned> vectorWidth(
    "vector-width",
    cl::desc("Coordinates per SIMD iteration of the kernels (default 16)"),
    cl::init(16), cl::cat(category));
cl::opt<unsigned> learnedVectorWidth(
    "learned-vector-width",
    cl::desc("Coordinates per SIMD iteration of learned rules' kernels "
             "(default: --vector-width's value if given, else this host's: "
             "16 with AVX-512, 4 with AVX2 or on AArch64, 2 on older x86)"),
    cl::init(0), cl::cat(category));
// Not "prefetch-distance": LLVM's LoopDataPrefetch registers that name.
cl::opt<unsigned> prefetchDistance(
    "prefetch-ahead",
    cl::desc("Bytes an update rule's vector loop prefetches ahead of each "
             "stream; 0 disables (default 1024)"),
    cl::init(1024), cl::cat(category));
cl::opt<Target> target(
    "target", cl::desc("What the kernels run on (ptx and cubin: cuda)"),
    cl::init(Target::CPU),
    cl::values(clEnumValN(Target::CPU, "cpu", "this host (default)"),
               clEnumValN(Target::CUDA, "cuda", "NVIDIA GPUs (PTX, cubin)")),
    cl::cat(category));
cl::opt<std::string> gpuArch("gpu-arch",
                             cl::desc("CUDA architecture of --target=cuda "
                                      "(default sm_90)"),
                             cl::value_desc("sm_XY"), cl::init("sm_90"),
                             cl::cat(category));
cl::opt<bool> ptxasVerbose("ptxas-verbose",
                           cl::desc("Print ptxas's report (registers, "
                                    "spills) of --emit=cubin"),
                           cl::init(false), cl::cat(category));
cl::opt<unsigned> gpuLayerThreads(
    "gpu-layer-threads",
    cl::desc("Threads per block of a QP layer's CUDA kernel, a multiple of "
             "32 up to 1024 (default 0: 32 for problems with at most 32 "
             "variables and constraints, else 256)"),
    cl::init(0), cl::cat(category));
cl::opt<unsigned> gpuLayerSharedBytes(
    "gpu-layer-shared-bytes",
    cl::desc("Dynamic shared memory per block of a QP layer's CUDA kernels "
             "at most, in bytes, up to 232448 (default 0: all that every "
             "device able to run the cubin grants: 227 KiB for sm_90, 99 "
             "KiB for sm_8x); the solver's buffers that do not fit go to "
             "global memory"),
    cl::init(0), cl::cat(category));
cl::opt<bool> relaxedFP(
    "relaxed-fp",
    cl::desc("Relaxed rounding: reciprocals of uniform divisors (bias "
             "corrections) computed once per step, and fused multiply-adds; "
             "faster, about an ulp per operation from the formula"),
    cl::init(false), cl::cat(category));

//===----------------------------------------------------------------------===//
// optimc run
//===----------------------------------------------------------------------===//

cl::SubCommand runCommand("run",
                          "Train a built-in task with a rule and print the "
                          "loss");
cl::OptionCategory runCategory("optimc run options");
cl::opt<std::string> runInput(cl::Positional, cl::desc("<rule .optim file>"),
                              cl::Required, cl::sub(runCommand),
                              cl::cat(runCategory));
cl::opt<std::string> runTaskName("task",
                                 cl::desc("quadratic | mnist | fashion-mnist"),
                                 cl::Required, cl::sub(runCommand),
                                 cl::cat(runCategory));
cl::opt<int64_t> runSteps("steps", cl::desc("Optimizer steps (default 100)"),
                          cl::init(100), cl::sub(runCommand),
                          cl::cat(runCategory));
cl::opt<uint64_t> runSeed("seed",
                          cl::desc("Seed of the task and of the rule's "
                                   "random numbers (default 1)"),
                          cl::init(1), cl::sub(runCommand),
                          cl::cat(runCategory));
cl::list<std::string> runSet("set",
                             cl::desc("Hyperparameter value, e.g. "
                                      "--set lr=0.01 (repeatable)"),
                             cl::value_desc("name=value"), cl::sub(runCommand),
                             cl::cat(runCategory));
cl::list<std::string> runInputs(
    "input",
    cl::desc("Where a per-coordinate input of the rule comes from at every "
             "step: normal, uniform or hutchinson (z * Hz), e.g. "
             "--input h=hutchinson (one per input)"),
    cl::value_desc("name=source"), cl::sub(runCommand), cl::cat(runCategory));
cl::opt<std::string> runCSV("csv", cl::desc("Write the loss curve as CSV"),
                            cl::value_desc("file"), cl::sub(runCommand),
                            cl::cat(runCategory));
cl::opt<std::string> runRule("rule", cl::desc("Rule of the file to use"),
                             cl::value_desc("name"), cl::sub(runCommand),
                             cl::cat(runCategory));
cl::opt<unsigned> runThreads("threads",
                             cl::desc("Optimizer threads (0: all cores)"),
                             cl::init(0), cl::sub(runCommand),
                             cl::cat(runCategory));
cl::opt<int64_t> runEvery("every",
                          cl::desc("Print every N steps (default 0: every "
                                   "steps/20)"),
                          cl::init(0), cl::sub(runCommand),
                          cl::cat(runCategory));
cl::opt<std::string> runData("data",
                             cl::desc("MNIST-format folder for the MLP tasks"),
                             cl::value_desc("dir"), cl::sub(runCommand),
                             cl::cat(runCategory));
cl::opt<int> runHidden("hidden", cl::desc("MLP hidden units (default 20)"),
                       cl::init(20), cl::sub(runCommand), cl::cat(runCategory));
cl::opt<int> runLayers("layers", cl::desc("MLP hidden layers (default 1)"),
                       cl::init(1), cl::sub(runCommand), cl::cat(runCategory));
cl::opt<std::string> runActivation("activation",
                                   cl::desc("sigmoid (default) | relu"),
                                   cl::init("sigmoid"), cl::sub(runCommand),
                                   cl::cat(runCategory));
cl::opt<std::string> runWeights(
    "weights", cl::desc("The learned weights of a learned rule (safetensors)"),
    cl::value_desc("file"), cl::sub(runCommand), cl::cat(runCategory));
cl::opt<int> runBatch("batch", cl::desc("Minibatch size (default 128)"),
                      cl::init(128), cl::sub(runCommand), cl::cat(runCategory));
cl::opt<std::string> runTrainImages(
    "train-images",
    cl::desc("Images drawn for training minibatches, FIRST:END (default "
             "0:8000)"),
    cl::value_desc("range"), cl::sub(runCommand), cl::cat(runCategory));
cl::opt<std::string> runEvalImages(
    "eval-images",
    cl::desc("Held-out images of the eval loss, FIRST:END (default "
             "8000:10000)"),
    cl::value_desc("range"), cl::sub(runCommand), cl::cat(runCategory));

int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "optimc") << message << "\n";
  return 1;
}

/// Writes through a temporary file and a rename: a failed run never leaves
/// a truncated output behind.
int write(llvm::StringRef path,
          llvm::function_ref<void(llvm::raw_ostream &)> body) {
  if (llvm::Error err =
          llvm::writeToOutput(path, [&](llvm::raw_ostream &os) -> llvm::Error {
            body(os);
            return llvm::Error::success();
          }))
    return fail("cannot write '" + path +
                "': " + optim::tools::writeErrorReason(std::move(err)));
  return 0;
}

std::string replaceExtension(llvm::StringRef path, llvm::StringRef ext) {
  llvm::SmallString<256> s(path);
  llvm::sys::path::replace_extension(s, ext);
  return std::string(s);
}

/// Links an object file into a shared library `tmp` (a temporary that the
/// caller renames to `output`, the name errors give) with the system's C
/// compiler driver (clang-22 from the project's dependencies, else cc).
int linkShared(const std::string &object, const std::string &output,
               const std::string &tmp) {
  llvm::ErrorOr<std::string> driver = llvm::sys::findProgramByName("clang-22");
  if (!driver)
    driver = llvm::sys::findProgramByName("cc");
  if (!driver)
    return fail("no linker driver found (clang-22 or cc) to make '" + output +
                "'");
  llvm::SmallVector<llvm::StringRef> args = {*driver, "-shared", "-o",
                                             tmp,     object,    "-lm"};
  std::string message;
  int rc = llvm::sys::ExecuteAndWait(*driver, args, std::nullopt, {}, 0, 0,
                                     &message);
  if (rc != 0) {
    llvm::sys::fs::remove(tmp);
    return fail("linking '" + output + "' failed" +
                (message.empty() ? "" : ": " + message));
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  mlir::registerAsmPrinterCLOptions();
  mlir::registerMLIRContextCLOptions();
  cl::HideUnrelatedOptions({&category, &runCategory});
  cl::ParseCommandLineOptions(argc, argv,
                              "optimc: the optim-mlir compiler driver\n\n"
                              "Exit status: 0 on success, 1 on any error (a "
                              "usage error included).\n");
  // cl::opt keeps the last of repeated options; `--task a --task b` is more
  // likely a mistake than a wish for b.
  if (std::string repeated = optim::tools::repeatedOption(
          {&cl::SubCommand::getTopLevel(), &runCommand});
      !repeated.empty())
    return fail(repeated);
  if (runCommand) {
    optim::RunOptions run;
    run.ruleFile = runInput;
    run.ruleName = runRule;
    run.task = runTaskName;
    run.steps = runSteps;
    run.seed = runSeed;
    run.csv = runCSV;
    run.threads = runThreads;
    run.every = runEvery;
    run.dataDir = runData;
    run.hiddenUnits = runHidden;
    run.hiddenLayers = runLayers;
    run.activation = runActivation;
    run.batchSize = runBatch;
    run.weights = runWeights;
    run.trainImages = runTrainImages;
    run.evalImages = runEvalImages;
    run.inputs.assign(runInputs.begin(), runInputs.end());
    run.f64 = precision == optim::Precision::F64;
    // The compiler's options are accepted on this command line too; run
    // compiles with its defaults, so one that was given would be ignored.
    for (const cl::Option *opt : std::initializer_list<const cl::Option *>{
             &outputFilename, &emit, &vectorWidth, &learnedVectorWidth,
             &prefetchDistance, &target, &gpuArch, &ptxasVerbose,
             &gpuLayerThreads, &gpuLayerSharedBytes, &relaxedFP})
      if (opt->getNumOccurrences())
        return fail((opt->ArgStr.size() == 1 ? "-" : "--") +
                    opt->ArgStr.str() +
                    " does not apply to 'optimc run', which compiles the "
                    "rule for this CPU with the default options");
    for (const cl::Option *opt :
         std::initializer_list<const cl::Option *>{
             &runData, &runHidden, &runLayers, &runActivation, &runBatch,
             &runTrainImages, &runEvalImages})
      if (opt->getNumOccurrences())
        run.mlpOptionsGiven.push_back(("--" + opt->ArgStr).str());
    for (const std::string &setting : runSet) {
      auto [name, value] = llvm::StringRef(setting).split('=');
      double number;
      if (name.empty() || value.trim().getAsDouble(number))
        return fail("--set expects name=value with a number, got '" + setting +
                    "'");
      for (const auto &[earlier, value] : run.hypers)
        if (earlier == name.trim())
          return fail("--set " + earlier + " is given twice; give it once");
      run.hypers.emplace_back(name.trim().str(), number);
    }
    return optim::runTask(run);
  }
  if (vectorWidth == 0 || vectorWidth > 64)
    return fail("--vector-width must be between 1 and 64");
  if (learnedVectorWidth > 64)
    return fail("--learned-vector-width must be between 0 (chosen for this "
                "host) and 64");
  if (prefetchDistance > (1u << 20))
    return fail("--prefetch-ahead must be at most 1048576 bytes");
  // An option of the other target would be ignored without a word: the
  // user who gave it expects it to change the output.
  bool cuda =
      emit == Emit::PTX || emit == Emit::Cubin || target == Target::CUDA;
  for (const cl::Option *opt : std::initializer_list<const cl::Option *>{
           &gpuArch, &ptxasVerbose, &gpuLayerThreads, &gpuLayerSharedBytes})
    if (opt->getNumOccurrences() && !cuda)
      return fail("--" + opt->ArgStr +
                  " applies to CUDA kernels (--emit=ptx or cubin, or "
                  "--target=cuda), not to the CPU's");
  if (ptxasVerbose && cuda && emit != Emit::Cubin)
    return fail("--ptxas-verbose reports ptxas's assembly of --emit=cubin");
  for (const cl::Option *opt : std::initializer_list<const cl::Option *>{
           &vectorWidth, &learnedVectorWidth, &prefetchDistance})
    if (opt->getNumOccurrences() && cuda)
      return fail("--" + opt->ArgStr +
                  " applies to CPU kernels, not to CUDA ones (one coordinate "
                  "per thread)");

  auto buffer = llvm::MemoryBuffer::getFileOrSTDIN(inputFilename,
                                                   /*IsText=*/true);
  if (std::error_code ec = buffer.getError())
    return fail("cannot read '" + inputFilename + "': " + ec.message());
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(*buffer), llvm::SMLoc());
  optim::DiagnosticEngine diags(sourceMgr);
  optim::FrontendOptions options;
  options.precision = precision;
  std::string output =
      outputFilename.empty() ? std::string("-") : std::string(outputFilename);

  if (emit == Emit::AST) {
    std::unique_ptr<optim::CheckedSource> source =
        optim::parseAndCheck(diags, options);
    if (!source)
      return 1;
    return write(output, [&](llvm::raw_ostream &os) {
      optim::ast::dump(source->module, sourceMgr, os);
    });
  }

  mlir::MLIRContext context;
  // Diagnostics point into the .optim source; the IR is noise there.
  context.printOpOnDiagnostic(false);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      optim::compileToMLIR(context, diags, options);
  if (!module)
    return 1;

  if (!ruleName.empty()) {
    mlir::Operation *keep = nullptr;
    for (mlir::Operation &op : module->getBody()->getOperations())
      if (auto sym = mlir::dyn_cast<mlir::SymbolOpInterface>(op))
        if (sym.getName() == ruleName)
          keep = &op;
    if (!keep)
      return fail("'" + inputFilename + "' has no rule or layer named '" +
                  ruleName + "'");
    for (mlir::Operation &op :
         llvm::make_early_inc_range(module->getBody()->getOperations()))
      if (&op != keep)
        op.erase();
  }
  if (emit == Emit::MLIR)
    return write(output, [&](llvm::raw_ostream &os) { module->print(os); });

  // Code generation.
  // Layers lower to their data functions (optim-lower-layers, docs/qp.md),
  // the QP solve being the runtime's, or for CUDA to one kernel that builds
  // and solves each problem (optim-lower-layers-to-gpu, docs/gpu.md).
  // Objects and shared libraries of layers are not made yet.
  for (auto layer : module->getOps<mlir::optim::LayerOp>())
    if (emit != Emit::Lowered && emit != Emit::LLVM && emit != Emit::PTX &&
        emit != Emit::Cubin)
      return fail("layer '" + layer.getSymName() +
                  "': only --emit=lowered, llvm, ptx and cubin are "
                  "implemented for layers (optim::Compiler::compileLayer "
                  "JIT-compiles them for the CPU); --rule selects a rule");
  llvm::SmallVector<mlir::optim::RuleOp> rules(
      module->getOps<mlir::optim::RuleOp>());
  if ((emit == Emit::Object || emit == Emit::Shared) && rules.size() != 1)
    return fail("--emit=obj and --emit=shared make one rule at a time; name "
                "it with --rule");
  optim::RuleInfo info =
      rules.empty() ? optim::RuleInfo() : optim::describeRule(rules.front());

  // Errors of the passes (an unsupported rule) print with their location.
  mlir::SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  if (emit == Emit::PTX || emit == Emit::Cubin || target == Target::CUDA) {
    if (target.getNumOccurrences() && target != Target::CUDA)
      return fail("--emit=ptx and --emit=cubin need --target=cuda");
    if (emit != Emit::Lowered && emit != Emit::PTX && emit != Emit::Cubin)
      return fail("--target=cuda makes --emit=lowered, ptx or cubin (or "
                  "ast, mlir); llvm, obj and shared are the CPU's");
    optim::GPUEmitOptions gpu;
    gpu.what = emit == Emit::Lowered ? optim::GPUEmit::Lowered
               : emit == Emit::PTX   ? optim::GPUEmit::PTX
                                     : optim::GPUEmit::Cubin;
    gpu.pipeline.arch = gpuArch;
    gpu.pipeline.relaxedFP = relaxedFP;
    if (gpuLayerThreads > 1024 || gpuLayerThreads % 32)
      return fail("--gpu-layer-threads must be a multiple of 32 up to 1024, "
                  "got " +
                  llvm::Twine(unsigned(gpuLayerThreads)));
    gpu.pipeline.layerThreads = gpuLayerThreads;
    if (gpuLayerSharedBytes > 227 * 1024)
      return fail("--gpu-layer-shared-bytes must be at most 232448 (227 "
                  "KiB, the most any architecture grants a block), got " +
                  llvm::Twine(unsigned(gpuLayerSharedBytes)));
    gpu.pipeline.layerSharedBytes = gpuLayerSharedBytes;
    gpu.output = outputFilename.empty() && emit == Emit::Cubin ? "" : output;
    gpu.ptxasVerbose = ptxasVerbose;
    return optim::emitGPU(*module, gpu);
  }
  mlir::PassManager pm(&context);
  optim::CPUPipelineOptions cpu;
  cpu.vectorWidth = vectorWidth;
  // An explicit --vector-width is the learned rules' too, unless they get
  // their own.
  optim::HostVectorRegisters registers = optim::hostVectorRegisters();
  cpu.learnedVectorWidth = learnedVectorWidth ? unsigned(learnedVectorWidth)
                           : vectorWidth.getNumOccurrences()
                               ? unsigned(vectorWidth)
                               : optim::hostLearnedVectorWidth(registers);
  cpu.vectorRegisterBytes = registers.bytes;
  cpu.vectorRegisters = registers.count;
  cpu.relaxedFP = relaxedFP;
  cpu.prefetchDistance = prefetchDistance;
  optim::buildLowerRulesPipeline(pm, cpu);
  if (emit != Emit::Lowered)
    optim::buildKernelsToLLVMPipeline(pm);
  if (mlir::failed(pm.run(*module)))
    return 1;
  if (emit == Emit::Lowered)
    return write(output, [&](llvm::raw_ostream &os) { module->print(os); });

  auto tm = optim::createHostTargetMachine();
  if (!tm)
    return fail("no code generator for this host: " +
                llvm::toString(tm.takeError()));
  llvm::LLVMContext llvmContext;
  auto llvmModule = optim::translateAndOptimize(*module, llvmContext, **tm);
  if (!llvmModule)
    return fail(llvm::toString(llvmModule.takeError()));
  if (emit == Emit::LLVM)
    return write(output, [&](llvm::raw_ostream &os) {
      (*llvmModule)->print(os, nullptr);
    });

  auto object = optim::emitObject(**llvmModule, **tm);
  if (!object)
    return fail(llvm::toString(object.takeError()));
  if (output == "-")
    output = info.name + (emit == Emit::Object ? ".o" : ".so");
  optim::Manifest manifest{info, OPTIM_RULE_SYMBOL_PREFIX + info.name,
                           optim::describeTarget(**tm),
                           OPTIM_KERNEL_ABI_VERSION};
  std::string manifestPath = replaceExtension(output, ".manifest.json");
  // The artifact and its manifest as a pair (ArtifactFiles.h): both staged,
  // the manifest recording the artifact's SHA-256, then renamed into place,
  // the manifest last.
  optim::tools::StagedFiles files;
  if (emit == Emit::Object) {
    if (std::string err = files.stage(output, *object); !err.empty())
      return fail(err);
    manifest.artifactSha256 = optim::tools::sha256Hex(*object);
  } else {
    std::string objectPath = output + ".o.tmp";
    if (int rc =
            write(objectPath, [&](llvm::raw_ostream &os) { os << *object; }))
      return rc;
    std::string linked = optim::tools::temporaryPathFor(output);
    files.adopt(linked, output); // removed unless renamed into place
    int rc = linkShared(objectPath, output, linked);
    llvm::sys::fs::remove(objectPath);
    if (rc)
      return rc;
    auto library = llvm::MemoryBuffer::getFile(linked, /*IsText=*/false,
                                               /*RequiresNullTerminator=*/false);
    if (!library)
      return fail("cannot read the linked '" + output +
                  "': " + library.getError().message());
    manifest.artifactSha256 =
        optim::tools::sha256Hex((*library)->getBuffer());
  }
  if (std::string err =
          files.stage(manifestPath, optim::writeManifest(manifest));
      !err.empty())
    return fail(err);
  if (std::string err = files.commit(); !err.empty())
    return fail(err);
  return 0;
}
