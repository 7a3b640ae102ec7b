// The peak loops: kAcc independent accumulator registers (enough to cover FMA latency x FMA pipes
// on current x86 cores: 4 cycles x 2 pipes = 8) through acc = acc * a + b, written with intrinsics
// so the instruction is the FMA itself, not something the compiler may contract.
//
// On Zen 4 512-bit FMAs are double pumped, so 512 and 256 measure the same; on Intel server parts
// (two 512-bit FMA ports) and Zen 5 (full-width datapath) 512-bit is ~2x 256-bit.
#include "tsp/kernels/peak.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "tsp/core/check.h"
#include "tsp/kernels/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tsp::kernels {
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

double thread_cpu_seconds() {
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
  asm volatile("" : "+m"(a));
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
double fma_loop(long iters, float* sink) {
  using T = typename V::T;
  T acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = V::set(static_cast<float>(i));
  T a = V::set(0.999999f), b = V::set(1e-7f);  // acc converges to 0.1: no overflow, no denormals
  const double t0 = thread_cpu_seconds();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kAcc; ++i) acc[i] = V::fma(acc[i], a, b);
    opaque(a);
  }
  const double t1 = thread_cpu_seconds();
  T s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = V::add(s, acc[i]);
  *sink += V::first(s);
  return t1 - t0;
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
  return {V::bits, V::lanes, V::what, &fma_loop<V>, 2.0 * kAcc * V::lanes};
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

const Width& width(int bits) {
  for (const Width& w : kWidths)
    if (w.bits == bits) return w;
  TSP_THROW(InvalidArgument, "this build has no ", bits, "-bit FMA loop (widest: ", kWidths[0].bits, ")");
}

double best_gflops(double (*loop)(long, float*), double flops_per_iter, const PeakRuns& runs) {
  TSP_CHECK(runs.iters > 0 && runs.reps > 0, "peak measurement needs iters > 0 and reps > 0");
  float sink = 0;
  double best = 0;
  if (runs.warmup_iters > 0) loop(runs.warmup_iters, &sink);
  for (int rep = 0; rep < runs.reps; ++rep) {
    const double s = loop(runs.iters, &sink);
    if (s > 0) best = std::max(best, static_cast<double>(runs.iters) * flops_per_iter / s * 1e-9);
  }
  asm volatile("" : : "g"(&sink) : "memory");  // the sums are used: the loops are not dead code
  return best;
}

#if defined(__AVX512BF16__)
constexpr int kAccBf16 = 24;  // vdpbf16ps's latency is longer than an FMA's on some cores
double dpbf16_loop(long iters, float* sink) {
  __m512 acc[kAccBf16];
  for (int i = 0; i < kAccBf16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-6f), _mm512_set1_ps(1e-6f));
  const double t0 = thread_cpu_seconds();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kAccBf16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    asm volatile("" : "+v"(a));
  }
  const double t1 = thread_cpu_seconds();
  __m512 s = acc[0];
  for (int i = 1; i < kAccBf16; ++i) s = _mm512_add_ps(s, acc[i]);
  *sink += _mm512_cvtss_f32(s);
  return t1 - t0;
}
constexpr double kDpbf16FlopsPerIter = kAccBf16 * 16 * 4.0;
#endif

}  // namespace

std::vector<int> fma_widths() {
  std::vector<int> out;
  for (const Width& w : kWidths) out.push_back(w.bits);
  return out;
}

double fma_loop_seconds(int bits, long iters, float* sink) { return width(bits).loop(iters, sink); }
double fma_flops_per_iter(int bits) { return width(bits).flops_per_iter; }

FmaPeak measure_fma_peak(int bits, const PeakRuns& runs) {
  const Width& w = width(bits);
  return {w.bits, w.lanes, best_gflops(w.loop, w.flops_per_iter, runs), w.what};
}

bool has_dpbf16_loop() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

double dpbf16_loop_seconds(long iters, float* sink) {
#if defined(__AVX512BF16__)
  return dpbf16_loop(iters, sink);
#else
  (void)iters, (void)sink;
  TSP_THROW(InvalidArgument, "this build has no AVX512-BF16 (vdpbf16ps) loop");
#endif
}

double dpbf16_flops_per_iter() {
#if defined(__AVX512BF16__)
  return kDpbf16FlopsPerIter;
#else
  return 0;
#endif
}

double measure_dpbf16_peak(const PeakRuns& runs) {
#if defined(__AVX512BF16__)
  return best_gflops(&dpbf16_loop, kDpbf16FlopsPerIter, runs);
#else
  (void)runs;
  return 0;
#endif
}

std::string fma_isa_name(int bits) {
  switch (bits) {
    case 512: return "avx512";
#if defined(__AVX2__)
    case 256: return "avx2";
#else
    case 256: return "avx";
#endif
    case 128: return "sse";
    default: return "scalar";
  }
}

std::string MathPeak::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%.1f GFLOP/s/core %s %s%s", gflops_per_core, path.c_str(), isa.c_str(),
                measured ? "" : " (2x fp32, not measured: the build lacks AVX512-BF16)");
  return buf;
}

MathPeak measure_math_peak(DType dtype, const PeakRuns& runs) {
  const int widest = kWidths[0].bits;
  MathPeak p;
  if (dtype == DType::bf16 && gemm_native_bf16()) {
    p.path = "bf16";
    p.isa = "avx512";  // oneDNN's bf16 matmul runs only on AVX-512 CPUs
    p.gflops_per_core = measure_dpbf16_peak(runs);
    if (p.gflops_per_core == 0) {
      p.gflops_per_core = 2 * measure_fma_peak(widest, runs).gflops;
      p.measured = false;
    }
    return p;
  }
  p.path = "fp32";
  p.isa = fma_isa_name(widest);
  p.gflops_per_core = measure_fma_peak(widest, runs).gflops;
  return p;
}

}  // namespace tsp::kernels
