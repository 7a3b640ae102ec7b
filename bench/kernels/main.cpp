// Entry point of the kernel benchmarks; each bench file registers its own cases.
// Rates are reported as GFLOP/s counters and as % of this machine's per-core peak (bench_util.h);
// the header (context) names the CPU, the measured peaks and the ISA each path runs on
// (bench_context.cpp).
#include <benchmark/benchmark.h>

#include "bench_util.h"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  tsp::bench::add_context();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
