//===- CudaLayerTest.cpp - QP layers' launch path against a fake driver ---===//
//
// The fake driver keeps "device" memory on the host, and its cuLaunchKernel
// does what a compiled layer kernel does (optim-lower-layers-to-gpu): for
// each block of the grid, it builds that problem's operands at the
// manifest's workspace offsets (optim::qpblock::kernelLayout) from the
// arguments in the kernel's order, and runs the block solver
// (optim/QPBlock.h) with the launch's shared memory. A wrong argument order,
// grid, block size, shared memory size or workspace stride shows up as a
// refused launch or as solutions that differ from the CPU solver's. The
// backward's three kernels likewise: the solver's backward per block with
// what the forward kept in the workspace, the sum over the batch of the
// shared operands' cotangents, and the toy layer's VJP (dq = the q
// cotangent per element, dG = the G cotangent summed).
//
// The toy layer: input q[3] (batched), weights G[2, 3]; Q = I, h = 1:
//   minimize 1/2 |z|^2 + q^T z  subject to  G z <= 1.
//
//===----------------------------------------------------------------------===//

#include "optim/CudaLayer.h"
#include "optim/QPBlock.h"

#include "../lib/Sha256.h"
#include "FakeDriver.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

using namespace optim;
using namespace optim::cuda;

