//===- LayerCApi.cpp - the C API of optim::Layer --------------------------===//
//
// Compiled QP layers from C and from the Python binding: the conventions of
// CApi.cpp (checks of what only C can get wrong, then the C++ call inside
// capi::guard; out-pointers written last), over optim::Layer. Layers are
// created by optim_compile_layer_* (the compiler's CApi.cpp).
//
//===----------------------------------------------------------------------===//

#include "optim/optim.h"

#include "optim/CApiSupport.h"
#include "optim/Layer.h"

#include "CApiMacros.h"

#include <string>
#include <vector>

using namespace optim;

namespace {

const std::vector<LayerTensor> *tensorsOf(const LayerInfo &L,
                                          optim_layer_tensor_kind kind) {
  switch (kind) {
  case OPTIM_LAYER_INPUT:
    return &L.inputs;
  case OPTIM_LAYER_WEIGHTS:
    return &L.weights;
  case OPTIM_LAYER_OUTPUT:
    return &L.outputs;
  }
  return nullptr;
}

optim_status badKind(const char *fn, optim_layer_tensor_kind kind) {
  return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                    (std::string(fn) + ": kind " + std::to_string(int(kind)) +
                     " is not OPTIM_LAYER_INPUT, _WEIGHTS or _OUTPUT")
                        .c_str());
}

/// `count` buffers for what the layer has `want` of: the C caller's counts
/// must match (Layer checks the sizes of its vectors; a wrong C count would
/// read past the caller's array).
template <typename Ptr>
bool takeArray(Ptr const *array, size_t count, size_t want, const char *what,
               const char *fn, std::vector<Ptr> &out, optim_status &status) {
  if (count != want) {
    status = capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                        (std::string(fn) + ": the layer has " +
                         std::to_string(want) + " " + what + ", got " +
                         std::to_string(count))
                            .c_str());
    return false;
  }
  if (!array && count) {
    status = capi::fail(
        OPTIM_ERROR_INVALID_ARGUMENT,
        (std::string(fn) + ": the array of " + what + " is NULL").c_str());
    return false;
  }
  out.assign(array, array + count);
  return true;
}

} // namespace

extern "C" optim_status optim_layer_release(optim_layer *layer) {
  if (!layer)
    return OPTIM_OK;
  // Waits for calls using the layer on other threads to return.
  if (capi::retireHandle(layer, capi::HandleKind::Layer)) {
    delete layer;
    return OPTIM_OK;
  }
  return capi::fail(OPTIM_ERROR_INVALID_ARGUMENT,
                    ": layer is not a live layer handle (released already?)",
                    "optim_layer_release");
}

