//===- AtomicFile.h - files replaced whole, never seen half-written -------===//
//
// Checkpoints, weights, manifests and logs are written to a temporary file
// beside their path and renamed over it, so that a reader (or a crash) sees
// the old file or the new one. The temporary name is unique per call
// (mkstemp), so that two threads or processes saving to one path do not
// write into each other's temporary file: the last rename wins, whole.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_RUNTIME_ATOMICFILE_H
#define OPTIM_RUNTIME_ATOMICFILE_H

#include <cstddef>
#include <string>

namespace optim {

/// One file being replaced. The constructor creates the temporary file (an
/// error names `path`, prefixed by `context`); write() appends; commit()
/// flushes it to disk and renames it over `path`. A writer destroyed
/// without commit() (an error on the way) removes its temporary file and
/// leaves `path` as it was. A symbolic link at `path` is followed: its
/// target is replaced, and the link stays. The new file keeps the mode of
/// the one it replaces (0644 less the umask for a new one).
class AtomicFile {
public:
  AtomicFile(const std::string &path, const std::string &context);
  ~AtomicFile();
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  void write(const void *data, size_t bytes);
  void commit();

  /// The temporary file's name (to hand to a writer that opens by name,
  /// after close()).
  const std::string &temporaryPath() const { return tmp; }
  /// Closes the temporary file without renaming it, for a writer that
  /// reopens it by name; commit() then renames it.
  void close();

private:
  std::string target, tmp, context;
  int fd = -1;
  bool done = false;
  [[noreturn]] void fail(const std::string &what, int err);
};

/// Writes `bytes` to `path` through an AtomicFile.
void writeFileAtomically(const std::string &path, const std::string &bytes);

} // namespace optim

#endif // OPTIM_RUNTIME_ATOMICFILE_H
