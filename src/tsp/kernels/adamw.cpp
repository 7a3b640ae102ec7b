// AdamW kernel: one fused pass over the flattened parameter in simd.h Vec (16 lanes on AVX-512,
// else 8; masked tail), the bf16/f32 model copy written in the same pass; elements are
// independent, so any parallel split gives bit-identical results.
#include "tsp/kernels/adamw.h"

#include <algorithm>
#include <cmath>

#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using namespace simd;

// Correctly rounded square root, lane-wise (vsqrtps; simd.h has no sqrt, only AdamW needs one).
inline Vec vsqrt(Vec a) {
#if TSP_SIMD_AVX512
  // The zero-masked form with every lane selected: GCC 12's _mm512_sqrt_ps trips
  // -Wmaybe-uninitialized (GCC bug 105593, see simd.h).
  return {_mm512_maskz_sqrt_ps(static_cast<__mmask16>(0xffff), a.v)};
#elif TSP_SIMD_AVX2
  return {_mm256_sqrt_ps(a.v)};
#else
  for (float& x : a.v) x = std::sqrt(x);
  return a;
#endif
}

// One vector of parameters at i (n <= kLanes of them), the optional model copy `W` included.
template <class W>
inline void step_vec(float* p, float* m, float* v, const float* g, W* out, int64_t i, int64_t n,
                     Vec decay, Vec w1, Vec one_minus_w1, bool lerp_low, Vec b2, Vec w2,
                     Vec bc2_sqrt, Vec eps, Vec neg_step) {
  const bool full = n == kLanes;
  const Vec gi = full ? vload(g + i) : vload_tail(g + i, n);
  const Vec m0 = full ? vload(m + i) : vload_tail(m + i, n);
  const Vec v0 = full ? vload(v + i) : vload_tail(v + i, n);
  const Vec p0 = (full ? vload(p + i) : vload_tail(p + i, n)) * decay;
  // torch lerp (weight < 0.5): self + weight * (end - self); weight >= 0.5: end - (end - self) * (1 - weight)
  const Vec mi = lerp_low ? vfma(w1, gi - m0, m0) : vfma(vneg(gi - m0), one_minus_w1, gi);
  const Vec vi = vfma(v0, b2, w2 * gi * gi);
  const Vec denom = vsqrt(vi) / bc2_sqrt + eps;
  const Vec pi = vfma(neg_step, mi / denom, p0);
  if (full) {
    vstore(p + i, pi);
    vstore(m + i, mi);
    vstore(v + i, vi);
    if (out) vstore(out + i, pi);
  } else {
    vstore_tail(p + i, pi, n);
    vstore_tail(m + i, mi, n);
    vstore_tail(v + i, vi, n);
    if (out) vstore_tail(out + i, pi, n);
  }
}

template <class W>
void step_all(float* p, float* m, float* v, const float* g, W* out, int64_t n, float decay,
              float w1, float b2, float w2, float bc2_sqrt, float eps, float step_size) {
  constexpr int64_t kBlock = 4096;  // a multiple of kLanes: only the last vector is partial
  const Vec vdecay = vset(decay), vw1 = vset(w1), vomw1 = vset(1.f - w1), vb2 = vset(b2);
  const Vec vw2 = vset(w2), vbc2 = vset(bc2_sqrt), veps = vset(eps), vneg_step = vset(-step_size);
  const bool lerp_low = w1 < 0.5f;
#pragma omp parallel for schedule(static)
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    for (int64_t i = b0; i < b1; i += kLanes)
      step_vec(p, m, v, g, out, i, std::min<int64_t>(kLanes, b1 - i), vdecay, vw1, vomw1,
               lerp_low, vb2, vw2, vbc2, veps, vneg_step);
  }
}

void check_f32(const Tensor& t, const Tensor& ref, const char* name) {
  TSP_CHECK_SHAPE(t.defined() && t.shape() == ref.shape(), "adamw_step: ", name, " ",
                  t.describe(), " does not match master ", ref.describe());
  TSP_CHECK_DTYPE(t.dtype() == DType::f32, "adamw_step: ", name, " must be f32, got ",
                  t.describe());
  TSP_CHECK_T(LayoutError, t.is_contiguous(), "adamw_step: ", name, " must be contiguous, got ",
              t.describe());
}

}  // namespace

void CpuBackend::adamw_step(const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            const Tensor& grad, int64_t step, const AdamWOptions& o,
                            const Tensor& weight_out) {
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
  if (!copy) {
    step_all<float>(p, m, v, g, nullptr, n, decay, w1, fb2, w2, bc2_sqrt, eps, step_size);
  } else if (weight_out.dtype() == DType::bf16) {
    step_all(p, m, v, g, weight_out.data<bf16>(), n, decay, w1, fb2, w2, bc2_sqrt, eps, step_size);
  } else {
    step_all(p, m, v, g, weight_out.data<float>(), n, decay, w1, fb2, w2, bc2_sqrt, eps, step_size);
  }
}

AdamWOptions adamw_options(const AdamWConfig& config, int64_t logical_rank, double lr) {
  AdamWOptions o;
  o.lr = static_cast<float>(lr);
  o.beta1 = static_cast<float>(config.beta1);
  o.beta2 = static_cast<float>(config.beta2);
  o.eps = static_cast<float>(config.eps);
  o.weight_decay = logical_rank >= 2 ? static_cast<float>(config.weight_decay) : 0.f;
  return o;
}

}  // namespace tsp::kernels
