// oneDNN matmul adapter: the only file that talks to oneDNN. Primitives are cached per thread by
// (shape, strides, dtypes, alpha, beta) since creating one costs ~0.3 ms; scratchpad comes from the ledger.
#include "tsp/kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>

#include <cstring>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "tsp/kernels/bf16_math.h"
#include "tsp/kernels/cpu_backend.h"

namespace tsp::kernels {
namespace {

using dnnl::memory;

struct GemmKey {
  int64_t m, n, k;
  int64_t a_rs, a_cs, b_rs, b_cs, c_rs;  // strides of logical A [M,K], B [K,N], C [M,N] rows
  DType ta, tb, tc;
  float alpha, beta;
  bool operator==(const GemmKey&) const = default;
};

struct GemmKeyHash {
  size_t operator()(const GemmKey& key) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (int64_t v : {key.m, key.n, key.k, key.a_rs, key.a_cs, key.b_rs, key.b_cs, key.c_rs}) mix(static_cast<uint64_t>(v));
    mix(static_cast<uint64_t>(key.ta) | static_cast<uint64_t>(key.tb) << 8 | static_cast<uint64_t>(key.tc) << 16);
    uint32_t fa, fb;
    std::memcpy(&fa, &key.alpha, 4);
    std::memcpy(&fb, &key.beta, 4);
    mix(fa);
    mix(fb);
    return h;
  }
};

struct GemmPrimitive {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

memory::data_type to_dnnl(DType t) {
  switch (t) {
    case DType::f32: return memory::data_type::f32;
    case DType::bf16: return memory::data_type::bf16;
    default: break;
  }
  TSP_THROW(DTypeError, "gemm does not support dtype ", t);
}

// Per-thread oneDNN state: engine, stream, primitive cache and a scratchpad that only grows.
class GemmContext {
 public:
  GemmContext() : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}

  static GemmContext& this_thread() {
    thread_local GemmContext ctx;
    return ctx;
  }

