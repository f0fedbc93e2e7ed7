//===- MnistMLP.cpp - an MLP classifying MNIST-format images --------------===//
//
// Andrychowicz et al. (2016), section 3.2: hidden layers of sigmoid (or relu)
// units, a 10-way softmax, mean cross-entropy over a minibatch of 128 drawn
// with replacement; weights N(0, 0.01²) and biases 0 as in DeepMind's code.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include "optim/Tasks/IDX.h"

#include <algorithm>
#include <cmath>

namespace optim::tasks {
namespace {

constexpr int kClasses = 10;

/// Forward and backward passes over a few rows, generic in the scalar so that
/// the double instance can check the float one by finite differences. The
/// workspace is sized once: a step allocates nothing.
template <typename T> class Network {
public:
  Network(std::vector<int64_t> sizes, bool relu, int64_t maxRows)
      : sizes(std::move(sizes)), relu(relu), maxRows(maxRows) {
    for (int64_t n : this->sizes) {
      acts.emplace_back(size_t(maxRows * n));
      deltas.emplace_back(size_t(maxRows * n));
      nonzeros.emplace_back(size_t(maxRows * n));
      nonzeroCounts.emplace_back(size_t(maxRows));
    }
  }

  int numLayers() const { return int(sizes.size()) - 1; }

  /// The mean cross-entropy of images `indices[0..rows)` and, with `grads`,
  /// its gradient (grads already shaped like params).
  double run(const std::vector<std::vector<T>> &params, const ImageSet &data,
             const int64_t *indices, int64_t rows,
             std::vector<std::vector<T>> *grads) {
    const int64_t inputs = sizes[0];
    const T scale = T(1) / T(255);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t *px = data.image(indices[r]);
      T *in = &acts[0][size_t(r * inputs)];
      for (int64_t k = 0; k < inputs; ++k)
        in[k] = T(px[k]) * scale;
    }

    for (int l = 0; l < numLayers(); ++l)
      forwardLayer(l, params[2 * l].data(), params[2 * l + 1].data(), rows,
                   /*activate=*/l + 1 < numLayers());

    double loss = softmaxCrossEntropy(data, indices, rows, grads != nullptr);
    if (grads)
      for (int l = numLayers() - 1; l >= 0; --l)
        backwardLayer(l, params[2 * l].data(), (*grads)[2 * l].data(),
                      (*grads)[2 * l + 1].data(), rows);
    return loss;
  }

private:
  void forwardLayer(int l, const T *W, const T *b, int64_t rows,
                    bool activate) {
    const int64_t ni = sizes[l], no = sizes[l + 1];
    for (int64_t r = 0; r < rows; ++r) {
      const T *in = &acts[l][size_t(r * ni)];
      T *out = &acts[l + 1][size_t(r * no)];
      std::copy(b, b + no, out);
      // Most pixels (and relu outputs) are 0: only the rows of W of the
      // others are read, contiguously. The list, built without branches
      // (which would mispredict), serves the backward pass too.
      int32_t *nz = &nonzeros[l][size_t(r * ni)];
      int32_t count = 0;
      for (int64_t i = 0; i < ni; ++i) {
        nz[count] = int32_t(i);
        count += in[i] != T(0);
      }
      nonzeroCounts[l][size_t(r)] = count;
      for (int32_t c = 0; c < count; ++c) {
        T a = in[nz[c]];
        const T *w = W + int64_t(nz[c]) * no;
        for (int64_t j = 0; j < no; ++j)
          out[j] += a * w[j];
      }
      if (!activate)
        continue;
      for (int64_t j = 0; j < no; ++j)
        out[j] =
            relu ? std::max(out[j], T(0)) : T(1) / (T(1) + std::exp(-out[j]));
    }
  }

  /// Leaves d loss / d logits in the last deltas.
  double softmaxCrossEntropy(const ImageSet &data, const int64_t *indices,
                             int64_t rows, bool wantDelta) {
    const int L = numLayers();
    double total = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const T *z = &acts[L][size_t(r * kClasses)];
      int label = data.labels[size_t(indices[r])];
      T zmax = *std::max_element(z, z + kClasses);
      T sum = 0;
      for (int j = 0; j < kClasses; ++j)
        sum += std::exp(z[j] - zmax);
      T logSum = zmax + std::log(sum);
      total += double(logSum - z[label]);
      if (!wantDelta)
        continue;
      T *d = &deltas[L][size_t(r * kClasses)];
      for (int j = 0; j < kClasses; ++j)
        d[j] = (std::exp(z[j] - logSum) - T(j == label)) / T(rows);
    }
    return total / double(rows);
  }

