// Shared counters for kernel benchmarks: GFLOP/s and percent of this core's measured FMA peak,
// and the ISA each path runs on (printed in the benchmark context, bench_context.cpp, and as
// per-benchmark labels). The peak is measured at start-up with register-resident FMAs at the
// widest vector width this build has (512-bit zmm when __AVX512F__, else 256-bit, else 128-bit),
// so %peak is honest on any CPU: never above 100% for a kernel that cannot exceed the hardware.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "tsp/core/dtype.h"

namespace tsp::bench {

// One measured FMA peak: vector width in bits (32 = scalar), fp32 lanes, GFLOP/s, and what it ran
// (e.g. "zmm vfmadd231ps").
struct FmaPeak {
  int bits = 0;
  int lanes = 0;
  double gflops = 0;
  std::string what;
};

// Every width this build can issue, widest first (512 only when compiled with AVX-512F; 256 with
// AVX+FMA; 128 always on x86). Measured once, on first use, by the library's loops
// (tsp/kernels/peak.h, kBenchPeakRuns): best of 10 runs of ~10-20 ms each, timed in thread CPU
// time like the benchmarks' own rates.
const std::vector<FmaPeak>& fma_peaks();

// Per-core fp32 FMA peak in GFLOP/s at the widest width: the denominator of every fp32 %peak.
double measured_peak_gflops_f32();
// The width (bits) that measured_peak_gflops_f32() ran at.
int measured_peak_bits();
// Peak at a given width, 0 if this build has no such width.
double measured_peak_gflops_f32_at(int bits);

// Measured vdpbf16ps zmm peak (flops counted as 2 per multiply-add, 32 bf16 pairs -> 16 fp32 lanes
// per instruction), or 0 when the build lacks AVX512-BF16.
double measured_peak_gflops_dpbf16();

// Denominator of %peak for math in `dtype`. f32: the widest FMA peak. bf16: the bf16 dot-product
// ceiling when oneDNN runs bf16 GEMMs natively on an ISA with vdpbf16ps (measured here when the
// build has AVX512-BF16, else 2x fp32); the fp32 peak when bf16 is widened to fp32 or emulated.
// (AMX tiles, where oneDNN reports avx512_core_amx, are not counted: %peak can then exceed 100%.)
double peak_gflops(DType dtype);
// One line saying which ceiling peak_gflops(bf16) is and why.
std::string bf16_peak_description();

// oneDNN's effective ISA (dnnl_get_effective_cpu_isa(), which honours ONEDNN_MAX_CPU_ISA /
// DNNL_MAX_CPU_ISA) as oneDNN's own name: "avx2", "avx512_core", "avx512_core_bf16", ...
std::string onednn_isa_name();
// True when that ISA includes AVX512-BF16 dot products (vdpbf16ps).
bool onednn_isa_has_bf16_dot();
// What simd.h's Vec compiles to in this build, e.g. "avx512 16-lane" or "avx2 8-lane".
std::string tsp_simd_name();

// Adds the context lines (CPU, peaks, oneDNN version/ISA, simd.h width, bf16 path) to the
// benchmark header; call after benchmark::Initialize and before RunSpecifiedBenchmarks.
void add_context();

// Sets "GFLOP/s" (a rate) and "%peak" counters from the flops one iteration performs; `math` is
// the dtype the arithmetic runs in (bf16 storage widened to fp32 in registers is f32 math).
inline void report_flops(benchmark::State& state, double flops_per_iter, DType math) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["%peak"] = benchmark::Counter(flops_per_iter * 1e-9 * 100.0 / peak_gflops(math),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace tsp::bench
