// GEMM throughput at the shapes of h=512 and h=1024 Llama blocks with 2048-8192 tokens:
// forward x @ W^T (qkv, o, gate/up, down), backward dX = dY @ W and dW = dY^T @ X, f32 and bf16.
// Each row's label names the oneDNN implementation that ran (e.g. "brg:avx512_core", "gemm:jit"),
// so the ISA path is visible per row; ONEDNN_MAX_CPU_ISA=AVX2 shows the other path.
#include <benchmark/benchmark.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "bench_util.h"
#include "tsp/core/random.h"
#include "tsp/kernels/gemm.h"

namespace tsp::bench {
namespace {

enum class Pass { fwd, bwd_data, bwd_weight };

// The implementation oneDNN picks for one kernels::gemm call: the same matmul descriptor
// (logical A [M,K], B [K,N] as strides, C [M,N]), dtypes and attributes that GemmContext::primitive
// in src/tsp/kernels/gemm.cpp creates, queried with impl_info_str(). bf16 that kernels::gemm
// widens (no native bf16 matmul) runs the f32 primitive after a conversion.
std::string onednn_impl(int64_t m, int64_t n, int64_t k, int64_t a_rs, int64_t a_cs, int64_t b_rs,
                        int64_t b_cs, int64_t c_rs, DType ab, DType c, float beta) {
  using dnnl::memory;
  const bool widened = ab == DType::bf16 && !kernels::gemm_native_bf16();
  const auto dt = [&](DType t) {
    return t == DType::bf16 && !widened ? memory::data_type::bf16 : memory::data_type::f32;
  };
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    const memory::desc a_md({m, k}, dt(ab), {a_rs, a_cs});
    const memory::desc b_md({k, n}, dt(ab), {b_rs, b_cs});
    const memory::desc c_md({m, n}, widened ? memory::data_type::f32 : dt(c), {c_rs, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (beta != 0.f) {
      dnnl::post_ops ops;
      ops.append_sum(beta);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, eng);
    return std::string(widened ? "bf16 widened to f32, " : "") + "oneDNN " + pd.impl_info_str();
  } catch (const dnnl::error& e) {
    return std::string("oneDNN ? (") + e.what() + ")";
  }
}

// args: tokens T, in features K, out features N, dtype (0 f32, 1 bf16), pass.
void BM_Gemm(benchmark::State& state) {
  const int64_t t = state.range(0), in = state.range(1), out = state.range(2);
  const DType dt = state.range(3) ? DType::bf16 : DType::f32;
  const auto pass = static_cast<Pass>(state.range(4));
  Rng rng(1);
  Tensor x = Tensor::empty({t, in}, dt, MemCategory::activations);
  Tensor w = Tensor::empty({out, in}, dt, MemCategory::weights);
  Tensor dy = Tensor::empty({t, out}, dt, MemCategory::activations);
  fill_normal(x, rng);
  fill_normal(w, rng);
  fill_normal(dy, rng);
  Tensor y = Tensor::empty({t, out}, dt, MemCategory::activations);
  Tensor dx = Tensor::empty({t, in}, dt, MemCategory::activations);
  Tensor dw = Tensor::zeros({out, in}, DType::f32, MemCategory::grads);  // fp32 accumulation
  auto run = [&] {
    switch (pass) {
      case Pass::fwd: kernels::gemm(x, w, y, {.trans_b = true}); break;
      case Pass::bwd_data: kernels::gemm(dy, w, dx); break;
      case Pass::bwd_weight: kernels::gemm(dy, x, dw, {.trans_a = true, .beta = 1.f}); break;
    }
  };
  run();
  for (auto _ : state) run();
  report_flops(state, 2.0 * t * in * out, dt);
  switch (pass) {
    case Pass::fwd: state.SetLabel(onednn_impl(t, out, in, in, 1, 1, in, out, dt, dt, 0.f)); break;
    case Pass::bwd_data: state.SetLabel(onednn_impl(t, in, out, out, 1, in, 1, in, dt, dt, 0.f)); break;
    case Pass::bwd_weight:
      state.SetLabel(onednn_impl(out, in, t, 1, out, in, 1, in, dt, DType::f32, 1.f));
      break;
  }
}

void GemmArgs(benchmark::internal::Benchmark* b) {
  for (int64_t h : {512, 1024})
    for (int64_t t : {2048, 8192})
      for (int64_t dt : {0, 1}) {
        b->Args({t, h, 3 * h, dt, 0});      // fused q,k,v projection (MHA)
        b->Args({t, h, h, dt, 0});          // o_proj
        b->Args({t, h, 8 * h, dt, 0});      // fused gate,up
        b->Args({t, 4 * h, h, dt, 0});      // down_proj
        b->Args({t, h, 4 * h, dt, 1});      // dX of gate (dY [T,4h] @ W [4h,h])
        b->Args({t, h, 4 * h, dt, 2});      // dW of gate (dY^T @ X)
      }
  b->ArgNames({"T", "in", "out", "bf16", "pass"});
}

BENCHMARK(BM_Gemm)->Apply(GemmArgs)->Unit(benchmark::kMillisecond)->MinTime(0.2);

}  // namespace
}  // namespace tsp::bench
