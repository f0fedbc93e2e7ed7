//===- optim-layer.cpp - run a compiled QP layer on data from files -------===//
//
//   optim-layer FILE.optim --info [--layer NAME] [--precision f32|f64]
//   optim-layer FILE.optim --data DIR --batch B [--layer NAME]
//               [--precision f32|f64] [--statuses] [--backward] [--threads N]
//
// Compiles a `layer` (optim::Compiler::compileLayerFile) and runs it through
// optim::Layer, so that programs outside C++ (test/Oracle/qp_layers_oracle.py
// with numpy and cvxopt) can check compiled layers end to end. Files in DIR
// are raw, row-major, in the layer's element type (--precision):
//
//   read:    <input>.bin  [B, shape...]   <weights>.bin  [shape...]
//            dout_<output>.bin [B, shape...] (--backward; absent: zero)
//   written: out_<output>.bin, status.bin (int32 per element, --statuses),
//            grad_<input>.bin, grad_<weights>.bin (--backward)
//
// Files are written only once the whole run succeeded, each replaced whole
// (optim/AtomicFile.h); a dout_ file that names no output is an error.
//
// Standard output: the layer's signature as JSON (and, after a forward, the
// statuses). Errors (a bad program, a file of the wrong size, the layer's
// own errors: an infeasible problem without --statuses, backward after an
// unsolved forward, ...) print "optim-layer: error: ..." and exit with 1;
// the compiler's diagnostics print as optimc prints them (file:line:col,
// the source line, a caret), usage errors as optimc's do (ToolSupport.h).
//
//===----------------------------------------------------------------------===//

#include "optim/AtomicFile.h"
#include "optim/Compiler/Compiler.h"
#include "optim/Layer.h"

#include "ToolSupport.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace optim;

namespace {

struct Options {
  std::string file, layer, data;
  DType precision = DType::F32;
  int64_t batch = -1;
  bool info = false, statuses = false, backward = false;
  unsigned threads = 1;
};

const char *kUsage =
    R"(usage: optim-layer FILE.optim --info [--layer NAME] [--precision f32|f64]
       optim-layer FILE.optim --data DIR --batch B [--layer NAME]
                   [--precision f32|f64] [--statuses] [--backward]
                   [--threads N]
Compiles a QP layer and runs it on raw row-major files of DIR (see the
comment at the top of tools/optim-layer/optim-layer.cpp for their names).
A valued option takes its value as --key VALUE or --key=VALUE.

  --info             print the layer's signature as JSON and stop
  --data DIR         folder of the input, weight and output files
  --batch B          elements of the batch (at least 1)
  --layer NAME       which layer of a file that defines several
  --precision P      element type of the layer and its files: f32 (default)
                     or f64
  --statuses         write status.bin instead of failing on an unsolved QP
  --backward         also run the backward pass (dout_*.bin, grad_*.bin)
  --threads N        threads of the layer, 0..1024 (0: all cores; default 1)

Exit status: 0 on success, 1 on any error (a usage error included).
)";

Options parse(int argc, char **argv) {
  Options o;
  tools::ArgParser args("optim-layer", kUsage, argc, argv);
  while (args.next()) {
    if (args.is("--info")) {
      args.flag();
      o.info = true;
    } else if (args.is("--statuses")) {
      args.flag();
      o.statuses = true;
    } else if (args.is("--backward")) {
      args.flag();
      o.backward = true;
    } else if (args.is("--layer"))
      o.layer = args.value();
    else if (args.is("--data"))
      o.data = args.value();
    else if (args.is("--batch"))
      // Batch 0 is refused here, before any file is read: the files of a
      // batch of 0 would have to be empty, and a mismatch would be
      // reported as a file of the wrong size.
      o.batch = args.integer(1);
    else if (args.is("--threads"))
      o.threads = unsigned(args.integer(0, 1024));
    else if (args.is("--precision")) {
      std::string p = args.value();
      if (p == "f32")
        o.precision = DType::F32;
      else if (p == "f64")
        o.precision = DType::F64;
      else
        args.error("--precision is f32 or f64, got '" + p + "'");
    } else if (args.isOption())
      args.unknown();
    else if (o.file.empty())
      o.file = args.argument();
    else
      args.error("more than one input file");
  }
  if (o.file.empty())
    args.error("no input file");
  if (!o.info && (o.data.empty() || o.batch < 1))
    args.error("--data DIR and --batch B are required (or --info)");
  return o;
}

