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

}  // namespace tsp::testing

// EXPECT_CLOSE(actual, expected, rel_tol, floor): fails with the worst element when max_rel > tol.
#define EXPECT_CLOSE(actual, expected, rel_tol, floor)                                    \
  do {                                                                                    \
    const ::tsp::testing::Diff tsp_diff_ = ::tsp::testing::compare(actual, expected, floor); \
    EXPECT_FALSE(tsp_diff_.has_nonfinite) << tsp_diff_.str();                             \
    EXPECT_LE(tsp_diff_.max_rel, rel_tol) << tsp_diff_.str();                             \
  } while (0)
