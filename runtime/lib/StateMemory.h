//===- StateMemory.h - memory for parameters' optimizer state ---*- C++ -*-===//
//
// Where the runtime keeps per-coordinate state (Optimizer, Trajectory):
// 64-byte aligned, freed with std::free, and on transparent huge pages when
// large.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_STATEMEMORY_H
#define OPTIM_RUNTIME_STATEMEMORY_H

#include <cstddef>

namespace optim {

/// At least `bytes` bytes (1 for 0), 64-byte aligned; nullptr when out of
/// memory. Free with std::free.
void *allocateStateMemory(size_t bytes);

} // namespace optim

#endif // OPTIM_RUNTIME_STATEMEMORY_H
