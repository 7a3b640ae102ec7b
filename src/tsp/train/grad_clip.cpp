// Global gradient norm (the blocked double sum of kernels/sum_of_squares.h) and clipping by it.
#include "tsp/train/grad_clip.h"

#include <cmath>

#include "tsp/core/check.h"
#include "tsp/kernels/sum_of_squares.h"

namespace tsp::train {

double global_grad_norm(const model::ModelWeights& grads) {
  double sum = 0;
  for (const auto& [name, t] : grads.named()) {
    TSP_CHECK_DTYPE(t.dtype() == DType::f32 && t.is_contiguous(), "gradient ", name,
                    " must be contiguous f32, got ", t.describe());
    sum = kernels::add_sum_of_squares(t, sum);
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
