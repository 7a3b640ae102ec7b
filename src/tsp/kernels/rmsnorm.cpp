// RMSNorm kernels: rows processed in fixed 256-column blocks converted to fp32 on the stack.
// dgain is reduced over fixed 64-row blocks (a workspace of partials), independent of threads.
#include "tsp/kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tsp::kernels {
namespace {

constexpr int64_t kCol = 256;   // columns converted to fp32 at a time
constexpr int64_t kRowBlock = 64;  // rows per dgain partial (fixed: determinism)

void load(const void* base, DType t, int64_t n, float* dst) {
  if (t == DType::f32) {
    std::memcpy(dst, base, static_cast<size_t>(n) * 4);
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(base);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16::to_float(s[i]);
  }
}

void store(void* base, DType t, int64_t n, const float* src) {
  if (t == DType::f32) {
    std::memcpy(base, src, static_cast<size_t>(n) * 4);
  } else {
    uint16_t* d = static_cast<uint16_t*>(base);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = bf16::round_from_float(src[i]);
  }
}

const char* row_ptr(const Tensor& t, int64_t row) {
  return static_cast<const char*>(t.raw()) + row * t.stride(0) * static_cast<int64_t>(t.element_size());
}
char* row_ptr_mut(const Tensor& t, int64_t row) { return const_cast<char*>(row_ptr(t, row)); }

bool is_float(DType t) { return t == DType::f32 || t == DType::bf16; }

void check_rows(const Tensor& t, const char* name, const char* op) {
  TSP_CHECK_SHAPE(t.defined() && t.rank() == 2, op, ": ", name, " must be [N, h], got ", t.describe());
  TSP_CHECK_DTYPE(is_float(t.dtype()), op, ": ", name, " must be f32 or bf16, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.has_unit_inner_stride(), op, ": ", name,
              " needs unit inner stride, got ", t.describe());
}

void check_vec(const Tensor& t, int64_t n, bool f32_only, const char* name, const char* op) {
  TSP_CHECK_SHAPE(t.defined() && t.rank() == 1 && t.dim(0) == n, op, ": ", name, " must be [", n,
                  "], got ", t.describe());
  TSP_CHECK_DTYPE(f32_only ? t.dtype() == DType::f32 : is_float(t.dtype()), op, ": ", name,
                  f32_only ? " must be f32" : " must be f32 or bf16", ", got ", t.describe());
  TSP_CHECK_T(LayoutError, t.is_contiguous(), op, ": ", name, " must be contiguous, got ",
              t.describe());
}

}  // namespace

void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
                     const RmsNormOptions& options) {
  const char* op = "rmsnorm_forward";
  check_rows(x, "x", op);
  check_rows(y, "y", op);
  TSP_CHECK_SHAPE(x.shape() == y.shape(), op, ": x ", x.describe(), " vs y ", y.describe());
  const int64_t n = x.dim(0), h = x.dim(1);
  check_vec(gain, h, false, "gain", op);
  if (rstd.defined()) check_vec(rstd, n, true, "rstd", op);
  TSP_CHECK(options.eps >= 0.f, op, ": eps must be >= 0, got ", options.eps);
  if (n == 0 || h == 0) return;
  const size_t gsz = gain.element_size();
  const char* gbase = static_cast<const char*>(gain.raw());
  float* rs = rstd.defined() ? rstd.data<float>() : nullptr;

#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    alignas(64) float xb[kCol];
    alignas(64) float gb[kCol];
    const char* xr = row_ptr(x, r);
    char* yr = row_ptr_mut(y, r);
    float ss = 0.f;
    for (int64_t c0 = 0; c0 < h; c0 += kCol) {
      const int64_t w = std::min(kCol, h - c0);
      load(xr + c0 * x.element_size(), x.dtype(), w, xb);
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < w; ++i) ss += xb[i] * xb[i];
    }
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(h) + options.eps);
    if (rs) rs[r] = inv;
    for (int64_t c0 = 0; c0 < h; c0 += kCol) {
      const int64_t w = std::min(kCol, h - c0);
      load(xr + c0 * x.element_size(), x.dtype(), w, xb);
      load(gbase + c0 * gsz, gain.dtype(), w, gb);
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) xb[i] = xb[i] * inv * gb[i];
      store(yr + c0 * y.element_size(), y.dtype(), w, xb);
    }
  }
}