extern "C" optim_status optim_layer_name(const optim_layer *layer,
                                         const char **out) {
  const char *fn = "optim_layer_name";
  OPTIM_USE_LAYER(layer, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  *out = layer->layer.info().name.c_str();
  return OPTIM_OK;
}

extern "C" optim_status optim_layer_dtype(const optim_layer *layer,
                                          optim_dtype *out) {
  const char *fn = "optim_layer_dtype";
  OPTIM_USE_LAYER(layer, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  *out = layer->layer.info().dtype == DType::F64 ? OPTIM_F64 : OPTIM_F32;
  return OPTIM_OK;
}

extern "C" optim_status optim_layer_num_tensors(const optim_layer *layer,
                                                optim_layer_tensor_kind kind,
                                                size_t *out) {
  const char *fn = "optim_layer_num_tensors";
  OPTIM_USE_LAYER(layer, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  const std::vector<LayerTensor> *ts = tensorsOf(layer->layer.info(), kind);
  if (!ts)
    return badKind(fn, kind);
  *out = ts->size();
  return OPTIM_OK;
}

extern "C" optim_status optim_layer_tensor(const optim_layer *layer,
                                           optim_layer_tensor_kind kind,
                                           size_t index,
                                           optim_layer_tensor_info *out) {
  const char *fn = "optim_layer_tensor";
  OPTIM_USE_LAYER(layer, fn);
  OPTIM_CHECK_NOT_NULL(out, fn);
  const LayerInfo &L = layer->layer.info();
  const std::vector<LayerTensor> *ts = tensorsOf(L, kind);
  if (!ts)
    return badKind(fn, kind);
  if (index >= ts->size())
    return capi::fail(OPTIM_ERROR_NOT_FOUND,
                      (std::string(fn) + ": index " + std::to_string(index) +
                       " is out of range (the layer has " +
                       std::to_string(ts->size()) + ")")
                          .c_str());
  const LayerTensor &t = (*ts)[index];
  int64_t size = 1;
  for (int64_t d : t.shape)
    size *= d;
  out->name = t.name.c_str();
  out->shape = t.shape.data();
  out->rank = t.shape.size();
  out->size = size;
  out->output_kind = kind == OPTIM_LAYER_OUTPUT ? L.outputKinds[index] : -1;
  return OPTIM_OK;
}

extern "C" optim_status optim_layer_sizes(const optim_layer *layer, int64_t *n,
                                          int64_t *m, int64_t *p) {
  const char *fn = "optim_layer_sizes";
  OPTIM_USE_LAYER(layer, fn);
  const LayerInfo &L = layer->layer.info();
  if (n)
    *n = L.n;
  if (m)
    *m = L.m;
  if (p)
    *p = L.p;
  return OPTIM_OK;
}

extern "C" optim_status optim_layer_set_threads(optim_layer *layer,
                                                unsigned threads) {
  const char *fn = "optim_layer_set_threads";
  OPTIM_USE_LAYER(layer, fn);
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    layer->layer.setThreads(threads);
    return OPTIM_OK;
  });
}

extern "C" optim_status
optim_layer_forward(optim_layer *layer, int64_t batch,
                    const void *const *inputs, size_t num_inputs,
                    const void *const *weights, size_t num_weights,
                    void *const *outputs, size_t num_outputs, int32_t *status) {
  const char *fn = "optim_layer_forward";
  OPTIM_USE_LAYER(layer, fn);
  const LayerInfo &L = layer->layer.info();
  std::vector<const void *> in, w;
  std::vector<void *> out;
  optim_status bad = OPTIM_OK;
  if (!takeArray(inputs, num_inputs, L.inputs.size(), "inputs", fn, in, bad) ||
      !takeArray(weights, num_weights, L.weights.size(), "weights", fn, w,
                 bad) ||
      !takeArray(outputs, num_outputs, L.outputs.size(), "outputs", fn, out,
                 bad))
    return bad;
  static_assert(sizeof(QPStatus) == sizeof(int32_t));
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    layer->layer.forward(batch, in, w, out,
                         reinterpret_cast<QPStatus *>(status));
    return OPTIM_OK;
  });
}

extern "C" optim_status
optim_layer_backward(optim_layer *layer, const void *const *doutputs,
                     size_t num_outputs, void *const *dinputs,
                     size_t num_inputs, void *const *dweights,
                     size_t num_weights) {
  const char *fn = "optim_layer_backward";
  OPTIM_USE_LAYER(layer, fn);
  const LayerInfo &L = layer->layer.info();
  std::vector<const void *> dout;
  std::vector<void *> din, dw;
  optim_status bad = OPTIM_OK;
  if (!takeArray(doutputs, num_outputs, L.outputs.size(), "outputs", fn, dout,
                 bad) ||
      !takeArray(dinputs, num_inputs, L.inputs.size(), "inputs", fn, din,
                 bad) ||
      !takeArray(dweights, num_weights, L.weights.size(), "weights", fn, dw,
                 bad))
    return bad;
  return capi::guard(OPTIM_ERROR_INVALID_ARGUMENT, [&] {
    layer->layer.backward(dout, din, dw);
    return OPTIM_OK;
  });
}