namespace {

struct FakeState : fakecuda::Memory {
  int launches = 0;
  unsigned grid = 0, block = 0, shared = 0;
  int funcAttr = -1, funcAttrValue = -1;
  int optin = 232448; // an H100's
  CUresult failLaunch = CUDA_SUCCESS;
  bool launchDoesNothing = false;
  std::vector<std::string> requested;
  std::string loaded;
  struct Launch {
    CUfunction f;
    unsigned grid, block, shared;
  };
  std::vector<Launch> backwardLaunches;
};
FakeState *fake = nullptr;
CUfunction kToy = reinterpret_cast<CUfunction>(0x3456);
CUfunction kGrad = reinterpret_cast<CUfunction>(0x3457);
CUfunction kReduce = reinterpret_cast<CUfunction>(0x3458);
CUfunction kVjp = reinterpret_cast<CUfunction>(0x3459);
CUmodule kModule = reinterpret_cast<CUmodule>(0x5678);
CUstream kStream = reinterpret_cast<CUstream>(0x77);
constexpr int64_t n = 3, p = 2;

CUresult fAttr(int *v, int attr, CUdevice) {
  *v = attr == kAttrComputeCapabilityMajor   ? 9
       : attr == kAttrComputeCapabilityMinor ? 0
       : attr == kAttrMaxSharedPerBlockOptin ? fake->optin
                                             : -1;
  return *v < 0 ? 1 : 0;
}
CUresult fSetCurrent(CUcontext) { return 0; }
CUresult fLoad(CUmodule *m, const void *image) {
  // What a driver older than the cubin's ptxas answers.
  if (std::string(static_cast<const char *>(image)) == "refused cubin")
    return 222;
  fake->loaded = static_cast<const char *>(image);
  *m = kModule;
  return 0;
}
CUresult fGetFunction(CUfunction *f, CUmodule, const char *name) {
  fake->requested.push_back(name);
  std::string s = name;
  if (s == "optim_layer_toy_qp")
    *f = kToy;
  else if (s == "optim_layer_toy_qp_grad")
    *f = kGrad;
  else if (s == "optim_layer_toy_qp_reduce")
    *f = kReduce;
  else if (s == "optim_layer_toy_qp_vjp")
    *f = kVjp;
  else
    return 500;
  return 0;
}
CUresult fFuncAttr(CUfunction f, int attr, int value) {
  if (f != kToy && f != kGrad)
    return 1;
  fake->funcAttr = attr;
  fake->funcAttrValue = value;
  return 0;
}
CUresult fHtoDAsync(CUdeviceptr dst, const void *src, size_t bytes,
                    CUstream s) {
  if (s != kStream)
    return 1;
  return fakecuda::htod(dst, src, bytes);
}
CUresult fStreamCreate(CUstream *s, unsigned) {
  *s = kStream;
  return 0;
}

struct OneThread {
  int tid = 0, nt = 1;
  void sync() {}
};

/// The toy layer's kernel, block by block, as optim-lower-layers-to-gpu
/// emits it: args = q, G, z, nu, lam, status, iterations, work.
CUresult fLaunch(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                 unsigned bx, unsigned by, unsigned bz, unsigned shared,
                 CUstream stream, void **params, void **extra) {
  if (fake->failLaunch)
    return fake->failLaunch;
  if (gy != 1 || gz != 1 || by != 1 || bz != 1 || extra || stream != kStream)
    return 1;
  auto arg = [&](int k) { return *static_cast<CUdeviceptr *>(params[k]); };
  const qpblock::KernelLayout lay =
      qpblock::kernelLayout(n, 0, p, true, 0, qpblock::kSharedCapBytes);
  const int64_t D = lay.dataDoubles;
  if (f == kGrad || f == kReduce || f == kVjp)
    fake->backwardLaunches.push_back({f, gx, bx, shared});
  if (f == kGrad) { // (gz, gnu, glam, dops, work)
    if (int64_t(bx) != lay.threads || int64_t(shared) != lay.sharedBytes)
      return 1;
    const float *gzp = reinterpret_cast<const float *>(arg(0));
    const float *glp = reinterpret_cast<const float *>(arg(2));
    double *dops = reinterpret_cast<double *>(arg(3));
    double *work = reinterpret_cast<double *>(arg(4));
    std::vector<double> smem(lay.sharedDoubles);
    for (unsigned e = 0; e < gx; ++e) {
      double *base = work + e * lay.workDoubles;
      qpblock::Work w;
      qpblock::carve(w, n, 0, p, 1, smem.data(), lay.sharedDoubles,
                     base + lay.dataDoubles);
      qpblock::Problem P;
      P.n = n;
      P.p = p;
      P.Q = base + lay.offset[0];
      P.q = base + lay.offset[1];
      P.G = base + lay.offset[4];
      P.h = base + lay.offset[5];
      OneThread team;
      qpblock::backwardProblem(team, P, w, base + lay.keepOffset,
                               gzp ? gzp + e * n : nullptr, nullptr,
                               glp ? glp + e * p : nullptr, /*f32=*/true,
                               dops + e * D, lay.offset);
    }
    return 0;
  }
  if (f == kReduce) { // (dops, dshared, batch): Q, G, h are shared
    const double *dops = reinterpret_cast<const double *>(arg(0));
    double *dshared = reinterpret_cast<double *>(arg(1));
    const int64_t B = *static_cast<int64_t *>(params[2]);
    const int64_t sizes[6] = {n * n, n, 0, 0, p * n, p};
    for (int k : {0, 4, 5})
      for (int64_t j = 0; j < sizes[k]; ++j) {
        double acc = 0;
        for (int64_t e = 0; e < B; ++e)
          acc += dops[e * D + lay.offset[k] + j];
        dshared[lay.offset[k] + j] = acc;
      }
    return 0;
  }
  if (f == kVjp) { // (q, G, dops, dshared, dq, dG, batch)
    const double *dops = reinterpret_cast<const double *>(arg(2));
    const double *dshared = reinterpret_cast<const double *>(arg(3));
    float *dq = reinterpret_cast<float *>(arg(4));
    float *dG = reinterpret_cast<float *>(arg(5));
    const int64_t B = *static_cast<int64_t *>(params[6]);
    for (int64_t e = 0; e < B; ++e)
      for (int64_t j = 0; j < n; ++j)
        dq[e * n + j] = float(dops[e * D + lay.offset[1] + j]);
    for (int64_t k = 0; k < p * n; ++k)
      dG[k] = float(dshared[lay.offset[4] + k]);
    return 0;
  }
  if (f != kToy)
    return 1;
  ++fake->launches;
  fake->grid = gx;
  fake->block = bx;
  fake->shared = shared;
  if (fake->launchDoesNothing)
    return 0;
  // The kernel's known block size and its shared memory: the launch must
  // give exactly those.
  if (int64_t(bx) != lay.threads || int64_t(shared) != lay.sharedBytes)
    return 1;
  const float *q = reinterpret_cast<const float *>(arg(0));
  const float *G = reinterpret_cast<const float *>(arg(1));
  float *z = reinterpret_cast<float *>(arg(2));
  float *lam = reinterpret_cast<float *>(arg(4));
  int32_t *status = reinterpret_cast<int32_t *>(arg(5));
  int32_t *iterations = reinterpret_cast<int32_t *>(arg(6));
  double *work = reinterpret_cast<double *>(arg(7));
  std::vector<double> smem(lay.sharedDoubles);
  for (unsigned e = 0; e < gx; ++e) {
    double *base = work + e * lay.workDoubles;
    double *Q = base + lay.offset[0], *qq = base + lay.offset[1],
           *GG = base + lay.offset[4], *h = base + lay.offset[5];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j)
        Q[i * n + j] = i == j;
      qq[i] = q[e * n + i];
    }
    for (int64_t k = 0; k < p; ++k) {
      for (int64_t j = 0; j < n; ++j)
        GG[k * n + j] = G[k * n + j];
      h[k] = 1;
    }
    qpblock::Work w;
    qpblock::carve(w, n, 0, p, 1, smem.data(), lay.sharedDoubles,
                   base + lay.dataDoubles);
    qpblock::Problem P;
    P.n = n;
    P.p = p;
    P.Q = Q;
    P.q = qq;
    P.G = GG;
    P.h = h;
    OneThread team;
    qpblock::solveProblem(team, P, w, z + e * n, nullptr, lam + e * p,
                          /*f32=*/true, status + e, iterations + e,
                          base + lay.keepOffset);
  }
  return 0;
}