void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
                      const Tensor& dx, const Tensor& dgain) {
  const char* op = "rmsnorm_backward";
  check_rows(dy, "dy", op);
  check_rows(x, "x", op);
  check_rows(dx, "dx", op);
  TSP_CHECK_SHAPE(dy.shape() == x.shape() && dx.shape() == x.shape(), op, ": dy ", dy.describe(),
                  ", x ", x.describe(), ", dx ", dx.describe(), " must have the same shape");
  const int64_t n = x.dim(0), h = x.dim(1);
  check_vec(gain, h, false, "gain", op);
  check_vec(rstd, n, true, "rstd", op);
  check_vec(dgain, h, true, "dgain", op);
  if (n == 0 || h == 0) return;
  const size_t gsz = gain.element_size();
  const char* gbase = static_cast<const char*>(gain.raw());
  const float* rs = rstd.data<float>();
  const int64_t nblocks = (n + kRowBlock - 1) / kRowBlock;
  Tensor partial = Tensor::zeros({nblocks, h}, DType::f32, MemCategory::workspace);
  float* part = partial.data<float>();

  // dx_j = r * (g_j dy_j) - r^3 / h * x_j * sum_k g_k dy_k x_k;  dg_j += sum_rows dy_j x_j r.
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nblocks; ++b) {
    alignas(64) float xb[kCol];
    alignas(64) float gb[kCol];
    alignas(64) float db[kCol];
    float* pb = part + b * h;
    const int64_t r1 = std::min(n, (b + 1) * kRowBlock);
    for (int64_t r = b * kRowBlock; r < r1; ++r) {
      const char* xr = row_ptr(x, r);
      const char* dyr = row_ptr(dy, r);
      char* dxr = row_ptr_mut(dx, r);
      const float inv = rs[r];
      float dot = 0.f;  // sum_k g_k dy_k x_k
      for (int64_t c0 = 0; c0 < h; c0 += kCol) {
        const int64_t w = std::min(kCol, h - c0);
        load(xr + c0 * x.element_size(), x.dtype(), w, xb);
        load(dyr + c0 * dy.element_size(), dy.dtype(), w, db);
        load(gbase + c0 * gsz, gain.dtype(), w, gb);
        float* pc = pb + c0;
#pragma omp simd reduction(+ : dot)
        for (int64_t i = 0; i < w; ++i) {
          dot += gb[i] * db[i] * xb[i];
          pc[i] += db[i] * xb[i] * inv;
        }
      }
      const float coef = inv * inv * inv * dot / static_cast<float>(h);
      for (int64_t c0 = 0; c0 < h; c0 += kCol) {
        const int64_t w = std::min(kCol, h - c0);
        load(xr + c0 * x.element_size(), x.dtype(), w, xb);
        load(dyr + c0 * dy.element_size(), dy.dtype(), w, db);
        load(gbase + c0 * gsz, gain.dtype(), w, gb);
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) xb[i] = inv * gb[i] * db[i] - coef * xb[i];
        store(dxr + c0 * dx.element_size(), dx.dtype(), w, xb);
      }
    }
  }
  // Fixed-order reduction of the block partials into dgain (columns in parallel).
  float* dg = dgain.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < h; c0 += kCol) {
    const int64_t w = std::min(kCol, h - c0);
    alignas(64) float acc[kCol];
    std::memset(acc, 0, sizeof(acc));
    for (int64_t b = 0; b < nblocks; ++b) {
      const float* pc = part + b * h + c0;
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) acc[i] += pc[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) dg[c0 + i] += acc[i];
  }
}

}  // namespace tsp::kernels
