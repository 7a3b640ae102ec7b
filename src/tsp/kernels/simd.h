// The SIMD vocabulary of the CPU kernels (flash attention, decode attention, SwiGLU, RoPE,
// RMSNorm, ...): F8 (eight fp32 lanes: AVX2 + FMA, or a portable scalar fallback), F16 (sixteen
// lanes: AVX-512F/BW/VL/DQ, only where the build target has them), and Vec = the widest of the two
// that the build has, for kernels written once for any width (kLanes lanes; v-prefixed names).
//
// Width is chosen at compile time from the build target (-march=native by default, TSP_MARCH
// otherwise; docs/kernels.md "Vector width" says why not run-time dispatch). On Zen 3/Zen 4 the
// 512-bit path gives no more FLOPs than 256-bit (two 256-bit FMA pipes), on Zen 5 and on Intel
// server cores with two 512-bit FMA ports it doubles the fp32 peak.
//
//   load8 / store8      f32, and bf16 <-> f32 (store rounds to nearest even, NaN stays a quiet
//                       NaN: bit-identical to bf16::round_from_float); *_tail for the last n < 8
//   arithmetic          add8 sub8 mul8 div8 fma8 max8 min8 neg8, operators + - * /, hsum8 hmax8
//   compare / select    ge8(a, b) -> M8, select8(m, a, b) = m ? a : b (per lane)
//   exp2_8(x)           2^x, <= 3e-7 relative (normal results); x <= -127 (and -inf) -> 0
//   exp8(x)             e^x, <= 2e-7 relative for x in [-87, 88] (measured worst 9.1e-8, i.e.
//                       ~1.5 ulp: tests/kernels/simd_test.cpp); overflow -> +inf; gradual
//                       underflow below e^-87.3 (x <= -103.97, and -inf, give exactly 0)
//   F16: the same names with 16 (load16, fma16, exp16, ...); tails are masked loads/stores (no
//   access past n). Results are lane-for-lane identical to F8's (same algorithms, same operand
//   order, same NaN rules), except hsum16's summation order.
// NaN propagates through exp2 and exp. Everything here is header-only and inline.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tsp/core/dtype.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TSP_SIMD_AVX2 1
#else
#define TSP_SIMD_AVX2 0
#endif

#if TSP_SIMD_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#define TSP_SIMD_AVX512 1
#else
#define TSP_SIMD_AVX512 0
#endif
#if TSP_SIMD_AVX512 && defined(__AVX512BF16__)
#define TSP_SIMD_AVX512_BF16 1  // vdpbf16ps: bf16 pair dot products accumulated in fp32
#else
#define TSP_SIMD_AVX512_BF16 0
#endif

