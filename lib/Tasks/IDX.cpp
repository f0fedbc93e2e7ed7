//===- IDX.cpp - reading MNIST-format (IDX) files -------------------------===//

#include "optim/Tasks/IDX.h"

#include "optim/Rule.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

namespace fs = std::filesystem;

namespace optim::tasks {
namespace {

/// Closes the gzFile on every exit path, including a throw.
struct GzFile {
  gzFile f;
  explicit GzFile(const std::string &path) : f(gzopen(path.c_str(), "rb")) {}
  ~GzFile() {
    if (f)
      gzclose(f);
  }
};

[[noreturn]] void fail(const std::string &path, const std::string &what) {
  throw Error(path + ": " + what);
}

/// Reads up to `n` bytes into `out` and returns how many there were: fewer
/// means the file ended. A corrupt gzip stream is reported here, by zlib's
/// words; a gzip stream cut short counts as an early end.
size_t readUpTo(GzFile &file, const std::string &path, uint8_t *out, size_t n) {
  size_t done = 0;
  while (done < n) {
    // gzread takes an unsigned int: read in chunks far below its limit.
    unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1 << 24));
    int got = gzread(file.f, out + done, chunk);
    if (got <= 0) {
      int errnum = Z_OK;
      const char *msg = gzerror(file.f, &errnum);
      if (errnum != Z_OK && errnum != Z_BUF_ERROR)
        fail(path, std::string("corrupt gzip data: ") + msg);
      break;
    }
    done += static_cast<size_t>(got);
  }
  return done;
}

uint32_t bigEndian32(const uint8_t *b) {
  return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) |
         (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

} // namespace

IDXArray readIDX(const std::string &path, int rank) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    fail(path, fs::exists(path, ec) ? "not a regular file" : "no such file");
  GzFile file(path);
  if (!file.f)
    fail(path, std::string("cannot open: ") + std::strerror(errno));

  uint8_t magic[4];
  if (readUpTo(file, path, magic, 4) != 4)
    fail(path, "truncated: shorter than the 4-byte magic number");
  uint32_t expected = 0x00000800u | uint32_t(rank);
  if (bigEndian32(magic) != expected) {
    char buf[128];
    std::snprintf(buf, sizeof(buf),
                  "wrong magic 0x%08X: expected 0x%08X (an IDX file of "
                  "unsigned bytes with %d dimension%s)",
                  bigEndian32(magic), expected, rank, rank == 1 ? "" : "s");
    fail(path, buf);
  }

  IDXArray array;
  std::vector<uint8_t> dims(4 * size_t(rank));
  if (readUpTo(file, path, dims.data(), dims.size()) != dims.size())
    fail(path, "truncated: the header ends before its " + std::to_string(rank) +
                   " sizes");
  // Bounded so that a corrupt header cannot ask for an absurd allocation.
  const uint64_t limit = uint64_t(1) << 32;
  uint64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    uint64_t size = bigEndian32(&dims[4 * size_t(d)]);
    array.dims.push_back(int64_t(size));
    total *= size;
    if (total > limit)
      fail(path, "the header's sizes give more than 4 GiB of data");
  }

  // Grown as data arrives, so that a truncated file with a large header
  // fails before allocating what it claims.
  const size_t chunk = size_t(1) << 24;
  while (array.data.size() < total) {
    size_t have = array.data.size();
    size_t n = std::min<size_t>(chunk, total - have);
    array.data.resize(have + n);
    size_t got = readUpTo(file, path, array.data.data() + have, n);
    if (got != n)
      fail(path, "truncated: the header promises " + std::to_string(total) +
                     " bytes of data, the file has " +
                     std::to_string(have + got));
  }
  return array;
}

std::string findIDXFile(const std::string &dir, const std::string &split,
                        const std::string &kind) {
  std::string idx = kind == "images" ? "idx3-ubyte" : "idx1-ubyte";
  for (const char *sep : {"-", "."})
    for (const char *ext : {"", ".gz"}) {
      fs::path p = fs::path(dir) / (split + "-" + kind + sep + idx + ext);
      std::error_code ec;
      if (fs::is_regular_file(p, ec))
        return p.string();
    }
  return "";
}

ImageSet loadImageSet(const std::string &dir, const std::string &split) {
  ImageSet set;
  set.imagesPath = findIDXFile(dir, split, "images");
  set.labelsPath = findIDXFile(dir, split, "labels");
  for (auto [path, kind] : {std::pair{&set.imagesPath, "images"},
                            std::pair{&set.labelsPath, "labels"}})
    if (path->empty())
      throw Error(dir + ": no " + split + " " + kind + " file (looked for " +
                  split + "-" + kind + "-idx" + (*kind == 'i' ? "3" : "1") +
                  "-ubyte, also with '.' for the second '-' and with .gz)");

  IDXArray images = readIDX(set.imagesPath, 3);
  IDXArray labels = readIDX(set.labelsPath, 1);
  set.count = images.dims[0];
  set.rows = images.dims[1];
  set.cols = images.dims[2];
  if (set.rows == 0 || set.cols == 0)
    fail(set.imagesPath, "images of size 0");
  if (labels.dims[0] != set.count)
    throw Error("count mismatch: " + set.imagesPath + " has " +
                std::to_string(set.count) + " images but " + set.labelsPath +
                " has " + std::to_string(labels.dims[0]) + " labels");
  for (size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] > 9)
      fail(set.labelsPath, "label " + std::to_string(labels.data[i]) +
                               " of image " + std::to_string(i) +
                               " is not a class 0-9");
  set.pixels = std::move(images.data);
  set.labels = std::move(labels.data);
  return set;
}

std::shared_ptr<const ImageSet>
loadCachedImageSet(const std::string &dir,
                   const std::vector<std::string> &splits) {
  std::string split;
  for (const std::string &s : splits)
    if (!findIDXFile(dir, s, "images").empty()) {
      split = s;
      break;
    }
  if (split.empty()) {
    std::string tried;
    for (const std::string &s : splits)
      tried += (tried.empty() ? "" : ", ") + s + "-images-idx3-ubyte[.gz]";
    std::error_code ec;
    throw Error(dir + (fs::is_directory(dir, ec) ? "" : " (not a folder)") +
                ": no MNIST-format image file (looked for " + tried + ")");
  }

  // The key changes when either file is rewritten, so a stale set is never
  // returned.
  std::ostringstream key;
  for (const char *kind : {"images", "labels"}) {
    std::string path = findIDXFile(dir, split, kind);
    std::error_code ec;
    key << fs::absolute(path, ec).string() << '|';
    if (!path.empty()) {
      key << fs::file_size(path, ec) << '|';
      key << fs::last_write_time(path, ec).time_since_epoch().count() << '|';
    }
  }

  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const ImageSet>> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key.str());
    if (it != cache.end())
      return it->second;
  }
  // Loaded outside the lock: two threads may both load, which is harmless.
  auto set = std::make_shared<const ImageSet>(loadImageSet(dir, split));
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key.str(), std::move(set)).first->second;
}

} // namespace optim::tasks
