//===- CudaLayer.cpp - compiled QP layers on the CUDA executor ------------===//
//
// The launch of optim-lower-layers-to-gpu's kernel (KernelABI of the pass's
// description): grid = batch, block = the manifest's threads, the
// manifest's dynamic shared memory, and the arguments
//   inputs..., weights..., z, nu, lam, status, iterations, work.
//
//===----------------------------------------------------------------------===//

#include "optim/CudaLayer.h"

#include "ManifestCommon.h"

#include <algorithm>
#include <limits>

using namespace optim;
using namespace optim::cuda;

/// Shared memory a block gets without opting in.
static constexpr int64_t kDefaultSharedBytes = 48 * 1024;

LayerKernel optim::cuda::loadLayer(const std::shared_ptr<Device> &device,
                                   const std::string &cubinPath,
                                   const std::string &manifestPath) {
  std::string path =
      manifestPath.empty() ? detail::manifestPathFor(cubinPath) : manifestPath;
  std::string manifest = detail::readFile(path);
  // As Device::loadRule: from files, the manifest must record the cubin's
  // SHA-256, which the loader from bytes checks.
  detail::requireArtifactHash(
      readLayerManifest(manifest, path).artifactSha256, cubinPath, path);
  return loadLayer(device, detail::readFile(cubinPath), manifest, path,
                   detail::readPTXFor(cubinPath));
}

LayerKernel optim::cuda::loadLayer(const std::shared_ptr<Device> &device,
                                   const std::string &cubin,
                                   const std::string &json,
                                   const std::string &origin,
                                   const std::string &ptx) {
  if (!device)
    throw Error("optim: CUDA: loadLayer needs a device");
  LayerKernel k;
  k.manifest = readLayerManifest(json, origin);
  CodeSource runs = device->requireCompatible(
      k.manifest.target, k.manifest.symbol, origin, ptx);
  // As Device::loadRule: the bytes the manifest was written for.
  detail::requireHashMatches(k.manifest.artifactSha256, cubin, "the cubin",
                             origin);
  if (!ptx.empty())
    detail::requireHashMatches(k.manifest.ptxSha256, ptx,
                               "the PTX beside the cubin", origin);
  const int64_t shared = k.manifest.sharedBytes;
  if (shared > kDefaultSharedBytes) {
    int optin = device->attribute(kAttrMaxSharedPerBlockOptin);
    if (shared > optin)
      throw Error("optim: '" + origin + "': the kernel needs " +
                  std::to_string(shared) +
                  " bytes of shared memory per block, the device (" +
                  device->name() + ") grants at most " + std::to_string(optin));
  }
  k.device = device;
  k.module = device->loadModule(runs == CodeSource::Cubin ? cubin : "", origin,
                                ptx, &k.source);
  const DriverAPI &d = device->driver();
  auto get = [&](CUfunction &fn, const std::string &name) {
    d.check(d.cuModuleGetFunction(&fn, k.module.get(), name.c_str()),
            "cuModuleGetFunction");
  };
  get(k.function, k.manifest.symbol);
  get(k.grad, k.manifest.symbol + "_grad");
  get(k.reduce, k.manifest.symbol + "_reduce");
  get(k.vjp, k.manifest.symbol + "_vjp");
  if (shared > kDefaultSharedBytes)
    for (CUfunction fn : {k.function, k.grad})
      d.check(d.cuFuncSetAttribute(fn, kFuncAttrMaxDynamicSharedBytes,
                                   int(shared)),
              "cuFuncSetAttribute");
  return k;
}

LayerRunner::LayerRunner(LayerKernel kernel, CUstream stream)
    : kernel_(std::move(kernel)), stream_(stream) {
  if (!kernel_.function || !kernel_.device)
    throw Error("optim: CUDA: LayerRunner needs a loaded layer");
  if (!stream_) {
    kernel_.device->makeCurrent();
    const DriverAPI &d = kernel_.device->driver();
    d.check(d.cuStreamCreate(&stream_, 0), "cuStreamCreate");
    ownsStream_ = true;
  }
}

LayerRunner::~LayerRunner() {
  if (ownsStream_ && kernel_.device->tryMakeCurrent())
    kernel_.device->driver().cuStreamDestroy(stream_);
}

