// Entry point of the kernel benchmarks; each bench file registers its own cases.
// Rates are reported as GFLOP/s counters and as % of this machine's per-core peak (bench_util.h).
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
