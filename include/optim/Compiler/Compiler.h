//===- Compiler.h - JIT-compile .optim programs from a host program -------===//
//
// The compiler's public API. It exposes no LLVM or MLIR type, so a host
// program includes it next to the runtime's headers:
//
//   optim::Compiler compiler;
//   optim::Rule adam = compiler.compileFile("examples/adam.optim");
//
// Errors (a malformed program, an unreadable file, an unsupported rule)
// throw optim::Error whose message holds the located diagnostics.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_COMPILER_COMPILER_H
#define OPTIM_COMPILER_COMPILER_H

#include "optim/Layer.h"
#include "optim/Rule.h"

#include <memory>
#include <string>
#include <string_view>

namespace optim {

struct Target {
  enum class Kind { CPU };
  Kind kind = Kind::CPU;
  static Target cpu() { return Target(); }
};

struct CompileOptions {
  /// Element type of parameters, gradients and state.
  DType precision = DType::F32;
  /// Coordinates per SIMD iteration of the generated kernels: update rules'
  /// and every reverse mode's (learnedVectorWidth is the learned rules').
  unsigned vectorWidth = 16;
  /// The same for learned rules' kernels (LSTM cells); 0: what suits this
  /// host (hostLearnedVectorWidth: 16 with AVX-512, 4 with AVX2 or on
  /// AArch64, 2 on older x86). They compute the same bits at every width.
  unsigned learnedVectorWidth = 0;
  /// The SIMD register file that sizes the register tiles of learned rules'
  /// VJP kernels: bytes per register and how many; 0: this host's (see
  /// hostVectorRegisters). Changes speed only, never a bit.
  unsigned vectorRegisterBytes = 0, vectorRegisters = 0;
  /// Relaxed rounding: divide by uniform values (bias corrections) by
  /// multiplying with reciprocals computed once per step, and fuse
  /// multiply-adds. Faster; about an ulp per operation from the formula as
  /// written. Off (the default): every operation rounds as written.
  bool relaxedFP = false;
  /// How many bytes ahead an update rule's vector loop prefetches each of
  /// its streams; 0 disables. Learned rules prefetch their own way.
  unsigned prefetchDistance = 1024;
  /// Also compile the rule's reverse mode (Rule::vjpKernel(), or for a rule
  /// with tensor reductions Rule::reducedVJPKernel() and
  /// reductionsVJPKernel(); used by optim::Trajectory for meta-training).
  /// Such compilations bypass the kernel cache.
  bool vjp = false;
  /// Reuse kernels compiled earlier, by this or another process.
  bool useCache = true;
  /// Where; empty: $OPTIM_CACHE_DIR, $XDG_CACHE_HOME/optim-mlir or
  /// ~/.cache/optim-mlir (OPTIM_NO_CACHE=1 in the environment disables it).
  std::string cacheDirectory;
};

class Compiler {
public:
  explicit Compiler(CompileOptions options = {});
  ~Compiler();
  Compiler(const Compiler &) = delete;
  Compiler &operator=(const Compiler &) = delete;

  /// Compiles the rule named `rule` of a file (empty: the file's only rule).
  Rule compileFile(const std::string &path, Target target = Target::cpu(),
                   const std::string &rule = "");
  /// Same, from source text; `bufferName` names it in diagnostics.
  /// Compiling the same text with the same options again (in any process)
  /// loads the kernel from the on-disk cache.
  Rule compileSource(std::string_view source,
                     const std::string &bufferName = "<source>",
                     Target target = Target::cpu(),
                     const std::string &rule = "");

  /// Compiles the layer named `layer` of a file (empty: the file's only
  /// layer): the functions computing its QP's data and their vector-Jacobian
  /// product, JIT-compiled, around the runtime's batched QP solver
  /// (docs/qp.md). Precision from the options; not cached.
  Layer compileLayerFile(const std::string &path,
                         const std::string &layer = "");
  Layer compileLayerSource(std::string_view source,
                           const std::string &bufferName = "<source>",
                           const std::string &layer = "");

  const CompileOptions &options() const;

  /// Whether the last compilation was served by the cache.
  bool lastWasCached() const;
  /// The warnings of the program the last compile* read ("file:line:col:
  /// warning: ...", the source line and a caret, as optimc prints them);
  /// empty when it had none. Tools print them: a rule that compiles may
  /// still never update a state or use its weights.
  const std::string &lastWarnings() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
};

} // namespace optim

#endif // OPTIM_COMPILER_COMPILER_H
