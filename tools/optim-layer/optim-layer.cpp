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
// Standard output: the layer's signature as JSON (and, after a forward, the
// statuses). Errors (a bad program, a file of the wrong size, the layer's
// own errors: an infeasible problem without --statuses, backward after an
// unsolved forward, ...) print "optim-layer: error: ..." and exit with 1.
//
//===----------------------------------------------------------------------===//

#include "optim/Compiler/Compiler.h"
#include "optim/Layer.h"

#include <cstdio>
#include <cstdlib>
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

[[noreturn]] void usage(const std::string &message) {
  std::cerr << "optim-layer: error: " << message
            << "\nusage: optim-layer FILE.optim (--info | --data DIR --batch "
               "B) [--layer NAME] [--precision f32|f64] [--statuses] "
               "[--backward] [--threads N]\n";
  std::exit(1);
}

int64_t parseInt(const std::string &flag, const std::string &text) {
  char *end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0')
    usage(flag + " takes an integer, got '" + text + "'");
  return v;
}

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--info")
      o.info = true;
    else if (a == "--statuses")
      o.statuses = true;
    else if (a == "--backward")
      o.backward = true;
    else if (a == "--layer")
      o.layer = value();
    else if (a == "--data")
      o.data = value();
    else if (a == "--batch")
      o.batch = parseInt(a, value());
    else if (a == "--threads") {
      int64_t t = parseInt(a, value());
      if (t < 0 || t > 1024)
        usage("--threads must be in 0..1024");
      o.threads = unsigned(t);
    } else if (a == "--precision") {
      std::string p = value();
      if (p == "f32")
        o.precision = DType::F32;
      else if (p == "f64")
        o.precision = DType::F64;
      else
        usage("--precision is f32 or f64, got '" + p + "'");
    } else if (!a.empty() && a[0] == '-')
      usage("unknown option '" + a + "'");
    else if (o.file.empty())
      o.file = a;
    else
      usage("more than one input file");
  }
  if (o.file.empty())
    usage("no input file");
  if (!o.info && (o.data.empty() || o.batch < 0))
    usage("--data DIR and --batch B are required (or --info)");
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
std::vector<unsigned char> readFile(const std::string &path, size_t bytes,
                                    bool required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (required)
      throw Error("cannot open '" + path + "'");
    return {};
  }
  std::vector<unsigned char> buf((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
  if (buf.size() != bytes)
    throw Error("'" + path + "' has " + std::to_string(buf.size()) +
                " bytes; expected " + std::to_string(bytes));
  return buf;
}

void writeFile(const std::string &path, const void *data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char *>(data), std::streamsize(bytes));
  if (!out)
    throw Error("cannot write '" + path + "'");
}

void printTensors(const char *key, const std::vector<LayerTensor> &ts) {
  std::cout << "  \"" << key << "\": [";
  for (size_t i = 0; i < ts.size(); ++i)
    std::cout << (i ? ", " : "") << "{\"name\": \"" << ts[i].name
              << "\", \"shape\": " << shapeText(ts[i].shape) << "}";
  std::cout << "],\n";
}

void printInfo(const LayerInfo &L) {
  std::cout << "{\n  \"name\": \"" << L.name << "\",\n  \"dtype\": \""
            << (L.dtype == DType::F64 ? "f64" : "f32") << "\",\n";
  printTensors("inputs", L.inputs);
  printTensors("weights", L.weights);
  printTensors("outputs", L.outputs);
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
  // An empty buffer (an output of size 0, such as nu without equalities, or
  // any buffer at batch 0) is passed as the null pointer an empty
  // std::vector gives: the layer decides what that means.
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
  std::vector<QPStatus> status(size_t(B > 0 ? B : 0));
  layer.forward(B, inP, wP, outP, o.statuses ? status.data() : nullptr);
  for (size_t i = 0; i < L.outputs.size(); ++i)
    writeFile(path("out_" + L.outputs[i].name + ".bin"), out[i].data(),
              out[i].size());
  if (o.statuses)
    writeFile(path("status.bin"), status.data(),
              status.size() * sizeof(QPStatus));
  printInfo(L);
  std::cout << ",\n  \"statuses\": [";
  for (size_t e = 0; e < status.size(); ++e)
    std::cout << (e ? ", " : "") << "\"" << qpStatusName(status[e]) << "\"";
  std::cout << "]\n}\n";
  if (!o.backward)
    return 0;
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
    writeFile(path("grad_" + L.inputs[i].name + ".bin"), din[i].data(),
              din[i].size());
  for (size_t i = 0; i < L.weights.size(); ++i)
    writeFile(path("grad_" + L.weights[i].name + ".bin"), dw[i].data(),
              dw[i].size());
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception &e) {
    std::cerr << "optim-layer: error: " << e.what() << "\n";
    return 1;
  }
}
