// Measures this core's fp32 FMA peak at every vector width the build can issue (the widest one is
// the denominator of every %peak column) and, where the build has AVX512-BF16, the vdpbf16ps peak.
//
// Each measurement runs kAcc independent accumulator registers (enough to cover FMA latency x FMA
// pipes on current x86 cores: 4 cycles x 2 pipes = 8) through acc = acc * a + b, written with
// intrinsics so the instruction is the FMA itself, not something the compiler may contract.
// Widths:
//   512-bit  zmm vfmadd, 16 lanes   when __AVX512F__ (-march=native on Intel AVX-512 parts, Zen 4/5)
//   256-bit  ymm vfmadd,  8 lanes   when __AVX__ && __FMA__
//   128-bit  xmm vfmadd,  4 lanes   (mulps + addps without FMA)
//   scalar   a * b + c              elsewhere (non-x86 builds)
// On Zen 4 512-bit FMAs are double pumped, so 512 and 256 measure the same; on Intel server parts
// (two 512-bit FMA ports) and Zen 5 (full-width datapath) 512-bit is ~2x 256-bit. Both are
// reported so a reader can judge the 256-bit kernels (simd.h) against their own ceiling.
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <cstdio>

#include "bench_util.h"
#include "tsp/kernels/bf16_math.h"
#include "tsp/kernels/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tsp::bench {
namespace {

// Registers available for accumulators: 32 vector registers with AVX-512, 16 otherwise.
#if defined(__AVX512F__)
constexpr int kAcc = 16;
#define TSP_VEC_REG "+v"
#elif defined(__SSE__)
constexpr int kAcc = 12;
#define TSP_VEC_REG "+x"
#else
constexpr int kAcc = 12;
#endif

// Seconds of this thread's CPU time (what Google Benchmark's rates use too), so a start-up
// measurement that another process preempts is not counted low; wall time where there is no
// thread CPU clock.
double now_seconds() {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
#else
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
#endif
}

// Keeps the compiler from treating `a` as a constant across iterations (no folding or hoisting).
template <class T>
inline void opaque(T& a) {
#ifdef TSP_VEC_REG
  asm volatile("" : TSP_VEC_REG(a));
#else
  benchmark::DoNotOptimize(a);
#endif
}

#if defined(__AVX512F__)
struct Zmm {
  using T = __m512;
  static constexpr int bits = 512, lanes = 16;
  static constexpr const char* what = "zmm vfmadd231ps";
  static T set(float x) { return _mm512_set1_ps(x); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static float first(T a) { return _mm512_cvtss_f32(a); }
};
#endif
#if defined(__AVX__) && defined(__FMA__)
struct Ymm {
  using T = __m256;
  static constexpr int bits = 256, lanes = 8;
  static constexpr const char* what = "ymm vfmadd231ps";
  static T set(float x) { return _mm256_set1_ps(x); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static float first(T a) { return _mm256_cvtss_f32(a); }
};
#endif
#if defined(__SSE__)
struct Xmm {
  using T = __m128;
  static constexpr int bits = 128, lanes = 4;
#if defined(__FMA__)
  static constexpr const char* what = "xmm vfmadd231ps";
  static T fma(T a, T b, T c) { return _mm_fmadd_ps(a, b, c); }
#else
  static constexpr const char* what = "xmm mulps+addps";
  static T fma(T a, T b, T c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
#endif
  static T set(float x) { return _mm_set1_ps(x); }
  static T add(T a, T b) { return _mm_add_ps(a, b); }
  static float first(T a) { return _mm_cvtss_f32(a); }
};
#else
struct Scalar {
  using T = float;
  static constexpr int bits = 32, lanes = 1;
  static constexpr const char* what = "scalar a*b+c";
  static T set(float x) { return x; }
  static T fma(T a, T b, T c) { return a * b + c; }
  static T add(T a, T b) { return a + b; }
  static float first(T a) { return a; }
};
#endif

template <class V>
double fma_loop_seconds(long iters, float* sink) {
  using T = typename V::T;
  T acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = V::set(static_cast<float>(i));
  T a = V::set(0.999999f), b = V::set(1e-7f);  // acc converges to 0.1: no overflow, no denormals
  const double t0 = now_seconds();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kAcc; ++i) acc[i] = V::fma(acc[i], a, b);
    opaque(a);
  }
  const double t1 = now_seconds();
  T s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = V::add(s, acc[i]);
  *sink += V::first(s);
  return t1 - t0;
}

template <class V>
constexpr double flops_per_iter() {
  return 2.0 * kAcc * V::lanes;
}

// One width: the loop, its flop count and its name.
struct Width {
  int bits, lanes;
  const char* what;
  double (*loop)(long, float*);
  double flops_per_iter;
};

template <class V>
constexpr Width width_of() {
  return {V::bits, V::lanes, V::what, &fma_loop_seconds<V>, flops_per_iter<V>()};
}

// Widest first.
constexpr Width kWidths[] = {
#if defined(__AVX512F__)
    width_of<Zmm>(),
#endif
#if defined(__AVX__) && defined(__FMA__)
    width_of<Ymm>(),
#endif
#if defined(__SSE__)
    width_of<Xmm>(),
#else
    width_of<Scalar>(),
#endif
};

const Width* find_width(int bits) {
  for (const Width& w : kWidths)
    if (w.bits == bits) return &w;
  return nullptr;
}

double best_gflops(double (*loop)(long, float*), double flops_per_iter) {
  float sink = 0;
  double best = 0;
  loop(2'000'000, &sink);  // warm-up: wakes the wide units / settles the frequency license
  for (int rep = 0; rep < 10; ++rep) {
    const long iters = 4'000'000;
    best = std::max(best, iters * flops_per_iter / loop(iters, &sink) * 1e-9);
  }
  benchmark::DoNotOptimize(sink);
  return best;
}

#if defined(__AVX512BF16__)
// vdpbf16ps zmm: 32 bf16 pairs -> 16 fp32 lanes, each lane += a0*b0 + a1*b1 (4 flops per lane).
constexpr int kAccBf16 = 24;  // its latency is longer than an FMA's on some cores
double dpbf16_loop_seconds(long iters, float* sink) {
  __m512 acc[kAccBf16];
  for (int i = 0; i < kAccBf16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-6f), _mm512_set1_ps(1e-6f));
  const double t0 = now_seconds();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kAccBf16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    asm volatile("" : "+v"(a));
  }
  const double t1 = now_seconds();
  __m512 s = acc[0];
  for (int i = 1; i < kAccBf16; ++i) s = _mm512_add_ps(s, acc[i]);
  *sink += _mm512_cvtss_f32(s);
  return t1 - t0;
}
constexpr double kDpbf16FlopsPerIter = kAccBf16 * 16 * 4.0;
#endif

}  // namespace

