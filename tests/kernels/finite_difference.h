// Double-precision central finite differences for checking analytic backward passes, and a
// comparison of double vectors. Step 1e-6 keeps truncation (~h^2 f''') and cancellation (~1e-16/h) below 1e-9.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace tsp::testing {

// d f / d x_i for every i, by (f(x + e_i step) - f(x - e_i step)) / (2 step).
inline std::vector<double> numeric_gradient(const std::function<double(const std::vector<double>&)>& f,
                                            std::vector<double> x, double step = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + step;
    const double fp = f(x);
    x[i] = keep - step;
    const double fm = f(x);
    x[i] = keep;
    g[i] = (fp - fm) / (2 * step);
  }
  return g;
}

// max_i |a_i - b_i| / (floor + |b_i|).
inline double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b, double floor = 1e-6) {
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]) / (floor + std::fabs(b[i])));
  return worst;
}

// Tolerance of an analytic double gradient against numeric_gradient: with step 1e-6 the numeric
// error is ~ 2^-52 |f| / step + step^2 |f'''| ~ 1e-9 for the O(10) losses of the tests, so
// max_rel_diff(analytic, numeric, kFdFloor) <= kFdTol leaves 10x headroom on that absolute scale.
inline constexpr double kFdFloor = 1e-2;
inline constexpr double kFdTol = 1e-6;

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace tsp::testing
