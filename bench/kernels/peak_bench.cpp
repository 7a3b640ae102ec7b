// The kernel benchmarks' peaks: this core's fp32 FMA peak at every vector width the build can issue
// (the widest one is the denominator of every %peak column) and, where the build has AVX512-BF16,
// the vdpbf16ps peak. The loops themselves live in the library (src/tsp/kernels/peak.h), shared
// with the trainer's MFU; this file measures them once per process and registers them as rows.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "bench_util.h"
#include "tsp/kernels/bf16_math.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/peak.h"

namespace tsp::bench {

const std::vector<FmaPeak>& fma_peaks() {
  static const std::vector<FmaPeak> peaks = [] {
    std::vector<FmaPeak> p;
    for (int bits : kernels::fma_widths()) {
      const kernels::FmaPeak k = kernels::measure_fma_peak(bits, kernels::kBenchPeakRuns);
      p.push_back({k.bits, k.lanes, k.gflops, k.what});
    }
    return p;
  }();
  return peaks;
}

double measured_peak_gflops_f32() { return fma_peaks().front().gflops; }
int measured_peak_bits() { return fma_peaks().front().bits; }

double measured_peak_gflops_f32_at(int bits) {
  for (const FmaPeak& p : fma_peaks())
    if (p.bits == bits) return p.gflops;
  return 0;
}

double measured_peak_gflops_dpbf16() {
  static const double peak = kernels::measure_dpbf16_peak(kernels::kBenchPeakRuns);
  return peak;
}

// bf16 math runs on bf16 dot products only when oneDNN's bf16 matmul is native (not widened by
// kernels::gemm) AND its ISA has vdpbf16ps; avx512_core without BF16 emulates bf16 with fp32 FMAs.
double peak_gflops(DType dtype) {
  const double f32 = measured_peak_gflops_f32();
  if (dtype != DType::bf16 || !kernels::gemm_native_bf16() || !onednn_isa_has_bf16_dot()) return f32;
  const double dp = measured_peak_gflops_dpbf16();
  return dp > 0 ? dp : 2 * f32;
}

std::string bf16_peak_description() {
  char buf[512];
  const double peak = peak_gflops(DType::bf16);
  if (!kernels::gemm_native_bf16()) {
    const double dp = measured_peak_gflops_dpbf16();
    char dp_note[128] = "";
    if (dp > 0)
      std::snprintf(dp_note, sizeof dp_note, ", zmm vdpbf16ps measured at %.1f GFLOP/s = %.2fx the fp32 peak",
                    dp, dp / measured_peak_gflops_f32());
    std::snprintf(buf, sizeof buf,
                  "%.1f GFLOP/s = fp32 peak: kernels::gemm widens bf16 to fp32 (bf16 math: %s; "
                  "oneDNN ISA %s%s)",
                  peak, kernels::bf16_math_description().c_str(), onednn_isa_name().c_str(), dp_note);
  } else if (!onednn_isa_has_bf16_dot()) {
    std::snprintf(buf, sizeof buf,
                  "%.1f GFLOP/s = fp32 peak: oneDNN runs bf16 at ISA %s without vdpbf16ps "
                  "(emulated with fp32 FMAs)",
                  peak, onednn_isa_name().c_str());
  } else if (measured_peak_gflops_dpbf16() > 0) {
    std::snprintf(buf, sizeof buf,
                  "%.1f GFLOP/s = measured zmm vdpbf16ps ceiling (%.2fx the fp32 FMA peak); oneDNN "
                  "runs native bf16 at ISA %s",
                  peak, peak / measured_peak_gflops_f32(), onednn_isa_name().c_str());
  } else {
    std::snprintf(buf, sizeof buf,
                  "%.1f GFLOP/s = 2x fp32 peak, the vdpbf16ps ceiling (not measured: build lacks "
                  "AVX512-BF16); oneDNN runs native bf16 at ISA %s",
                  peak, onednn_isa_name().c_str());
  }
  return buf;
}

namespace {

// One row per width this build has, e.g. BM_PeakFmaF32/bits:512; %peak is against the widest.
void BM_PeakFmaF32(benchmark::State& state) {
  const int bits = static_cast<int>(state.range(0));
  const FmaPeak* w = nullptr;
  for (const FmaPeak& p : fma_peaks())
    if (p.bits == bits) w = &p;
  float sink = 0;
  const long iters = 1'000'000;
  for (auto _ : state) kernels::fma_loop_seconds(bits, iters, &sink);
  benchmark::DoNotOptimize(sink);
  report_flops(state, iters * kernels::fma_flops_per_iter(bits), DType::f32);
  state.counters["measured_peak"] = measured_peak_gflops_f32();
  state.SetLabel(w->what + ", " + std::to_string(w->lanes) + " fp32 lanes");
}
BENCHMARK(BM_PeakFmaF32)
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (int bits : kernels::fma_widths()) b->Arg(bits);
    })
    ->ArgName("bits")
    ->Unit(benchmark::kMillisecond);

#if defined(__AVX512BF16__)
// %peak here is against peak_gflops(bf16): 100% when oneDNN runs native bf16 (the measured
// vdpbf16ps ceiling is that denominator); against the fp32 peak when bf16 is widened.
void BM_PeakDpbf16(benchmark::State& state) {
  float sink = 0;
  const long iters = 1'000'000;
  for (auto _ : state) kernels::dpbf16_loop_seconds(iters, &sink);
  benchmark::DoNotOptimize(sink);
  report_flops(state, iters * kernels::dpbf16_flops_per_iter(), DType::bf16);
  state.counters["measured_peak"] = measured_peak_gflops_dpbf16();
  state.SetLabel("zmm vdpbf16ps, 32 bf16 pairs -> 16 fp32 lanes");
}
BENCHMARK(BM_PeakDpbf16)->Unit(benchmark::kMillisecond);
#endif

}  // namespace
}  // namespace tsp::bench