int64_t elements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i)
    os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

/// Reads exactly `bytes` bytes; `required` false: an absent file is empty.
/// Only a regular file of the right size is read (a link to /dev/zero, a
/// folder: named errors, not an endless read or a stream error).
std::vector<unsigned char> readFile(const std::string &path, size_t bytes,
                                    bool required) {
  std::error_code ec;
  std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) {
    if (required)
      throw Error("cannot open '" + path + "': no such file");
    return {};
  }
  if (!std::filesystem::is_regular_file(st))
    throw Error("'" + path + "' is not a regular file");
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec)
    throw Error("cannot read '" + path + "': " + ec.message());
  if (size != bytes)
    throw Error("'" + path + "' has " + std::to_string(size) +
                " bytes; expected " + std::to_string(bytes));
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> buf(bytes);
  if (!in ||
      !in.read(reinterpret_cast<char *>(buf.data()), std::streamsize(bytes)))
    throw Error("cannot read '" + path + "'");
  return buf;
}

/// A file to write once every computation succeeded: nothing is written by
/// a run that fails (a backward pass refused after a forward pass), and
/// each file is replaced whole.
struct PendingFile {
  std::string path;
  const std::vector<unsigned char> *bytes;
};

void writeAll(const std::vector<PendingFile> &files) {
  for (const PendingFile &f : files) {
    AtomicFile out(f.path, "optim-layer");
    out.write(f.bytes->data(), f.bytes->size());
    out.commit();
  }
}

/// `kinds` (outputs only): which result of the qp each one is.
void printTensors(const char *key, const std::vector<LayerTensor> &ts,
                  const std::vector<int> *kinds = nullptr) {
  static const char *kindNames[3] = {"z", "nu", "lam"};
  std::cout << "  \"" << key << "\": [";
  for (size_t i = 0; i < ts.size(); ++i) {
    std::cout << (i ? ", " : "") << "{\"name\": \"" << ts[i].name
              << "\", \"shape\": " << shapeText(ts[i].shape);
    if (kinds)
      std::cout << ", \"kind\": \"" << kindNames[(*kinds)[i]] << "\"";
    std::cout << "}";
  }
  std::cout << "],\n";
}

void printInfo(const LayerInfo &L) {
  std::cout << "{\n  \"name\": \"" << L.name << "\",\n  \"dtype\": \""
            << (L.dtype == DType::F64 ? "f64" : "f32") << "\",\n";
  printTensors("inputs", L.inputs);
  printTensors("weights", L.weights);
  printTensors("outputs", L.outputs, &L.outputKinds);
  std::cout << "  \"n\": " << L.n << ", \"m\": " << L.m << ", \"p\": " << L.p
            << ", \"hasQ\": " << (L.hasQ ? "true" : "false")
            << ",\n  \"batched\": [";
  for (int k = 0; k < 6; ++k)
    std::cout << (k ? ", " : "") << (L.batched[k] ? "true" : "false");
  std::cout << "],\n  \"tol\": " << L.tol << ", \"max_iter\": " << L.maxIter;
}

