// RMSNorm kernels, single pass over memory: each row is read from memory once (sum of squares)
// and its second sweep (scale, or dx) finds it in L1/L2; simd.h Vec (16 lanes on AVX-512, else 8),
// masked tails; dgain is reduced over fixed 64-row blocks (a workspace of partials), independent of
// the thread count.
#include "tsp/kernels/rmsnorm.h"

#include <algorithm>
#include <cmath>

#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using namespace simd;

constexpr int64_t kRowBlock = 64;  // rows per dgain partial (fixed: determinism)

// Columns [c, c + n) of a row, n <= kLanes (lanes >= n load as 0 and are not stored).
template <class T>
inline Vec ld(const T* p, int64_t c, int64_t n) {
  return n == kLanes ? vload(p + c) : vload_tail(p + c, n);
}
template <class T>
inline void st(T* p, int64_t c, int64_t n, Vec v) {
  if (n == kLanes) vstore(p + c, v);
  else vstore_tail(p + c, v, n);
}

// sum_i x_i^2 over a row: four independent FMA chains (the FMA latency is 4 cycles), the
// remainder one vector at a time, the last h % kLanes columns masked.
template <class T>
inline float sum_squares(const T* x, int64_t h) {
  Vec a0 = vset(0.f), a1 = a0, a2 = a0, a3 = a0;
  int64_t c = 0;
  for (; c + 4 * kLanes <= h; c += 4 * kLanes) {
    const Vec x0 = vload(x + c), x1 = vload(x + c + kLanes);
    const Vec x2 = vload(x + c + 2 * kLanes), x3 = vload(x + c + 3 * kLanes);
    a0 = vfma(x0, x0, a0);
    a1 = vfma(x1, x1, a1);
    a2 = vfma(x2, x2, a2);
    a3 = vfma(x3, x3, a3);
  }
  for (; c < h; c += kLanes) {
    const Vec xv = ld(x, c, std::min<int64_t>(kLanes, h - c));
    a0 = vfma(xv, xv, a0);
  }
  return vhsum((a0 + a1) + (a2 + a3));
}

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

// y = x * inv * g for one row whose sum of squares is done (the row is in L1/L2 by now).
template <class T, class G, class Y>
inline void scale_row(const T* x, const G* g, Y* y, int64_t h, float inv) {
  const Vec vinv = vset(inv);
  for (int64_t c = 0; c < h; c += kLanes) {
    const int64_t w = std::min<int64_t>(kLanes, h - c);
    st(y, c, w, ld(x, c, w) * vinv * ld(g, c, w));
  }
}

template <class T, class G, class Y>
void forward_rows(const Tensor& x, const Tensor& gain, const Tensor& y, float* rs, float eps) {
  const int64_t n = x.dim(0), h = x.dim(1), sx = x.stride(0), sy = y.stride(0);
  const T* xb = static_cast<const T*>(x.raw());
  const G* g = static_cast<const G*>(gain.raw());
  Y* yb = static_cast<Y*>(y.raw());
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = xb + r * sx;
    const float inv = 1.f / std::sqrt(sum_squares(xr, h) / static_cast<float>(h) + eps);
    if (rs) rs[r] = inv;
    scale_row(xr, g, yb + r * sy, h, inv);
  }
}

