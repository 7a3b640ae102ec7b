// This core's measured arithmetic peak: register-resident FMA loops at every vector width the build
// can issue, and the vdpbf16ps loop where the build has AVX512-BF16. The one implementation behind
// the kernel benchmarks' %peak (bench/kernels/peak_bench.cpp) and the trainer's MFU (train/metrics).
#pragma once

#include <string>
#include <vector>

#include "tsp/core/dtype.h"

namespace tsp::kernels {

// How long a measurement runs: a warm-up (wakes the wide units, settles the frequency license),
// then the best of `reps` timed runs of `iters` loop iterations, in thread CPU time (so a
// measurement another process preempts is not counted low).
struct PeakRuns {
  long warmup_iters = 2'000'000;
  long iters = 4'000'000;
  int reps = 10;
};
// The benchmarks' setting: ~20 ms per rep at 512 bits on a ~100 GFLOP/s core, ~0.25 s per width.
inline constexpr PeakRuns kBenchPeakRuns{};
// The trainer's start-up setting: ~25 ms for one width on the same core (5 x 1M iterations).
inline constexpr PeakRuns kQuickPeakRuns{.warmup_iters = 500'000, .iters = 1'000'000, .reps = 5};

// One measured FMA peak: vector width in bits (32 = scalar), fp32 lanes, GFLOP/s (2 flops per
// lane and FMA), and what it ran (e.g. "zmm vfmadd231ps").
struct FmaPeak {
  int bits = 0;
  int lanes = 0;
  double gflops = 0;
  std::string what;
};

// The widths this build can issue, widest first: 512 only when compiled with AVX-512F; 256 with
// AVX+FMA; 128 on any x86 (mulps+addps without FMA); 32 (scalar a*b+c) elsewhere.
std::vector<int> fma_widths();
// The loop at `bits` (one of fma_widths(), else InvalidArgument): seconds of thread CPU time for
// `iters` iterations, each fma_flops_per_iter(bits) flops; the result is added to *sink.
double fma_loop_seconds(int bits, long iters, float* sink);
double fma_flops_per_iter(int bits);
FmaPeak measure_fma_peak(int bits, const PeakRuns& runs = kBenchPeakRuns);

// vdpbf16ps zmm (32 bf16 pairs -> 16 fp32 lanes, 4 flops per lane): true when the build has
// AVX512-BF16. The loop and its flops per iteration as above; the peak is 0 without it.
bool has_dpbf16_loop();
double dpbf16_loop_seconds(long iters, float* sink);
double dpbf16_flops_per_iter();
double measure_dpbf16_peak(const PeakRuns& runs = kBenchPeakRuns);

// The ISA family of a width as printed: "avx512" (512), "avx2" (256), "sse" (128), "scalar".
std::string fma_isa_name(int bits);

// The per-core ceiling of the matmuls of a model stored in `dtype` (the MFU denominator per core):
// f32, and bf16 where kernels::gemm widens bf16 to fp32 (bf16_math.h): the widest FMA peak,
// path "fp32". bf16 where oneDNN runs bf16 natively: the vdpbf16ps peak, path "bf16" (2x the fp32
// FMA peak, marked not measured, when the build lacks AVX512-BF16). AMX tiles are not measured.
struct MathPeak {
  double gflops_per_core = 0;
  std::string path;  // "fp32" or "bf16"
  std::string isa;   // "avx512", "avx2", ...
  bool measured = true;
  // "170.2 GFLOP/s/core fp32 avx512"
  std::string describe() const;
};
MathPeak measure_math_peak(DType dtype, const PeakRuns& runs = kQuickPeakRuns);

}  // namespace tsp::kernels
