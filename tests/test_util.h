// Helpers shared by the kernel tests: random tensors and comparisons that report the worst element.
// Tolerances are passed in by each test, next to the argument that justifies them.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "tsp/core/random.h"
#include "tsp/core/tensor.h"

namespace tsp::testing {

inline Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed, float stddev = 1.f) {
  Tensor t = Tensor::empty(shape, dtype, MemCategory::workspace);
  Rng rng(seed);
  fill_normal(t, rng, 0.f, stddev);
  return t;
}

struct Diff {
  double max_abs = 0;       // max |a - b|
  double max_rel = 0;       // max |a - b| / (atol_floor + |b|) over elements
  int64_t worst_index = -1; // flat row-major index of the max_rel element
  double worst_a = 0, worst_b = 0;
  bool has_nonfinite = false;
  std::string str() const {
    std::ostringstream os;
    os << "max_abs=" << max_abs << " max_rel=" << max_rel << " worst at flat index " << worst_index
       << " (" << worst_a << " vs expected " << worst_b << ")" << (has_nonfinite ? " NON-FINITE" : "");
    return os.str();
  }
};

// Compares `actual` with `expected` elementwise. Relative error uses |expected| + floor so that
// entries near zero are judged on an absolute scale of `floor`.
inline Diff compare(const Tensor& actual, const Tensor& expected, double floor = 1e-6) {
  check_same_shape(actual, expected, "compare");
  Tensor a = actual.to_f32(), b = expected.to_f32();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  Diff d;
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (!std::isfinite(pa[i]) || !std::isfinite(pb[i])) d.has_nonfinite = true;
    const double abs = std::fabs(static_cast<double>(pa[i]) - pb[i]);
    const double rel = abs / (floor + std::fabs(static_cast<double>(pb[i])));
    d.max_abs = std::max(d.max_abs, abs);
    if (rel > d.max_rel || d.worst_index < 0) {
      d.max_rel = std::max(d.max_rel, rel);
      d.worst_index = i;
      d.worst_a = pa[i];
      d.worst_b = pb[i];
    }
  }
  return d;
}

// Relative error in the norm: ||a - b|| / ||b||, robust for outputs with many near-zero entries.
inline double relative_l2(const Tensor& actual, const Tensor& expected) {
  check_same_shape(actual, expected, "relative_l2");
  Tensor a = actual.to_f32(), b = expected.to_f32();
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = static_cast<double>(a.data<float>()[i]) - b.data<float>()[i];
    num += d * d;
    den += static_cast<double>(b.data<float>()[i]) * b.data<float>()[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Compares `actual` with `expected` against a per-element bound derived from the terms summed:
// |a_i - e_i| <= gamma * magnitude_i + rel * |e_i|, with magnitude_i the sum of the magnitudes of
// the terms of element i (e.g. sum_p |alpha a_ip b_pj| + |beta c_ij| for a GEMM, computed by the
// reference on |A|, |B|, |C|): Higham's |fl(sum) - sum| <= gamma_n sum |terms| for any summation
// order, so the bound holds for any kernel. Diff::max_rel is max |a - e| / bound: <= 1 passes.
inline Diff compare_to_terms(const Tensor& actual, const Tensor& expected, const Tensor& magnitude, double gamma,
                             double rel = 0) {
  check_same_shape(actual, expected, "compare_to_terms");
  check_same_shape(magnitude, expected, "compare_to_terms");
  Tensor a = actual.to_f32(), b = expected.to_f32(), m = magnitude.to_f32();
  Diff d;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double pa = a.data<float>()[i], pb = b.data<float>()[i];
    if (!std::isfinite(pa) || !std::isfinite(pb)) d.has_nonfinite = true;
    const double abs = std::fabs(pa - pb);
    const double bound = gamma * m.data<float>()[i] * (1 + 4 * 0x1p-24) + rel * std::fabs(pb);
    const double ratio = abs == 0 ? 0 : abs / bound;
    d.max_abs = std::max(d.max_abs, abs);
    if (ratio > d.max_rel || d.worst_index < 0) {
      d.max_rel = std::max(d.max_rel, ratio);
      d.worst_index = i;
      d.worst_a = pa;
      d.worst_b = pb;
    }
  }
  return d;
}

// A tensor of the magnitudes |x_i| (f32), for computing the magnitude of summed terms with a
// reference kernel.
inline Tensor abs_of(const Tensor& t) {
  Tensor a = t.to_f32();
  Tensor out = Tensor::empty(t.shape(), DType::f32, MemCategory::workspace);
  for (int64_t i = 0; i < a.numel(); ++i) out.data<float>()[i] = std::fabs(a.data<float>()[i]);
  return out;
}

}  // namespace tsp::testing

// EXPECT_TERMS_CLOSE(actual, expected, magnitude, gamma, rel): every element within
// gamma * magnitude + rel * |expected| (compare_to_terms), else fails with the worst element.
#define EXPECT_TERMS_CLOSE(actual, expected, magnitude, gamma, rel)                                   \
  do {                                                                                                \
    const ::tsp::testing::Diff tsp_diff_ = ::tsp::testing::compare_to_terms(actual, expected, magnitude, gamma, rel); \
    EXPECT_FALSE(tsp_diff_.has_nonfinite) << tsp_diff_.str();                                         \
    EXPECT_LE(tsp_diff_.max_rel, 1.0) << "error / bound; " << tsp_diff_.str();                         \
  } while (0)

// EXPECT_CLOSE(actual, expected, rel_tol, floor): fails with the worst element when max_rel > tol.
#define EXPECT_CLOSE(actual, expected, rel_tol, floor)                                    \
  do {                                                                                    \
    const ::tsp::testing::Diff tsp_diff_ = ::tsp::testing::compare(actual, expected, floor); \
    EXPECT_FALSE(tsp_diff_.has_nonfinite) << tsp_diff_.str();                             \
    EXPECT_LE(tsp_diff_.max_rel, rel_tol) << tsp_diff_.str();                             \
  } while (0)
