// SwiGLU kernels: rows streamed kLanes columns at a time through simd.h Vec (16 lanes on AVX-512,
// else 8; vexp), each operand loaded from its own storage type (f32 or bf16) straight into
// registers. Every chunk is read completely before it is written, so the exact-alias in-place forms
// are safe. The last f % kLanes columns go through the same vector code (masked lanes), so every
// column gets the same arithmetic: vexp (<= 2e-7 relative, simd.h) instead of std::exp, which does
// not vectorise.
#include "tsp/kernels/swiglu.h"

#include <algorithm>
#include <cstdint>

#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/row_lanes.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using namespace simd;

using row_lanes::load;
using row_lanes::row;
using row_lanes::store;

void check(const Tensor& t, const Tensor& ref, const char* name, const char* op) {
  TSP_CHECK_SHAPE(t.defined() && t.rank() == 2, op, ": ", name, " must be [N, F], got ",
                  t.describe());
  TSP_CHECK_DTYPE(t.dtype() == DType::f32 || t.dtype() == DType::bf16, op, ": ", name,
                  " must be f32 or bf16, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.has_unit_inner_stride(), op, ": ", name,
              " needs unit inner stride, got ", t.describe());
  TSP_CHECK_SHAPE(t.shape() == ref.shape(), op, ": ", name, " ", t.describe(),
                  " does not match gate ", ref.describe());
}

}  // namespace

void CpuBackend::swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  const char* op = "swiglu_forward";
  check(gate, gate, "gate", op);
  check(up, gate, "up", op);
  check(out, gate, "out", op);
  const int64_t n = gate.dim(0), f = gate.dim(1);
  const DType tg = gate.dtype(), tu = up.dtype(), to = out.dtype();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const char* gr = row(gate, r);
    const char* ur = row(up, r);
    char* orow = row(out, r);
    const Vec one = vset(1.f);
    for (int64_t c = 0; c < f; c += kLanes) {
      const int64_t w = std::min<int64_t>(kLanes, f - c);
      const Vec g = load(gr, tg, c, w), u = load(ur, tu, c, w);
      store(orow, to, c, w, g / (one + vexp(vneg(g))) * u);
    }
  }
}

void CpuBackend::swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                                 const Tensor& dgate, const Tensor& dup) {
  const char* op = "swiglu_backward";
  check(gate, gate, "gate", op);
  check(dout, gate, "dout", op);
  check(up, gate, "up", op);
  check(dgate, gate, "dgate", op);
  check(dup, gate, "dup", op);
  const int64_t n = gate.dim(0), f = gate.dim(1);
  const DType tg = gate.dtype(), tu = up.dtype(), td = dout.dtype();
  const DType tdg = dgate.dtype(), tdu = dup.dtype();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const char* gr = row(gate, r);
    const char* ur = row(up, r);
    const char* dr = row(dout, r);
    char* dgr = row(dgate, r);
    char* dur = row(dup, r);
    const Vec one = vset(1.f), zero = vset(0.f);
    for (int64_t c = 0; c < f; c += kLanes) {
      const int64_t w = std::min<int64_t>(kLanes, f - c);
      const Vec g = load(gr, tg, c, w), u = load(ur, tu, c, w), d = load(dr, td, c, w);
      // silu(g) = g s, silu'(g) = s (1 + g (1 - s)), s = sigmoid(g). For g >= 0, 1 - s is taken
      // as e s (e = exp(-g) <= 1) instead of the cancelling 1 - s, which loses ~g 2^-24 / (1 - s).
      const Vec e = vexp(vneg(g));
      const Vec s = one / (one + e);
      const Vec oms = vselect(vge(g, zero), e * s, one - s);
      const Vec silu = g * s;
      const Vec dsilu = s * vfma(g, oms, one);
      store(dgr, tdg, c, w, d * u * dsilu);
      store(dur, tdu, c, w, d * silu);
    }
  }
}

}  // namespace tsp::kernels
