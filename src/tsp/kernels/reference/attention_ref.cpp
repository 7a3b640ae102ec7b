// Naive attention, double precision internally: S = scale q k^T, mask, softmax, P v; backward by
// the textbook formulas dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = scale dS K, dK = scale dS^T Q,
// dV = P^T dO.
#include "tsp/kernels/reference/attention_ref.h"

#include <cmath>
#include <limits>

#include "tsp/core/check.h"

namespace tsp::kernels::reference {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

int32_t qpos(const ProblemF64& p, int64_t i) {
  return p.q_pos.empty() ? static_cast<int32_t>(i) : p.q_pos[i];
}
int32_t kpos(const ProblemF64& p, int64_t j) {
  return p.k_pos.empty() ? static_cast<int32_t>(j) : p.k_pos[j];
}
double scale_of(const ProblemF64& p) {
  return p.scale > 0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(p.d));
}

// Probabilities P [Sq, Sk] of head (b, h) (0 where masked; rows that see nothing are all 0) and
// the log-sum-exp of each row.
void probabilities(const ProblemF64& p, int64_t b, int64_t h, std::vector<double>& P,
                   std::vector<double>& lse) {
  const int64_t hk = h / (p.H / p.Hkv);
  const double scale = scale_of(p);
  P.assign(p.Sq * p.Sk, 0.0);
  lse.assign(p.Sq, -kInf);
  std::vector<double> s(p.Sk);
  std::vector<char> vis(p.Sk);
  for (int64_t i = 0; i < p.Sq; ++i) {
    const double* qi = &p.q[((b * p.Sq + i) * p.H + h) * p.d];
    double mx = -kInf;
    for (int64_t j = 0; j < p.Sk; ++j) {
      vis[j] = !p.causal || (kpos(p, j) <= qpos(p, i) &&
                             (p.window <= 0 || int64_t{qpos(p, i)} - kpos(p, j) < p.window));
      if (!vis[j]) continue;
      const double* kj = &p.k[((b * p.Sk + j) * p.Hkv + hk) * p.d];
      double dot = 0;
      for (int64_t x = 0; x < p.d; ++x) dot += qi[x] * kj[x];
      s[j] = scale * dot;
      mx = std::max(mx, s[j]);
    }
    if (mx == -kInf) continue;
    double sum = 0;
    for (int64_t j = 0; j < p.Sk; ++j)
      if (vis[j]) sum += std::exp(s[j] - mx);
    for (int64_t j = 0; j < p.Sk; ++j)
      if (vis[j]) P[i * p.Sk + j] = std::exp(s[j] - mx) / sum;
    lse[i] = mx + std::log(sum);
  }
}

std::vector<double> to_doubles(const Tensor& t) {
  const Tensor f = t.to_f32();
  const float* x = f.data<float>();
  return std::vector<double>(x, x + f.numel());
}

std::vector<int32_t> positions(const Tensor& pos, int64_t n, const char* name) {
  if (!pos.defined()) return {};
  TSP_CHECK_SHAPE(pos.dtype() == DType::i32 && pos.rank() == 1 && pos.dim(0) == n,
                  "attention reference: ", name, " must be i32[", n, "], got ", pos.describe());
  std::vector<int32_t> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = pos.data<int32_t>()[i * pos.stride(0)];
  return out;
}

ProblemF64 make(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                const Tensor& k_pos, const FlashAttentionOptions& opt) {
  TSP_CHECK_SHAPE(q.rank() == 4 && k.rank() == 4 && k.shape() == v.shape() &&
                      q.dim(0) == k.dim(0) && q.dim(3) == k.dim(3) && k.dim(2) > 0 &&
                      q.dim(2) % k.dim(2) == 0,
                  "attention reference: bad shapes q ", q.describe(), " k ", k.describe(), " v ",
                  v.describe());
  ProblemF64 p;
  p.B = q.dim(0);
  p.Sq = q.dim(1);
  p.H = q.dim(2);
  p.d = q.dim(3);
  p.Sk = k.dim(1);
  p.Hkv = k.dim(2);
  p.scale = opt.scale;
  p.causal = opt.causal;
  p.window = opt.window;
  p.q_pos = positions(q_pos, p.Sq, "q_pos");
  p.k_pos = positions(k_pos, p.Sk, "k_pos");
  p.q = to_doubles(q);
  p.k = to_doubles(k);
  p.v = to_doubles(v);
  return p;
}

