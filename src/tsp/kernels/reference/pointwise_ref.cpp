// Naive double-precision references of RMSNorm, RoPE, SwiGLU, embedding and AdamW.
// Straight loops over the defining formulas; performance is irrelevant here.
#include "tsp/kernels/reference/pointwise_ref.h"

#include <cmath>

namespace tsp::kernels::reference {

Vec to_doubles(const Tensor& t) {
  Vec v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::i32 || t.dtype() == DType::i64) {
    const std::vector<int64_t> ints = to_ints(t);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(ints[i]);
    return v;
  }
  const Tensor f = t.to_f32();
  const float* p = f.data<float>();
  for (size_t i = 0; i < v.size(); ++i) v[i] = p[i];
  return v;
}

std::vector<int64_t> to_ints(const Tensor& t) {
  TSP_CHECK_DTYPE(t.dtype() == DType::i32 || t.dtype() == DType::i64, "to_ints: ", t.describe());
  Tensor c = Tensor::empty(t.shape(), t.dtype(), MemCategory::workspace);
  c.copy_from(t);
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = t.dtype() == DType::i32 ? c.data<int32_t>()[i] : c.data<int64_t>()[i];
  return v;
}

Tensor from_doubles(const Vec& v, const Shape& shape, DType dtype) {
  TSP_CHECK_SHAPE(static_cast<int64_t>(v.size()) == shape.numel(), "from_doubles: ", v.size(),
                  " values for shape ", shape);
  Tensor f = Tensor::empty(shape, DType::f32, MemCategory::workspace);
  for (size_t i = 0; i < v.size(); ++i) f.data<float>()[i] = static_cast<float>(v[i]);
  return dtype == DType::f32 ? f : Tensor::copy_of(f, dtype, MemCategory::workspace);
}

void rmsnorm_forward(const Vec& x, const Vec& g, int64_t n, int64_t h, double eps, Vec& y, Vec& rstd) {
  y.assign(static_cast<size_t>(n * h), 0.0);
  rstd.assign(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < h; ++j) ss += x[r * h + j] * x[r * h + j];
    rstd[r] = 1.0 / std::sqrt(ss / static_cast<double>(h) + eps);
    for (int64_t j = 0; j < h; ++j) y[r * h + j] = x[r * h + j] * rstd[r] * g[j];
  }
}

void rmsnorm_backward(const Vec& dy, const Vec& x, const Vec& g, int64_t n, int64_t h, double eps,
                      Vec& dx, Vec& dg) {
  dx.assign(static_cast<size_t>(n * h), 0.0);
  dg.assign(static_cast<size_t>(h), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0, dot = 0;
    for (int64_t j = 0; j < h; ++j) ss += x[r * h + j] * x[r * h + j];
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(h) + eps);
    for (int64_t j = 0; j < h; ++j) dot += dy[r * h + j] * g[j] * x[r * h + j];
    // d rs / d x_j = -rs^3 x_j / h
    for (int64_t j = 0; j < h; ++j) {
      dx[r * h + j] = dy[r * h + j] * g[j] * rs - rs * rs * rs * x[r * h + j] * dot / static_cast<double>(h);
      dg[j] += dy[r * h + j] * x[r * h + j] * rs;
    }
  }
}

Vec rope(const Vec& x, int64_t B, int64_t S, int64_t H, int64_t d, const std::vector<int64_t>& pos,
         double theta, double sign) {
  Vec y(x.size());
  const int64_t half = d / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t hh = 0; hh < H; ++hh) {
        const int64_t base = ((b * S + s) * H + hh) * d;
        for (int64_t i = 0; i < half; ++i) {
          const double inv_freq = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(d));
          const double a = sign * static_cast<double>(pos[s]) * inv_freq;
          const double x1 = x[base + i], x2 = x[base + i + half];
          y[base + i] = x1 * std::cos(a) - x2 * std::sin(a);
          y[base + i + half] = x2 * std::cos(a) + x1 * std::sin(a);
        }
      }
  return y;
}

namespace {
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
}  // namespace

Vec swiglu_forward(const Vec& gate, const Vec& up) {
  Vec out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
  return out;
}

void swiglu_backward(const Vec& dout, const Vec& gate, const Vec& up, Vec& dgate, Vec& dup) {
  dgate.assign(gate.size(), 0.0);
  dup.assign(gate.size(), 0.0);
  for (size_t i = 0; i < gate.size(); ++i) {
    const double s = sigmoid(gate[i]);
    dup[i] = dout[i] * gate[i] * s;
    dgate[i] = dout[i] * up[i] * (s + gate[i] * s * (1.0 - s));
  }
}

Vec embedding_forward(const std::vector<int64_t>& ids, const Vec& table, int64_t rows, int64_t h,
                      int64_t row_offset) {
  const int64_t n = static_cast<int64_t>(ids.size());
  Vec out(static_cast<size_t>(n * h), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = ids[i] - row_offset;
    if (r < 0 || r >= rows) continue;
    for (int64_t j = 0; j < h; ++j) out[i * h + j] = table[r * h + j];
  }
  return out;
}

void embedding_backward(const std::vector<int64_t>& ids, const Vec& dout, int64_t rows, int64_t h,
                        int64_t row_offset, Vec& dtable) {
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t r = ids[i] - row_offset;
    if (r < 0 || r >= rows) continue;
    for (int64_t j = 0; j < h; ++j) dtable[r * h + j] += dout[static_cast<int64_t>(i) * h + j];
  }
}

void adamw_step(Vec& p, Vec& m, Vec& v, const Vec& g, int64_t step, double lr, double beta1,
                double beta2, double eps, double weight_decay) {
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] *= 1.0 - lr * weight_decay;
    m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
    v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
    const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + eps;
    p[i] -= lr / bc1 * m[i] / denom;
  }
}

Vec bias_add(const Vec& y, const Vec& b, int64_t rows, int64_t n) {
  Vec out(y);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) out[static_cast<size_t>(r * n + c)] += b[static_cast<size_t>(c)];
  return out;
}

Vec bias_column_sums(const Vec& dy, int64_t rows, int64_t n) {
  Vec db(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < n; ++c) db[static_cast<size_t>(c)] += dy[static_cast<size_t>(r * n + c)];
  return db;
}

}  // namespace tsp::kernels::reference
