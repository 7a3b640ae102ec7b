// AdamW kernel: one fused, vectorisable pass over the flattened parameter; elements are
// independent, so any parallel split gives bit-identical results.
#include "tsp/kernels/adamw.h"

#include <algorithm>
#include <cmath>

namespace tsp::kernels {
namespace {

void check_f32(const Tensor& t, const Tensor& ref, const char* name) {
  TSP_CHECK_SHAPE(t.defined() && t.shape() == ref.shape(), "adamw_step: ", name, " ",
                  t.describe(), " does not match master ", ref.describe());
  TSP_CHECK_DTYPE(t.dtype() == DType::f32, "adamw_step: ", name, " must be f32, got ",
                  t.describe());
  TSP_CHECK_T(LayoutError, t.is_contiguous(), "adamw_step: ", name, " must be contiguous, got ",
              t.describe());
}

}  // namespace

void adamw_step(const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const Tensor& grad, int64_t step, const AdamWOptions& o, const Tensor& weight_out) {
  TSP_CHECK(master.defined(), "adamw_step: master is undefined");
  check_f32(master, master, "master");
  check_f32(exp_avg, master, "exp_avg");
  check_f32(exp_avg_sq, master, "exp_avg_sq");
  check_f32(grad, master, "grad");
  TSP_CHECK_GE(step, int64_t{1}, "adamw_step: step is 1-based");
  TSP_CHECK(o.lr >= 0.f && o.eps >= 0.f && o.weight_decay >= 0.f && o.beta1 >= 0.f &&
                o.beta1 < 1.f && o.beta2 >= 0.f && o.beta2 < 1.f,
            "adamw_step: invalid options lr=", o.lr, " beta1=", o.beta1, " beta2=", o.beta2,
            " eps=", o.eps, " weight_decay=", o.weight_decay);
  const bool copy = weight_out.defined();
  if (copy) {
    TSP_CHECK_SHAPE(weight_out.shape() == master.shape(), "adamw_step: weight_out ",
                    weight_out.describe(), " does not match master ", master.describe());
    TSP_CHECK_DTYPE(weight_out.dtype() == DType::bf16 || weight_out.dtype() == DType::f32,
                    "adamw_step: weight_out must be bf16 or f32, got ", weight_out.describe());
    TSP_CHECK_T(LayoutError, weight_out.is_contiguous(), "adamw_step: weight_out must be contiguous, got ",
                weight_out.describe());
  }
  // Python-side scalars (double), as torch computes them from the float hyper-parameters.
  const double lr = o.lr, b1 = o.beta1, b2 = o.beta2;
  const float decay = static_cast<float>(1.0 - lr * static_cast<double>(o.weight_decay));
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float w1 = static_cast<float>(1.0 - b1);  // lerp weight
  const float fb2 = o.beta2, w2 = static_cast<float>(1.0 - b2), eps = o.eps;

  float* p = master.data<float>();
  float* m = exp_avg.data<float>();
  float* v = exp_avg_sq.data<float>();
  const float* g = grad.data<float>();
  const int64_t n = master.numel();
  constexpr int64_t kBlock = 4096;
#pragma omp parallel for schedule(static)
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1e = std::min(n, b0 + kBlock);
#pragma omp simd
    for (int64_t i = b0; i < b1e; ++i) {
      float pi = p[i] * decay;
      const float gi = g[i];
      // torch lerp (weight < 0.5): self + weight * (end - self); weight >= 0.5: end - (end - self) * (1 - weight)
      const float mi = w1 < 0.5f ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * (1.f - w1);
      const float vi = v[i] * fb2 + w2 * gi * gi;
      const float denom = std::sqrt(vi) / bc2_sqrt + eps;
      pi = pi - step_size * (mi / denom);
      p[i] = pi;
      m[i] = mi;
      v[i] = vi;
    }
  }
  if (copy) {
    if (weight_out.dtype() == DType::bf16) {
      uint16_t* w = reinterpret_cast<uint16_t*>(weight_out.data<bf16>());
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) w[i] = bf16::round_from_float(p[i]);
    } else {
      float* w = weight_out.data<float>();
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) w[i] = p[i];
    }
  }
}

}  // namespace tsp::kernels