// dst (any strides, f32/bf16) = src (contiguous doubles), or += when accumulate.
void write(Tensor& dst, const std::vector<double>& src, bool accumulate) {
  Tensor tmp = accumulate ? dst.to_f32()
                          : Tensor::empty(dst.shape(), DType::f32, MemCategory::workspace);
  float* t = tmp.data<float>();
  for (size_t i = 0; i < src.size(); ++i)
    t[i] = static_cast<float>((accumulate ? static_cast<double>(t[i]) : 0.0) + src[i]);
  dst.copy_from(tmp);
}

}  // namespace

void forward_f64(const ProblemF64& p, std::vector<double>& o, std::vector<double>& lse) {
  o.assign(p.B * p.Sq * p.H * p.d, 0.0);
  lse.assign(p.B * p.H * p.Sq, -kInf);
  std::vector<double> P, l;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t hk = h / (p.H / p.Hkv);
      probabilities(p, b, h, P, l);
      for (int64_t i = 0; i < p.Sq; ++i) {
        lse[(b * p.H + h) * p.Sq + i] = l[i];
        double* oi = &o[((b * p.Sq + i) * p.H + h) * p.d];
        for (int64_t j = 0; j < p.Sk; ++j) {
          const double pij = P[i * p.Sk + j];
          if (pij == 0) continue;
          const double* vj = &p.v[((b * p.Sk + j) * p.Hkv + hk) * p.d];
          for (int64_t x = 0; x < p.d; ++x) oi[x] += pij * vj[x];
        }
      }
    }
}

void backward_f64(const ProblemF64& p, const std::vector<double>& d_o, std::vector<double>& dq,
                  std::vector<double>& dk, std::vector<double>& dv) {
  const double scale = scale_of(p);
  dq.assign(p.B * p.Sq * p.H * p.d, 0.0);
  dk.assign(p.B * p.Sk * p.Hkv * p.d, 0.0);
  dv.assign(dk.size(), 0.0);
  std::vector<double> P, l, dP(p.Sk);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t hk = h / (p.H / p.Hkv);
      probabilities(p, b, h, P, l);
      for (int64_t i = 0; i < p.Sq; ++i) {
        const int64_t q_row = ((b * p.Sq + i) * p.H + h) * p.d;
        const double* gi = &d_o[q_row];
        const double* qi = &p.q[q_row];
        double Di = 0;
        for (int64_t j = 0; j < p.Sk; ++j) {
          const double* vj = &p.v[((b * p.Sk + j) * p.Hkv + hk) * p.d];
          double dot = 0;
          for (int64_t x = 0; x < p.d; ++x) dot += gi[x] * vj[x];
          dP[j] = dot;
          Di += P[i * p.Sk + j] * dot;
        }
        for (int64_t j = 0; j < p.Sk; ++j) {
          const double pij = P[i * p.Sk + j];
          if (pij == 0) continue;
          const double ds = pij * (dP[j] - Di) * scale;
          const int64_t kv_row = ((b * p.Sk + j) * p.Hkv + hk) * p.d;
          for (int64_t x = 0; x < p.d; ++x) {
            dq[q_row + x] += ds * p.k[kv_row + x];
            dk[kv_row + x] += ds * qi[x];
            dv[kv_row + x] += pij * gi[x];
          }
        }
      }
    }
}

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       const Tensor& k_pos, Tensor& o, Tensor& lse,
                       const FlashAttentionOptions& options) {
  const ProblemF64 p = make(q, k, v, q_pos, k_pos, options);
  check_same_shape(o, q, "attention reference: o vs q");
  TSP_CHECK_SHAPE(lse.rank() == 3 && lse.dim(0) == p.B && lse.dim(1) == p.H && lse.dim(2) == p.Sq,
                  "attention reference: lse ", lse.describe(), " for q ", q.describe());
  std::vector<double> out, lse_out;
  forward_f64(p, out, lse_out);
  write(o, out, false);
  write(lse, lse_out, false);
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& d_o,
                        const Tensor& q_pos, const Tensor& k_pos, Tensor& dq, Tensor& dk,
                        Tensor& dv, const FlashAttentionOptions& options) {
  const ProblemF64 p = make(q, k, v, q_pos, k_pos, options);
  check_same_shape(d_o, q, "attention reference: do vs q");
  check_same_shape(dq, q, "attention reference: dq vs q");
  check_same_shape(dk, k, "attention reference: dk vs k");
  check_same_shape(dv, k, "attention reference: dv vs k");
  std::vector<double> gq, gk, gv;
  backward_f64(p, to_doubles(d_o), gq, gk, gv);
  write(dq, gq, options.accumulate_grads);
  write(dk, gk, options.accumulate_grads);
  write(dv, gv, options.accumulate_grads);
}

}  // namespace tsp::kernels::reference
