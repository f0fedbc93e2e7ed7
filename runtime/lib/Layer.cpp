//===- Layer.cpp - a compiled QP layer around the batched solver ----------===//

#include "optim/Layer.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace optim {

namespace {

int64_t elements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

template <class T>
void checkFinite(const void *data, int64_t count, int64_t perElement,
                 const std::string &what, bool batched,
                 const std::string &layer) {
  const T *x = static_cast<const T *>(data);
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(x[i])) {
      std::ostringstream os;
      os << "layer '" << layer << "': " << what << " has a non-finite value ("
         << x[i] << ") at ";
      if (batched)
        os << "batch element " << i / perElement << ", ";
      os << "flat index " << i % perElement;
      throw Error(os.str());
    }
}

} // namespace

struct Layer::Impl {
  LayerInfo info;
  optim_layer_data_fn data = nullptr;
  optim_layer_vjp_fn vjp = nullptr;
  std::shared_ptr<void> owner;
  QPSolver solver;
  unsigned threads = 0;

  // The last forward().
  int64_t batch = 0;
  bool solved = false;
  std::vector<const void *> inputs, weights;
  std::vector<unsigned char> operand[6], z, nu, lam;
  QPProblem problem;

  size_t eltSize() const { return dtypeSize(info.dtype); }
  /// Elements of qp operand k for one batch element.
  int64_t operandSize(int k) const {
    const int64_t n = info.n, m = info.m, p = info.p;
    const int64_t sizes[6] = {n * n, n, m * n, m, p * n, p};
    return sizes[k];
  }
  bool present(int k) const {
    if (k == 0)
      return info.hasQ;
    if (k == 2 || k == 3)
      return info.m > 0;
    if (k == 4 || k == 5)
      return info.p > 0;
    return true;
  }
};

Layer::Layer() = default;
Layer::Layer(LayerInfo info, optim_layer_data_fn data, optim_layer_vjp_fn vjp,
             std::shared_ptr<void> owner)
    : impl(std::make_unique<Impl>()) {
  impl->info = std::move(info);
  impl->data = data;
  impl->vjp = vjp;
  impl->owner = std::move(owner);
  QPOptions o;
  o.tol = impl->info.tol;
  o.maxIter = impl->info.maxIter;
  impl->solver = QPSolver(o);
}
Layer::~Layer() = default;
Layer::Layer(Layer &&) noexcept = default;
Layer &Layer::operator=(Layer &&) noexcept = default;

Layer::operator bool() const { return impl && impl->data; }

const LayerInfo &Layer::info() const {
  if (!impl)
    throw Error("optim::Layer: empty layer");
  return impl->info;
}

void Layer::setThreads(unsigned threads) {
  if (!impl)
    throw Error("optim::Layer: empty layer");
  impl->threads = threads;
  QPOptions o;
  o.tol = impl->info.tol;
  o.maxIter = impl->info.maxIter;
  o.threads = threads;
  impl->solver = QPSolver(o);
  impl->solved = false;
}