std::shared_ptr<const DriverAPI> fakeDriver() {
  auto d = fakecuda::fakeDriverBase();
  d->cuDeviceGetAttribute = fAttr;
  d->cuCtxSetCurrent = fSetCurrent;
  d->cuModuleLoadData = fLoad;
  d->cuModuleGetFunction = fGetFunction;
  d->cuFuncSetAttribute = fFuncAttr;
  d->cuMemcpyHtoDAsync = fHtoDAsync;
  d->cuStreamCreate = fStreamCreate;
  d->cuLaunchKernel = fLaunch;
  return d;
}

LayerManifest toyManifest(int64_t sharedBytes = -1) {
  const qpblock::KernelLayout lay =
      qpblock::kernelLayout(n, 0, p, true, 0, qpblock::kSharedCapBytes);
  LayerManifest m;
  LayerInfo &i = m.info;
  i.name = "toy";
  i.dtype = DType::F32;
  i.inputs = {{"q", {n}}};
  i.weights = {{"G", {p, n}}};
  i.outputs = {{"z", {n}}, {"lam", {p}}};
  i.outputKinds = {0, 2};
  i.n = n;
  i.p = p;
  i.batched[1] = true;
  m.symbol = "optim_layer_toy_qp";
  m.target = "nvptx64-nvidia-cuda sm_90";
  m.threads = lay.threads;
  m.sharedBytes = sharedBytes >= 0 ? sharedBytes : lay.sharedBytes;
  m.workDoubles = lay.workDoubles;
  m.dataDoubles = lay.dataDoubles;
  return m;
}

class CudaLayerFake : public ::testing::Test {
protected:
  void SetUp() override { fake = &state; fakecuda::memory = &state; }
  void TearDown() override { fake = nullptr; fakecuda::memory = nullptr; }
  FakeState state;
};

Buffer upload(const std::shared_ptr<Device> &dev,
              const std::vector<float> &host) {
  Buffer b(dev, host.size() * 4);
  b.upload(host.data(), host.size() * 4);
  return b;
}

} // namespace

