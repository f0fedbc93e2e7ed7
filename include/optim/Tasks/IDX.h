//===- IDX.h - reading MNIST-format (IDX) files ----------------*- C++ -*-===//
//
// The IDX format of MNIST and its look-alikes (Fashion-MNIST, KMNIST, ...):
// a big-endian magic 0x0000TTNN (TT = 0x08, unsigned bytes; NN = the number
// of dimensions), NN big-endian 32-bit sizes, then the data. Files may be
// gzip-compressed or not (zlib reads both). Every error is an optim::Error
// naming the file.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TASKS_IDX_H
#define OPTIM_TASKS_IDX_H

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace optim::tasks {

struct IDXArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

/// Reads an IDX file of unsigned bytes with `rank` dimensions (3 for images,
/// 1 for labels). Throws on a missing, truncated or corrupt file or a wrong
/// magic.
IDXArray readIDX(const std::string &path, int rank);

/// Images with their labels (0-9), as stored: pixels row-major, one byte
/// each, image after image.
struct ImageSet {
  std::string imagesPath, labelsPath;
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> labels;

  int64_t pixelsPerImage() const { return rows * cols; }
  const uint8_t *image(int64_t i) const {
    return pixels.data() + i * pixelsPerImage();
  }
};

/// The path of the `kind` ("images" or "labels") file of `split` ("train" or
/// "t10k") in `dir`, under any usual spelling (train-images-idx3-ubyte,
/// train-images.idx3-ubyte, each with or without .gz); empty when absent.
std::string findIDXFile(const std::string &dir, const std::string &split,
                        const std::string &kind);

/// Loads the images and labels of `split` from `dir`. Throws when either is
/// missing or malformed, when their counts differ, or on a label over 9.
ImageSet loadImageSet(const std::string &dir, const std::string &split);

/// Loads the first of `splits` whose images are present in `dir`. Loaded
/// sets are kept for the life of the process (keyed by path, size and
/// modification time), so that creating a task per seed, as meta-training
/// does, decompresses each file once.
std::shared_ptr<const ImageSet>
loadCachedImageSet(const std::string &dir,
                   const std::vector<std::string> &splits);

} // namespace optim::tasks

#endif // OPTIM_TASKS_IDX_H
