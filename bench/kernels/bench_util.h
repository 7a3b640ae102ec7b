// Shared counters for kernel benchmarks: GFLOP/s and percent of the measured per-core peak.
// Peaks measured on the project machine (AMD Zen 4, one core): 116 GFLOP/s fp32, 231 bf16.
#pragma once

#include <benchmark/benchmark.h>

#include "tsp/core/dtype.h"

namespace tsp::bench {

inline constexpr double kPeakGflopsF32 = 116.0;
inline constexpr double kPeakGflopsBf16 = 231.0;

// Sets "GFLOP/s" (a rate) and "%peak" counters from the flops one iteration performs.
inline void report_flops(benchmark::State& state, double flops_per_iter, DType dtype) {
  const double peak = dtype == DType::bf16 ? kPeakGflopsBf16 : kPeakGflopsF32;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(flops_per_iter * 1e-9 * 100.0 / peak,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace tsp::bench