TEST_F(CudaLayerFake, OneLaunchOfBatchBlocksSolvesEveryProblem) {
  auto dev = Device::open(fakeDriver());
  LayerKernel k =
      loadLayer(dev, "cubin", writeLayerManifest(toyManifest()), "toy.json");
  EXPECT_EQ(state.requested,
            (std::vector<std::string>{
                "optim_layer_toy_qp", "optim_layer_toy_qp_grad",
                "optim_layer_toy_qp_reduce", "optim_layer_toy_qp_vjp"}));
  // Under 48 KiB of shared memory: no opt-in needed, none asked.
  EXPECT_EQ(state.funcAttr, -1);
  const int64_t B = 5;
  std::vector<float> q(B * n), G = {1, 1, 0, 0, -1, 1};
  for (int64_t e = 0; e < B; ++e)
    for (int64_t j = 0; j < n; ++j)
      q[e * n + j] = float(std::sin(double(3 * e + j))) * 2 - float(e) / 2;
  Buffer dq = upload(dev, q), dG = upload(dev, G);
  Buffer dz(dev, B * n * 4), dlam(dev, B * p * 4);
  LayerRunner run(k);
  run.forward(B, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()});
  EXPECT_EQ(state.launches, 1);
  EXPECT_EQ(state.grid, unsigned(B));
  EXPECT_EQ(state.block, unsigned(toyManifest().threads));
  EXPECT_EQ(state.shared, unsigned(toyManifest().sharedBytes));
  EXPECT_NO_THROW(run.requireSolved());
  std::vector<float> z(B * n), lam(B * p);
  dz.download(z.data(), z.size() * 4);
  dlam.download(lam.data(), lam.size() * 4);

  // The CPU solver on the same problems.
  std::vector<double> Q = {1, 0, 0, 0, 1, 0, 0, 0, 1}, h = {1, 1};
  std::vector<double> q64(q.begin(), q.end()), G64(G.begin(), G.end());
  QPProblem pb;
  pb.dtype = DType::F64;
  pb.Q = {Q.data(), {n, n}};
  pb.q = {q64.data(), {B, n}};
  pb.G = {G64.data(), {p, n}};
  pb.h = {h.data(), {p}};
  std::vector<double> zr(B * n), lr(B * p);
  std::vector<QPStatus> sr(B);
  QPSolver({1e-8, 100, 1}).forward(pb, {zr.data(), nullptr, lr.data(),
                                        sr.data()});
  int active = 0;
  for (int64_t i = 0; i < B * n; ++i)
    EXPECT_NEAR(z[i], zr[i], 1e-5) << "z[" << i << "]";
  for (int64_t i = 0; i < B * p; ++i) {
    EXPECT_NEAR(lam[i], lr[i], 1e-5) << "lam[" << i << "]";
    active += lr[i] > 1e-6;
  }
  EXPECT_GT(active, 0); // the constraints matter for some problems
  for (int32_t its : run.iterations())
    EXPECT_GT(its, 0);

  // Backward: a loss with gradients gz on z and glam on lam, to q (per
  // element) and G (summed over the batch), against the CPU solver's.
  std::vector<float> gz(B * n), glam(B * p);
  for (size_t k = 0; k < gz.size(); ++k)
    gz[k] = float(std::cos(double(k)));
  for (size_t k = 0; k < glam.size(); ++k)
    glam[k] = float(k % 3) - 1.f;
  Buffer dgz = upload(dev, gz), dglam = upload(dev, glam);
  Buffer ddq(dev, B * n * 4), ddG(dev, p * n * 4);
  run.backward({dgz.get(), dglam.get()}, {ddq.get()}, {ddG.get()});
  ASSERT_EQ(state.backwardLaunches.size(), 3u);
  EXPECT_EQ(state.backwardLaunches[0].f, kGrad);
  EXPECT_EQ(state.backwardLaunches[0].grid, unsigned(B));
  EXPECT_EQ(state.backwardLaunches[0].block, unsigned(toyManifest().threads));
  EXPECT_EQ(state.backwardLaunches[0].shared,
            unsigned(toyManifest().sharedBytes));
  EXPECT_EQ(state.backwardLaunches[1].f, kReduce);
  EXPECT_EQ(state.backwardLaunches[2].f, kVjp);
  std::vector<float> gq(B * n), gG(p * n);
  ddq.download(gq.data(), gq.size() * 4);
  ddG.download(gG.data(), gG.size() * 4);
  QPSolver cpu({1e-8, 100, 1});
  cpu.forward(pb, {zr.data(), nullptr, lr.data(), sr.data()});
  std::vector<double> gz64(gz.begin(), gz.end()),
      gl64(glam.begin(), glam.end());
  std::vector<double> dqr(B * n), dGr(p * n);
  cpu.backward(pb, {gz64.data(), nullptr, gl64.data(), nullptr, dqr.data(),
                    nullptr, nullptr, dGr.data(), nullptr});
  for (int64_t k = 0; k < B * n; ++k)
    EXPECT_NEAR(gq[k], dqr[k], 1e-4 * (1 + std::abs(dqr[k]))) << "dq " << k;
  for (int64_t k = 0; k < p * n; ++k)
    EXPECT_NEAR(gG[k], dGr[k], 1e-4 * (1 + std::abs(dGr[k]))) << "dG " << k;
  // Unwanted gradients (0) are fine.
  EXPECT_NO_THROW(run.backward({0, dglam.get()}, {0}, {0}));
}

