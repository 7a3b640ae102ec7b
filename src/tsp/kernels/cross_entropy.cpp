// Chunked cross-entropy: per vocabulary block, logits come from one GEMM into an [N, chunk] fp32
// scratch and are folded row by row into OnlineSoftmax (softmax_merge.h); the backward recomputes them.
// The row passes (max, sum of exps, softmax gradient, bf16 rounding) run in simd.h Vec (16 lanes on
// AVX-512, else 8; vexp, masked tails).
#include "tsp/kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/simd.h"
#include "tsp/kernels/softmax_merge.h"

namespace tsp::kernels {
namespace {

using namespace simd;

inline Vec ld(const float* z, int64_t j, int64_t n) { return n == kLanes ? vload(z + j) : vload_tail(z + j, n); }
template <class T>
inline void st(T* z, int64_t j, int64_t n, Vec v) {
  if (n == kLanes) vstore(z + j, v);
  else vstore_tail(z + j, v, n);
}

// The first n < kLanes lanes of a, the others `fill` (a staging copy; tails only).
inline Vec tail_or(Vec a, int64_t n, float fill) {
  alignas(64) float buf[kLanes];
  std::fill(buf, buf + kLanes, fill);
  vstore_tail(buf, a, n);
  return vload(buf);
}

// max_j z[j] over the n logits of a row (-inf when n = 0; NaNs are dropped as by std::max, and
// show up in the sum of exps instead).
inline float row_max(const float* z, int64_t n) {
  Vec m = vset(kNegInf);
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) m = vmax(m, vload(z + j));
  if (j < n) m = vmax(m, tail_or(vload_tail(z + j, n - j), n - j, kNegInf));
  return vhmax(m);
}

// sum_j e^(z[j] - mm) over the n logits of a row.
inline float row_sum_exp(const float* z, int64_t n, float mm) {
  const Vec neg_m = vset(-mm);
  Vec s0 = vset(0.f), s1 = s0;
  int64_t j = 0;
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
    s0 = s0 + vexp(vload(z + j) + neg_m);
    s1 = s1 + vexp(vload(z + j + kLanes) + neg_m);
  }
  for (; j + kLanes <= n; j += kLanes) s0 = s0 + vexp(vload(z + j) + neg_m);
  if (j < n) s1 = s1 + tail_or(vexp(vload_tail(z + j, n - j) + neg_m), n - j, 0.f);
  return vhsum(s0 + s1);
}

// z[j] = e^(z[j] - lse) * scale in place, and (when d) its bf16 rounding into d.
inline void row_softmax_grad(float* z, bf16* d, int64_t n, float lse, float scale) {
  const Vec neg_l = vset(-lse), vs = vset(scale);
  for (int64_t j = 0; j < n; j += kLanes) {
    const int64_t w = std::min<int64_t>(kLanes, n - j);
    const Vec p = vexp(ld(z, j, w) + neg_l) * vs;
    st(z, j, w, p);
    if (d) st(d, j, w, p);
  }
}

int64_t load_target(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::i32) return t.data<int32_t>()[i * t.stride(0)];
  return t.data<int64_t>()[i * t.stride(0)];
}

void check_vec_f32(const Tensor& t, int64_t n, const char* name, const char* op) {
  TSP_CHECK_SHAPE(t.defined() && t.rank() == 1 && t.dim(0) == n, op, ": ", name, " must be [", n,
                  "], got ", t.describe());
  TSP_CHECK_DTYPE(t.dtype() == DType::f32, op, ": ", name, " must be f32, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.is_contiguous(), op, ": ", name, " must be contiguous, got ",
              t.describe());
}

// Checks x [N, h], w [Vc, h] (same float dtype, unit inner stride) and targets [N] i32|i64.
void check_inputs(const Tensor& x, const Tensor& w, const Tensor& targets, const char* op) {
  TSP_CHECK_SHAPE(x.defined() && w.defined() && x.rank() == 2 && w.rank() == 2 &&
                      x.dim(1) == w.dim(1),
                  op, ": x must be [N, h] and w [Vc, h], got x ", x.describe(), ", w ",
                  w.describe());
  TSP_CHECK_DTYPE((x.dtype() == DType::f32 || x.dtype() == DType::bf16) && x.dtype() == w.dtype(),
                  op, ": x and w must be both f32 or both bf16, got x ", x.describe(), ", w ",
                  w.describe());
  TSP_CHECK_T(LayoutError, x.has_unit_inner_stride() && w.has_unit_inner_stride(), op,
              ": x and w need unit inner stride, got x ", x.describe(), ", w ", w.describe());
  TSP_CHECK_SHAPE(targets.defined() && targets.rank() == 1 && targets.dim(0) == x.dim(0), op,
                  ": targets must be [N = ", x.dim(0), "], got ", targets.describe(), " for x ",
                  x.describe());
  TSP_CHECK_DTYPE(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, op,
                  ": targets must be i32 or i64, got ", targets.describe());
}

