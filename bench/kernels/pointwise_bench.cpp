// Benchmarks of the row-wise kernels (RMSNorm, RoPE, SwiGLU: GB/s of the bytes each pass must move)
// and of chunked cross-entropy forward+backward (GFLOP/s of its four GEMMs), one core.
#include <benchmark/benchmark.h>

#include "bench_util.h"
#include "tsp/core/random.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/rope.h"
#include "tsp/kernels/swiglu.h"

namespace tsp::bench {
namespace {

Tensor rnd(const Shape& s, DType dt, uint64_t seed, float stddev = 1.f) {
  Tensor t = Tensor::empty(s, dt, MemCategory::workspace);
  Rng rng(seed);
  fill_normal(t, rng, 0.f, stddev);
  return t;
}

DType dtype_arg(int64_t a) { return a == 0 ? DType::f32 : DType::bf16; }

// RMSNorm has no simd.h code: its loops are `#pragma omp simd`, vectorized by the compiler for the
// build target (-march=native).
constexpr const char* kAutoVec = "compiler-vectorized (omp simd)";

void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: {N, h, dtype (0 f32, 1 bf16)}
void BM_RmsNormForward(benchmark::State& state) {
  const int64_t n = state.range(0), h = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  Tensor x = rnd({n, h}, dt, 1), g = rnd({h}, DType::f32, 2);
  Tensor y = Tensor::empty({n, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  for (auto _ : state) {
    kernels::rmsnorm_forward(x, g, y, rstd);
    benchmark::DoNotOptimize(y.raw());
  }
  set_bytes(state, 2.0 * static_cast<double>(x.nbytes()));  // read x, write y
  state.SetLabel(kAutoVec);
}

void BM_RmsNormBackward(benchmark::State& state) {
  const int64_t n = state.range(0), h = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  Tensor x = rnd({n, h}, dt, 1), g = rnd({h}, DType::f32, 2), dy = rnd({n, h}, dt, 3);
  Tensor y = Tensor::empty({n, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(x, g, y, rstd);
  Tensor dx = Tensor::empty({n, h}, dt, MemCategory::workspace);
  Tensor dg = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
  for (auto _ : state) {
    kernels::rmsnorm_backward(dy, x, g, rstd, dx, dg);
    benchmark::DoNotOptimize(dx.raw());
  }
  set_bytes(state, 3.0 * static_cast<double>(x.nbytes()));  // read dy, x; write dx
  state.SetLabel(kAutoVec);
}

// Args: {S, heads, head_dim, dtype}; B = 1. Forward and backward cost the same.
void BM_RopeForward(benchmark::State& state) {
  const int64_t s = state.range(0), heads = state.range(1), d = state.range(2);
  const DType dt = dtype_arg(state.range(3));
  Tensor x = rnd({1, s, heads, d}, dt, 1, 1e-3f);
  Tensor pos = Tensor::empty({s}, DType::i32, MemCategory::workspace);
  for (int64_t i = 0; i < s; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>(i);
  const kernels::RopeTable table(pos, d, {.theta = 500000.0});
  for (auto _ : state) {
    kernels::rope_forward(x, table);
    benchmark::DoNotOptimize(x.raw());
  }
  set_bytes(state, 2.0 * static_cast<double>(x.nbytes()));  // read and write x in place
  state.SetLabel("simd.h " + tsp_simd_name());
}

// Args: {N, F, dtype}
void BM_SwiGluForward(benchmark::State& state) {
  const int64_t n = state.range(0), f = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  Tensor gate = rnd({n, f}, dt, 1), up = rnd({n, f}, dt, 2);
  Tensor out = Tensor::empty({n, f}, dt, MemCategory::workspace);
  for (auto _ : state) {
    kernels::swiglu_forward(gate, up, out);
    benchmark::DoNotOptimize(out.raw());
  }
  set_bytes(state, 3.0 * static_cast<double>(out.nbytes()));
  state.SetLabel("simd.h " + tsp_simd_name());
}

void BM_SwiGluBackward(benchmark::State& state) {
  const int64_t n = state.range(0), f = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  Tensor gate = rnd({n, f}, dt, 1), up = rnd({n, f}, dt, 2), dout = rnd({n, f}, dt, 3);
  Tensor dgate = Tensor::empty({n, f}, dt, MemCategory::workspace);
  Tensor dup = Tensor::empty({n, f}, dt, MemCategory::workspace);
  for (auto _ : state) {
    kernels::swiglu_backward(dout, gate, up, dgate, dup);
    benchmark::DoNotOptimize(dgate.raw());
  }
  set_bytes(state, 5.0 * static_cast<double>(gate.nbytes()));
  state.SetLabel("simd.h " + tsp_simd_name());
}

// Args: {N, h, V, chunk, dtype}. Forward (1 GEMM) + backward (3 GEMMs: recompute, dx, dw).
void BM_CrossEntropyForwardBackward(benchmark::State& state) {
  const int64_t n = state.range(0), h = state.range(1), v = state.range(2);
  const DType dt = dtype_arg(state.range(4));
  const kernels::CrossEntropyOptions opt{.chunk_size = state.range(3)};
  Tensor x = rnd({n, h}, dt, 1), w = rnd({v, h}, dt, 2, 0.02f);
  Tensor targets = Tensor::empty({n}, DType::i32, MemCategory::workspace);
  Rng rng(3);
  for (int64_t i = 0; i < n; ++i) targets.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(v)));
  Tensor lse = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  Tensor dx = Tensor::zeros({n, h}, DType::f32, MemCategory::workspace);
  Tensor dw = Tensor::zeros({v, h}, DType::f32, MemCategory::workspace);
  for (auto _ : state) {
    const kernels::CrossEntropyTotals tot = kernels::cross_entropy_forward(x, w, targets, lse, Tensor(), opt);
    kernels::cross_entropy_backward(x, w, targets, lse, 1.f / static_cast<float>(tot.n_valid), dx, dw, opt);
    benchmark::DoNotOptimize(dw.raw());
  }
  report_flops(state, 8.0 * static_cast<double>(n) * static_cast<double>(h) * static_cast<double>(v), dt);
  state.SetLabel("oneDNN " + onednn_isa_name() + " GEMMs" +
                 (dt == DType::bf16 && !kernels::gemm_native_bf16() ? ", bf16 widened to f32" : ""));
}

BENCHMARK(BM_RmsNormForward)->Args({4096, 512, 0})->Args({4096, 1024, 0})->Args({4096, 1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RmsNormBackward)->Args({4096, 512, 0})->Args({4096, 1024, 0})->Args({4096, 1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RopeForward)->Args({4096, 8, 64, 0})->Args({4096, 16, 64, 0})->Args({4096, 16, 64, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SwiGluForward)->Args({4096, 512, 0})->Args({4096, 1024, 0})->Args({4096, 1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SwiGluBackward)->Args({4096, 512, 0})->Args({4096, 1024, 0})->Args({4096, 1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CrossEntropyForwardBackward)
    ->Args({2048, 512, 32000, 4096, 0})
    ->Args({2048, 512, 32000, 1024, 0})
    ->Args({2048, 512, 32000, 4096, 1})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tsp::bench
