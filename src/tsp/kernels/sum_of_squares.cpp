// Deterministic blocked sum of squares (kernels/sum_of_squares.h).
#include "tsp/kernels/sum_of_squares.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/kernels/cpu_backend.h"

namespace tsp::kernels {

double CpuBackend::add_sum_of_squares(const Tensor& t, double sum) {
  TSP_CHECK_DTYPE(t.dtype() == DType::f32, "add_sum_of_squares: expected an f32 tensor, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.is_contiguous(), "add_sum_of_squares: expected a contiguous tensor, got ",
              t.describe());
  const float* g = t.data<float>();
  const int64_t n = t.numel();
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
  return sum;
}

}  // namespace tsp::kernels