TEST_F(CudaLayerFake, ErrorsNameTheFailingCallOrTheWrongArgument) {
  auto dev = Device::open(fakeDriver());
  LayerKernel k = loadLayer(dev, "cubin", writeLayerManifest(toyManifest()),
                            "toy.json");
  LayerRunner run(k);
  Buffer dq = upload(dev, std::vector<float>(n, 1.f)),
         dG = upload(dev, std::vector<float>(p * n, 1.f));
  Buffer dz(dev, n * 4), dlam(dev, p * 4);
  auto message = [&](auto &&fn) {
    try {
      fn();
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([&] { run.statuses(); }),
            "optim: CUDA: layer 'toy': no forward() has run");
  EXPECT_EQ(message([&] { run.backward({0, 0}, {0}, {0}); }),
            "optim: CUDA: layer 'toy': backward() before a forward()");
  state.failLaunch = 700;
  EXPECT_EQ(message([&] {
              run.forward(1, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()});
            }),
            "optim: CUDA: cuLaunchKernel failed: CUDA_ERROR_ILLEGAL_ADDRESS "
            "(an illegal memory access was encountered)");
  EXPECT_THROW(run.statuses(), Error); // that batch never ran
  state.failLaunch = CUDA_SUCCESS;
  EXPECT_EQ(message([&] { run.forward(1, {dq.get()}, {}, {dz.get()}); }),
            "optim: CUDA: layer 'toy': forward() takes 1 inputs, 1 weights "
            "and 2 outputs; got 1, 0 and 1");
  EXPECT_EQ(message([&] {
              run.forward(0, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()});
            }),
            "optim: CUDA: layer 'toy': the batch size must be in 1..2^31-1, "
            "got 0");
  EXPECT_EQ(message([&] {
              run.forward(1, {dq.get()}, {0}, {dz.get(), dlam.get()});
            }),
            "optim: CUDA: layer 'toy': weights 'G' is a null pointer");
  EXPECT_EQ(state.launches, 0);
  // A launch whose blocks never write their status.
  state.launchDoesNothing = true;
  run.forward(1, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()});
  EXPECT_EQ(message([&] { run.requireSolved(); }),
            "optim: CUDA: layer 'toy': problem 0 has no status (-1): the "
            "kernel did not finish it");
  EXPECT_EQ(message([&] { run.backward({0, 0}, {0}, {0}); }),
            "optim: CUDA: layer 'toy': problem 0 has no status (-1): the "
            "kernel did not finish it");
  EXPECT_TRUE(state.backwardLaunches.empty());
  state.launchDoesNothing = false;
  run.forward(1, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()});
  EXPECT_EQ(message([&] { run.backward({0}, {0}, {0}); }),
            "optim: CUDA: layer 'toy': backward() takes 2 output gradients, 1 "
            "input gradients and 1 weights gradients; got 1, 1 and 1");
}

