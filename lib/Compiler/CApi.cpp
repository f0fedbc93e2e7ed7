//===- CApi.cpp - the compiler's C entry points ---------------------------===//
//
// Compiled with -fexceptions: optim::Compiler reports errors by throwing, and
// every entry point turns them into a status before returning to C.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/optim_compiler.h"

#include "optim/CApiSupport.h"
#include "optim/Compiler/Compiler.h"

#include <memory>
#include <string>

using namespace optim;

static optim_status compile(const char *path, const char *source,
                            const char *bufferName, const char *ruleName,
                            int precisionF64, optim_rule **out) {
  const char *fn = path ? "optim_compile_file" : "optim_compile_source";
  if (!out)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT, ": out is NULL", fn);
  if (path ? !*path : !source)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      path ? ": path is empty" : ": source is NULL", fn);
  return capi::guard(OPTIM_ERROR_COMPILE, [&] {
    CompileOptions options;
    options.precision = precisionF64 ? DType::F64 : DType::F32;
    // A compiler per call: it holds no state worth sharing (each compilation
    // has its own MLIR context), and sharing one would need a lock.
    Compiler compiler(options);
    std::string rule = ruleName ? ruleName : "";
    auto handle = std::make_unique<optim_rule>();
    handle->rule = path ? compiler.compileFile(path, Target::cpu(), rule)
                        : compiler.compileSource(
                              source, bufferName ? bufferName : "<source>",
                              Target::cpu(), rule);
    capi::trackHandle(handle.get(), capi::HandleKind::Rule);
    *out = handle.release();
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_compile_file(const char *path,
                                           const char *rule_name_or_null,
                                           int precision_f64,
                                           optim_rule **out) {
  if (!path)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      "optim_compile_file: path is NULL");
  return compile(path, nullptr, nullptr, rule_name_or_null, precision_f64, out);
}

extern "C" optim_status optim_compile_source(const char *source,
                                             const char *buffer_name_or_null,
                                             const char *rule_name_or_null,
                                             int precision_f64,
                                             optim_rule **out) {
  return compile(nullptr, source, buffer_name_or_null, rule_name_or_null,
                 precision_f64, out);
}
