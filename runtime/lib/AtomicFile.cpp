//===- AtomicFile.cpp - files replaced whole, never seen half-written -----===//

#include "optim/AtomicFile.h"
#include "optim/Rule.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace optim;

/// `path`, or the file its symbolic link leads to: a save through a link
/// updates the linked file (a rename over the link would replace the link
/// by a plain file and leave its target stale). A dangling link or a
/// failure to resolve keeps `path`.
static std::string resolveLink(const std::string &path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode))
    return path;
  char *real = ::realpath(path.c_str(), nullptr);
  if (!real)
    return path;
  std::string out = real;
  std::free(real);
  return out;
}

AtomicFile::AtomicFile(const std::string &path, const std::string &ctx)
    : target(resolveLink(path)), context(ctx) {
  std::string pattern = target + ".tmp.XXXXXX";
  fd = ::mkostemp(pattern.data(), O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw Error(context + ": cannot create a temporary file beside '" + path +
                "': " + std::strerror(err));
  }
  tmp = pattern;
  // mkstemp makes it 0600: the replaced file's mode, or a new file's usual
  // one (0644 less the umask, read without changing it for long).
  struct stat st;
  mode_t mode;
  if (::stat(target.c_str(), &st) == 0) {
    mode = st.st_mode & 07777;
  } else {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    mode = 0644 & ~mask;
  }
  ::fchmod(fd, mode);
}

AtomicFile::~AtomicFile() {
  if (fd >= 0)
    ::close(fd);
  if (!done)
    ::unlink(tmp.c_str());
}

void AtomicFile::fail(const std::string &what, int err) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
  ::unlink(tmp.c_str());
  done = true;
  throw Error(context + ": " + what + ": " + std::strerror(err));
}

void AtomicFile::write(const void *data, size_t bytes) {
  const char *p = static_cast<const char *>(data);
  while (bytes) {
    ssize_t n = ::write(fd, p, bytes);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail("cannot write '" + tmp + "'", errno);
    p += n;
    bytes -= size_t(n);
  }
}

void AtomicFile::close() {
  if (fd < 0)
    return;
  // close() even when fsync() fails (the descriptor would leak); some file
  // systems report write errors only there.
  const int synced = ::fsync(fd), syncErrno = errno;
  const int closed = ::close(fd), closeErrno = errno;
  fd = -1;
  if (synced != 0 || closed != 0)
    fail("cannot write '" + tmp + "'", synced != 0 ? syncErrno : closeErrno);
}

void AtomicFile::commit() {
  close();
  if (::rename(tmp.c_str(), target.c_str()) != 0)
    fail("cannot rename '" + tmp + "' to '" + target + "'", errno);
  done = true;
}

void optim::writeFileAtomically(const std::string &path,
                                const std::string &bytes) {
  AtomicFile file(path, "optim");
  file.write(bytes.data(), bytes.size());
  file.commit();
}
