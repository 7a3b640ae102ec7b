// Bias kernels: the n bias columns streamed kLanes at a time through simd.h Vec (masked tail), each
// operand loaded from its own storage type. The forward is parallel over rows; the backward over
// column blocks, each summing its columns over all rows in row order (deterministic, no reduction
// across threads).
#include "tsp/kernels/bias.h"

#include <algorithm>
#include <cstdint>

#include "tsp/core/check.h"
#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/row_lanes.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using namespace simd;

using row_lanes::load;
using row_lanes::row;
using row_lanes::store;

void check_rows(const Tensor& t, const char* name, const char* op) {
  TSP_CHECK_SHAPE(t.defined() && t.rank() == 2, op, ": ", name, " must be [N, n], got ",
                  t.defined() ? t.describe() : std::string("undefined"));
  TSP_CHECK_DTYPE(t.dtype() == DType::f32 || t.dtype() == DType::bf16, op, ": ", name,
                  " must be f32 or bf16, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.has_unit_inner_stride(), op, ": ", name,
              " needs unit inner stride, got ", t.describe());
}

void check_bias(const Tensor& b, int64_t n, const char* name, const char* op) {
  TSP_CHECK_SHAPE(b.defined() && b.rank() == 1 && b.dim(0) == n, op, ": ", name, " must be [", n,
                  "], got ", b.defined() ? b.describe() : std::string("undefined"));
  TSP_CHECK_T(LayoutError, b.is_contiguous(), op, ": ", name, " must be contiguous, got ",
              b.describe());
}

}  // namespace

void CpuBackend::bias_add_forward(const Tensor& y, const Tensor& bias) {
  const char* op = "bias_add_forward";
  check_rows(y, "y", op);
  check_bias(bias, y.dim(1), "bias", op);
  TSP_CHECK_DTYPE(bias.dtype() == DType::f32 || bias.dtype() == DType::bf16, op,
                  ": bias must be f32 or bf16, got ", bias.describe());
  const int64_t rows = y.dim(0), n = y.dim(1);
  const DType ty = y.dtype(), tb = bias.dtype();
  const char* b = static_cast<const char*>(bias.raw());
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    char* yr = row(y, r);
    for (int64_t c = 0; c < n; c += kLanes) {
      const int64_t w = std::min<int64_t>(kLanes, n - c);
      store(yr, ty, c, w, load(yr, ty, c, w) + load(b, tb, c, w));
    }
  }
}

void CpuBackend::bias_backward(const Tensor& dy, const Tensor& dbias, bool accumulate) {
  const char* op = "bias_backward";
  check_rows(dy, "dy", op);
  check_bias(dbias, dy.dim(1), "dbias", op);
  TSP_CHECK_DTYPE(dbias.dtype() == DType::f32, op, ": dbias must be f32, got ", dbias.describe());
  const int64_t rows = dy.dim(0), n = dy.dim(1);
  const DType td = dy.dtype();
  char* db = static_cast<char*>(dbias.raw());
  const int64_t chunks = (n + kLanes - 1) / kLanes;
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t c = k * kLanes, w = std::min<int64_t>(kLanes, n - c);
    Vec sum = accumulate ? load(db, DType::f32, c, w) : vset(0.f);
    for (int64_t r = 0; r < rows; ++r) sum = sum + load(row(dy, r), td, c, w);
    store(db, DType::f32, c, w, sum);
  }
}

}  // namespace tsp::kernels
