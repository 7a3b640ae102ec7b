// Measures this core's fp32 FMA peak (the denominator of every %peak column) and reports it.
// Compiled with -march=native, the vector extension below becomes vfmadd on ymm/zmm registers.
#include <benchmark/benchmark.h>

#include <algorithm>

#include "bench_util.h"
#include "tsp/kernels/gemm.h"

namespace tsp::bench {
namespace {

typedef float v8f __attribute__((vector_size(32)));

double fma_loop_seconds(long iters, float* sink) {
  constexpr int kAcc = 12;
  v8f acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = v8f{} + static_cast<float>(i);
  v8f a = v8f{} + 0.999999f, b = v8f{} + 1e-7f;
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * a + b;
    asm volatile("" : "+x"(a));  // keep the loop from being folded
  }
  const auto t1 = std::chrono::steady_clock::now();
  v8f s{};
  for (int i = 0; i < kAcc; ++i) s += acc[i];
  *sink = s[0];
  return std::chrono::duration<double>(t1 - t0).count();
}

constexpr double kFlopsPerIter = 12 * 8 * 2;

}  // namespace

double measured_peak_gflops_f32() {
  static const double peak = [] {
    float sink = 0;
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const long iters = 20'000'000;
      best = std::max(best, iters * kFlopsPerIter / fma_loop_seconds(iters, &sink) * 1e-9);
    }
    benchmark::DoNotOptimize(sink);
    return best;
  }();
  return peak;
}

double peak_gflops(DType dtype) {
  const double f32 = measured_peak_gflops_f32();
  return dtype == DType::bf16 && kernels::gemm_native_bf16() ? 2 * f32 : f32;
}

namespace {

void BM_PeakFmaF32(benchmark::State& state) {
  float sink = 0;
  const long iters = 1'000'000;
  for (auto _ : state) fma_loop_seconds(iters, &sink);
  benchmark::DoNotOptimize(sink);
  report_flops(state, iters * kFlopsPerIter, DType::f32);
  state.counters["measured_peak"] = measured_peak_gflops_f32();
}
BENCHMARK(BM_PeakFmaF32)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tsp::bench