void check_grad(const Tensor& g, const Tensor& like, const char* name, const char* op) {
  TSP_CHECK_SHAPE(g.rank() == 2 && g.dim(0) == like.dim(0) && g.dim(1) == like.dim(1), op, ": ",
                  name, " ", g.describe(), " must have the shape of ", like.describe());
  TSP_CHECK_DTYPE(g.dtype() == DType::f32, op, ": ", name, " must be f32, got ", g.describe());
  TSP_CHECK_T(LayoutError, g.has_unit_inner_stride(), op, ": ", name,
              " needs unit inner stride, got ", g.describe());
}

int64_t block_cols(const CrossEntropyOptions& o, int64_t vc, const char* op) {
  TSP_CHECK(o.chunk_size > 0, op, ": chunk_size must be > 0, got ", o.chunk_size);
  return std::max<int64_t>(1, std::min(o.chunk_size, vc));
}

void check_targets_in_vocab(const Tensor& targets, int64_t v, const CrossEntropyOptions& o,
                            const char* op) {
  for (int64_t i = 0; i < targets.dim(0); ++i) {
    const int64_t t = load_target(targets, i);
    TSP_CHECK(t == o.ignore_index || (t >= 0 && t < v), op, ": target ", t, " of token ", i,
              " is outside the vocabulary [0, ", v, ") and is not ignore_index ", o.ignore_index,
              " (targets ", targets.describe(), ")");
  }
}

}  // namespace

CrossEntropyState::CrossEntropyState(int64_t n_tokens) {
  TSP_CHECK(n_tokens >= 0, "CrossEntropyState: negative token count ", n_tokens);
  max_ = Tensor::empty({n_tokens}, DType::f32, MemCategory::workspace);
  sum_ = Tensor::empty({n_tokens}, DType::f32, MemCategory::workspace);
  target_ = Tensor::empty({n_tokens}, DType::f32, MemCategory::workspace);
  reset();
}

void CrossEntropyState::reset() {
  const OnlineSoftmax empty;
  max_.fill(empty.m);
  sum_.fill(empty.l);
  target_.fill(std::numeric_limits<float>::quiet_NaN());
}

void CpuBackend::cross_entropy_chunk_forward(const Tensor& x, const Tensor& w_chunk, int64_t vocab_offset,
                                             const Tensor& targets, CrossEntropyState& state,
                                             const CrossEntropyOptions& options) {
  const char* op = "cross_entropy_chunk_forward";
  check_inputs(x, w_chunk, targets, op);
  TSP_CHECK_SHAPE(state.size() == x.dim(0), op, ": state holds ", state.size(),
                  " tokens but x is ", x.describe());
  TSP_CHECK(vocab_offset >= 0, op, ": negative vocab_offset ", vocab_offset);
  const int64_t n = x.dim(0), vc = w_chunk.dim(0);
  if (n == 0 || vc == 0) return;
  const int64_t cb = block_cols(options, vc, op);
  Tensor logits = Tensor::empty({n, cb}, DType::f32, MemCategory::workspace);
  float* m = state.max().data<float>();
  float* l = state.sum().data<float>();
  float* tl = state.target_logit().data<float>();
  const float* z0 = logits.data<float>();
  const int64_t ignore = options.ignore_index;

  for (int64_t c0 = 0; c0 < vc; c0 += cb) {
    const int64_t cw = std::min(cb, vc - c0);
    Tensor zc = logits.slice(1, 0, cw);
    gemm(x, w_chunk.slice(0, c0, cw), zc, GemmOptions{.trans_b = true});
    const int64_t lo = vocab_offset + c0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* z = z0 + i * cb;
      OnlineSoftmax s{m[i], l[i]};
      s.raise_max(row_max(z, cw));
      s.l += row_sum_exp(z, cw, s.m);
      m[i] = s.m;
      l[i] = s.l;
      const int64_t t = load_target(targets, i);
      if (t != ignore && t >= lo && t < lo + cw) tl[i] = z[t - lo];
    }
  }
}

CrossEntropyTotals CpuBackend::cross_entropy_finalize(const CrossEntropyState& state, const Tensor& targets,
                                                      const Tensor& lse, const Tensor& loss,
                                                      const CrossEntropyOptions& options) {
  const char* op = "cross_entropy_finalize";
  const int64_t n = state.size();
  TSP_CHECK_SHAPE(targets.defined() && targets.rank() == 1 && targets.dim(0) == n, op,
                  ": targets must be [", n, "], got ", targets.describe());
  TSP_CHECK_DTYPE(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, op,
                  ": targets must be i32 or i64, got ", targets.describe());
  check_vec_f32(lse, n, "lse", op);
  if (loss.defined()) check_vec_f32(loss, n, "loss", op);
  const float* m = state.max().data<float>();
  const float* l = state.sum().data<float>();
  const float* tl = state.target_logit().data<float>();
  float* out_lse = lse.data<float>();
  float* out_loss = loss.defined() ? loss.data<float>() : nullptr;
  CrossEntropyTotals totals;
  for (int64_t i = 0; i < n; ++i) {
    const float li = OnlineSoftmax{m[i], l[i]}.lse();
    out_lse[i] = li;
    const int64_t t = load_target(targets, i);
    float token_loss = 0.f;
    if (t != options.ignore_index) {
      TSP_CHECK(std::isfinite(tl[i]) && std::isfinite(li), op, ": token ", i, " with target ", t,
                " has target logit ", tl[i], " and lse ", li,
                " (its target was never in a folded vocabulary chunk, or the logits are not finite)");
      token_loss = li - tl[i];
      totals.loss_sum += static_cast<double>(token_loss);
      ++totals.n_valid;
    }
    if (out_loss) out_loss[i] = token_loss;
  }
  return totals;
}

