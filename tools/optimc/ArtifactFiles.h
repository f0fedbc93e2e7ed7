//===- ArtifactFiles.h - an artifact and its manifest, written as a pair --===//
//
// optimc's compiled outputs (a library, object or cubin, the PTX beside a
// cubin, and the manifest that describes them) are written as a group:
// every file first to a temporary name beside its destination, then renamed
// into place in the order staged, the manifest last. The manifest records
// the artifact's SHA-256 ("artifact_sha256", and "ptx_sha256"), which the
// runtime's loaders check: if a rename fails half-way, the new artifact
// beside the old manifest is refused ("recompile it"), never loaded under
// the old description. A failure before the renames changes nothing.
//
//===----------------------------------------------------------------------===//

#ifndef OPTIM_TOOLS_OPTIMC_ARTIFACTFILES_H
#define OPTIM_TOOLS_OPTIMC_ARTIFACTFILES_H

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <string>
#include <utility>
#include <vector>

namespace optim::tools {

/// The SHA-256 of `bytes` as 64 lowercase hex digits (what the runtime's
/// loaders compute of the files, runtime/lib/Sha256.h).
inline std::string sha256Hex(llvm::StringRef bytes) {
  return llvm::toHex(llvm::SHA256::hash(llvm::arrayRefFromStringRef(bytes)),
                     /*LowerCase=*/true);
}

/// A unique temporary name beside `path` (same folder, so that the rename
/// into place is atomic).
inline std::string temporaryPathFor(llvm::StringRef path) {
  llvm::SmallString<256> tmp;
  llvm::sys::fs::createUniquePath(path + ".tmp-%%%%%%%%", tmp,
                                  /*MakeAbsolute=*/false);
  return std::string(tmp);
}

class StagedFiles {
public:
  StagedFiles() = default;
  StagedFiles(const StagedFiles &) = delete;
  StagedFiles &operator=(const StagedFiles &) = delete;
  /// Removes the temporaries that were not renamed into place.
  ~StagedFiles() {
    for (const auto &[tmp, path] : files)
      llvm::sys::fs::remove(tmp);
  }

  /// Writes `bytes` to a temporary that commit() renames to `path`; an
  /// error message naming `path`, or "".
  std::string stage(const std::string &path, llvm::StringRef bytes) {
    std::string tmp = temporaryPathFor(path);
    std::error_code ec;
    {
      llvm::raw_fd_ostream os(tmp, ec, llvm::sys::fs::OF_None);
      if (!ec) {
        os << bytes;
        os.close();
        if (os.has_error()) {
          ec = os.error();
          os.clear_error();
        }
      }
    }
    if (ec) {
      llvm::sys::fs::remove(tmp);
      return "cannot write '" + path + "': " + ec.message();
    }
    files.push_back({tmp, path});
    return "";
  }

  /// A temporary already written (the linker's output) that commit()
  /// renames to `path`.
  void adopt(const std::string &tmp, const std::string &path) {
    files.push_back({tmp, path});
  }

  /// Renames every staged file into place, in the order staged; stops at
  /// the first failure (the rest stay temporaries, removed) and returns
  /// its message, or "".
  std::string commit() {
    while (!files.empty()) {
      auto [tmp, path] = files.front();
      if (std::error_code ec = llvm::sys::fs::rename(tmp, path))
        return "cannot write '" + path + "': " + ec.message();
      files.erase(files.begin());
    }
    return "";
  }

private:
  std::vector<std::pair<std::string, std::string>> files; // temporary, path
};

} // namespace optim::tools

#endif // OPTIM_TOOLS_OPTIMC_ARTIFACTFILES_H
