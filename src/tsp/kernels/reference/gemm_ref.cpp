// Naive GEMM reference (double accumulation; bf16 inputs are read exactly, outputs rounded once).
#include "tsp/kernels/reference/gemm_ref.h"

#include <vector>

namespace tsp::kernels::reference {

void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options) {
  const int64_t m = options.trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = options.trans_a ? a.dim(0) : a.dim(1);
  const int64_t n = options.trans_b ? b.dim(0) : b.dim(1);
  TSP_CHECK_SHAPE((options.trans_b ? b.dim(1) : b.dim(0)) == k && c.dim(0) == m && c.dim(1) == n,
                  "reference gemm: ", a.describe(), " x ", b.describe(), " -> ", c.describe());
  const Tensor af = a.to_f32(), bf = b.to_f32(), cf = c.to_f32();
  const float* pa = af.data<float>();
  const float* pb = bf.data<float>();
  Tensor out = Tensor::empty(c.shape(), DType::f32, MemCategory::workspace);
  float* po = out.data<float>();
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double x = options.trans_a ? pa[p * a.dim(1) + i] : pa[i * k + p];
        const double y = options.trans_b ? pb[j * k + p] : pb[p * n + j];
        acc += x * y;
      }
      const double prev = options.beta == 0.f ? 0.0 : options.beta * static_cast<double>(cf.data<float>()[i * n + j]);
      po[i * n + j] = static_cast<float>(options.alpha * acc + prev);
    }
  }
  c.copy_from(out);
}

}  // namespace tsp::kernels::reference
