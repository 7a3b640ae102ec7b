// decode_linear: dispatch to kernels::gemm, or the in-place bf16 row kernel: x rows widened once
// to fp32 scratch, each weight row streamed once per group of 4 x rows, two FMA chains per dot
// (simd.h Vec: 16 lanes on AVX-512, else 8).
#include "tsp/kernels/decode_linear.h"
#include "tsp/kernels/cpu_backend.h"

#include <omp.h>

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {

namespace {

using namespace kernels::simd;

constexpr int64_t kRows = 4;  // rows of x per pass over the weight

// x rows [m0, m0 + mr) widened to fp32, K padded to a multiple of 16 (>= kLanes) with zeros.
void widen_rows(const Tensor& x, int64_t kp, float* out) {
  const int64_t m = x.dim(0), k = x.dim(1);
  const auto* base = static_cast<const bf16*>(x.raw());
  for (int64_t i = 0; i < m; ++i) {
    float* row = out + i * kp;
    for (int64_t j = 0; j < k; ++j) row[j] = static_cast<float>(base[i * x.stride(0) + j]);
    std::fill(row + k, row + kp, 0.f);
  }
}

// y[m0 + r, n] (+)= x32[m0 + r] . w[n] for r < R.
template <int R>
void dot_rows(const float* x32, int64_t kp, int64_t k, const bf16* wrow, float* out) {
  Vec acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = vset(0.f);
  int64_t j = 0;
  for (; j + 2 * kLanes <= k; j += 2 * kLanes) {
    const Vec w0 = vload(wrow + j), w1 = vload(wrow + j + kLanes);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = vfma(vload(x32 + r * kp + j), w0, acc[r][0]);
      acc[r][1] = vfma(vload(x32 + r * kp + j + kLanes), w1, acc[r][1]);
    }
  }
  for (; j < k; j += kLanes) {  // tail: x is zero padded (kp is a multiple of kLanes), w masked
    const Vec w0 = vload_tail(wrow + j, std::min<int64_t>(kLanes, k - j));
    for (int r = 0; r < R; ++r) acc[r][0] = vfma(vload(x32 + r * kp + j), w0, acc[r][0]);
  }
  for (int r = 0; r < R; ++r) out[r] = vhsum(acc[r][0] + acc[r][1]);
}

void dot_rows_any(int64_t rows, const float* x32, int64_t kp, int64_t k, const bf16* wrow, float* out) {
  switch (rows) {
    case 4: return dot_rows<4>(x32, kp, k, wrow, out);
    case 3: return dot_rows<3>(x32, kp, k, wrow, out);
    case 2: return dot_rows<2>(x32, kp, k, wrow, out);
    default: return dot_rows<1>(x32, kp, k, wrow, out);
  }
}

template <class T>
void store(const Tensor& y, int64_t m, int64_t n, float value, float beta) {
  T* p = static_cast<T*>(y.raw()) + m * y.stride(0) + n;
  *p = T(value + (beta == 0.f ? 0.f : beta * static_cast<float>(*p)));
}

void bf16_rows(const Tensor& x, const Tensor& w, const Tensor& y, float beta) {
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0), kp = (k + 15) / 16 * 16;
  Tensor x32 = Tensor::empty({m * kp}, DType::f32, MemCategory::workspace);
  widen_rows(x, kp, x32.data<float>());
  const float* xs = x32.data<float>();
  const auto* wb = static_cast<const bf16*>(w.raw());
  const bool y_f32 = y.dtype() == DType::f32;
#pragma omp parallel for schedule(static) if (n * k >= (1 << 16))
  for (int64_t col = 0; col < n; ++col) {
    float out[kRows];
    for (int64_t m0 = 0; m0 < m; m0 += kRows) {
      const int64_t rows = std::min(kRows, m - m0);
      dot_rows_any(rows, xs + m0 * kp, kp, k, wb + col * w.stride(0), out);
      for (int64_t r = 0; r < rows; ++r) {
        if (y_f32) store<float>(y, m0 + r, col, out[r], beta);
        else store<bf16>(y, m0 + r, col, out[r], beta);
      }
    }
  }
}

}  // namespace

void CpuBackend::decode_linear(const Tensor& x, const Tensor& w, Tensor& y, float beta) {
  TSP_CHECK(beta == 0.f || beta == 1.f, "decode_linear: beta must be 0 or 1, got ", beta);
  const bool rows_kernel = x.dtype() == DType::bf16 && w.dtype() == DType::bf16 && !kernels::gemm_native_bf16();
  if (!rows_kernel) {
    kernels::gemm(x, w, y, {.trans_b = true, .beta = beta});
    return;
  }
  TSP_CHECK_SHAPE(x.rank() == 2 && w.rank() == 2 && y.rank() == 2 && x.dim(1) == w.dim(1) &&
                      y.dim(0) == x.dim(0) && y.dim(1) == w.dim(0),
                  "decode_linear: x ", x.describe(), " @ w^T ", w.describe(), " -> y ", y.describe());
  TSP_CHECK_T(LayoutError, x.has_unit_inner_stride() && w.has_unit_inner_stride() && y.has_unit_inner_stride(),
              "decode_linear: operands need unit inner stride: x ", x.describe(), ", w ", w.describe(),
              ", y ", y.describe());
  TSP_CHECK_DTYPE(y.dtype() == DType::f32 || y.dtype() == DType::bf16, "decode_linear: y must be f32 or bf16, got ",
                  y.dtype());
  if (x.dim(0) == 0 || w.dim(0) == 0) return;
  bf16_rows(x, w, y, beta);
}

}  // namespace tsp::kernels
