//===- CudaDriver.cpp - the CUDA driver API, loaded with dlopen -----------===//
//
// No CUDA header: the few entry points are declared in optim/Cuda.h with the
// driver's ABI and resolved from libcuda.so.1 at run time, by their versioned
// names where the driver has several (cuMemAlloc_v2, ...), as cuda.h's macros
// would pick them.
//
//===----------------------------------------------------------------------===//

#include "optim/Cuda.h"

#include <dlfcn.h>
#include <mutex>

using namespace optim;
using namespace optim::cuda;

void DriverAPI::check(CUresult result, const char *call) const {
  if (result == CUDA_SUCCESS)
    return;
  const char *name = nullptr, *text = nullptr;
  if (!cuGetErrorName || cuGetErrorName(result, &name) != CUDA_SUCCESS)
    name = nullptr;
  if (!cuGetErrorString || cuGetErrorString(result, &text) != CUDA_SUCCESS)
    text = nullptr;
  std::string message = std::string("optim: CUDA: ") + call + " failed: ";
  message += name ? name : "error " + std::to_string(result);
  if (text)
    message += std::string(" (") + text + ")";
  throw Error(message);
}

namespace {
template <typename Fn>
void resolve(void *handle, Fn &slot, const char *symbol, std::string &missing) {
  void *p = ::dlsym(handle, symbol);
  if (!p)
    missing += (missing.empty() ? "" : ", ") + std::string(symbol);
  slot = reinterpret_cast<Fn>(p);
}
} // namespace

std::shared_ptr<const DriverAPI> optim::cuda::loadDriver(const char *library) {
  const char *path = library ? library : "libcuda.so.1";
  void *handle = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = ::dlerror();
    throw Error(std::string("optim: CUDA: no driver: cannot load '") + path +
                "'" + (why ? std::string(": ") + why : std::string()));
  }
  auto api = std::shared_ptr<DriverAPI>(new DriverAPI, [handle](DriverAPI *p) {
    delete p;
    ::dlclose(handle);
  });
  std::string missing;
  DriverAPI &d = *api;
  resolve(handle, d.cuInit, "cuInit", missing);
  resolve(handle, d.cuDeviceGetCount, "cuDeviceGetCount", missing);
  resolve(handle, d.cuDeviceGet, "cuDeviceGet", missing);
  resolve(handle, d.cuDeviceGetName, "cuDeviceGetName", missing);
  resolve(handle, d.cuDeviceGetAttribute, "cuDeviceGetAttribute", missing);
  resolve(handle, d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain",
          missing);
  resolve(handle, d.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2",
          missing);
  resolve(handle, d.cuCtxSetCurrent, "cuCtxSetCurrent", missing);
  resolve(handle, d.cuModuleLoadData, "cuModuleLoadData", missing);
  resolve(handle, d.cuModuleUnload, "cuModuleUnload", missing);
  resolve(handle, d.cuModuleGetFunction, "cuModuleGetFunction", missing);
  resolve(handle, d.cuModuleGetGlobal, "cuModuleGetGlobal_v2", missing);
  resolve(handle, d.cuFuncSetAttribute, "cuFuncSetAttribute", missing);
  resolve(handle, d.cuFuncGetAttribute, "cuFuncGetAttribute", missing);
  resolve(handle, d.cuMemAlloc, "cuMemAlloc_v2", missing);
  resolve(handle, d.cuMemFree, "cuMemFree_v2", missing);
  resolve(handle, d.cuMemcpyHtoD, "cuMemcpyHtoD_v2", missing);
  resolve(handle, d.cuMemcpyDtoH, "cuMemcpyDtoH_v2", missing);
  resolve(handle, d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", missing);
  resolve(handle, d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", missing);
  resolve(handle, d.cuStreamCreate, "cuStreamCreate", missing);
  resolve(handle, d.cuStreamDestroy, "cuStreamDestroy_v2", missing);
  resolve(handle, d.cuStreamSynchronize, "cuStreamSynchronize", missing);
  resolve(handle, d.cuLaunchKernel, "cuLaunchKernel", missing);
  {
    std::string optional; // older drivers may lack it: then it stays null
    resolve(handle, d.cuOccupancyMaxActiveBlocksPerMultiprocessor,
            "cuOccupancyMaxActiveBlocksPerMultiprocessor", optional);
  }
  resolve(handle, d.cuGetErrorName, "cuGetErrorName", missing);
  resolve(handle, d.cuGetErrorString, "cuGetErrorString", missing);
  if (!missing.empty())
    throw Error(std::string("optim: CUDA: the driver '") + path + "' lacks " +
                missing + " (too old?)");
  d.check(d.cuInit(0), "cuInit");
  return api;
}

std::shared_ptr<const DriverAPI> optim::cuda::tryLoadDriver(std::string *why) {
  try {
    auto driver = loadDriver();
    int count = 0;
    driver->check(driver->cuDeviceGetCount(&count), "cuDeviceGetCount");
    if (count == 0) {
      if (why)
        *why = "the CUDA driver reports no device";
      return nullptr;
    }
    return driver;
  } catch (const Error &e) {
    if (why)
      *why = e.what();
    return nullptr;
  }
}
