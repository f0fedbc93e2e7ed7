//===- Layer.cpp - a compiled QP layer around the batched solver ----------===//

#include "optim/Layer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
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

/// A caller's buffer: where, how many bytes, and its name for messages.
struct Span {
  const void *data;
  size_t bytes;
  std::string what;
};

/// Throws when a buffer of `written` overlaps one of `read` or another of
/// `written`: forward() writes its outputs and backward() its gradients
/// while the inputs and weights are (or will be) read.
void checkDisjoint(const std::vector<Span> &written,
                   const std::vector<Span> &read, const std::string &who) {
  auto overlap = [](const Span &a, const Span &b) {
    auto x = reinterpret_cast<uintptr_t>(a.data);
    auto y = reinterpret_cast<uintptr_t>(b.data);
    return a.data && b.data && a.bytes && b.bytes && x < y + b.bytes &&
           y < x + a.bytes;
  };
  for (size_t i = 0; i < written.size(); ++i) {
    for (const Span &r : read)
      if (overlap(written[i], r))
        throw Error(who + written[i].what + " overlaps " + r.what +
                    " in memory");
    for (size_t j = 0; j < i; ++j)
      if (overlap(written[i], written[j]))
        throw Error(who + written[i].what + " overlaps " + written[j].what +
                    " in memory");
  }
}

} // namespace

struct Layer::Impl {
  LayerInfo info;
  optim_layer_data_fn data = nullptr;
  optim_layer_vjp_fn vjp = nullptr;
  std::shared_ptr<void> owner;
  unsigned threads = 0;

  /// What a forward() computes and backward() uses.
  struct Pass {
    QPSolver solver;
    std::vector<unsigned char> operand[6], z, nu, lam;
  };
  /// The last forward(), and where the next one is computed: it is swapped
  /// in only when it succeeds, so a forward() that fails leaves the last
  /// one, and its backward(), as they were. Both keep their memory.
  Pass last, next;
  int64_t batch = 0;
  /// Why backward() cannot run, for its message; null when it can (the last
  /// forward()'s problems were all solved).
  const char *notSolved = "backward() needs a forward() first";
  std::vector<const void *> inputs, weights;
  QPProblem problem;

  void setSolvers(unsigned solverThreads) {
    QPOptions o;
    o.tol = info.tol;
    o.maxIter = info.maxIter;
    o.threads = solverThreads;
    QPSolver a(o), b(o); // Throws, changing nothing, on a bad count.
    last.solver = std::move(a);
    next.solver = std::move(b);
    threads = solverThreads;
  }

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
  impl->setSolvers(0);
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
  impl->setSolvers(threads);
  // The last forward's solver is gone.
  impl->notSolved = "setThreads() dropped the last forward(); run forward() "
                    "again before backward()";
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
  // The buffers' byte counts below must not overflow.
  int64_t perElement = std::max({L.n * L.n, L.m * L.n, L.p * L.n, int64_t(1)});
  for (const std::vector<LayerTensor> *ts : {&L.inputs, &L.outputs})
    for (const LayerTensor &t : *ts)
      perElement = std::max(perElement, elements(t.shape));
  if (batch > int64_t(PTRDIFF_MAX / I.eltSize()) / perElement)
    throw Error(who + "the batch size " + std::to_string(batch) +
                " is too large for the address space");
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
  // An output of size 0 (nu without equalities, lam without inequalities)
  // may be null: that is what an empty std::vector's data() gives.
  for (size_t i = 0; i < outputs.size(); ++i)
    if (!outputs[i] && elements(L.outputs[i].shape) > 0)
      throw Error(who + "output '" + L.outputs[i].name + "' is null");
  // backward() reads the inputs and weights again: no output may be in them.
  std::vector<Span> read, written;
  for (size_t i = 0; i < inputs.size(); ++i)
    read.push_back(
        {inputs[i], size_t(batch * elements(L.inputs[i].shape)) * I.eltSize(),
         "input '" + L.inputs[i].name + "'"});
  for (size_t i = 0; i < weights.size(); ++i)
    read.push_back(
        {weights[i], size_t(elements(L.weights[i].shape)) * I.eltSize(),
         "weights '" + L.weights[i].name + "'"});
  for (size_t i = 0; i < outputs.size(); ++i)
    written.push_back(
        {outputs[i], size_t(batch * elements(L.outputs[i].shape)) * I.eltSize(),
         "output '" + L.outputs[i].name + "'"});
  checkDisjoint(written, read, who);

