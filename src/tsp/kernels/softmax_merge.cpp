// merge_partials: the tensor-level log-sum-exp merge of two attention partials (fp32 math).
#include "tsp/kernels/softmax_merge.h"

#include <initializer_list>

#include "tsp/core/check.h"
#include "tsp/kernels/cpu_backend.h"

namespace tsp::kernels {

namespace {

inline float load(const void* base, DType t, int64_t off) {
  return t == DType::f32 ? static_cast<const float*>(base)[off]
                         : static_cast<float>(static_cast<const bf16*>(base)[off]);
}
inline void store(void* base, DType t, int64_t off, float v) {
  if (t == DType::f32) static_cast<float*>(base)[off] = v;
  else static_cast<bf16*>(base)[off] = bf16(v);
}

}  // namespace

void CpuBackend::merge_partials(const Tensor& o_a, const Tensor& lse_a, const Tensor& o_b,
                                const Tensor& lse_b, Tensor& o, Tensor& lse) {
  const auto shapes = [&] {
    return tsp::detail::concat(" (o_a ", o_a.describe(), ", lse_a ", lse_a.describe(), ", o_b ",
                          o_b.describe(), ", lse_b ", lse_b.describe(), ", o ", o.describe(),
                          ", lse ", lse.describe(), ")");
  };
  for (const Tensor* t : std::initializer_list<const Tensor*>{&o_a, &lse_a, &o_b, &lse_b, &o, &lse})
    TSP_CHECK(t->defined(), "merge_partials: undefined tensor argument");
  TSP_CHECK_SHAPE(o_a.rank() == 4 && o_a.shape() == o_b.shape() && o_a.shape() == o.shape(),
                  "merge_partials: partial outputs must share one [B, S, H, d] shape", shapes());
  const int64_t B = o.dim(0), S = o.dim(1), H = o.dim(2), d = o.dim(3);
  for (const Tensor* l : std::initializer_list<const Tensor*>{&lse_a, &lse_b, &lse}) {
    TSP_CHECK_SHAPE(l->rank() == 3 && l->dim(0) == B && l->dim(1) == H && l->dim(2) == S,
                    "merge_partials: lse must be [B, H, S]", shapes());
    TSP_CHECK_DTYPE(l->dtype() == DType::f32, "merge_partials: lse must be f32", shapes());
  }
  for (const Tensor* t : std::initializer_list<const Tensor*>{&o_a, &o_b, &o}) {
    TSP_CHECK_DTYPE(t->dtype() == DType::f32 || t->dtype() == DType::bf16,
                    "merge_partials: outputs must be f32 or bf16", shapes());
    TSP_CHECK_T(LayoutError, t->has_unit_inner_stride(),
                "merge_partials: outputs need unit inner stride", shapes());
  }

  const char* pa = static_cast<const char*>(o_a.raw());
  const char* pb = static_cast<const char*>(o_b.raw());
  char* po = static_cast<char*>(o.raw());
  const float* la = lse_a.data<float>();
  const float* lb = lse_b.data<float>();
  float* lo = lse.data<float>();
  const DType ta = o_a.dtype(), tb = o_b.dtype(), to = o.dtype();
  const size_t ea = o_a.element_size(), eb = o_b.element_size(), eo = o.element_size();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t ia = b * lse_a.stride(0) + h * lse_a.stride(1) + s * lse_a.stride(2);
        const int64_t ib = b * lse_b.stride(0) + h * lse_b.stride(1) + s * lse_b.stride(2);
        const int64_t io = b * lse.stride(0) + h * lse.stride(1) + s * lse.stride(2);
        const LseMerge w = merge_lse(la[ia], lb[ib]);
        const void* ra = pa + ea * (b * o_a.stride(0) + s * o_a.stride(1) + h * o_a.stride(2));
        const void* rb = pb + eb * (b * o_b.stride(0) + s * o_b.stride(1) + h * o_b.stride(2));
        void* ro = po + eo * (b * o.stride(0) + s * o.stride(1) + h * o.stride(2));
        // Each element is read before it is written, so o may alias o_a (or o_b). A partial with
        // weight 0 is not read at all (an empty partial's o is never trusted).
        for (int64_t x = 0; x < d; ++x) {
          float acc = 0.f;
          if (w.wa != 0.f) acc += w.wa * load(ra, ta, x);
          if (w.wb != 0.f) acc += w.wb * load(rb, tb, x);
          store(ro, to, x, acc);
        }
        lo[io] = w.lse;
      }
}

}  // namespace tsp::kernels