void LayerRunner::ensureCapacity(int64_t batch) {
  if (batch <= capacity_)
    return;
  const LayerManifest &m = kernel_.manifest;
  const LayerInfo &i = m.info;
  const size_t elt = i.dtype == DType::F64 ? 8 : 4;
  const auto &dev = kernel_.device;
  // Allocated before any member changes: a failure leaves the runner as
  // it was.
  Buffer work(dev, size_t(batch) * size_t(m.workDoubles) * 8);
  Buffer dops(dev, size_t(batch) * size_t(m.dataDoubles) * 8);
  Buffer status(dev, size_t(batch) * 4), iterations(dev, size_t(batch) * 4);
  const int64_t sizes[3] = {i.n, i.m, i.p};
  Buffer scratch[3];
  for (int k = 0; k < 3; ++k)
    scratch[k] = Buffer(dev, size_t(batch) * size_t(sizes[k]) * elt);
  work_ = std::move(work);
  dops_ = std::move(dops);
  status_ = std::move(status);
  iterations_ = std::move(iterations);
  for (int k = 0; k < 3; ++k)
    scratch_[k] = std::move(scratch[k]);
  capacity_ = batch;
}

void LayerRunner::forward(int64_t batch,
                          const std::vector<CUdeviceptr> &inputs,
                          const std::vector<CUdeviceptr> &weights,
                          const std::vector<CUdeviceptr> &outputs) {
  const LayerInfo &i = info();
  const std::string who = "optim: CUDA: layer '" + i.name + "': ";
  if (inputs.size() != i.inputs.size() || weights.size() != i.weights.size() ||
      outputs.size() != i.outputs.size())
    throw Error(who + "forward() takes " + std::to_string(i.inputs.size()) +
                " inputs, " + std::to_string(i.weights.size()) +
                " weights and " + std::to_string(i.outputs.size()) +
                " outputs; got " + std::to_string(inputs.size()) + ", " +
                std::to_string(weights.size()) + " and " +
                std::to_string(outputs.size()));
  if (batch < 1 || batch > std::numeric_limits<int32_t>::max())
    throw Error(who + "the batch size must be in 1..2^31-1, got " +
                std::to_string(batch));
  // A tensor of no elements (nu without equalities, lam without
  // inequalities) may be null, as on the CPU (optim::Layer).
  auto requireAll = [&](const std::vector<CUdeviceptr> &list,
                        const std::vector<LayerTensor> &specs,
                        const char *what) {
    for (size_t k = 0; k < list.size(); ++k) {
      int64_t elements = 1;
      for (int64_t d : specs[k].shape)
        elements *= d;
      if (!list[k] && elements != 0)
        throw Error(who + what + " '" + specs[k].name + "' is a null pointer");
    }
  };
  requireAll(inputs, i.inputs, "input");
  requireAll(weights, i.weights, "weights");
  requireAll(outputs, i.outputs, "output");
  ensureCapacity(batch);
  // z, nu, lam: the caller's where an output asks for them, else ours.
  CUdeviceptr solution[3] = {scratch_[0].get(), scratch_[1].get(),
                             scratch_[2].get()};
  for (size_t o = 0; o < outputs.size(); ++o)
    if (outputs[o])
      solution[i.outputKinds[o]] = outputs[o];
  std::vector<CUdeviceptr> args(inputs);
  args.insert(args.end(), weights.begin(), weights.end());
  args.insert(args.end(), {solution[0], solution[1], solution[2],
                           status_.get(), iterations_.get(), work_.get()});
  const LayerManifest &m = kernel_.manifest;
  kernel_.device->makeCurrent();
  const DriverAPI &d = kernel_.device->driver();
  batch_ = 0; // statuses of a failed launch are not this batch's
  // Statuses start invalid, so that a block that never finished shows.
  unset_.assign(size_t(batch), -1);
  d.check(d.cuMemcpyHtoDAsync(status_.get(), unset_.data(), unset_.size() * 4,
                              stream_),
          "cuMemcpyHtoDAsync");
  launch(kernel_.function, unsigned(batch), unsigned(m.threads),
         unsigned(m.sharedBytes), std::move(args), nullptr);
  batch_ = batch;
  inputs_ = inputs;
  weights_ = weights;
}

void LayerRunner::launch(CUfunction fn, unsigned grid, unsigned block,
                         unsigned shared, std::vector<CUdeviceptr> pointers,
                         const int64_t *batch) {
  std::vector<void *> params;
  for (CUdeviceptr &a : pointers)
    params.push_back(&a);
  int64_t b = batch ? *batch : 0;
  if (batch)
    params.push_back(&b);
  const DriverAPI &d = kernel_.device->driver();
  d.check(d.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, shared, stream_,
                           params.data(), nullptr),
          "cuLaunchKernel");
}

/// Blocks of 256 threads for `count` elements spread over the grid.
static unsigned gridFor(int64_t count) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(4096,
                                                         (count + 255) / 256)));
}