  // The QP's data, from the compiled data function.
  Impl::Pass &P = I.next;
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
      P.operand[k].clear();
      continue;
    }
    int64_t count = I.operandSize(k) * (L.batched[k] ? batch : 1);
    P.operand[k].assign(size_t(count) * es, 0);
    data.push_back(P.operand[k].data());
    ops[k]->data = P.operand[k].data();
    ops[k]->shape = shapes[k];
    if (L.batched[k])
      ops[k]->shape.insert(ops[k]->shape.begin(), batch);
  }
  I.data(inputs.data(), weights.data(), batch, data.data());

  P.z.assign(size_t(batch * L.n) * es, 0);
  P.nu.assign(size_t(batch * L.m) * es, 0);
  P.lam.assign(size_t(batch * L.p) * es, 0);
  std::vector<QPStatus> st(batch);
  try {
    P.solver.forward(
        pb, {P.z.data(), P.nu.data(), P.lam.data(), st.data(), nullptr});
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
  const std::vector<unsigned char> *results[3] = {&P.z, &P.nu, &P.lam};
  for (size_t o = 0; o < outputs.size(); ++o) {
    const auto &src = *results[L.outputKinds[o]];
    if (!src.empty())
      std::copy(src.begin(), src.end(),
                static_cast<unsigned char *>(outputs[o]));
  }
  // What can throw (copies) before the swap, which cannot: a failure
  // leaves the last forward whole. Swapping keeps every buffer where it
  // is: pb's pointers stay valid.
  std::vector<const void *> keptInputs(inputs), keptWeights(weights);
  QPProblem keptProblem = pb;
  std::swap(I.last, I.next);
  I.batch = batch;
  I.inputs.swap(keptInputs);
  I.weights.swap(keptWeights);
  I.problem = std::move(keptProblem);
  const bool solved = std::all_of(
      st.begin(), st.end(), [](QPStatus s) { return s == QPStatus::Solved; });
  I.notSolved = solved ? nullptr
                       : "backward() needs a forward() whose problems were "
                         "all solved (see the statuses of the last one)";
}

void Layer::backward(const std::vector<const void *> &doutputs,
                     const std::vector<void *> &dinputs,
                     const std::vector<void *> &dweights) {
  if (!impl)
    throw Error("optim::Layer: empty layer");
  Impl &I = *impl;
  const LayerInfo &L = I.info;
  const std::string who = "layer '" + L.name + "': ";
  if (I.notSolved)
    throw Error(who + I.notSolved);
  if (doutputs.size() != L.outputs.size() ||
      dinputs.size() != L.inputs.size() || dweights.size() != L.weights.size())
    throw Error(who + "backward() takes " + std::to_string(L.outputs.size()) +
                " output gradients, " + std::to_string(L.inputs.size()) +
                " input gradients and " + std::to_string(L.weights.size()) +
                " weight gradients");
  const size_t es = I.eltSize();
  const int64_t B = I.batch;
  // The vjp reads the inputs and weights while it writes the gradients.
  std::vector<Span> read, written;
  for (size_t i = 0; i < L.inputs.size(); ++i) {
    size_t bytes = size_t(B * elements(L.inputs[i].shape)) * es;
    read.push_back({I.inputs[i], bytes, "input '" + L.inputs[i].name + "'"});
    written.push_back({dinputs[i], bytes,
                       "the gradient of input '" + L.inputs[i].name + "'"});
  }
  for (size_t i = 0; i < L.weights.size(); ++i) {
    size_t bytes = size_t(elements(L.weights[i].shape)) * es;
    read.push_back(
        {I.weights[i], bytes, "weights '" + L.weights[i].name + "'"});
    written.push_back({dweights[i], bytes,
                       "the gradient of weights '" + L.weights[i].name + "'"});
  }
  checkDisjoint(written, read, who);
  // In the layer's names (the solver's own check names dz, dnu, dlam).
  for (size_t o = 0; o < doutputs.size(); ++o) {
    if (!doutputs[o])
      continue;
    const int64_t per = elements(L.outputs[o].shape);
    const std::string what =
        "the gradient of output '" + L.outputs[o].name + "'";
    if (L.dtype == DType::F64)
      checkFinite<double>(doutputs[o], per * B, per, what, true, L.name);
    else
      checkFinite<float>(doutputs[o], per * B, per, what, true, L.name);
  }
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
  I.last.solver.backward(I.problem, g);
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