void CpuBackend::cross_entropy_chunk_backward(const Tensor& x, const Tensor& w_chunk, int64_t vocab_offset,
                                              const Tensor& targets, const Tensor& lse, float scale,
                                              const Tensor& dx, const Tensor& dw_chunk,
                                              const CrossEntropyOptions& options) {
  const char* op = "cross_entropy_chunk_backward";
  check_inputs(x, w_chunk, targets, op);
  check_vec_f32(lse, x.dim(0), "lse", op);
  if (dx.defined()) check_grad(dx, x, "dx", op);
  if (dw_chunk.defined()) check_grad(dw_chunk, w_chunk, "dw_chunk", op);
  TSP_CHECK(vocab_offset >= 0, op, ": negative vocab_offset ", vocab_offset);
  TSP_CHECK(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  const int64_t n = x.dim(0), vc = w_chunk.dim(0);
  if (n == 0 || vc == 0 || (!dx.defined() && !dw_chunk.defined())) return;
  const int64_t cb = block_cols(options, vc, op);
  const bool bf = x.dtype() == DType::bf16;
  Tensor logits = Tensor::empty({n, cb}, DType::f32, MemCategory::workspace);
  Tensor dlog_bf = bf ? Tensor::empty({n, cb}, DType::bf16, MemCategory::workspace) : Tensor();
  float* z0 = logits.data<float>();
  bf16* b0 = bf ? dlog_bf.data<bf16>() : nullptr;
  const float* lse_p = lse.data<float>();
  const int64_t ignore = options.ignore_index;
  Tensor dx_c = dx;

  for (int64_t c0 = 0; c0 < vc; c0 += cb) {
    const int64_t cw = std::min(cb, vc - c0);
    const Tensor wc = w_chunk.slice(0, c0, cw);
    Tensor zc = logits.slice(1, 0, cw);
    gemm(x, wc, zc, GemmOptions{.trans_b = true});
    const int64_t lo = vocab_offset + c0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      float* z = z0 + i * cb;
      bf16* d = b0 ? b0 + i * cb : nullptr;
      const int64_t t = load_target(targets, i);
      if (t == ignore) {
        std::fill(z, z + cw, 0.f);
        if (d) std::fill(d, d + cw, bf16());  // +0
      } else {
        row_softmax_grad(z, d, cw, lse_p[i], scale);
        if (t >= lo && t < lo + cw) {
          z[t - lo] -= scale;
          if (d) d[t - lo] = bf16(z[t - lo]);
        }
      }
    }
    const Tensor dl = bf ? dlog_bf.slice(1, 0, cw) : zc;
    if (dx.defined()) gemm(dl, wc, dx_c, GemmOptions{.beta = 1.f});
    if (dw_chunk.defined()) {
      Tensor dwc = dw_chunk.slice(0, c0, cw);
      gemm(dl, x, dwc, GemmOptions{.trans_a = true, .beta = 1.f});
    }
  }
}

CrossEntropyTotals CpuBackend::cross_entropy_forward(const Tensor& x, const Tensor& w, const Tensor& targets,
                                                     const Tensor& lse, const Tensor& loss,
                                                     const CrossEntropyOptions& options) {
  const char* op = "cross_entropy_forward";
  check_inputs(x, w, targets, op);
  check_targets_in_vocab(targets, w.dim(0), options, op);
  CrossEntropyState state(x.dim(0));
  cross_entropy_chunk_forward(x, w, 0, targets, state, options);
  return cross_entropy_finalize(state, targets, lse, loss, options);
}

void CpuBackend::cross_entropy_backward(const Tensor& x, const Tensor& w, const Tensor& targets,
                                        const Tensor& lse, float scale, const Tensor& dx, const Tensor& dw,
                                        const CrossEntropyOptions& options) {
  const char* op = "cross_entropy_backward";
  check_inputs(x, w, targets, op);
  check_targets_in_vocab(targets, w.dim(0), options, op);
  cross_entropy_chunk_backward(x, w, 0, targets, lse, scale, dx, dw, options);
}

}  // namespace tsp::kernels