  const GemmPrimitive& primitive(const GemmKey& key) {
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    const memory::desc a_md({key.m, key.k}, to_dnnl(key.ta), {key.a_rs, key.a_cs});
    const memory::desc b_md({key.k, key.n}, to_dnnl(key.tb), {key.b_rs, key.b_cs});
    const memory::desc c_md({key.m, key.n}, to_dnnl(key.tc), {key.c_rs, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (key.alpha != 1.f) attr.set_output_scales(0, {key.alpha});
    if (key.beta != 0.f) {
      dnnl::post_ops ops;
      ops.append_sum(key.beta);
      attr.set_post_ops(ops);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine_);
    ++created_;
    return cache_.emplace(key, GemmPrimitive{pd, dnnl::matmul(pd)}).first->second;
  }

  void* scratchpad(size_t bytes) {
    if (bytes > scratch_.nbytes()) {
      scratch_ = Tensor();
      scratch_ = Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::i32, MemCategory::workspace);
    }
    return bytes == 0 ? nullptr : scratch_.raw();
  }

  dnnl::engine& engine() { return engine_; }
  dnnl::stream& stream() { return stream_; }
  int64_t created() const { return created_; }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::unordered_map<GemmKey, GemmPrimitive, GemmKeyHash> cache_;
  Tensor scratch_;
  int64_t created_ = 0;
};

void check_operand(const Tensor& t, const char* name) {
  TSP_CHECK(t.defined(), "gemm: operand ", name, " is undefined");
  TSP_CHECK_SHAPE(t.rank() == 2, "gemm: operand ", name, " must be 2-D, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.stride(1) == 1 || t.dim(1) <= 1, "gemm: operand ", name,
              " needs a unit inner stride, got ", t.describe());
  TSP_CHECK_T(LayoutError, t.stride(0) >= t.dim(1) || t.dim(0) <= 1, "gemm: operand ", name,
              " has overlapping rows: ", t.describe());
}

bool overlaps(const Tensor& x, const Tensor& y) {
  if (x.numel() == 0 || y.numel() == 0) return false;
  auto span = [](const Tensor& t) {
    const char* lo = static_cast<const char*>(t.raw());
    const int64_t extent = (t.dim(0) - 1) * t.stride(0) + t.dim(1);
    return std::pair{lo, lo + extent * static_cast<int64_t>(t.element_size())};
  };
  auto [xl, xh] = span(x);
  auto [yl, yh] = span(y);
  return xl < yh && yl < xh;
}

void scale_in_place(Tensor& c, float beta) {
  for (int64_t i = 0; i < c.dim(0); ++i) {
    Tensor row = c.select(0, i);
    if (c.dtype() == DType::f32) {
      float* p = row.data<float>();
      for (int64_t j = 0; j < c.dim(1); ++j) p[j] = beta == 0.f ? 0.f : beta * p[j];
    } else {
      bf16* p = row.data<bf16>();
      for (int64_t j = 0; j < c.dim(1); ++j) p[j] = bf16(beta == 0.f ? 0.f : beta * static_cast<float>(p[j]));
    }
  }
}

// oneDNN 2.6 implements bf16 matmul only on AVX-512 CPUs. Elsewhere (e.g. AVX2-only Zen 3), and
// where bf16_math() says fp32 FMAs are faster than the CPU's bf16 dot products (Intel AVX512-BF16
// without AMX), bf16 operands are widened to fp32 in workspace buffers: exact, the same fp32
// accumulation, fp32 GEMM speed.
bool native_bf16_matmul() {
  static const bool supported = [] {
    if (bf16_math() != Bf16Math::native) return false;
    try {
      dnnl::engine eng(dnnl::engine::kind::cpu, 0);
      const memory::desc md({8, 8}, memory::data_type::bf16, memory::format_tag::ab);
      const memory::desc out({8, 8}, memory::data_type::f32, memory::format_tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(md, md, out), eng);
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return supported;
}

}  // namespace

bool gemm_native_bf16() { return native_bf16_matmul(); }

bool gemm_onednn_has_amx() {
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned amx = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_amx);
  return (isa & amx) == amx;
}

void CpuBackend::gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options) {
  check_operand(a, "A");
  check_operand(b, "B");
  check_operand(c, "C");
  const int64_t m = options.trans_a ? a.dim(1) : a.dim(0);
  const int64_t k = options.trans_a ? a.dim(0) : a.dim(1);
  const int64_t kb = options.trans_b ? b.dim(1) : b.dim(0);
  const int64_t n = options.trans_b ? b.dim(0) : b.dim(1);
  TSP_CHECK_SHAPE(k == kb && c.dim(0) == m && c.dim(1) == n, "gemm: op(A) [", m, ", ", k, "] x op(B) [", kb,
                  ", ", n, "] -> C ", c.shape(), " (A ", a.describe(), (options.trans_a ? " transposed" : ""),
                  ", B ", b.describe(), (options.trans_b ? " transposed" : ""), ")");
  TSP_CHECK_DTYPE(a.dtype() == b.dtype() && (a.dtype() == DType::f32 || a.dtype() == DType::bf16),
                  "gemm: A and B must both be f32 or both bf16, got ", a.dtype(), " and ", b.dtype());
  TSP_CHECK_DTYPE(c.dtype() == DType::f32 || (c.dtype() == DType::bf16 && a.dtype() == DType::bf16),
                  "gemm: C of dtype ", c.dtype(), " with ", a.dtype(), " inputs is not supported");
  TSP_CHECK_T(LayoutError, !overlaps(c, a) && !overlaps(c, b), "gemm: C ", c.describe(),
              " overlaps an input");
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_in_place(c, options.beta);
    return;
  }
  if (a.dtype() == DType::bf16 && !native_bf16_matmul()) {
    const Tensor a32 = a.to_f32(), b32 = b.to_f32();
    if (c.dtype() == DType::f32) {
      gemm(a32, b32, c, options);
    } else {
      Tensor c32 = options.beta == 0.f ? Tensor::empty(c.shape(), DType::f32, MemCategory::workspace) : c.to_f32();
      gemm(a32, b32, c32, options);
      c.copy_from(c32);
    }
    return;
  }
  // Logical A [M,K] and B [K,N] expressed through strides; a transpose is a stride swap.
  const int64_t a_rs = options.trans_a ? 1 : a.stride(0), a_cs = options.trans_a ? a.stride(0) : 1;
  const int64_t b_rs = options.trans_b ? 1 : b.stride(0), b_cs = options.trans_b ? b.stride(0) : 1;
  // Degenerate single-row/column views may carry arbitrary strides; normalise so the key is stable.
  const GemmKey key{m, n, k, a_rs, a_cs, b_rs, b_cs, c.dim(0) <= 1 ? n : c.stride(0),
                    a.dtype(), b.dtype(), c.dtype(), options.alpha, options.beta};
  GemmContext& ctx = GemmContext::this_thread();
  const GemmPrimitive& gp = ctx.primitive(key);
  memory a_mem(gp.pd.src_desc(), ctx.engine(), a.raw());
  memory b_mem(gp.pd.weights_desc(), ctx.engine(), b.raw());
  memory c_mem(gp.pd.dst_desc(), ctx.engine(), c.raw());
  const memory::desc sp_md = gp.pd.scratchpad_desc();
  memory sp_mem(sp_md, ctx.engine(), ctx.scratchpad(sp_md.get_size()));
  gp.prim.execute(ctx.stream(), {{DNNL_ARG_SRC, a_mem},
                                 {DNNL_ARG_WEIGHTS, b_mem},
                                 {DNNL_ARG_DST, c_mem},
                                 {DNNL_ARG_SCRATCHPAD, sp_mem}});
  ctx.stream().wait();
}

int64_t gemm_primitives_created() { return GemmContext::this_thread().created(); }

}  // namespace tsp::kernels
