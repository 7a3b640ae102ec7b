// Flash attention benchmarks: causal forward, backward and forward+backward, B = 1, H = 8,
// head dim 64, S = 1024 / 2048 / 4096, fp32 and bf16 storage. Run with OMP_NUM_THREADS=1.
//
// FLOP convention (the FlashAttention papers'), counting only the unmasked causal half:
//   forward  = 4 d S^2 / 2 per head (two matmuls, QK^T and PV, 2 flops per multiply-add)
//   backward = 2.5 x forward (five matmuls: QK^T recompute, dO V^T, P^T dO, dS^T Q, dS K)
//   fwd+bwd  = 3.5 x forward
// Element-wise work (exp, masking, rescaling) is not counted. Rates use CPU time (the machine is
// shared; with one thread CPU time is the kernel's own time). %peak is against the per-core fp32
// FMA peak that bench_util.h measures at start-up at the widest width this build has, for bf16
// storage too when the kernel widens bf16 to fp32 in registers and computes in fp32 with simd.h's
// widest vectors (16-lane zmm where the build has AVX-512, else 8-lane ymm; the label names the
// path that ran, e.g. `simd.h avx512 16-lane`), so its ceiling is that peak. Where
// bf16_math() is native (TSP_BF16_MATH=native here) on an AVX512-BF16 build, bf16 rows run the native path (vdpbf16ps, label
// `native vdpbf16ps`) and %peak is against the measured zmm vdpbf16ps ceiling.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "bench_util.h"
#include "tsp/core/random.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/bf16_math.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/simd.h"

namespace {

using namespace tsp;
using namespace tsp::kernels;

constexpr int64_t kB = 1, kH = 8, kD = 64;

enum Pass { fwd = 0, bwd = 1, fwd_bwd = 2 };

void BM_FlashAttention(benchmark::State& state) {
  const int64_t S = state.range(0);
  const DType dt = state.range(1) ? DType::bf16 : DType::f32;
  const Pass pass = static_cast<Pass>(state.range(2));
  Rng rng(1);
  auto rand = [&](const Shape& s) {
    Tensor t = Tensor::empty(s, dt, MemCategory::workspace);
    fill_normal(t, rng, 0.f, 1.f);
    return t;
  };
  Tensor q = rand({kB, S, kH, kD}), k = rand({kB, S, kH, kD}), v = rand({kB, S, kH, kD});
  Tensor d_o = rand({kB, S, kH, kD});
  Tensor o = Tensor::empty(q.shape(), dt, MemCategory::workspace);
  Tensor lse = Tensor::empty({kB, kH, S}, DType::f32, MemCategory::workspace);
  Tensor dq = Tensor::empty(q.shape(), DType::f32, MemCategory::workspace);
  Tensor dk = Tensor::empty(k.shape(), DType::f32, MemCategory::workspace);
  Tensor dv = Tensor::empty(k.shape(), DType::f32, MemCategory::workspace);
  Tensor pos = Tensor::empty({S}, DType::i32, MemCategory::workspace);
  for (int64_t i = 0; i < S; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>(i);
  flash_attention_forward(q, k, v, pos, pos, o, lse);
  for (auto _ : state) {
    if (pass != bwd) flash_attention_forward(q, k, v, pos, pos, o, lse);
    if (pass != fwd) flash_attention_backward(q, k, v, o, d_o, lse, pos, pos, dq, dk, dv);
    benchmark::ClobberMemory();
  }
  const double fwd_flops = 4.0 * kD * double(S) * S / 2 * kH * kB;
  const double mult = pass == fwd ? 1.0 : pass == bwd ? 2.5 : 3.5;
  // The kernel's choice for bf16 inputs (kernels/bf16_math.h; TSP_BF16_MATH overrides).
  const bool native = TSP_SIMD_AVX512_BF16 && dt == DType::bf16 && bf16_math() == Bf16Math::native;
  bench::report_flops(state, mult * fwd_flops, DType::f32);  // fp32 math for either storage
  if (native)  // the ceiling of the path that ran: vdpbf16ps
    state.counters["%peak"] = benchmark::Counter(
        mult * fwd_flops * 1e-9 * 100.0 / bench::measured_peak_gflops_dpbf16(),
        benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string("simd.h ") + simd::kVecName +
                 (dt == DType::bf16 ? native ? ", bf16 native vdpbf16ps" : ", bf16 widened" : ""));
}

void Args(benchmark::internal::Benchmark* b) {
  for (int pass : {fwd, bwd, fwd_bwd})
    for (int bf : {0, 1})
      for (int64_t S : {1024, 2048, 4096}) b->Args({S, bf, pass});
  b->ArgNames({"S", "bf16", "pass"})->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_FlashAttention)->Apply(Args);

}  // namespace