const std::vector<FmaPeak>& fma_peaks() {
  static const std::vector<FmaPeak> peaks = [] {
    std::vector<FmaPeak> p;
    for (const Width& w : kWidths) p.push_back({w.bits, w.lanes, best_gflops(w.loop, w.flops_per_iter), w.what});
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
#if defined(__AVX512BF16__)
  static const double peak = best_gflops(&dpbf16_loop_seconds, kDpbf16FlopsPerIter);
  return peak;
#else
  return 0;
#endif
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
  const Width* w = find_width(static_cast<int>(state.range(0)));
  float sink = 0;
  const long iters = 1'000'000;
  for (auto _ : state) w->loop(iters, &sink);
  benchmark::DoNotOptimize(sink);
  report_flops(state, iters * w->flops_per_iter, DType::f32);
  state.counters["measured_peak"] = measured_peak_gflops_f32();
  state.SetLabel(std::string(w->what) + ", " + std::to_string(w->lanes) + " fp32 lanes");
}
BENCHMARK(BM_PeakFmaF32)
    ->Apply([](benchmark::internal::Benchmark* b) {
      for (const Width& w : kWidths) b->Arg(w.bits);
    })
    ->ArgName("bits")
    ->Unit(benchmark::kMillisecond);

#if defined(__AVX512BF16__)
// %peak here is against peak_gflops(bf16): 100% when oneDNN runs native bf16 (the measured
// vdpbf16ps ceiling is that denominator); against the fp32 peak when bf16 is widened.
void BM_PeakDpbf16(benchmark::State& state) {
  float sink = 0;
  const long iters = 1'000'000;
  for (auto _ : state) dpbf16_loop_seconds(iters, &sink);
  benchmark::DoNotOptimize(sink);
  report_flops(state, iters * kDpbf16FlopsPerIter, DType::bf16);
  state.counters["measured_peak"] = measured_peak_gflops_dpbf16();
  state.SetLabel("zmm vdpbf16ps, 32 bf16 pairs -> 16 fp32 lanes");
}
BENCHMARK(BM_PeakDpbf16)->Unit(benchmark::kMillisecond);
#endif

}  // namespace
}  // namespace tsp::bench