  void backwardLayer(int l, const T *W, T *gW, T *gb, int64_t rows) {
    const int64_t ni = sizes[l], no = sizes[l + 1];
    std::fill(gW, gW + ni * no, T(0));
    std::fill(gb, gb + no, T(0));
    for (int64_t r = 0; r < rows; ++r) {
      const T *in = &acts[l][size_t(r * ni)];
      const T *dOut = &deltas[l + 1][size_t(r * no)];
      for (int64_t j = 0; j < no; ++j)
        gb[j] += dOut[j];
      const int32_t *nz = &nonzeros[l][size_t(r * ni)];
      for (int32_t c = 0, n = nonzeroCounts[l][size_t(r)]; c < n; ++c) {
        T a = in[nz[c]];
        T *g = gW + int64_t(nz[c]) * no;
        for (int64_t j = 0; j < no; ++j)
          g[j] += a * dOut[j];
      }
      // The input layer needs no delta.
      if (l == 0)
        continue;
      T *dIn = &deltas[l][size_t(r * ni)];
      for (int64_t i = 0; i < ni; ++i) {
        const T *w = W + i * no;
        T s = 0;
        for (int64_t j = 0; j < no; ++j)
          s += w[j] * dOut[j];
        // Through the activation, from its output a: relu' = [a > 0],
        // sigmoid' = a(1 - a).
        T a = in[i];
        dIn[i] = relu ? (a > T(0) ? s : T(0)) : s * a * (T(1) - a);
      }
    }
  }

  std::vector<int64_t> sizes;
  bool relu;
  int64_t maxRows;
  /// acts[0]: the pixels; acts[l]: the activations of layer l; the last:
  /// the logits. deltas[l]: d loss / d pre-activation of layer l.
  std::vector<std::vector<T>> acts, deltas;
  /// Per row, the indices of the nonzero inputs of layer l, and how many.
  std::vector<std::vector<int32_t>> nonzeros, nonzeroCounts;
};

class MnistMLP final : public Task {
public:
  MnistMLP(std::string taskName, std::shared_ptr<const ImageSet> data,
           uint64_t seed, const TaskOptions &options)
      : taskName(std::move(taskName)), data(std::move(data)), opts(options),
        relu(options.activation == "relu"), batchRng(deriveSeed(seed, 1)),
        batch(size_t(options.batchSize)), net(layerSizes(), relu, chunkRows()) {
    NormalRng init(deriveSeed(seed, 0));
    std::vector<int64_t> sizes = layerSizes();
    for (size_t l = 0; l + 1 < sizes.size(); ++l) {
      std::vector<float> W(size_t(sizes[l] * sizes[l + 1]));
      for (float &w : W)
        w = float(0.01 * init.normal());
      params.push_back(std::move(W));
      params.emplace_back(size_t(sizes[l + 1]), 0.0f);
    }
  }

  const std::string &name() const override { return taskName; }
  std::vector<std::vector<float>> &parameters() override { return params; }
  std::vector<std::vector<int64_t>> shapes() const override {
    std::vector<int64_t> sizes = layerSizes();
    std::vector<std::vector<int64_t>> out;
    for (size_t l = 0; l + 1 < sizes.size(); ++l) {
      out.push_back({sizes[l], sizes[l + 1]}); // W, row-major [in][out]
      out.push_back({sizes[l + 1]});           // b
    }
    return out;
  }

  double step(std::vector<std::vector<float>> &grads) override {
    for (int64_t &i : batch)
      i = opts.trainFirst + batchRng.below(opts.trainCount);
    haveBatch = true;
    grads.resize(params.size());
    for (size_t k = 0; k < params.size(); ++k)
      grads[k].resize(params[k].size());
    return net.run(params, *data, batch.data(), int64_t(batch.size()), &grads);
  }

  double evaluate() override {
    std::vector<int64_t> &idx = evalIndices;
    idx.resize(size_t(chunkRows()));
    double total = 0.0;
    for (int64_t first = 0; first < opts.evalCount; first += chunkRows()) {
      int64_t rows = std::min(chunkRows(), opts.evalCount - first);
      for (int64_t r = 0; r < rows; ++r)
        idx[size_t(r)] = opts.evalFirst + first + r;
      total += net.run(params, *data, idx.data(), rows, nullptr) * rows;
    }
    return total / double(opts.evalCount);
  }

