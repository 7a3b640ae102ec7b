// Shared counters for kernel benchmarks: GFLOP/s and percent of this core's measured FMA peak.
// The peak is measured at start-up (register-resident FMAs), so %peak is honest on any CPU.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>

#include "tsp/core/dtype.h"

namespace tsp::bench {

// Per-core fp32 FMA peak in GFLOP/s, measured once: 12 independent accumulator vectors of
// 8 floats (one AVX2 register each) hide the FMA latency on both AVX2 and AVX-512 machines.
double measured_peak_gflops_f32();

// bf16 math runs at 2x fp32 only with native bf16 dot products (AVX512-BF16); otherwise the
// engine widens bf16 to fp32, so the fp32 peak is the ceiling.
double peak_gflops(DType dtype);

// Sets "GFLOP/s" (a rate) and "%peak" counters from the flops one iteration performs.
inline void report_flops(benchmark::State& state, double flops_per_iter, DType dtype) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(flops_per_iter * 1e-9 * 100.0 / peak_gflops(dtype),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace tsp::bench
