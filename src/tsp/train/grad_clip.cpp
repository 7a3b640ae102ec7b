#include "tsp/train/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "tsp/core/check.h"

namespace tsp::train {

double global_grad_norm(const model::ModelWeights& grads) {
  double sum = 0;
  for (const auto& [name, t] : grads.named()) {
    TSP_CHECK_DTYPE(t.dtype() == DType::f32 && t.is_contiguous(), "gradient ", name,
                    " must be contiguous f32, got ", t.describe());
    const float* g = t.data<float>();
    const int64_t n = t.numel();
    // Fixed blocks summed in order: the result does not depend on the thread count or timing
    // (an OpenMP reduction may combine partial sums in any order).
    constexpr int64_t kBlock = 1 << 14;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      double s = 0;
      const int64_t end = std::min(n, (b + 1) * kBlock);
      for (int64_t i = b * kBlock; i < end; ++i) s += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      partial[static_cast<size_t>(b)] = s;
    }
    for (double s : partial) sum += s;
  }
  return std::sqrt(sum);
}

ClipResult clip_grad_norm(model::ModelWeights& grads, double max_norm) {
  ClipResult r;
  r.norm = global_grad_norm(grads);
  if (!(max_norm > 0) || !std::isfinite(r.norm) || !(r.norm > max_norm)) return r;
  r.scale = max_norm / (r.norm + 1e-6);
  r.clipped = true;
  const float f = static_cast<float>(r.scale);
  for (const auto& [name, t] : grads.named()) {
    float* g = t.data<float>();
    const int64_t n = t.numel();
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) g[i] *= f;
  }
  return r;
}

}  // namespace tsp::train