namespace tsp::kernels::simd {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

#if TSP_SIMD_AVX2
struct F8 {
  __m256 v;
};
struct M8 {
  __m256 v;  // all-ones lanes are true
};
inline F8 load8(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store8(float* p, F8 a) { _mm256_storeu_ps(p, a.v); }
// bf16 (the upper 16 bits of a float): widen to 32 bits and shift into place (exact).
inline F8 load8(const bf16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}
// Round to nearest even: (u + 0x7fff + lsb) >> 16; NaN: (u >> 16) | 0x40 (quiet, sign and top of
// payload kept). The 16-bit results are packed with unsigned saturation, which is exact here.
inline void store8(bf16* p, F8 a) {
  const __m256i u = _mm256_castps_si256(a.v);
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i qnan = _mm256_or_si256(hi, _mm256_set1_epi32(0x0040));
  const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                            _mm256_set1_epi32(0x7f800000));
  const __m256i r = _mm256_blendv_epi8(rounded, qnan, is_nan);
  const __m128i packed =
      _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
inline F8 set8(float x) { return {_mm256_set1_ps(x)}; }
inline F8 fma8(F8 a, F8 b, F8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline F8 add8(F8 a, F8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline F8 sub8(F8 a, F8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline F8 mul8(F8 a, F8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline F8 div8(F8 a, F8 b) { return {_mm256_div_ps(a.v, b.v)}; }
inline F8 max8(F8 a, F8 b) { return {_mm256_max_ps(a.v, b.v)}; }
inline F8 min8(F8 a, F8 b) { return {_mm256_min_ps(a.v, b.v)}; }
inline F8 neg8(F8 a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.f))}; }
inline M8 ge8(F8 a, F8 b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline F8 select8(M8 m, F8 a, F8 b) { return {_mm256_blendv_ps(b.v, a.v, m.v)}; }
inline float hmax8(F8 a) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
inline float hsum8(F8 a) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
// 2^f for |f| <= 1/2 (a little beyond is fine): the degree-7 Taylor polynomial of 2^f (truncation
// error (ln2/2)^8/8! = 5e-9 relative), Horner in fp32.
inline __m256 exp2_poly(__m256 f) {
  __m256 p = _mm256_set1_ps(1.525273380405984e-05f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.5403530393381606e-04f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618129107628477e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550410866482158e-02f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402265069591007e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471805599453e-01f));
  return _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
}
// 2^x: n = round(x), 2^(x-n) by exp2_poly, times 2^n built in the exponent field. x is clamped to
// [-127, 127]; n = -127 gives a zero exponent field, so -inf and deep underflow give exactly 0
// (results below 2^-126.5 flush to 0; x >= 127 gives 2^127, never inf).
// NaN propagates (maxps/minps return their second operand when either is NaN).
inline F8 exp2_8(F8 a) {
  __m256 x = _mm256_max_ps(_mm256_set1_ps(-127.f), a.v);
  x = _mm256_min_ps(_mm256_set1_ps(127.f), x);
  const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 p = exp2_poly(_mm256_sub_ps(x, n));
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return {_mm256_mul_ps(p, _mm256_castsi256_ps(e))};
}
// e^x = 2^t, t = x log2(e) carried as t_hi + t_lo (t_hi = fl(x L), t_lo = the exact rounding
// error of that product by FMA plus x times the tail of log2(e) beyond fp32), so the argument
// reduction f = (t_hi - n) + t_lo, n = round(t_hi), loses nothing to the 2^-24 relative error of
// t_hi (which alone would cost |t| 2^-24 ln2 ~ 5e-6 relative at x = 88). t_hi - n is exact.
// x is clamped to [-104, 89] first (so +-inf cannot make t_lo NaN); 2^n is applied as two factors
// 2^(n>>1) 2^(n - (n>>1)) (each in [2^-75, 2^65]), which gives +inf on overflow and gradual
// underflow, and exactly 0 at the bottom (2^-150 rounds to 0).
inline F8 exp8(F8 a) {
  constexpr float kLog2eLo = 1.925963033500011e-08f;  // log2(e) - float(log2(e))
  __m256 x = _mm256_max_ps(_mm256_set1_ps(-104.f), a.v);
  x = _mm256_min_ps(_mm256_set1_ps(89.f), x);
  const __m256 L = _mm256_set1_ps(kLog2e);
  const __m256 t_hi = _mm256_mul_ps(x, L);
  const __m256 t_lo = _mm256_fmadd_ps(x, _mm256_set1_ps(kLog2eLo), _mm256_fmsub_ps(x, L, t_hi));
  const __m256 n = _mm256_round_ps(t_hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_add_ps(_mm256_sub_ps(t_hi, n), t_lo);
  // 2^f on |f| <= 0.5002: degree-6 Chebyshev fit (error 2e-9; 1.9e-8 with fp32 coefficients).
  __m256 p = _mm256_set1_ps(1.546149142e-04f);
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.340048155e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618056938e-03f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550327152e-02f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402265072e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471825e-01f));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return {_mm256_mul_ps(_mm256_mul_ps(p, s1), s2)};
}
#else
struct F8 {
  float v[8];
};
struct M8 {
  bool v[8];
};
inline F8 load8(const float* p) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = p[i]; return r; }
inline void store8(float* p, F8 a) { for (int i = 0; i < 8; ++i) p[i] = a.v[i]; }
inline F8 load8(const bf16* p) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = bf16::to_float(p[i].bits); return r; }
inline void store8(bf16* p, F8 a) { for (int i = 0; i < 8; ++i) p[i].bits = bf16::round_from_float(a.v[i]); }
inline F8 set8(float x) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = x; return r; }
inline F8 fma8(F8 a, F8 b, F8 c) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]); return r; }
inline F8 add8(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] + b.v[i]; return r; }
inline F8 sub8(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] - b.v[i]; return r; }
inline F8 mul8(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] * b.v[i]; return r; }
inline F8 div8(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] / b.v[i]; return r; }
// Same NaN rule as maxps/minps: the second operand when either is NaN.
inline F8 max8(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return r; }
inline F8 min8(F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return r; }
inline F8 neg8(F8 a) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = -a.v[i]; return r; }
inline M8 ge8(F8 a, F8 b) { M8 m; for (int i = 0; i < 8; ++i) m.v[i] = a.v[i] >= b.v[i]; return m; }
inline F8 select8(M8 m, F8 a, F8 b) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = m.v[i] ? a.v[i] : b.v[i]; return r; }
inline float hmax8(F8 a) { float m = a.v[0]; for (int i = 1; i < 8; ++i) m = std::max(m, a.v[i]); return m; }
inline float hsum8(F8 a) { float s = 0; for (int i = 0; i < 8; ++i) s += a.v[i]; return s; }
inline F8 exp2_8(F8 a) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::exp2(a.v[i]); return r; }
inline F8 exp8(F8 a) { F8 r; for (int i = 0; i < 8; ++i) r.v[i] = std::exp(a.v[i]); return r; }
#endif

