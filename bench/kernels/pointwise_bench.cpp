// Benchmarks of the memory-bound kernels (RMSNorm, RoPE, SwiGLU, AdamW, decode attention: GB/s of
// the bytes each call must move, next to a STREAM-like copy/triad measured in the same run) and of
// chunked cross-entropy forward+backward (GFLOP/s of its four GEMMs), one core.
#include <benchmark/benchmark.h>

#include "bench_util.h"
#include "tsp/core/random.h"
#include "tsp/kernels/decode_attention.h"
#include "tsp/kernels/adamw.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/rope.h"
#include "tsp/kernels/simd.h"
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

// The simd.h width the Vec kernels (RMSNorm, RoPE, SwiGLU, AdamW, decode attention) run at.
std::string vec_label() { return std::string("simd.h Vec ") + kernels::simd::kVecName; }

void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The ceiling of the kernels below: STREAM-like copy (a = b, 8 bytes per element) and triad
// (a = b + s c, 12 bytes), counted as bytes read + written (not the write-allocate reads), on
// arrays of n floats each. Plain loops compiled for the build target, as STREAM is.
// Args: {n, kind (0 copy, 1 triad)}
void BM_MemoryBandwidth(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool triad = state.range(1) == 1;
  Tensor a = Tensor::zeros({n}, DType::f32, MemCategory::workspace);
  Tensor b = rnd({n}, DType::f32, 1), c = rnd({n}, DType::f32, 2);
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const float* pc = c.data<float>();
  for (auto _ : state) {
    if (triad) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + 3.f * pc[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) pa[i] = pb[i];
    }
    benchmark::DoNotOptimize(pa);
    benchmark::ClobberMemory();
  }
  set_bytes(state, (triad ? 12.0 : 8.0) * static_cast<double>(n));
  state.SetLabel(triad ? "triad a = b + s c" : "copy a = b");
}