void Layer::forward(int64_t batch, const std::vector<const void *> &inputs,
                    const std::vector<const void *> &weights,
                    const std::vector<void *> &outputs, QPStatus *status) {
  if (!impl)
    throw Error("optim::Layer: empty layer");
  Impl &I = *impl;
  const LayerInfo &L = I.info;
  const std::string who = "layer '" + L.name + "': ";
  if (batch <= 0)
    throw Error(who + "the batch size must be positive, got " +
                std::to_string(batch));
  if (inputs.size() != L.inputs.size() || weights.size() != L.weights.size() ||
      outputs.size() != L.outputs.size())
    throw Error(who + "forward() takes " + std::to_string(L.inputs.size()) +
                " inputs, " + std::to_string(L.weights.size()) +
                " weights and " + std::to_string(L.outputs.size()) +
                " outputs; got " + std::to_string(inputs.size()) + ", " +
                std::to_string(weights.size()) + " and " +
                std::to_string(outputs.size()));
  auto check = [&](const void *ptr, const LayerTensor &t, const char *kind,
                   bool batched) {
    if (!ptr)
      throw Error(who + kind + " '" + t.name + "' is null");
    int64_t per = elements(t.shape);
    int64_t count = per * (batched ? batch : 1);
    std::string what = std::string(kind) + " '" + t.name + "'";
    if (L.dtype == DType::F64)
      checkFinite<double>(ptr, count, per, what, batched, L.name);
    else
      checkFinite<float>(ptr, count, per, what, batched, L.name);
  };
  for (size_t i = 0; i < inputs.size(); ++i)
    check(inputs[i], L.inputs[i], "input", true);
  for (size_t i = 0; i < weights.size(); ++i)
    check(weights[i], L.weights[i], "weights", false);
  for (size_t i = 0; i < outputs.size(); ++i)
    if (!outputs[i])
      throw Error(who + "output '" + L.outputs[i].name + "' is null");

  // The QP's data, from the compiled data function.
  I.solved = false;
  const size_t es = I.eltSize();
  std::vector<void *> data;
  QPProblem pb;
  pb.dtype = L.dtype;
  pb.batch = batch;
  QPOperand *ops[6] = {&pb.Q, &pb.q, &pb.A, &pb.b, &pb.G, &pb.h};
  const std::vector<int64_t> shapes[6] = {{L.n, L.n}, {L.n},      {L.m, L.n},
                                          {L.m},      {L.p, L.n}, {L.p}};
  for (int k = 0; k < 6; ++k) {
    if (!I.present(k)) {
      I.operand[k].clear();
      continue;
    }
    int64_t count = I.operandSize(k) * (L.batched[k] ? batch : 1);
    I.operand[k].assign(size_t(count) * es, 0);
    data.push_back(I.operand[k].data());
    ops[k]->data = I.operand[k].data();
    ops[k]->shape = shapes[k];
    if (L.batched[k])
      ops[k]->shape.insert(ops[k]->shape.begin(), batch);
  }
  I.data(inputs.data(), weights.data(), batch, data.data());

  I.z.assign(size_t(batch * L.n) * es, 0);
  I.nu.assign(size_t(batch * L.m) * es, 0);
  I.lam.assign(size_t(batch * L.p) * es, 0);
  std::vector<QPStatus> st(batch);
  try {
    I.solver.forward(
        pb, {I.z.data(), I.nu.data(), I.lam.data(), st.data(), nullptr});
  } catch (const Error &e) {
    // Non-finite data from finite inputs (exp overflowed, say).
    throw Error(who + "the QP data it computed is invalid: " + e.what());
  }
  if (status)
    std::copy(st.begin(), st.end(), status);
  else
    try {
      QPSolver::requireSolved(st.data(), batch);
    } catch (const Error &e) {
      throw Error(who + e.what());
    }
  const std::vector<unsigned char> *results[3] = {&I.z, &I.nu, &I.lam};
  for (size_t o = 0; o < outputs.size(); ++o) {
    const auto &src = *results[L.outputKinds[o]];
    std::copy(src.begin(), src.end(), static_cast<unsigned char *>(outputs[o]));
  }
  I.batch = batch;
  I.inputs = inputs;
  I.weights = weights;
  I.problem = pb;
  I.solved = std::all_of(st.begin(), st.end(),
                         [](QPStatus s) { return s == QPStatus::Solved; });
}

void Layer::backward(const std::vector<const void *> &doutputs,
                     const std::vector<void *> &dinputs,
                     const std::vector<void *> &dweights) {
  if (!impl)
    throw Error("optim::Layer: empty layer");
  Impl &I = *impl;
  const LayerInfo &L = I.info;
  const std::string who = "layer '" + L.name + "': ";
  if (!I.solved)
    throw Error(who + "backward() needs a forward() whose problems were all "
                      "solved");
  if (doutputs.size() != L.outputs.size() ||
      dinputs.size() != L.inputs.size() || dweights.size() != L.weights.size())
    throw Error(who + "backward() takes " + std::to_string(L.outputs.size()) +
                " output gradients, " + std::to_string(L.inputs.size()) +
                " input gradients and " + std::to_string(L.weights.size()) +
                " weight gradients");
  const size_t es = I.eltSize();
  const int64_t B = I.batch;
  QPGradientBuffers g;
  const void **in[3] = {&g.dz, &g.dnu, &g.dlam};
  for (size_t o = 0; o < doutputs.size(); ++o)
    *in[L.outputKinds[o]] = doutputs[o];
  std::vector<unsigned char> dop[6];
  void **out[6] = {&g.dQ, &g.dq, &g.dA, &g.db, &g.dG, &g.dh};
  std::vector<const void *> ddata;
  for (int k = 0; k < 6; ++k) {
    if (!I.present(k))
      continue;
    dop[k].assign(size_t(I.operandSize(k) * (L.batched[k] ? B : 1)) * es, 0);
    *out[k] = dop[k].data();
    ddata.push_back(dop[k].data());
  }
  I.solver.backward(I.problem, g);
  // The vjp writes every gradient: scratch for the unwanted ones.
  std::vector<std::vector<unsigned char>> scratch;
  std::vector<void *> di(dinputs), dw(dweights);
  for (size_t i = 0; i < di.size(); ++i)
    if (!di[i]) {
      scratch.emplace_back(size_t(elements(L.inputs[i].shape) * B) * es);
      di[i] = scratch.back().data();
    }
  for (size_t i = 0; i < dw.size(); ++i)
    if (!dw[i]) {
      scratch.emplace_back(size_t(elements(L.weights[i].shape)) * es);
      dw[i] = scratch.back().data();
    }
  I.vjp(I.inputs.data(), I.weights.data(), B, ddata.data(), di.data(),
        dw.data());
}

} // namespace optim