  double lossAndGradient(const std::vector<std::vector<double>> &p,
                         std::vector<std::vector<double>> *grads) override {
    if (!haveBatch)
      throw Error(taskName + ": lossAndGradient needs a minibatch: call "
                             "step() first");
    if (p.size() != params.size())
      throw Error(taskName + ": expected " + std::to_string(params.size()) +
                  " parameter tensors, got " + std::to_string(p.size()));
    for (size_t k = 0; k < p.size(); ++k)
      if (p[k].size() != params[k].size())
        throw Error(taskName + ": parameter " + std::to_string(k) + " has " +
                    std::to_string(p[k].size()) + " elements, expected " +
                    std::to_string(params[k].size()));
    if (!checkNet)
      checkNet =
          std::make_unique<Network<double>>(layerSizes(), relu, chunkRows());
    if (grads) {
      grads->resize(p.size());
      for (size_t k = 0; k < p.size(); ++k)
        (*grads)[k].resize(p[k].size());
    }
    return checkNet->run(p, *data, batch.data(), int64_t(batch.size()), grads);
  }

private:
  std::vector<int64_t> layerSizes() const {
    std::vector<int64_t> sizes{data->pixelsPerImage()};
    for (int l = 0; l < opts.hiddenLayers; ++l)
      sizes.push_back(opts.hiddenUnits);
    sizes.push_back(kClasses);
    return sizes;
  }
  /// The rows of a workspace: a minibatch, or a chunk of the evaluation.
  int64_t chunkRows() const { return std::max<int64_t>(opts.batchSize, 256); }

  std::string taskName;
  std::shared_ptr<const ImageSet> data;
  TaskOptions opts;
  bool relu;
  NormalRng batchRng;
  std::vector<int64_t> batch, evalIndices;
  bool haveBatch = false;
  Network<float> net;
  std::unique_ptr<Network<double>> checkNet;
  std::vector<std::vector<float>> params;
};

void checkRange(const ImageSet &set, const char *what, int64_t first,
                int64_t count) {
  if (first < 0 || count < 1 || first > set.count - count)
    throw Error(std::string("the ") + what + " range [" +
                std::to_string(first) + ", " + std::to_string(first) + "+" +
                std::to_string(count) + ") does not fit the " +
                std::to_string(set.count) + " images of " + set.imagesPath);
}

} // namespace

std::unique_ptr<Task> makeMnistMLP(const std::string &name,
                                   const std::string &dataDir,
                                   const std::vector<std::string> &splits,
                                   uint64_t seed, const TaskOptions &options) {
  if (options.activation != "sigmoid" && options.activation != "relu")
    throw Error(name + ": unknown activation '" + options.activation +
                "' (sigmoid or relu)");
  if (options.hiddenLayers < 0 ||
      (options.hiddenLayers > 0 && options.hiddenUnits < 1))
    throw Error(name +
                ": the MLP needs hiddenLayers >= 0 and hiddenUnits "
                ">= 1, got " +
                std::to_string(options.hiddenLayers) + " and " +
                std::to_string(options.hiddenUnits));
  if (options.batchSize < 1)
    throw Error(name + ": batchSize must be at least 1, got " +
                std::to_string(options.batchSize));
  // Sizes past these ran out of memory in the JIT or the allocator (an
  // abort, not an error): a batch of 1e8 images, 1e8 hidden units.
  if (options.hiddenUnits > kMaxHiddenUnits ||
      options.hiddenLayers > kMaxHiddenLayers ||
      options.batchSize > kMaxBatchSize)
    throw Error(name + ": at most " + std::to_string(kMaxHiddenUnits) +
                " hidden units, " + std::to_string(kMaxHiddenLayers) +
                " hidden layers and a batch of " +
                std::to_string(kMaxBatchSize) + ", got " +
                std::to_string(options.hiddenUnits) + ", " +
                std::to_string(options.hiddenLayers) + " and " +
                std::to_string(options.batchSize));
  {
    const int64_t h = options.hiddenLayers ? options.hiddenUnits : 0;
    const int64_t layers = options.hiddenLayers;
    const int64_t in = 784, out = 10;
    const int64_t params =
        layers ? in * h + h + (layers - 1) * (h * h + h) + h * out + out
               : in * out + out;
    if (params > kMaxParameters)
      throw Error(name + ": the MLP would have " + std::to_string(params) +
                  " parameters, more than " + std::to_string(kMaxParameters) +
                  "; use fewer or smaller hidden layers");
  }
  std::shared_ptr<const ImageSet> data = loadCachedImageSet(dataDir, splits);
  checkRange(*data, "training", options.trainFirst, options.trainCount);
  checkRange(*data, "evaluation", options.evalFirst, options.evalCount);
  return std::make_unique<MnistMLP>(name, std::move(data), seed, options);
}

} // namespace optim::tasks