TEST_F(CudaLayerFake, AnOutputOfNoElementsMayBeNull) {
  auto dev = Device::open(fakeDriver());
  LayerManifest m = toyManifest();
  m.info.outputs = {{"z", {n}}, {"nu", {0}}, {"lam", {p}}};
  m.info.outputKinds = {0, 1, 2};
  LayerKernel k = loadLayer(dev, "cubin", writeLayerManifest(m), "toy.json");
  std::vector<float> q(n, 0.5f), G = {1, 1, 0, 0, -1, 1};
  Buffer dq = upload(dev, q), dG = upload(dev, G);
  Buffer dz(dev, n * 4), dlam(dev, p * 4);
  LayerRunner run(k);
  // nu has no elements (no equalities): null is fine, as std::vector's
  // data() of an empty vector; z is not.
  EXPECT_NO_THROW(run.forward(1, {dq.get()}, {dG.get()},
                              {dz.get(), 0, dlam.get()}));
  EXPECT_EQ(state.launches, 1);
  try {
    run.forward(1, {dq.get()}, {dG.get()}, {0, 0, dlam.get()});
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(),
                 "optim: CUDA: layer 'toy': output 'z' is a null pointer");
  }
}

TEST_F(CudaLayerFake, ThePTXStandsInForACubinTheDriverRefuses) {
  auto dev = Device::open(fakeDriver());
  std::string json = writeLayerManifest(toyManifest());
  const std::string ptx = "//\n.target sm_90\n.entry optim_layer_toy_qp(\n";
  LayerKernel k = loadLayer(dev, "cubin", json, "m", ptx);
  EXPECT_EQ(k.source, CodeSource::Cubin);
  EXPECT_EQ(state.loaded, "cubin");
  k = loadLayer(dev, "refused cubin", json, "m", ptx);
  EXPECT_EQ(k.source, CodeSource::PTX);
  EXPECT_EQ(state.loaded, ptx);
  EXPECT_EQ(state.requested.back(), "optim_layer_toy_qp_vjp");
  EXPECT_THROW(loadLayer(dev, "refused cubin", json, "m"), Error);
}

TEST_F(CudaLayerFake, LargeSharedMemoryIsOptedInOrRefused) {
  auto dev = Device::open(fakeDriver());
  // 80 KiB: the kernel attribute is raised to it.
  loadLayer(dev, "cubin", writeLayerManifest(toyManifest(80 * 1024)), "m");
  EXPECT_EQ(state.funcAttr, kFuncAttrMaxDynamicSharedBytes);
  EXPECT_EQ(state.funcAttrValue, 80 * 1024);
  // A device that grants less (sm_86: 99 KiB).
  state.optin = 99 * 1024;
  try {
    loadLayer(dev, "cubin", writeLayerManifest(toyManifest(120 * 1024)), "m");
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "optim: 'm': the kernel needs 122880 bytes of "
                           "shared memory per block, the device (Fake GPU) "
                           "grants at most 101376");
  }
}