// Args: {N, h, dtype (0 f32, 1 bf16)}
void BM_RmsNormForward(benchmark::State& state) {
  const int64_t n = state.range(0), h = state.range(1);
  const DType dt = dtype_arg(state.range(2));
  Tensor x = rnd({n, h}, dt, 1), g = rnd({h}, DType::f32, 2);
  Tensor y = Tensor::empty({n, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(x, g, y, rstd);  // untimed: first touch of y's pages
  for (auto _ : state) {
    kernels::rmsnorm_forward(x, g, y, rstd);
    benchmark::DoNotOptimize(y.raw());
  }
  set_bytes(state, 2.0 * static_cast<double>(x.nbytes()));  // read x, write y
  state.SetLabel(vec_label());
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
  // Untimed: the first call touches dx's pages. At 8192 x 4096 one call runs longer than
  // min_time, so without it the table showed page faults (383 ms on a Zen 5 VM), not the kernel.
  kernels::rmsnorm_backward(dy, x, g, rstd, dx, dg);
  for (auto _ : state) {
    kernels::rmsnorm_backward(dy, x, g, rstd, dx, dg);
    benchmark::DoNotOptimize(dx.raw());
  }
  set_bytes(state, 3.0 * static_cast<double>(x.nbytes()));  // read dy, x; write dx
  state.SetLabel(vec_label());
}

// Args: {S, heads, head_dim, dtype}; B = 1. Forward and backward cost the same.
void BM_RopeForward(benchmark::State& state) {
  const int64_t s = state.range(0), heads = state.range(1), d = state.range(2);
  const DType dt = dtype_arg(state.range(3));
  Tensor x = rnd({1, s, heads, d}, dt, 1, 1e-3f);
  Tensor pos = Tensor::empty({s}, DType::i32, MemCategory::workspace);
  for (int64_t i = 0; i < s; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>(i);
  const kernels::RopeTable table(pos, d, {.theta = 500000.0, .scaling = {}});
  for (auto _ : state) {
    kernels::rope_forward(x, table);
    benchmark::DoNotOptimize(x.raw());
  }
  set_bytes(state, 2.0 * static_cast<double>(x.nbytes()));  // read and write x in place
  state.SetLabel(vec_label());
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
  state.SetLabel(vec_label());
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
  state.SetLabel(vec_label());
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

// Args: {n parameters, bf16 copy-out (0 none, 1 bf16)}. Reads p, m, v, g and writes p, m, v
// (28 bytes per parameter), plus 2 bytes of bf16 model copy.
void BM_AdamWStep(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool copy = state.range(1) == 1;
  Tensor p = rnd({n}, DType::f32, 1), g = rnd({n}, DType::f32, 2, 1e-2f);
  Tensor m = Tensor::zeros({n}, DType::f32, MemCategory::workspace);
  Tensor v = Tensor::zeros({n}, DType::f32, MemCategory::workspace);
  Tensor w = copy ? Tensor::empty({n}, DType::bf16, MemCategory::workspace) : Tensor();
  int64_t step = 0;
  for (auto _ : state) {
    kernels::adamw_step(p, m, v, g, ++step, {.lr = 1e-4f}, w);
    benchmark::DoNotOptimize(p.raw());
  }
  set_bytes(state, (28.0 + (copy ? 2.0 : 0.0)) * static_cast<double>(n));
  state.SetLabel(vec_label());
}

// One decode step's attention over a full cache. Args: {Sk, H, Hkv, d, dtype}; B = 1. Moves the
// cached keys and values once (2 Sk Hkv d elements; q and o are negligible).
void BM_DecodeAttention(benchmark::State& state) {
  const int64_t sk = state.range(0), h = state.range(1), hkv = state.range(2), d = state.range(3);
  const DType dt = dtype_arg(state.range(4));
  Tensor q = rnd({1, 1, h, d}, dt, 1), k = rnd({1, sk, hkv, d}, dt, 2), v = rnd({1, sk, hkv, d}, dt, 3);
  Tensor q_pos = Tensor::empty({1}, DType::i32, MemCategory::workspace);
  q_pos.data<int32_t>()[0] = static_cast<int32_t>(sk);
  Tensor k_pos = Tensor::empty({sk}, DType::i32, MemCategory::workspace);
  for (int64_t i = 0; i < sk; ++i) k_pos.data<int32_t>()[i] = static_cast<int32_t>(i);
  Tensor o = Tensor::empty({1, 1, h, d}, dt, MemCategory::workspace);
  Tensor lse = Tensor::empty({1, h, 1}, DType::f32, MemCategory::workspace);
  for (auto _ : state) {
    kernels::decode_attention(q, k, v, q_pos, k_pos, o, lse);
    benchmark::DoNotOptimize(o.raw());
  }
  set_bytes(state, static_cast<double>(k.nbytes() + v.nbytes()));
  // 4 flops per key, head and dimension (q.k and p v); the exp2s are not counted.
  report_flops(state, 4.0 * static_cast<double>(sk * h * d), DType::f32);
  state.SetLabel(vec_label());
}

// Copy/triad on 4 MiB arrays (the footprint of the 2048 x 512 f32 block: in L2/L3) and on 256 MiB
// arrays (beyond this CPU's caches, like the 8192 x 4096 case).
BENCHMARK(BM_MemoryBandwidth)->Args({1 << 20, 0})->Args({1 << 20, 1})->Args({64 << 20, 0})->Args({64 << 20, 1})->Unit(benchmark::kMicrosecond);
// T = 2048, h = 512 (one decoder block's activations) and T = 8192, h = 4096 (beyond the caches).
BENCHMARK(BM_RmsNormForward)->Args({2048, 512, 0})->Args({2048, 512, 1})->Args({8192, 4096, 0})->Args({8192, 4096, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RmsNormBackward)->Args({2048, 512, 0})->Args({2048, 512, 1})->Args({8192, 4096, 0})->Args({8192, 4096, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AdamWStep)->Args({1 << 20, 1})->Args({16 << 20, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeAttention)->Args({4096, 8, 8, 64, 0})->Args({4096, 8, 8, 64, 1})->Args({4096, 32, 8, 128, 0})->Args({4096, 32, 8, 128, 1})->Unit(benchmark::kMicrosecond);
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
