//===- FakeDriver.h - what the runtime tests' fake CUDA drivers share -----===//
//
// One device, "Fake GPU" (sm_ attributes and launches are each test's),
// with primary context 0x42; modules that load from any image; "device"
// memory that is host memory, 256-byte aligned like cuMemAlloc's, whose
// live allocations catch double frees and leaks; and error names. Each test
// sets the entry points that its checks depend on over fakeDriverBase()'s.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_TEST_FAKEDRIVER_H
#define OPTIM_RUNTIME_TEST_FAKEDRIVER_H

#include "optim/Cuda.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>

namespace fakecuda {

using namespace optim::cuda;

/// The allocations not yet freed; a test's fake state derives from it.
struct Memory {
  std::set<CUdeviceptr> live;
};
/// The running test's memory (its fixture sets it).
inline Memory *memory = nullptr;

inline const CUcontext kContext = reinterpret_cast<CUcontext>(0x42);

inline CUresult init(unsigned) { return 0; }
inline CUresult count(int *c) {
  *c = 1;
  return 0;
}
inline CUresult get(CUdevice *d, int i) {
  *d = i;
  return 0;
}
inline CUresult name(char *out, int len, CUdevice) {
  std::strncpy(out, "Fake GPU", len);
  return 0;
}
inline CUresult retain(CUcontext *c, CUdevice) {
  *c = kContext;
  return 0;
}
inline CUresult release(CUdevice) { return 0; }
inline CUresult unload(CUmodule) { return 0; }
// Modules define no globals (a rule without tensor reductions has none).
inline CUresult getGlobal(CUdeviceptr *, size_t *, CUmodule, const char *) {
  return kErrorNotFound;
}
inline CUresult memAlloc(CUdeviceptr *ptr, size_t bytes) {
  void *mem = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  *ptr = reinterpret_cast<CUdeviceptr>(mem);
  memory->live.insert(*ptr);
  return 0;
}
inline CUresult memFree(CUdeviceptr ptr) {
  if (!memory->live.erase(ptr))
    return 1; // CUDA_ERROR_INVALID_VALUE: double free
  std::free(reinterpret_cast<void *>(ptr));
  return 0;
}
// A copy of 0 bytes may come with null pointers (an empty host vector's
// data()), which memcpy must not be given.
inline CUresult htod(CUdeviceptr dst, const void *src, size_t bytes) {
  if (bytes)
    std::memcpy(reinterpret_cast<void *>(dst), src, bytes);
  return 0;
}
inline CUresult dtoh(void *dst, CUdeviceptr src, size_t bytes) {
  if (bytes)
    std::memcpy(dst, reinterpret_cast<const void *>(src), bytes);
  return 0;
}
inline CUresult streamDestroy(CUstream) { return 0; }
inline CUresult sync(CUstream) { return 0; }
inline CUresult errName(CUresult e, const char **s) {
  *s = e == 700 ? "CUDA_ERROR_ILLEGAL_ADDRESS" : "CUDA_ERROR_UNKNOWN";
  return 0;
}
inline CUresult errString(CUresult e, const char **s) {
  *s = e == 700 ? "an illegal memory access was encountered" : "unknown";
  return 0;
}

/// The shared entry points set; the test's own ones still null.
inline std::shared_ptr<DriverAPI> fakeDriverBase() {
  auto d = std::make_shared<DriverAPI>();
  d->cuInit = init;
  d->cuDeviceGetCount = count;
  d->cuDeviceGet = get;
  d->cuDeviceGetName = name;
  d->cuDevicePrimaryCtxRetain = retain;
  d->cuDevicePrimaryCtxRelease = release;
  d->cuModuleUnload = unload;
  d->cuModuleGetGlobal = getGlobal;
  d->cuMemAlloc = memAlloc;
  d->cuMemFree = memFree;
  d->cuMemcpyHtoD = htod;
  d->cuMemcpyDtoH = dtoh;
  d->cuStreamDestroy = streamDestroy;
  d->cuStreamSynchronize = sync;
  d->cuGetErrorName = errName;
  d->cuGetErrorString = errString;
  return d;
}

} // namespace fakecuda

#endif // OPTIM_RUNTIME_TEST_FAKEDRIVER_H