// One row of the backward. Sweep 1 (from memory): dot = sum_k g_k dy_k x_k and the row's dgain
// terms dy_j x_j r into the block partial pc. Sweep 2 (x, dy still in L1/L2):
// dx_j = r g_j dy_j - (r^3 / h) dot x_j.
template <class T, class E, class G, class D>
inline void backward_row(const T* x, const E* dy, const G* g, D* dx, float* pc, int64_t h,
                         float inv) {
  const Vec vinv = vset(inv);
  Vec d0 = vset(0.f), d1 = d0;
  int64_t c = 0;
  for (; c + 2 * kLanes <= h; c += 2 * kLanes) {
    const Vec x0 = vload(x + c), x1 = vload(x + c + kLanes);
    const Vec y0 = vload(dy + c), y1 = vload(dy + c + kLanes);
    const Vec p0 = y0 * x0, p1 = y1 * x1;
    d0 = vfma(p0, vload(g + c), d0);
    d1 = vfma(p1, vload(g + c + kLanes), d1);
    vstore(pc + c, vfma(p0, vinv, vload(pc + c)));
    vstore(pc + c + kLanes, vfma(p1, vinv, vload(pc + c + kLanes)));
  }
  for (; c < h; c += kLanes) {
    const int64_t w = std::min<int64_t>(kLanes, h - c);
    const Vec p0 = ld(dy, c, w) * ld(x, c, w);
    d0 = vfma(p0, ld(g, c, w), d0);
    st(pc, c, w, vfma(p0, vinv, ld(pc, c, w)));
  }
  const float dot = vhsum(d0 + d1);
  const Vec coef = vset(-(inv * inv * inv * dot / static_cast<float>(h)));
  for (c = 0; c < h; c += kLanes) {
    const int64_t w = std::min<int64_t>(kLanes, h - c);
    st(dx, c, w, vfma(coef, ld(x, c, w), vinv * ld(g, c, w) * ld(dy, c, w)));
  }
}

template <class T, class E, class G, class D>
void backward_rows(const Tensor& dy, const Tensor& x, const Tensor& gain, const float* rs,
                   const Tensor& dx, float* part) {
  const int64_t n = x.dim(0), h = x.dim(1), nblocks = (n + kRowBlock - 1) / kRowBlock;
  const int64_t sx = x.stride(0), sdy = dy.stride(0), sdx = dx.stride(0);
  const T* xb = static_cast<const T*>(x.raw());
  const E* dyb = static_cast<const E*>(dy.raw());
  const G* g = static_cast<const G*>(gain.raw());
  D* dxb = static_cast<D*>(dx.raw());
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t r1 = std::min(n, (b + 1) * kRowBlock);
    for (int64_t r = b * kRowBlock; r < r1; ++r)
      backward_row(xb + r * sx, dyb + r * sdy, g, dxb + r * sdx, part + b * h, h, rs[r]);
  }
}

// The storage types as template arguments: f(float|bf16 tag, ...) for each dtype in turn.
template <class F>
void with_type(DType t, F&& f) {
  if (t == DType::f32) f(float{});
  else f(bf16{});
}

}  // namespace

void CpuBackend::rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
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
  float* rs = rstd.defined() ? rstd.data<float>() : nullptr;
  with_type(x.dtype(), [&](auto xt) {
    with_type(gain.dtype(), [&](auto gt) {
      with_type(y.dtype(), [&](auto yt) {
        forward_rows<decltype(xt), decltype(gt), decltype(yt)>(x, gain, y, rs, options.eps);
      });
    });
  });
}

void CpuBackend::rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
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
  const float* rs = rstd.data<float>();
  const int64_t nblocks = (n + kRowBlock - 1) / kRowBlock;
  Tensor partial = Tensor::zeros({nblocks, h}, DType::f32, MemCategory::workspace);
  float* part = partial.data<float>();
  with_type(x.dtype(), [&](auto xt) {
    with_type(dy.dtype(), [&](auto et) {
      with_type(gain.dtype(), [&](auto gt) {
        with_type(dx.dtype(), [&](auto dt) {
          using T = decltype(xt);
          using E = decltype(et);
          backward_rows<T, E, decltype(gt), decltype(dt)>(dy, x, gain, rs, dx, part);
        });
      });
    });
  });
  // Fixed-order reduction of the block partials into dgain (column ranges in parallel).
  float* dg = dgain.data<float>();
  constexpr int64_t kCol = 16 * kLanes;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < h; c0 += kCol) {
    const int64_t c1 = std::min(h, c0 + kCol);
    for (int64_t c = c0; c < c1; c += kLanes) {
      const int64_t w = std::min<int64_t>(kLanes, c1 - c);
      Vec acc = vset(0.f);
      for (int64_t b = 0; b < nblocks; ++b) acc = acc + ld(part + b * h, c, w);
      st(dg, c, w, ld(dg, c, w) + acc);
    }
  }
}

}  // namespace tsp::kernels