inline F8 operator+(F8 a, F8 b) { return add8(a, b); }
inline F8 operator-(F8 a, F8 b) { return sub8(a, b); }
inline F8 operator*(F8 a, F8 b) { return mul8(a, b); }
inline F8 operator/(F8 a, F8 b) { return div8(a, b); }

// The first n (0 <= n <= 8) elements: lanes >= n load as 0 and are not stored.
template <class T>
inline F8 load8_tail(const T* p, int64_t n) {
  alignas(32) T buf[8] = {};
  std::copy(p, p + n, buf);
  return load8(buf);
}
template <class T>
inline void store8_tail(T* p, F8 a, int64_t n) {
  alignas(32) T buf[8];
  store8(buf, a);
  std::copy(buf, buf + n, p);
}


#if TSP_SIMD_AVX512
// ---------------------------------------------------------------------------------------------
// F16: sixteen fp32 lanes in a zmm register. Same algorithms and constants as F8 above.
// GCC 12's unmasked AVX-512 intrinsics pass a self-initialised `_mm512_undefined_*()` as the
// merge source, which -Wmaybe-uninitialized reports wherever they are inlined (GCC bug 105593,
// fixed in GCC 13); the warning is silenced for these wrappers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
struct F16 {
  __m512 v;
};
struct M16 {
  __mmask16 m;  // bit i set: lane i is true
};
inline F16 load16(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store16(float* p, F16 a) { _mm512_storeu_ps(p, a.v); }
inline F16 load16(const bf16* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
}
// Integer round to nearest even as store8 (vcvtneps2bf16 would flush denormals, so it is not
// bit-identical to bf16::round_from_float); vpmovdw truncates, exact since results fit 16 bits.
inline __m256i bf16_bits16(F16 a) {
  const __m512i u = _mm512_castps_si512(a.v);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i qnan = _mm512_or_si512(hi, _mm512_set1_epi32(0x0040));
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(is_nan, rounded, qnan));
}
inline void store16(bf16* p, F16 a) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bf16_bits16(a));
}
inline __mmask16 tail_mask16(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xffffu : ((1u << n) - 1u));
}
// The first n (0 <= n <= 16) elements: masked, so nothing at or past p + n is read or written.
inline F16 load16_tail(const float* p, int64_t n) { return {_mm512_maskz_loadu_ps(tail_mask16(n), p)}; }
inline void store16_tail(float* p, F16 a, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask16(n), a.v); }
inline F16 load16_tail(const bf16* p, int64_t n) {
  const __m256i h = _mm256_maskz_loadu_epi16(tail_mask16(n), p);
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
}
inline void store16_tail(bf16* p, F16 a, int64_t n) {
  _mm256_mask_storeu_epi16(p, tail_mask16(n), bf16_bits16(a));
}
inline F16 set16(float x) { return {_mm512_set1_ps(x)}; }
inline F16 fma16(F16 a, F16 b, F16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline F16 add16(F16 a, F16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline F16 sub16(F16 a, F16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline F16 mul16(F16 a, F16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline F16 div16(F16 a, F16 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline F16 max16(F16 a, F16 b) { return {_mm512_max_ps(a.v, b.v)}; }
inline F16 min16(F16 a, F16 b) { return {_mm512_min_ps(a.v, b.v)}; }
inline F16 neg16(F16 a) { return {_mm512_xor_ps(a.v, _mm512_set1_ps(-0.f))}; }
inline M16 ge16(F16 a, F16 b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline F16 select16(M16 m, F16 a, F16 b) { return {_mm512_mask_blend_ps(m.m, b.v, a.v)}; }
inline float hmax16(F16 a) {
  const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
  return hmax8({h});
}
inline float hsum16(F16 a) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
  return hsum8({h});
}
inline F16 exp2_16(F16 a) {
  __m512 x = _mm512_max_ps(_mm512_set1_ps(-127.f), a.v);
  x = _mm512_min_ps(_mm512_set1_ps(127.f), x);
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.525273380405984e-05f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381606e-04f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265069591007e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471805599453e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return {_mm512_mul_ps(p, _mm512_castsi512_ps(e))};
}
inline F16 exp16(F16 a) {
  constexpr float kLog2eLo = 1.925963033500011e-08f;  // log2(e) - float(log2(e))
  __m512 x = _mm512_max_ps(_mm512_set1_ps(-104.f), a.v);
  x = _mm512_min_ps(_mm512_set1_ps(89.f), x);
  const __m512 L = _mm512_set1_ps(kLog2e);
  const __m512 t_hi = _mm512_mul_ps(x, L);
  const __m512 t_lo = _mm512_fmadd_ps(x, _mm512_set1_ps(kLog2eLo), _mm512_fmsub_ps(x, L, t_hi));
  const __m512 n = _mm512_roundscale_ps(t_hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_add_ps(_mm512_sub_ps(t_hi, n), t_lo);
  __m512 p = _mm512_set1_ps(1.546149142e-04f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.340048155e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618056938e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550327152e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265072e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471825e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_cvtps_epi32(n);
  const __m512i n1 = _mm512_srai_epi32(ni, 1);
  const __m512i n2 = _mm512_sub_epi32(ni, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  return {_mm512_mul_ps(_mm512_mul_ps(p, s1), s2)};
}
inline F16 operator+(F16 a, F16 b) { return add16(a, b); }
inline F16 operator-(F16 a, F16 b) { return sub16(a, b); }
inline F16 operator*(F16 a, F16 b) { return mul16(a, b); }
inline F16 operator/(F16 a, F16 b) { return div16(a, b); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // TSP_SIMD_AVX512

// ---------------------------------------------------------------------------------------------
// Vec: the widest vector the build has, for kernels written once for any width. Loops step by
// kLanes and finish with vload_tail / vstore_tail (masked on AVX-512, a staging copy on F8).
#if TSP_SIMD_AVX512
using Vec = F16;
using VMask = M16;
inline constexpr int kLanes = 16;
inline constexpr const char* kVecName = "avx512 16-lane";
template <class T> inline Vec vload(const T* p) { return load16(p); }
template <class T> inline void vstore(T* p, Vec a) { store16(p, a); }
template <class T> inline Vec vload_tail(const T* p, int64_t n) { return load16_tail(p, n); }
template <class T> inline void vstore_tail(T* p, Vec a, int64_t n) { store16_tail(p, a, n); }
inline Vec vset(float x) { return set16(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return fma16(a, b, c); }
inline Vec vmax(Vec a, Vec b) { return max16(a, b); }
inline Vec vmin(Vec a, Vec b) { return min16(a, b); }
inline Vec vneg(Vec a) { return neg16(a); }
inline VMask vge(Vec a, Vec b) { return ge16(a, b); }
inline Vec vselect(VMask m, Vec a, Vec b) { return select16(m, a, b); }
inline float vhsum(Vec a) { return hsum16(a); }
inline float vhmax(Vec a) { return hmax16(a); }
inline Vec vexp2(Vec a) { return exp2_16(a); }
inline Vec vexp(Vec a) { return exp16(a); }
#else
using Vec = F8;
using VMask = M8;
inline constexpr int kLanes = 8;
inline constexpr const char* kVecName = TSP_SIMD_AVX2 ? "avx2 8-lane" : "scalar 8-lane";
template <class T> inline Vec vload(const T* p) { return load8(p); }
template <class T> inline void vstore(T* p, Vec a) { store8(p, a); }
template <class T> inline Vec vload_tail(const T* p, int64_t n) { return load8_tail(p, n); }
template <class T> inline void vstore_tail(T* p, Vec a, int64_t n) { store8_tail(p, a, n); }
inline Vec vset(float x) { return set8(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return fma8(a, b, c); }
inline Vec vmax(Vec a, Vec b) { return max8(a, b); }
inline Vec vmin(Vec a, Vec b) { return min8(a, b); }
inline Vec vneg(Vec a) { return neg8(a); }
inline VMask vge(Vec a, Vec b) { return ge8(a, b); }
inline Vec vselect(VMask m, Vec a, Vec b) { return select8(m, a, b); }
inline float vhsum(Vec a) { return hsum8(a); }
inline float vhmax(Vec a) { return hmax8(a); }
inline Vec vexp2(Vec a) { return exp2_8(a); }
inline Vec vexp(Vec a) { return exp8(a); }
#endif

}  // namespace tsp::kernels::simd

namespace tsp::kernels::detail {
// The vectorised exp2 and exp over arrays, for their accuracy tests: y[i] = 2^x[i] (e^x[i]).
inline void exp2_array(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    simd::store8_tail(y + i, simd::exp2_8(simd::load8_tail(x + i, m)), m);
  }
}
inline void exp_array(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t m = std::min<int64_t>(8, n - i);
    simd::store8_tail(y + i, simd::exp8(simd::load8_tail(x + i, m)), m);
  }
}
#if TSP_SIMD_AVX512
inline void exp2_array16(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    simd::store16_tail(y + i, simd::exp2_16(simd::load16_tail(x + i, m)), m);
  }
}
inline void exp_array16(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t m = std::min<int64_t>(16, n - i);
    simd::store16_tail(y + i, simd::exp16(simd::load16_tail(x + i, m)), m);
  }
}
#endif
}  // namespace tsp::kernels::detail
