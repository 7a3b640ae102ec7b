// Naive cross-entropy reference: full logits in double, max-subtracted log-sum-exp per row,
// and dlogits = (softmax - onehot) * scale pushed through both matmuls.
#include "tsp/kernels/reference/cross_entropy_ref.h"

#include <algorithm>
#include <cmath>

namespace tsp::kernels::reference {
namespace {

Vec logits_of(const Vec& x, const Vec& w, int64_t n, int64_t h, int64_t v) {
  Vec z(static_cast<size_t>(n * v), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < v; ++c) {
      double s = 0;
      for (int64_t k = 0; k < h; ++k) s += x[i * h + k] * w[c * h + k];
      z[i * v + c] = s;
    }
  return z;
}

double row_lse(const double* z, int64_t v) {
  double m = z[0];
  for (int64_t c = 1; c < v; ++c) m = std::max(m, z[c]);
  double s = 0;
  for (int64_t c = 0; c < v; ++c) s += std::exp(z[c] - m);
  return m + std::log(s);
}

}  // namespace

CrossEntropyRef cross_entropy_forward(const Vec& x, const Vec& w, int64_t n, int64_t h, int64_t v,
                                      const std::vector<int64_t>& targets, int64_t ignore_index) {
  const Vec z = logits_of(x, w, n, h, v);
  CrossEntropyRef r;
  r.lse.assign(static_cast<size_t>(n), 0.0);
  r.loss.assign(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    r.lse[i] = row_lse(&z[i * v], v);
    if (targets[i] == ignore_index) continue;
    r.loss[i] = r.lse[i] - z[i * v + targets[i]];
    r.loss_sum += r.loss[i];
    ++r.n_valid;
  }
  return r;
}

void cross_entropy_backward(const Vec& x, const Vec& w, int64_t n, int64_t h, int64_t v,
                            const std::vector<int64_t>& targets, int64_t ignore_index, double scale,
                            Vec& dx, Vec& dw) {
  const Vec z = logits_of(x, w, n, h, v);
  dx.assign(static_cast<size_t>(n * h), 0.0);
  dw.assign(static_cast<size_t>(v * h), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == ignore_index) continue;
    const double lse = row_lse(&z[i * v], v);
    for (int64_t c = 0; c < v; ++c) {
      const double dz = (std::exp(z[i * v + c] - lse) - (c == targets[i] ? 1.0 : 0.0)) * scale;
      for (int64_t k = 0; k < h; ++k) {
        dx[i * h + k] += dz * w[c * h + k];
        dw[c * h + k] += dz * x[i * h + k];
      }
    }
  }
}

}  // namespace tsp::kernels::reference