int run(const Options &o) {
  CompileOptions co;
  co.precision = o.precision;
  co.useCache = false;
  Compiler compiler(co);
  Layer layer = compiler.compileLayerFile(o.file, o.layer);
  tools::printWarnings(compiler.lastWarnings());
  const LayerInfo &L = layer.info();
  if (o.info) {
    printInfo(L);
    std::cout << "\n}\n";
    return 0;
  }
  layer.setThreads(o.threads);
  const size_t es = dtypeSize(L.dtype);
  const int64_t B = o.batch;
  auto path = [&](const std::string &name) { return o.data + "/" + name; };
  auto bytesOf = [&](const LayerTensor &t, bool batched) {
    return size_t(elements(t.shape) * (batched ? B : 1)) * es;
  };
  std::vector<std::vector<unsigned char>> in, w, out, dout, din, dw;
  std::vector<const void *> inP, wP, doutP;
  std::vector<void *> outP, dinP, dwP;
  // An empty buffer (an output of size 0, such as nu without equalities) is
  // passed as the null pointer an empty std::vector gives: the layer decides
  // what that means.
  auto ptr = [](std::vector<unsigned char> &v) { return v.data(); };
  for (const LayerTensor &t : L.inputs) {
    in.push_back(readFile(path(t.name + ".bin"), bytesOf(t, true), true));
    inP.push_back(ptr(in.back()));
  }
  for (const LayerTensor &t : L.weights) {
    w.push_back(readFile(path(t.name + ".bin"), bytesOf(t, false), true));
    wP.push_back(ptr(w.back()));
  }
  for (const LayerTensor &t : L.outputs) {
    out.emplace_back(bytesOf(t, true));
    outP.push_back(ptr(out.back()));
  }
  // A misspelt dout file would be read as a zero gradient: refused.
  if (o.backward) {
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator(o.data, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("dout_", 0) != 0 || name.size() < 9 ||
          name.compare(name.size() - 4, 4, ".bin") != 0)
        continue;
      const std::string output = name.substr(5, name.size() - 9);
      bool known = false;
      std::string names;
      for (const LayerTensor &t : L.outputs) {
        known |= t.name == output;
        names += (names.empty() ? "" : ", ") + t.name;
      }
      if (!known)
        throw Error("'" + path(name) + "' names no output of layer '" + L.name +
                    "' (its outputs: " + names + ")");
    }
  }
  std::vector<QPStatus> status(static_cast<size_t>(B));
  layer.forward(B, inP, wP, outP, o.statuses ? status.data() : nullptr);
  std::vector<PendingFile> files;
  for (size_t i = 0; i < L.outputs.size(); ++i)
    files.push_back({path("out_" + L.outputs[i].name + ".bin"), &out[i]});
  std::vector<unsigned char> statusBytes(status.size() * sizeof(QPStatus));
  if (!status.empty())
    std::memcpy(statusBytes.data(), status.data(), statusBytes.size());
  if (o.statuses)
    files.push_back({path("status.bin"), &statusBytes});
  auto printResult = [&] {
    printInfo(L);
    std::cout << ",\n  \"statuses\": [";
    for (size_t e = 0; e < status.size(); ++e)
      std::cout << (e ? ", " : "") << "\"" << qpStatusName(status[e]) << "\"";
    std::cout << "]\n}\n";
  };
  if (!o.backward) {
    writeAll(files);
    printResult();
    return 0;
  }
  for (const LayerTensor &t : L.outputs) {
    dout.push_back(
        readFile(path("dout_" + t.name + ".bin"), bytesOf(t, true), false));
    doutP.push_back(dout.back().empty() ? nullptr : dout.back().data());
  }
  for (const LayerTensor &t : L.inputs) {
    din.emplace_back(bytesOf(t, true));
    dinP.push_back(ptr(din.back()));
  }
  for (const LayerTensor &t : L.weights) {
    dw.emplace_back(bytesOf(t, false));
    dwP.push_back(ptr(dw.back()));
  }
  layer.backward(doutP, dinP, dwP);
  for (size_t i = 0; i < L.inputs.size(); ++i)
    files.push_back({path("grad_" + L.inputs[i].name + ".bin"), &din[i]});
  for (size_t i = 0; i < L.weights.size(); ++i)
    files.push_back({path("grad_" + L.weights[i].name + ".bin"), &dw[i]});
  writeAll(files);
  printResult();
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception &e) {
    tools::printToolError("optim-layer", e);
    return 1;
  }
}
