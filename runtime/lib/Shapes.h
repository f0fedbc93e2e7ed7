//===- Shapes.h - parameters' shapes as the kernels see them (internal) ---===//
//
// Internal to the runtime (not installed): optim::Optimizer (Param::shape),
// optim::Trajectory (TrajectoryOptions::shapes) and the CUDA executor
// (DeviceTensor::shape) check a parameter's dimensions and derive its
// [B, R, C] view the same way.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_LIB_SHAPES_H
#define OPTIM_RUNTIME_LIB_SHAPES_H

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace optim {
namespace detail {

/// "[3, 4]".
inline std::string shapeText(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t d = 0; d < shape.size(); ++d)
    text += (d ? ", " : "") + std::to_string(shape[d]);
  return text + "]";
}

/// The most dimensions a shape may have.
constexpr size_t kMaxRank = 64;

/// Why `shape` cannot be the shape of a tensor of `size` elements, or ""
/// (also for no shape, which is always valid).
inline std::string checkShape(const std::vector<int64_t> &shape,
                              int64_t size) {
  if (shape.empty())
    return "";
  std::string text = "shape " + shapeText(shape);
  if (shape.size() > kMaxRank)
    return text + " has " + std::to_string(shape.size()) +
           " dimensions, more than " + std::to_string(kMaxRank);
  for (int64_t d : shape)
    if (d < 0)
      return text + " has a negative dimension";
  // The element count; with a zero dimension it is 0 whatever the others.
  int64_t count = 1;
  bool overflow = false;
  if (std::find(shape.begin(), shape.end(), 0) != shape.end())
    count = 0;
  else
    for (int64_t d : shape)
      overflow |= __builtin_mul_overflow(count, d, &count);
  if (overflow)
    return text + " has more elements than a 64-bit count holds, its size is " +
           std::to_string(size);
  if (count != size)
    return text + " has " + std::to_string(count) + " elements, its size is " +
           std::to_string(size);
  return "";
}

/// R and C of a tensor's [B, R, C] view (KernelABI.h, version 11: the shape
/// values rows() and cols(), for rules with axes or without): the last
/// dimension and the one before (1 for 1-D), [1, size] without a shape.
/// The shape was checked.
inline void rowsAndCols(const std::vector<int64_t> &shape, int64_t size,
                        int64_t &R, int64_t &C) {
  R = 1;
  C = size;
  if (shape.empty())
    return;
  C = shape.back();
  R = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
}

/// The [B, R, C] view of a tensor for row and column states and reductions
/// (KernelABI.h, version 10): rowsAndCols, and B the product of the other
/// dimensions; [1, 1, size] without a shape. The shape was checked. False
/// when B * R or B * C (a row or column state's length, possibly past the
/// size when a dimension is 0) does not fit the address space at 8 bytes a
/// value.
inline bool viewFits(const std::vector<int64_t> &shape, int64_t size,
                     int64_t &B, int64_t &R, int64_t &C) {
  B = 1;
  rowsAndCols(shape, size, R, C);
  bool overflow = false;
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    overflow |= __builtin_mul_overflow(B, shape[d], &B);
  int64_t rows, cols;
  overflow |= __builtin_mul_overflow(B, R, &rows);
  overflow |= __builtin_mul_overflow(B, C, &cols);
  return !overflow && rows <= PTRDIFF_MAX / 8 && cols <= PTRDIFF_MAX / 8;
}

} // namespace detail
} // namespace optim

#endif // OPTIM_RUNTIME_LIB_SHAPES_H