TEST_F(CudaLayerFake, ManifestsAreCheckedAndRoundTrip) {
  LayerManifest m = toyManifest();
  LayerManifest back = readLayerManifest(writeLayerManifest(m), "x");
  EXPECT_EQ(back.info.name, "toy");
  EXPECT_EQ(back.info.outputKinds, m.info.outputKinds);
  EXPECT_EQ(back.threads, m.threads);
  EXPECT_EQ(back.sharedBytes, m.sharedBytes);
  EXPECT_EQ(back.workDoubles, m.workDoubles);
  EXPECT_TRUE(back.info.batched[1]);
  EXPECT_FALSE(back.info.batched[4]);
  auto dev = Device::open(fakeDriver());
  auto refused = [&](const std::string &json) {
    try {
      loadLayer(dev, "cubin", json, "bad.json");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refused(R"({"format": "optim-mlir rule manifest"})"),
            "optim: layer manifest 'bad.json': a rule's manifest, not a "
            "layer's (load it with loadRule)");
  LayerManifest other = toyManifest();
  other.target = "nvptx64-nvidia-cuda sm_80";
  EXPECT_EQ(refused(writeLayerManifest(other)),
            "optim: 'bad.json' was compiled for sm_80, the device (Fake GPU) "
            "is sm_90 and its PTX is not at hand (optimc --emit=cubin writes "
            "it next to the cubin); recompile with --gpu-arch=sm_90");
  LayerManifest threads = toyManifest();
  threads.threads = 100;
  EXPECT_NE(refused(writeLayerManifest(threads)).find("bad launch"),
            std::string::npos);
  LayerManifest symbol = toyManifest();
  symbol.symbol = "optim_layer_other_qp";
  EXPECT_NE(refused(writeLayerManifest(symbol)).find("does not name layer"),
            std::string::npos);
}

TEST_F(CudaLayerFake, ACubinThatIsNotTheManifestsIsRefused) {
  // As for rules (CudaExecutorTest): from files, the manifest must record
  // the cubin's SHA-256, and a cubin replaced after compiling is refused.
  const std::string dir = ::testing::TempDir() + "optim-layer-hash-" +
                          std::to_string(::getpid());
  ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
  auto write = [&](const std::string &name, const std::string &text) {
    FILE *f = std::fopen((dir + "/" + name).c_str(), "wb");
    ASSERT_TRUE(f);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  };
  const std::string cubin = dir + "/toy.cubin",
                    json = dir + "/toy.manifest.json";
  auto dev = Device::open(fakeDriver());
  LayerManifest m = toyManifest();
  m.artifactSha256 = detail::sha256Hex("cubin");
  write("toy.cubin", "cubin");
  write("toy.manifest.json", writeLayerManifest(m));
  EXPECT_EQ(loadLayer(dev, cubin).source, CodeSource::Cubin);
  write("toy.cubin", "another cubin");
  try {
    loadLayer(dev, cubin);
    ADD_FAILURE() << "loaded a cubin that is not the manifest's";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "optim: the cubin does not match its manifest '" + json +
                  "' (SHA-256 " + detail::sha256Hex("another cubin") +
                  ", the manifest records " + detail::sha256Hex("cubin") +
                  "): one of them was replaced after compiling; recompile "
                  "it with optimc");
  }
  write("toy.manifest.json", writeLayerManifest(toyManifest()));
  try {
    loadLayer(dev, cubin);
    ADD_FAILURE() << "loaded through a manifest without the cubin's hash";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("records no SHA-256"),
              std::string::npos)
        << e.what();
  }
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST_F(CudaLayerFake, DeviceMemoryIsFreedExactlyOnce) {
  {
    auto dev = Device::open(fakeDriver());
    LayerKernel k = loadLayer(dev, "cubin", writeLayerManifest(toyManifest()),
                              "toy.json");
    LayerRunner run(k);
    Buffer dq = upload(dev, std::vector<float>(4 * n, 1.f)),
           dG = upload(dev, std::vector<float>(p * n, 1.f));
    Buffer dz(dev, 4 * n * 4), dlam(dev, 4 * p * 4);
    run.forward(2, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()});
    run.forward(4, {dq.get()}, {dG.get()}, {dz.get(), dlam.get()}); // grows
    EXPECT_NO_THROW(run.requireSolved());
  }
  EXPECT_TRUE(state.live.empty());
}
