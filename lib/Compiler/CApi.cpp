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

/// The checks of every compile entry point: `flags` within `allowed`, an
/// out-pointer, a path that is not empty or a source. OPTIM_OK when they pass.
static optim_status checkArguments(const char *fn, const char *path,
                                   const char *source, unsigned flags,
                                   unsigned allowed, const char *allowedText,
                                   const void *out) {
  if (flags & ~allowed)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      (std::string(fn) + ": flags has unknown bits (" +
                       std::to_string(flags & ~allowed) + "); " + allowedText)
                          .c_str());
  if (!out)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT, ": out is NULL", fn);
  if (path ? !*path : !source)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      path ? ": path is empty" : ": source is NULL", fn);
  return OPTIM_OK;
}

static optim_status compile(const char *fn, const char *path,
                            const char *source, const char *bufferName,
                            const char *ruleName, unsigned flags,
                            optim_rule **out) {
  if (optim_status bad = checkArguments(
          fn, path, source, flags,
          unsigned(OPTIM_COMPILE_F64 | OPTIM_COMPILE_REVERSE),
          "only OPTIM_COMPILE_F64 and OPTIM_COMPILE_REVERSE", out))
    return bad;
  return capi::guard(OPTIM_ERROR_COMPILE, [&] {
    CompileOptions options;
    options.precision = flags & OPTIM_COMPILE_F64 ? DType::F64 : DType::F32;
    options.vjp = (flags & OPTIM_COMPILE_REVERSE) != 0;
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
  return compile("optim_compile_file", path, nullptr, nullptr,
                 rule_name_or_null, precision_f64 ? OPTIM_COMPILE_F64 : 0u,
                 out);
}

extern "C" optim_status optim_compile_source(const char *source,
                                             const char *buffer_name_or_null,
                                             const char *rule_name_or_null,
                                             int precision_f64,
                                             optim_rule **out) {
  return compile("optim_compile_source", nullptr, source, buffer_name_or_null,
                 rule_name_or_null, precision_f64 ? OPTIM_COMPILE_F64 : 0u,
                 out);
}

extern "C" optim_status optim_compile_file_flags(const char *path,
                                                 const char *rule_name_or_null,
                                                 unsigned flags,
                                                 optim_rule **out) {
  if (!path)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      "optim_compile_file_flags: path is NULL");
  return compile("optim_compile_file_flags", path, nullptr, nullptr,
                 rule_name_or_null, flags, out);
}

extern "C" optim_status
optim_compile_source_flags(const char *source, const char *buffer_name_or_null,
                           const char *rule_name_or_null, unsigned flags,
                           optim_rule **out) {
  return compile("optim_compile_source_flags", nullptr, source,
                 buffer_name_or_null, rule_name_or_null, flags, out);
}

static optim_status compileLayer(const char *fn, const char *path,
                                 const char *source, const char *bufferName,
                                 const char *layerName, unsigned flags,
                                 optim_layer **out) {
  if (optim_status bad = checkArguments(
          fn, path, source, flags, unsigned(OPTIM_COMPILE_F64),
          "a layer takes only OPTIM_COMPILE_F64 (its backward pass is always "
          "compiled)",
          out))
    return bad;
  return capi::guard(OPTIM_ERROR_COMPILE, [&] {
    CompileOptions options;
    options.precision = flags & OPTIM_COMPILE_F64 ? DType::F64 : DType::F32;
    Compiler compiler(options);
    std::string layer = layerName ? layerName : "";
    auto handle = std::make_unique<optim_layer>(optim_layer{
        path ? compiler.compileLayerFile(path, layer)
             : compiler.compileLayerSource(
                   source, bufferName ? bufferName : "<source>", layer)});
    capi::trackHandle(handle.get(), capi::HandleKind::Layer);
    *out = handle.release();
    return OPTIM_OK;
  });
}

extern "C" optim_status optim_compile_layer_file(const char *path,
                                                 const char *layer_name_or_null,
                                                 unsigned flags,
                                                 optim_layer **out) {
  if (!path)
    return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                      "optim_compile_layer_file: path is NULL");
  return compileLayer("optim_compile_layer_file", path, nullptr, nullptr,
                      layer_name_or_null, flags, out);
}

extern "C" optim_status
optim_compile_layer_source(const char *source, const char *buffer_name_or_null,
                           const char *layer_name_or_null, unsigned flags,
                           optim_layer **out) {
  return compileLayer("optim_compile_layer_source", nullptr, source,
                      buffer_name_or_null, layer_name_or_null, flags, out);
}