void LayerRunner::backward(const std::vector<CUdeviceptr> &doutputs,
                           const std::vector<CUdeviceptr> &dinputs,
                           const std::vector<CUdeviceptr> &dweights) {
  const LayerInfo &i = info();
  const std::string who = "optim: CUDA: layer '" + i.name + "': ";
  if (!batch_)
    throw Error(who + "backward() before a forward()");
  if (doutputs.size() != i.outputs.size() ||
      dinputs.size() != i.inputs.size() || dweights.size() != i.weights.size())
    throw Error(who + "backward() takes " + std::to_string(i.outputs.size()) +
                " output gradients, " + std::to_string(i.inputs.size()) +
                " input gradients and " + std::to_string(i.weights.size()) +
                " weights gradients; got " + std::to_string(doutputs.size()) +
                ", " + std::to_string(dinputs.size()) + " and " +
                std::to_string(dweights.size()));
  // A gradient through a non-solution would be meaningless.
  requireSolved();
  const LayerManifest &m = kernel_.manifest;
  const int64_t B = batch_;
  const size_t elt = i.dtype == DType::F64 ? 8 : 4;
  // Buffers for the gradients nobody asked for (the VJP writes them all).
  auto sizeOf = [](const LayerTensor &t) {
    int64_t s = 1;
    for (int64_t d : t.shape)
      s *= d;
    return s;
  };
  std::vector<CUdeviceptr> din(dinputs), dw(dweights);
  std::vector<Buffer> unwanted;
  for (size_t k = 0; k < din.size(); ++k)
    if (!din[k]) {
      unwanted.emplace_back(kernel_.device,
                            size_t(B * sizeOf(i.inputs[k])) * elt);
      din[k] = unwanted.back().get();
    }
  for (size_t k = 0; k < dw.size(); ++k)
    if (!dw[k]) {
      unwanted.emplace_back(kernel_.device, size_t(sizeOf(i.weights[k])) * elt);
      dw[k] = unwanted.back().get();
    }
  if (!dshared_.get())
    dshared_ = Buffer(kernel_.device, size_t(m.dataDoubles) * 8);
  unwanted_ = std::move(unwanted); // alive until the next backward()
  CUdeviceptr g[3] = {0, 0, 0};
  for (size_t o = 0; o < doutputs.size(); ++o)
    g[i.outputKinds[o]] = doutputs[o];
  kernel_.device->makeCurrent();
  launch(kernel_.grad, unsigned(B), unsigned(m.threads),
         unsigned(m.sharedBytes), {g[0], g[1], g[2], dops_.get(), work_.get()},
         nullptr);
  launch(kernel_.reduce, gridFor(m.dataDoubles), 256, 0,
         {dops_.get(), dshared_.get()}, &B);
  int64_t total = 0;
  for (const LayerTensor &t : i.inputs)
    total += B * sizeOf(t);
  for (const LayerTensor &t : i.weights)
    total += sizeOf(t);
  std::vector<CUdeviceptr> args(inputs_);
  args.insert(args.end(), weights_.begin(), weights_.end());
  args.push_back(dops_.get());
  args.push_back(dshared_.get());
  args.insert(args.end(), din.begin(), din.end());
  args.insert(args.end(), dw.begin(), dw.end());
  launch(kernel_.vjp, gridFor(total), 256, 0, std::move(args), &B);
}

void LayerRunner::synchronize() const {
  kernel_.device->makeCurrent();
  const DriverAPI &d = kernel_.device->driver();
  d.check(d.cuStreamSynchronize(stream_), "cuStreamSynchronize");
}

std::vector<QPStatus> LayerRunner::statuses() const {
  if (!batch_)
    throw Error("optim: CUDA: layer '" + info().name +
                "': no forward() has run");
  synchronize();
  std::vector<int32_t> raw(batch_);
  status_.download(raw.data(), raw.size() * 4);
  std::vector<QPStatus> out(batch_);
  for (int64_t e = 0; e < batch_; ++e) {
    if (raw[e] < 0 || raw[e] > 4)
      throw Error("optim: CUDA: layer '" + info().name + "': problem " +
                  std::to_string(e) + " has no status (" +
                  std::to_string(raw[e]) + "): the kernel did not finish it");
    out[e] = QPStatus(raw[e]);
  }
  return out;
}

std::vector<int32_t> LayerRunner::iterations() const {
  if (!batch_)
    throw Error("optim: CUDA: layer '" + info().name +
                "': no forward() has run");
  synchronize();
  std::vector<int32_t> out(batch_);
  iterations_.download(out.data(), out.size() * 4);
  return out;
}

void LayerRunner::requireSolved() const {
  std::vector<QPStatus> s = statuses();
  try {
    QPSolver::requireSolved(s.data(), int64_t(s.size()));
  } catch (const Error &e) {
    throw Error("optim: CUDA: layer '" + info().name + "': " + e.what());
  }
}

