// Flash attention on the CPU: register-blocked FMA micro-kernels for the tile GEMMs, fused online
// softmax, position-based block skipping. See flash_attention.h for the contract.
//
// Width. Written once over simd.h's Vec (kLanes fp32 lanes): 16-lane zmm where the build has
// AVX-512 (TSP_SIMD_AVX512), else 8-lane ymm (AVX2) or the scalar fallback. Only the register
// block shapes, the visibility mask and exp2 are width-specific (see "Register blocks").
//
// Data flow. For each (batch, kv head) the keys and values are packed once into fp32 scratch:
// K^T in panels of kPanel = 2 kLanes keys ([panel][d][kPanel], the B operand of S = Q K^T, one
// panel per 2 vector accumulators per row) and K / V as rows padded to dp = round_up(d, kLanes).
// Query rows are converted to fp32 per tile (forward) or per head (backward). Scores live in the
// log2 domain: exp(scale * s - m) = exp2(c2 * s - m2) with c2 = scale * log2(e), so one FMA feeds
// exp2.
//
// Forward, per (head, query tile of kFwdBq rows), key tiles of kFwdBk in order; for each group of
// kNtRows query rows: S[rows x Bk] = Q K^T (NT kernel), mask, online-softmax update of (m, l) and
// rescale of the O accumulator row, P = exp2(c2 S - m2) in place, O[rows x dp] += P V (NN kernel).
// Backward (FlashAttention-2), per kv head and query head of its group, parallel over key tiles:
// for each query tile: P = exp2(c2 S - lse2), dP = dO V^T, dS = P (dP - D); then dV += P^T dO,
// dK += dS^T Q (key-tile rows: owned by the thread), dQ += dS K (per-thread fp32 buffer, summed
// in thread order at the end). scale is applied to dq and dk on output.
//
// Native bf16 math. With bf16 inputs, AVX512-BF16 (TSP_SIMD_AVX512_BF16) and bf16_math() ==
// native, the same tile loops (forward_tiles / backward_tiles<true>) run every product on
// vdpbf16ps: operands are bf16 pairs along the reduction dimension (K^T / V^T panels
// [d/2][kPanel][2], V / K / Q / dO as [S/2][dp][2]), P and dS are rounded to bf16 before the
// products that take them; softmax state, O, lse, D, dS and the gradient accumulators stay fp32.
// docs/kernels.md has the error bounds and why this is not the default on every CPU.
#include "tsp/kernels/flash_attention.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/kernels/bf16_math.h"
#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {

namespace {

using namespace simd;  // Vec / kLanes: 16-lane zmm on AVX-512 builds, 8-lane ymm (or scalar) else

// Register blocks. The shared structure below is written once over Vec; only these shapes, the
// mask and exp2 differ per width. AVX-512 has 32 vector registers: the NT kernel (scores) keeps
// 12 rows x 2 zmm accumulators (24) + 2 K^T vectors, the NN kernel (P V, dS K, P^T dO, dS^T Q)
// 6 rows x 4 zmm (24, i.e. d = 64 in one pass) + 4 B vectors; broadcasts come from memory
// (embedded {1to16} operands). AVX2 has 16: 6 x 2 ymm for both (12 accumulators).
#if TSP_SIMD_AVX512
constexpr int kNtRows = 12;  // rows per NT register block (scores S = Q K^T, dP = dO V^T)
constexpr int kNnRows = 6;   // rows per NN register block
constexpr int kNnVecs = 4;   // vectors per NN register block (columns = 4 x 16)
#else
constexpr int kNtRows = 6;
constexpr int kNnRows = 6;
constexpr int kNnVecs = 2;
#endif
constexpr int kPanel = 2 * kLanes;  // keys per K^T panel = columns of one NT micro-kernel call
constexpr int kFwdBq = 96;   // query rows per forward tile (a multiple of kNtRows)
constexpr int kFwdBk = 64;   // keys per forward tile (a multiple of kPanel; V tile 16 KiB at d = 64)
constexpr int kBwdBq = 96;   // query rows per backward tile (a multiple of kNtRows)
constexpr int kBwdBk = 64;   // keys per backward tile (a multiple of kPanel)
static_assert(kFwdBq % kNtRows == 0 && kBwdBq % kNtRows == 0);
static_assert(kFwdBk % kPanel == 0 && kBwdBk % kPanel == 0);

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// ---------------------------------------------------------------------------------------------
// Width-specific pieces: the visibility mask and exp2 of the (non-positive) softmax arguments.

#if TSP_SIMD_AVX512
// GCC 12 reports its own unmasked AVX-512 intrinsics as maybe-uninitialized (bug 105593, see
// simd.h); silenced for these two helpers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// Lanes of s that are invisible become -inf: lane index (lane0 + i) >= kn (tail of a partial key
// tile), or, if masked, kpos[i] > qp or kpos[i] < lo (older than a sliding window; lo = INT32_MIN
// without one). kpos must be readable for 16 entries.
inline Vec mask_vec(Vec s, const int32_t* kpos, int32_t qp, int32_t lo, int64_t lane0, int64_t kn,
                    bool masked) {
  __mmask16 visible = tail_mask16(kn - lane0);
  if (masked) {
    const __m512i kp = _mm512_loadu_si512(kpos);
    visible &= _mm512_cmple_epi32_mask(kp, _mm512_set1_epi32(qp)) &
               _mm512_cmpge_epi32_mask(kp, _mm512_set1_epi32(lo));
  }
  return {_mm512_mask_blend_ps(visible, _mm512_set1_ps(-INFINITY), s.v)};
}
// 2^x in 8 instructions (simd.h's exp2_16 takes 15): f = x - floor(x) by vreduceps, 2^f on
// [0, 1) by a degree-5 minimax polynomial with p(0) = 1 exactly (relative error 8.2e-8 in exact
// arithmetic, 1.7e-7 measured in fp32 over [-100, 0.5]; simd.h's is 3e-7), and the exponent
// applied by vscalefps (p * 2^floor(x)), which needs no integer conversion and underflows
// gracefully. p(0) = 1 keeps the row maximum's weight exactly 1, as simd.h's exp2 does (an
// unconstrained fit gives 1 - 2^-24 there, which moved a bf16 training comparison,
// distributed_trainer_mpi_test's Bf16 case, across a rounding boundary). x is clamped below at -160:
// -inf (masked scores, empty rows) gives 2^-160 * p, which rounds to exactly 0; NaN passes the
// clamp (maxps returns its second operand) and propagates.
inline Vec exp2_scores(Vec a) {
  const __m512 x = _mm512_max_ps(_mm512_set1_ps(-160.f), a.v);
  const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_set1_ps(0.0018671300495043397f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009017030708491802f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05579991266131401f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24016444385051727f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931512951850891f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return {_mm512_scalef_ps(p, x)};
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#if TSP_SIMD_AVX2
inline Vec mask_vec(Vec s, const int32_t* kpos, int32_t qp, int32_t lo, int64_t lane0, int64_t kn,
                    bool masked) {
  const __m256i lane = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                        _mm256_set1_epi32(static_cast<int32_t>(lane0)));
  __m256i inv = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(static_cast<int32_t>(kn - 1)));
  if (masked) {
    const __m256i kp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kpos));
    inv = _mm256_or_si256(inv, _mm256_cmpgt_epi32(kp, _mm256_set1_epi32(qp)));
    inv = _mm256_or_si256(inv, _mm256_cmpgt_epi32(_mm256_set1_epi32(lo), kp));
  }
  return {_mm256_blendv_ps(s.v, _mm256_set1_ps(-INFINITY), _mm256_castsi256_ps(inv))};
}
#else
inline Vec mask_vec(Vec s, const int32_t* kpos, int32_t qp, int32_t lo, int64_t lane0, int64_t kn,
                    bool masked) {
  for (int i = 0; i < kLanes; ++i)
    if (lane0 + i >= kn || (masked && (kpos[i] > qp || kpos[i] < lo))) s.v[i] = -INFINITY;
  return s;
}
#endif
inline Vec exp2_scores(Vec a) { return vexp2(a); }  // simd.h exp2_8: -inf and x <= -127 give 0
#endif

// ---------------------------------------------------------------------------------------------
// Micro-kernels.

// C[R x kPanel] = A[R x d] (row stride lda) * Bp, Bp a K^T panel [d][kPanel].
template <int R>
inline void kern_nt(const float* a, int64_t lda, const float* bp, int d, float* c, int64_t ldc) {
  Vec acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = vset(0.f);
  for (int x = 0; x < d; ++x) {
    const float* b = bp + x * kPanel;
    const Vec b0 = vload(b), b1 = vload(b + kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const Vec av = vset(a[r * lda + x]);
      acc[r][0] = vfma(av, b0, acc[r][0]);
      acc[r][1] = vfma(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    vstore(c + r * ldc, acc[r][0]);
    vstore(c + r * ldc + kLanes, acc[r][1]);
  }
}

// C[R x kLanes NV] += sum_k A(r, k) B[k, kLanes NV], A(r, k) = a[r * a_rs + k * a_ks], B rows ldb
// apart.
template <int R, int NV>
inline void kern_nn(const float* a, int64_t a_rs, int64_t a_ks, int K, const float* b,
                    int64_t ldb, float* c, int64_t ldc) {
  Vec acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = vload(c + r * ldc + v * kLanes);
  for (int k = 0; k < K; ++k) {
    Vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = vload(b + k * ldb + v * kLanes);
    const float* ak = a + k * a_ks;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec av = vset(ak[r * a_rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = vfma(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) vstore(c + r * ldc + v * kLanes, acc[r][v]);
}

// bf16-pair micro-kernels (AVX512-BF16, the native bf16 path): the same register blocks, with
// vdpbf16ps in place of the FMA. Each 32-bit lane of an operand holds a pair of bf16 values
// adjacent along the reduction dimension, and vdpbf16ps adds both products (exact in fp32: 8 x 8
// significant bits) to the fp32 accumulator lane, so one instruction does two multiply-adds per
// lane and the operands are half the bytes. Operands are uint16_t bf16 bit patterns; a pair is
// broadcast to all lanes from memory. Declared in every build so that the one tile loop below
// compiles everywhere; defined (and instantiated) only where the build has AVX512-BF16.
template <int R>
void kern_nt(const uint16_t* a, int64_t lda, const uint16_t* bp, int d, float* c, int64_t ldc);
template <int R, int NV>
void kern_nn(const uint16_t* a, int64_t a_rs, int64_t a_ks, int K, const uint16_t* b,
             int64_t ldb, float* c, int64_t ldc);
#if TSP_SIMD_AVX512_BF16
// GCC 12 bug 105593 (see mask_vec above): silenced for these AVX-512 helpers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
inline __m512i bcast_pair(const uint16_t* p) {
  int32_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return _mm512_set1_epi32(bits);
}
inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a), reinterpret_cast<__m512bh>(b));
}
// C[R x kPanel] = A[R x d] * Bp: A bf16 rows (row stride lda, d even: odd head dims are padded
// with a zero), Bp a bf16 K^T panel [d / 2][kPanel][2] (pairs along d).
template <int R>
void kern_nt(const uint16_t* a, int64_t lda, const uint16_t* bp, int d, float* c, int64_t ldc) {
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int x = 0; x < d / 2; ++x) {
    const uint16_t* b = bp + x * 2 * kPanel;
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 2 * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i av = bcast_pair(a + r * lda + 2 * x);
      acc[r][0] = dot_pairs(acc[r][0], av, b0);
      acc[r][1] = dot_pairs(acc[r][1], av, b1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc[r][0]);
    _mm512_storeu_ps(c + r * ldc + kLanes, acc[r][1]);
  }
}
// C[R x kLanes NV] += sum_k A2(r, k) B2[k, kLanes NV] over K pairs: A2(r, k) the bf16 pair at
// a + r a_rs + k a_ks, B2 pair rows ldb elements apart, each [kLanes NV][2] (pairs along K).
template <int R, int NV>
void kern_nn(const uint16_t* a, int64_t a_rs, int64_t a_ks, int K, const uint16_t* b,
             int64_t ldb, float* c, int64_t ldc) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_loadu_ps(c + r * ldc + v * kLanes);
  for (int k = 0; k < K; ++k) {
    __m512i bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_si512(b + k * ldb + v * 2 * kLanes);
    const uint16_t* ak = a + k * a_ks;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i av = bcast_pair(ak + r * a_rs);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = dot_pairs(acc[r][v], av, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + r * ldc + v * kLanes, acc[r][v]);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

template <int R, class T>
inline void nn_rows(int nv, const T* a, int64_t a_rs, int64_t a_ks, int K, const T* b,
                    int64_t ldb, float* c, int64_t ldc) {
  static_assert(kNnVecs == 2 || kNnVecs == 4);
  if constexpr (kNnVecs == 4) {
    if (nv == 4) return kern_nn<R, 4>(a, a_rs, a_ks, K, b, ldb, c, ldc);
    if (nv == 3) return kern_nn<R, 3>(a, a_rs, a_ks, K, b, ldb, c, ldc);
  }
  if (nv == 2) kern_nn<R, 2>(a, a_rs, a_ks, K, b, ldb, c, ldc);
  else kern_nn<R, 1>(a, a_rs, a_ks, K, b, ldb, c, ldc);
}

// C[M x dp] += A(M x K) B[K x dp]; dp a multiple of kLanes. T = float: the fp32 kernels above;
// T = uint16_t: the bf16-pair kernels below (K counts pairs, strides count bf16 elements).
template <class T>
void gemm_nn_acc(int64_t M, int64_t dp, int K, const T* a, int64_t a_rs, int64_t a_ks,
                 const T* b, int64_t ldb, float* c, int64_t ldc) {
  if (K <= 0) return;
  static_assert(kNnRows == 6);
  for (int64_t r0 = 0; r0 < M; r0 += kNnRows) {
    const int R = static_cast<int>(std::min<int64_t>(kNnRows, M - r0));
    const T* ar = a + r0 * a_rs;
    float* cr = c + r0 * ldc;
    for (int64_t c0 = 0; c0 < dp; c0 += kNnVecs * kLanes) {
      const int nv = static_cast<int>(std::min<int64_t>(kNnVecs, (dp - c0) / kLanes));
      // A bf16-pair B operand holds 2 elements per output column.
      const T* bc = b + c0 * (std::is_same_v<T, float> ? 1 : 2);
      switch (R) {
        case 6: nn_rows<6>(nv, ar, a_rs, a_ks, K, bc, ldb, cr + c0, ldc); break;
        case 5: nn_rows<5>(nv, ar, a_rs, a_ks, K, bc, ldb, cr + c0, ldc); break;
        case 4: nn_rows<4>(nv, ar, a_rs, a_ks, K, bc, ldb, cr + c0, ldc); break;
        case 3: nn_rows<3>(nv, ar, a_rs, a_ks, K, bc, ldb, cr + c0, ldc); break;
        case 2: nn_rows<2>(nv, ar, a_rs, a_ks, K, bc, ldb, cr + c0, ldc); break;
        default: nn_rows<1>(nv, ar, a_rs, a_ks, K, bc, ldb, cr + c0, ldc); break;
      }
    }
  }
}

// Row counts 1 .. kNtRows as a compile-time constant. A panel holds d kPanel elements (fp32, or
// bf16 pairs: d even, d / 2 pair rows of kPanel pairs).
template <int R, class T>
inline void nt_panels(const T* a, int64_t lda, const T* panels, int64_t npanels, int d, float* c,
                      int64_t ldc) {
  for (int64_t p = 0; p < npanels; ++p)
    kern_nt<R>(a, lda, panels + p * d * kPanel, d, c + p * kPanel, ldc);
}
template <class T, int... Rs>
inline void nt_dispatch(std::integer_sequence<int, Rs...>, int R, const T* a, int64_t lda,
                        const T* panels, int64_t npanels, int d, float* c, int64_t ldc) {
  ((R == Rs + 1 ? nt_panels<Rs + 1>(a, lda, panels, npanels, d, c, ldc) : void()), ...);
}

// C[R x kPanel npanels] = A[R x d] * panels (R <= kNtRows).
template <class T>
void nt_rows(int R, const T* a, int64_t lda, const T* panels, int64_t npanels, int d, float* c,
             int64_t ldc) {
  nt_dispatch(std::make_integer_sequence<int, kNtRows>{}, R, a, lda, panels, npanels, d, c, ldc);
}

// ---------------------------------------------------------------------------------------------
// Element access and conversion.

template <class T>
inline float to_f(T x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else return static_cast<float>(x);
}

// dst[0..dp) = src[0..d) as fp32, zero padded.
template <class T>
inline void load_row(const T* src, float* dst, int d, int dp) {
  for (int x = 0; x < d; ++x) dst[x] = to_f(src[x]);
  for (int x = d; x < dp; ++x) dst[x] = 0.f;
}

// dst[x] = mul * src[x] (+ dst[x] if accumulate).
inline void store_row(const float* src, float mul, bool accumulate, void* dst_raw, DType dt,
                      int d) {
  if (dt == DType::f32) {
    float* dst = static_cast<float*>(dst_raw);
    if (accumulate)
      for (int x = 0; x < d; ++x) dst[x] += mul * src[x];
    else
      for (int x = 0; x < d; ++x) dst[x] = mul * src[x];
  } else {
    bf16* dst = static_cast<bf16*>(dst_raw);
    if (accumulate)
      for (int x = 0; x < d; ++x) dst[x] = bf16(static_cast<float>(dst[x]) + mul * src[x]);
    else
      for (int x = 0; x < d; ++x) dst[x] = bf16(mul * src[x]);
  }
}

// A 4-D [B, S, H, d] view: typed row pointers.
struct View4 {
  char* base = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0;  // strides in elements
  size_t esize = 4;
  DType dtype = DType::f32;
  explicit View4(const Tensor& t)
      : base(static_cast<char*>(t.raw())), s0(t.stride(0)), s1(t.stride(1)), s2(t.stride(2)),
        esize(t.element_size()), dtype(t.dtype()) {}
  void* row(int64_t b, int64_t s, int64_t h) const {
    return base + static_cast<int64_t>(esize) * (b * s0 + s * s1 + h * s2);
  }
  void load(int64_t b, int64_t s, int64_t h, float* dst, int d, int dp) const {
    if (dtype == DType::f32) load_row(static_cast<const float*>(row(b, s, h)), dst, d, dp);
    else load_row(static_cast<const bf16*>(row(b, s, h)), dst, d, dp);
  }
};

// ---------------------------------------------------------------------------------------------
// Validation.

void check_inner(const Tensor& t, const char* name) {
  TSP_CHECK_T(LayoutError, t.has_unit_inner_stride(), "flash_attention: ", name,
              " needs unit inner stride, got ", t.describe());
}

void check_positions(const Tensor& pos, int64_t n, const char* name) {
  if (!pos.defined()) return;
  TSP_CHECK_DTYPE(pos.dtype() == DType::i32, "flash_attention: ", name, " must be i32, got ",
                  pos.describe());
  TSP_CHECK_SHAPE(pos.rank() == 1 && pos.dim(0) == n, "flash_attention: ", name,
                  " must have shape [", n, "], got ", pos.describe());
}

struct Dims {
  int64_t B, Sq, Sk, H, Hkv, G, d, dp;
  float scale;
};

Dims check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                  const Tensor& k_pos, const Tensor& o, const Tensor& lse,
                  const FlashAttentionOptions& opt) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &o, &lse})
    TSP_CHECK(t->defined(), "flash_attention: undefined tensor argument");
  const auto shapes = [&] {
    return tsp::detail::concat(" (q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(), ", o ",
                          o.describe(), ", lse ", lse.describe(), ")");
  };
  TSP_CHECK_SHAPE(q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && o.rank() == 4,
                  "flash_attention: q, k, v, o must be [B, S, heads, d]", shapes());
  TSP_CHECK_SHAPE(k.shape() == v.shape(), "flash_attention: k and v shapes differ", shapes());
  TSP_CHECK_SHAPE(q.shape() == o.shape(), "flash_attention: q and o shapes differ", shapes());
  TSP_CHECK_SHAPE(q.dim(0) == k.dim(0), "flash_attention: batch of q and k differ", shapes());
  TSP_CHECK_SHAPE(q.dim(3) == k.dim(3), "flash_attention: head dim of q and k differ", shapes());
  TSP_CHECK_SHAPE(k.dim(2) > 0 && q.dim(2) % k.dim(2) == 0,
                  "flash_attention: query heads must be a multiple of kv heads", shapes());
  TSP_CHECK_SHAPE(q.dim(3) > 0, "flash_attention: head dim must be positive", shapes());
  TSP_CHECK_SHAPE(lse.rank() == 3 && lse.dim(0) == q.dim(0) && lse.dim(1) == q.dim(2) &&
                      lse.dim(2) == q.dim(1),
                  "flash_attention: lse must be [B, H, Sq]", shapes());
  TSP_CHECK_DTYPE(q.dtype() == DType::f32 || q.dtype() == DType::bf16,
                  "flash_attention: q must be f32 or bf16", shapes());
  TSP_CHECK_DTYPE(k.dtype() == q.dtype() && v.dtype() == q.dtype() && o.dtype() == q.dtype(),
                  "flash_attention: q, k, v, o must share one dtype", shapes());
  TSP_CHECK_DTYPE(lse.dtype() == DType::f32, "flash_attention: lse must be f32", shapes());
  check_inner(q, "q");
  check_inner(k, "k");
  check_inner(v, "v");
  check_inner(o, "o");
  check_inner(lse, "lse");
  check_positions(q_pos, q.dim(1), "q_pos");
  check_positions(k_pos, k.dim(1), "k_pos");
  TSP_CHECK(opt.window >= 0 && (opt.window == 0 || opt.causal),
            "flash_attention: window must be >= 0 (0 = none) and needs causal attention, got ",
            opt.window);
  TSP_CHECK(std::isfinite(opt.scale) && opt.scale >= 0.f,
            "flash_attention: scale must be finite and >= 0 (0 = 1/sqrt(d)), got ", opt.scale);
  Dims dm{};
  dm.B = q.dim(0);
  dm.Sq = q.dim(1);
  dm.H = q.dim(2);
  dm.d = q.dim(3);
  dm.Sk = k.dim(1);
  dm.Hkv = k.dim(2);
  dm.G = dm.H / dm.Hkv;
  dm.dp = round_up(dm.d, kLanes);
  dm.scale = opt.scale > 0.f ? opt.scale : 1.f / std::sqrt(static_cast<float>(dm.d));
  return dm;
}

// ---------------------------------------------------------------------------------------------
// Positions and tile classification.

enum class TileMode : uint8_t { skip, full, masked };

struct Tiles {
  int64_t bq = 0, bk = 0, nqt = 0, nkt = 0;
  std::vector<int32_t> qmin, qmax, kmin, kmax;
};

void read_positions(const Tensor& pos, int64_t n, int32_t* out) {
  if (!pos.defined()) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(i);
    return;
  }
  const int32_t* p = pos.data<int32_t>();
  const int64_t st = pos.stride(0);
  for (int64_t i = 0; i < n; ++i) out[i] = p[i * st];
}

Tiles make_tiles(int64_t Sq, int64_t Sk, int64_t bq, int64_t bk, const int32_t* qpos,
                 const int32_t* kpos) {
  Tiles t{bq, bk, ceil_div(Sq, bq), ceil_div(Sk, bk), {}, {}, {}, {}};
  t.qmin.assign(t.nqt, INT32_MAX);
  t.qmax.assign(t.nqt, INT32_MIN);
  t.kmin.assign(t.nkt, INT32_MAX);
  t.kmax.assign(t.nkt, INT32_MIN);
  for (int64_t i = 0; i < Sq; ++i) {
    t.qmin[i / bq] = std::min(t.qmin[i / bq], qpos[i]);
    t.qmax[i / bq] = std::max(t.qmax[i / bq], qpos[i]);
  }
  for (int64_t j = 0; j < Sk; ++j) {
    t.kmin[j / bk] = std::min(t.kmin[j / bk], kpos[j]);
    t.kmax[j / bk] = std::max(t.kmax[j / bk], kpos[j]);
  }
  return t;
}

// What a query sees: every key (not causal), or keys at positions <= its own, and with a sliding
// window W > 0 only the last W of those: visible iff 0 <= q_pos - k_pos < W (Mistral; transformers'
// sliding_window_overlay).
struct Visibility {
  bool causal = true;
  int64_t window = 0;
  // The oldest visible key position of a query at qp (INT32_MIN without a window).
  int32_t lowest(int32_t qp) const {
    if (window <= 0) return INT32_MIN;
    // A window beyond 2^32 hides nothing any int32 position could tell apart: clamped, so that
    // qp - W + 1 cannot overflow int64 for any window the API accepts.
    const int64_t w = std::min<int64_t>(window, int64_t{1} << 32);
    return static_cast<int32_t>(std::max<int64_t>(int64_t{qp} - w + 1, INT32_MIN));
  }
};

inline TileMode classify(const Tiles& t, int64_t qt, int64_t kt, const Visibility& vis) {
  if (!vis.causal) return TileMode::full;
  if (t.kmin[kt] > t.qmax[qt]) return TileMode::skip;
  // Every key of the tile older than every query's window: nothing to compute (work O(S W)).
  if (vis.window > 0 && t.kmax[kt] < vis.lowest(t.qmin[qt])) return TileMode::skip;
  const bool all_past = t.kmax[kt] <= t.qmin[qt];
  const bool all_in_window = vis.window <= 0 || t.kmin[kt] >= vis.lowest(t.qmax[qt]);
  return all_past && all_in_window ? TileMode::full : TileMode::masked;
}

// Applies the mask of query position qp (if masked: later keys, and keys below lo) and the tail of
// a partial key tile (lanes >= kn) to a row of scores s[0 .. kLanes nvec): invisible entries
// become -inf.
inline void mask_row(float* s, const int32_t* kpos, int32_t qp, int32_t lo, int64_t kn, bool masked) {
  const int64_t nvec = ceil_div(kn, kLanes);
  if (!masked && nvec * kLanes == kn) return;
  for (int64_t v = masked ? 0 : nvec - 1; v < nvec; ++v)
    vstore(s + v * kLanes,
           mask_vec(vload(s + v * kLanes), kpos + v * kLanes, qp, lo, v * kLanes, kn, masked));
}

// Packs keys [0, Sk) of kv head (b, hk) of `src` into K^T panels [panel][d][16] (zero padded).
void pack_panels(const View4& src, int64_t b, int64_t hk, int64_t Sk, int d, float* panels,
                 float* tmp_row, int dp) {
  const int64_t npan = ceil_div(Sk, kPanel);
  std::memset(panels, 0, sizeof(float) * npan * d * kPanel);
  for (int64_t j = 0; j < Sk; ++j) {
    src.load(b, j, hk, tmp_row, d, dp);
    float* p = panels + (j / kPanel) * d * kPanel + (j % kPanel);
    for (int x = 0; x < d; ++x) p[x * kPanel] = tmp_row[x];
  }
}

void pack_rows(const View4& src, int64_t b, int64_t h, int64_t S, int d, int dp, float* rows) {
  for (int64_t j = 0; j < S; ++j) src.load(b, j, h, rows + j * dp, d, dp);
}

// bf16 operands of the native path (bit patterns, uint16_t), packed from bf16 inputs without
// rounding. K^T pair panels [panel][dpair / 2][kPanel][2], dpair = d rounded up to even (zero
// padded): the B operand of the bf16 NT kernel.
void pack_panels_bf16(const View4& src, int64_t b, int64_t hk, int64_t Sk, int d, int dpair,
                      uint16_t* panels) {
  const int64_t npan = ceil_div(Sk, kPanel);
  std::memset(panels, 0, sizeof(uint16_t) * npan * dpair * kPanel);
  for (int64_t j = 0; j < Sk; ++j) {
    const bf16* row = static_cast<const bf16*>(src.row(b, j, hk));
    uint16_t* p = panels + (j / kPanel) * dpair * kPanel + (j % kPanel) * 2;
    for (int x = 0; x < d; ++x) p[(x / 2) * 2 * kPanel + (x & 1)] = row[x].bits;
  }
}
// Rows [0, S) of head (b, h) as pairs along S: [S / 2][dp][2] (row S of an odd S is zero), the B
// operand of the bf16 NN kernel (V for P V, dO for P^T dO, Q for dS^T Q, K for dS K).
void pack_pairs_bf16(const View4& src, int64_t b, int64_t h, int64_t S, int d, int64_t dp,
                     uint16_t* pairs) {
  std::memset(pairs, 0, sizeof(uint16_t) * round_up(std::max<int64_t>(S, 1), 2) * dp);
  for (int64_t j = 0; j < S; ++j) {
    const bf16* row = static_cast<const bf16*>(src.row(b, j, h));
    uint16_t* p = pairs + (j / 2) * 2 * dp + (j & 1);
    for (int x = 0; x < d; ++x) p[2 * x] = row[x].bits;
  }
}
// One row as bf16 bits, zero padded to dp: the A operand of the bf16 NT kernel (Q, dO).
void load_row_bf16(const View4& src, int64_t b, int64_t s, int64_t h, int d, int64_t dp,
                   uint16_t* dst) {
  const bf16* row = static_cast<const bf16*>(src.row(b, s, h));
  for (int x = 0; x < d; ++x) dst[x] = row[x].bits;
  for (int64_t x = d; x < dp; ++x) dst[x] = 0;
}

// fp32 -> bf16 for the native path's computed operands (P, dS), round to nearest even by
// vcvtneps2bf16 (as GPU FlashAttention rounds P; NaN stays NaN; results below 2^-126 flush to 0,
// an absolute change < 2^-126 that no sum of probabilities notices).
//   bf16_row(src, nvec, dst): dst[0 .. kLanes nvec) = bf16(src[...]), a row of P or dS (pairs
//     along keys).
//   bf16_pair_rows(r0, r1, nvec, dst): dst[x][2] = (bf16(r0[x]), bf16(r1[x])) for x < kLanes nvec,
//     two rows of P or dS as pairs along queries; r1 = nullptr pairs r0 with 0 (the last row of
//     an odd tile).
// Builds without AVX512-BF16 never run the native path; their portable versions (bf16's integer
// rounding) only keep the one tile loop compiling.
#if TSP_SIMD_AVX512_BF16
// GCC 12 bug 105593 (see mask_vec above): silenced for these AVX-512 helpers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
inline void bf16_row(const float* src, int64_t nvec, uint16_t* dst) {
  for (int64_t x = 0; x < nvec; ++x)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + x * kLanes),
                        reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(src + x * kLanes))));
}
inline void bf16_pair_rows(const float* r0, const float* r1, int64_t nvec, uint16_t* dst) {
  for (int64_t x = 0; x < nvec; ++x) {
    const __m512i lo = _mm512_cvtepu16_epi32(
        reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(r0 + x * kLanes))));
    __m512i pair = lo;
    if (r1) {
      const __m512i hi = _mm512_cvtepu16_epi32(
          reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(r1 + x * kLanes))));
      pair = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
    }
    _mm512_storeu_si512(dst + x * 2 * kLanes, pair);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
inline void bf16_row(const float* src, int64_t nvec, uint16_t* dst) {
  for (int64_t x = 0; x < nvec * kLanes; ++x) dst[x] = bf16::round_from_float(src[x]);
}
inline void bf16_pair_rows(const float* r0, const float* r1, int64_t nvec, uint16_t* dst) {
  for (int64_t x = 0; x < nvec * kLanes; ++x) {
    dst[2 * x] = bf16::round_from_float(r0[x]);
    dst[2 * x + 1] = r1 ? bf16::round_from_float(r1[x]) : 0;
  }
}
#endif

// The native bf16 path runs for bf16 inputs where the build has AVX512-BF16 and bf16_math() asks
// for it; everything else widens to fp32 and runs the fp32 kernels.
inline bool use_native_bf16(const Tensor& q) {
  return TSP_SIMD_AVX512_BF16 && q.defined() && q.dtype() == DType::bf16 && bf16_math() == Bf16Math::native;
}

struct StatCounts {
  int64_t pairs = 0, computed = 0, masked = 0, skipped = 0;
};

// Every (batch, head) sees the same positions and so the same tile modes: count them once from
// the tile bounds, outside the hot loops, and scale by the number of (batch, head) pairs.
void write_stats(FlashAttentionStats* stats, const Tiles& tiles, const Visibility& vis, int64_t heads_x_batch,
                 int64_t bq, int64_t bk) {
  if (!stats) return;
  StatCounts c;
  for (int64_t qt = 0; qt < tiles.nqt; ++qt) {
    for (int64_t kt = 0; kt < tiles.nkt; ++kt) {
      const TileMode mode = classify(tiles, qt, kt, vis);
      ++c.pairs;
      c.skipped += mode == TileMode::skip;
      c.computed += mode != TileMode::skip;
      c.masked += mode == TileMode::masked;
    }
  }
  stats->tile_pairs = c.pairs * heads_x_batch;
  stats->computed = c.computed * heads_x_batch;
  stats->masked = c.masked * heads_x_batch;
  stats->skipped = c.skipped * heads_x_batch;
  stats->block_q = bq;
  stats->block_k = bk;
}

}  // namespace


// =============================================================================================
// Forward.

namespace {

// The forward tile loop, once for both maths: kNative = the bf16-pair kernels (Q, K^T, V and P
// as bf16, vdpbf16ps), else fp32 operands and FMAs. Online softmax, O and lse are fp32 in both.
template <bool kNative>
void forward_tiles(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                   const Tensor& k_pos, Tensor& o, Tensor& lse,
                   const FlashAttentionOptions& options, FlashAttentionStats* stats) {
  const Dims dm = check_inputs(q, k, v, q_pos, k_pos, o, lse, options);
  const int64_t B = dm.B, Sq = dm.Sq, Sk = dm.Sk, H = dm.H, G = dm.G, dp = dm.dp;
  const int d = static_cast<int>(dm.d);
  const float c2 = dm.scale * kLog2e;
  const Visibility vis{options.causal, options.window};
  if (B == 0 || Sq == 0 || H == 0) {
    write_stats(stats, Tiles{}, vis, 0, kFwdBq, kFwdBk);
    return;
  }

  const int64_t Sk_pad = round_up(std::max<int64_t>(Sk, 1), kFwdBk);
  const int nthreads = std::max(1, omp_get_max_threads());
  // Scratch, once per call: positions, K^T panels, V rows, and per thread a Q tile, an O
  // accumulator, a score block and the softmax state. The native path keeps K^T, V, the Q tile
  // and a P block as bf16 (K^T pair panels with d padded to even, V as pairs along keys).
  using Op = std::conditional_t<kNative, uint16_t, float>;  // element of the GEMM operands
  const int dk_op = kNative ? static_cast<int>(round_up(d, 2)) : d;  // K^T panel depth
  const int64_t per_thread_op = kFwdBq * dp + (kNative ? kNtRows * kFwdBk : 0);
  const int64_t per_thread = kFwdBq * dp + kNtRows * kFwdBk + 2 * kFwdBq + dp;
  const int64_t n_op = Sk_pad * dk_op + Sk_pad * dp + nthreads * per_thread_op;
  Tensor scratch = Tensor::empty({nthreads * per_thread}, DType::f32, MemCategory::workspace);
  Tensor op_scratch =
      Tensor::empty({n_op}, kNative ? DType::bf16 : DType::f32, MemCategory::workspace);
  Tensor positions = Tensor::empty({Sq + Sk_pad}, DType::i32, MemCategory::workspace);
  Op* kt_panels = static_cast<Op*>(op_scratch.raw());
  Op* v_rows = kt_panels + Sk_pad * dk_op;  // native: pairs along keys [Sk_pad / 2][dp][2]
  Op* op_thread_base = v_rows + Sk_pad * dp;
  float* thread_base = scratch.data<float>();
  int32_t* qpos = positions.data<int32_t>();
  int32_t* kpos = qpos + Sq;
  read_positions(q_pos, Sq, qpos);
  read_positions(k_pos, Sk, kpos);
  for (int64_t j = Sk; j < Sk_pad; ++j) kpos[j] = INT32_MAX;
  const Tiles tiles = make_tiles(Sq, Sk, kFwdBq, kFwdBk, qpos, kpos);

  const View4 qv(q), kv(k), vv(v), ov(o);
  float* lse_base = lse.data<float>();
  const int64_t ls0 = lse.stride(0), ls1 = lse.stride(1);

  for (int64_t b = 0; b < B; ++b) {
    for (int64_t hk = 0; hk < dm.Hkv; ++hk) {
      if constexpr (kNative) {
        pack_panels_bf16(kv, b, hk, Sk, d, dk_op, kt_panels);
        pack_pairs_bf16(vv, b, hk, Sk, d, dp, v_rows);
      } else {
        pack_panels(kv, b, hk, Sk, d, kt_panels, thread_base, static_cast<int>(dp));
        pack_rows(vv, b, hk, Sk, d, static_cast<int>(dp), v_rows);
      }
      const int64_t n_items = G * tiles.nqt;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
      for (int64_t item = n_items - 1; item >= 0; --item) {  // long (late) query tiles first
        const int64_t h = hk * G + item % G;
        const int64_t qt = item / G;
        float* oacc = thread_base + omp_get_thread_num() * per_thread;
        float* sblk = oacc + kFwdBq * dp;
        float* mrow = sblk + kNtRows * kFwdBk;
        float* lrow = mrow + kFwdBq;
        Op* qtile = op_thread_base + omp_get_thread_num() * per_thread_op;
        [[maybe_unused]] Op* pblk = qtile + kFwdBq * dp;  // native: P of a row block as bf16
        const int64_t q0 = qt * kFwdBq;
        const int64_t qn = std::min<int64_t>(kFwdBq, Sq - q0);
        for (int64_t i = 0; i < qn; ++i) {
          if constexpr (kNative) load_row_bf16(qv, b, q0 + i, h, d, dp, qtile + i * dp);
          else qv.load(b, q0 + i, h, qtile + i * dp, d, static_cast<int>(dp));
          mrow[i] = -INFINITY;
          lrow[i] = 0.f;
        }
        std::memset(oacc, 0, sizeof(float) * qn * dp);

        for (int64_t ktile = 0; ktile < tiles.nkt; ++ktile) {
          const TileMode mode = classify(tiles, qt, ktile, vis);
          if (mode == TileMode::skip) continue;
          const bool masked = mode == TileMode::masked;
          const int64_t k0 = ktile * kFwdBk;
          const int64_t kn = std::min<int64_t>(kFwdBk, Sk - k0);
          const int64_t npan = ceil_div(kn, kPanel);
          const int64_t nvec = ceil_div(kn, kLanes);
          for (int64_t r0 = 0; r0 < qn; r0 += kNtRows) {
            const int R = static_cast<int>(std::min<int64_t>(kNtRows, qn - r0));
            nt_rows(R, qtile + r0 * dp, dp, kt_panels + (k0 / kPanel) * dk_op * kPanel, npan,
                    dk_op, sblk, kFwdBk);
            for (int r = 0; r < R; ++r) {
              const int64_t i = r0 + r;
              float* s = sblk + r * kFwdBk;
              mask_row(s, kpos + k0, qpos[q0 + i], vis.lowest(qpos[q0 + i]), kn, masked);
              Vec vm = vset(-INFINITY);
              for (int64_t x = 0; x < nvec; ++x) vm = vmax(vm, vload(s + x * kLanes));
              const float bmax = vhmax(vm);
              // -inf: this row sees nothing in this tile, unless the max dropped a NaN score
              // (maxps keeps its second operand): NaN in must give NaN out (o and lse), never an
              // empty partial that a merge would discard, so a NaN row takes the normal path.
              if (bmax == -INFINITY && !std::any_of(s, s + nvec * kLanes,
                                                    [](float x) { return std::isnan(x); })) {
                for (int64_t x = 0; x < nvec; ++x) vstore(s + x * kLanes, vset(0.f));
                if constexpr (kNative) bf16_row(s, nvec, pblk + r * kFwdBk);
                continue;
              }
              // Online softmax in the log2 domain (the OnlineSoftmax update of softmax_merge.h).
              const float m_new = std::max(mrow[i], bmax * c2);
              if (m_new > mrow[i]) {
                const float rescale = mrow[i] == -INFINITY ? 0.f : std::exp2(mrow[i] - m_new);
                lrow[i] *= rescale;
                const Vec vr = vset(rescale);
                float* orow = oacc + i * dp;
                for (int64_t x = 0; x < dp; x += kLanes) vstore(orow + x, vr * vload(orow + x));
                mrow[i] = m_new;
              }
              const Vec vc = vset(c2), vneg_m = vset(-m_new);
              Vec vsum = vset(0.f);
              for (int64_t x = 0; x < nvec; ++x) {
                const Vec p = exp2_scores(vfma(vload(s + x * kLanes), vc, vneg_m));
                vsum = vsum + p;
                vstore(s + x * kLanes, p);
              }
              lrow[i] += vhsum(vsum);
              // Native: P rounded to bf16 for P V (l keeps the fp32 sum, as GPU FlashAttention).
              if constexpr (kNative) bf16_row(s, nvec, pblk + r * kFwdBk);
            }
            if constexpr (kNative)  // pairs along keys; an odd kn's pad pair has P = 0, V = 0
              gemm_nn_acc(R, dp, static_cast<int>(ceil_div(kn, 2)), pblk, kFwdBk, 2,
                          v_rows + k0 * dp, 2 * dp, oacc + r0 * dp, dp);
            else
              gemm_nn_acc(R, dp, static_cast<int>(kn), sblk, kFwdBk, 1, v_rows + k0 * dp, dp,
                          oacc + r0 * dp, dp);
          }
        }
        // Finalise: o = acc / l, lse = ln 2 * (m2 + log2 l); empty rows (l = 0) get 0 and -inf,
        // rows that met a NaN (l = NaN) NaN and NaN.
        for (int64_t i = 0; i < qn; ++i) {
          const float l = lrow[i];
          const float inv = l == 0.f ? 0.f : 1.f / l;
          store_row(oacc + i * dp, inv, false, ov.row(b, q0 + i, h), ov.dtype, d);
          lse_base[b * ls0 + h * ls1 + q0 + i] =
              l == 0.f ? -INFINITY : kLn2 * (mrow[i] + std::log2(l));
        }
      }
    }
  }
  write_stats(stats, tiles, vis, B * H, kFwdBq, kFwdBk);
}

}  // namespace

void CpuBackend::flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const Tensor& q_pos, const Tensor& k_pos, Tensor& o, Tensor& lse,
                                         const FlashAttentionOptions& options, FlashAttentionStats* stats) {
#if TSP_SIMD_AVX512_BF16
  if (use_native_bf16(q))
    return forward_tiles<true>(q, k, v, q_pos, k_pos, o, lse, options, stats);
#endif
  forward_tiles<false>(q, k, v, q_pos, k_pos, o, lse, options, stats);
}

// =============================================================================================
// Backward.

namespace {

// The backward tile loop, once for both maths: kNative = bf16 operands and vdpbf16ps for all five
// products (Q K^T, dO V^T, P^T dO, dS^T Q, dS K; P and dS rounded to bf16 for the last three),
// else fp32. P, dS, D and every gradient accumulator are fp32 in both.
template <bool kNative>
void backward_tiles(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                    const Tensor& d_o, const Tensor& lse, const Tensor& q_pos,
                    const Tensor& k_pos, Tensor& dq, Tensor& dk, Tensor& dv,
                    const FlashAttentionOptions& options, FlashAttentionStats* stats) {
  const Dims dm = check_inputs(q, k, v, q_pos, k_pos, o, lse, options);
  const auto shapes = [&] {
    return tsp::detail::concat(" (q ", q.describe(), ", k ", k.describe(), ", do ", d_o.describe(),
                          ", dq ", dq.describe(), ", dk ", dk.describe(), ", dv ",
                          dv.describe(), ")");
  };
  TSP_CHECK(d_o.defined() && dq.defined() && dk.defined() && dv.defined(),
            "flash_attention_backward: undefined tensor argument");
  TSP_CHECK_SHAPE(d_o.shape() == q.shape(), "flash_attention_backward: do must match q",
                  shapes());
  TSP_CHECK_SHAPE(dq.shape() == q.shape(), "flash_attention_backward: dq must match q", shapes());
  TSP_CHECK_SHAPE(dk.shape() == k.shape() && dv.shape() == k.shape(),
                  "flash_attention_backward: dk and dv must match k", shapes());
  TSP_CHECK_DTYPE(d_o.dtype() == q.dtype(), "flash_attention_backward: do must have q's dtype",
                  shapes());
  for (const Tensor* g : std::initializer_list<const Tensor*>{&dq, &dk, &dv})
    TSP_CHECK_DTYPE(g->dtype() == DType::f32 || g->dtype() == DType::bf16,
                    "flash_attention_backward: gradients must be f32 or bf16", shapes());
  check_inner(d_o, "do");
  check_inner(dq, "dq");
  check_inner(dk, "dk");
  check_inner(dv, "dv");

  const int64_t B = dm.B, Sq = dm.Sq, Sk = dm.Sk, G = dm.G, dp = dm.dp;
  const int d = static_cast<int>(dm.d);
  const float c2 = dm.scale * kLog2e;
  const Visibility vis{options.causal, options.window};
  const bool acc_out = options.accumulate_grads;
  const View4 qv(q), kv(k), vv(v), ov(o), dov(d_o), dqv(dq), dkv(dk), dvv(dv);

  const int64_t Sk_pad = round_up(std::max<int64_t>(Sk, 1), kBwdBk);
  const int64_t Sq_pad = std::max<int64_t>(Sq, 1);
  const int nthreads = std::max(1, omp_get_max_threads());
  // Scratch: K rows, K^T and V^T panels, dK/dV accumulators (per kv head); Q, dO rows, D and
  // lse2 (per query head); per thread a dQ accumulator and the P, dS, dP blocks.
  const int64_t per_thread = Sq_pad * dp + 2 * kBwdBq * kBwdBk + kNtRows * kBwdBk;
  const int64_t n_f32 = Sk_pad * dp * 3 + Sk_pad * d * 2 + Sq_pad * (2 * dp + 2) + dp +
                        nthreads * per_thread;
  Tensor scratch = Tensor::empty({n_f32}, DType::f32, MemCategory::workspace);
  Tensor positions = Tensor::empty({Sq_pad + Sk_pad}, DType::i32, MemCategory::workspace);
  float* k_rows = scratch.data<float>();
  float* dk_acc = k_rows + Sk_pad * dp;
  float* dv_acc = dk_acc + Sk_pad * dp;
  float* kt_panels = dv_acc + Sk_pad * dp;
  float* vt_panels = kt_panels + Sk_pad * d;
  float* q_rows = vt_panels + Sk_pad * d;
  float* do_rows = q_rows + Sq_pad * dp;
  float* dvec = do_rows + Sq_pad * dp;
  float* lse2 = dvec + Sq_pad;
  float* tmp_row = lse2 + Sq_pad;
  float* thread_base = tmp_row + dp;
  // Native: bf16 operands. Per kv head K^T and V^T pair panels (d padded to even) and K as pairs
  // along keys (dS K); per query head Q and dO rows (NT A operands) and as pairs along queries
  // (dS^T Q, P^T dO); per thread P and dS as pairs along queries and dS as pairs along keys.
  using Op = std::conditional_t<kNative, uint16_t, float>;
  const int dk_op = kNative ? static_cast<int>(round_up(d, 2)) : d;
  const int64_t Sq_pair = round_up(Sq_pad, 2);
  const int64_t per_thread_op = 3 * kBwdBq * kBwdBk;
  const int64_t n_op = kNative ? Sk_pad * (2 * dk_op + dp) + Sq_pair * 4 * dp +
                                     nthreads * per_thread_op
                               : 0;
  Tensor op_scratch = Tensor::empty({n_op}, DType::bf16, MemCategory::workspace);
  uint16_t* kt_pairs = static_cast<uint16_t*>(op_scratch.raw());
  uint16_t* vt_pairs = kt_pairs + Sk_pad * dk_op;
  uint16_t* k_pairs = vt_pairs + Sk_pad * dk_op;
  uint16_t* q_rows16 = k_pairs + Sk_pad * dp;
  uint16_t* do_rows16 = q_rows16 + Sq_pair * dp;
  uint16_t* q_pairs = do_rows16 + Sq_pair * dp;
  uint16_t* do_pairs = q_pairs + Sq_pair * dp;
  uint16_t* op_thread_base = do_pairs + Sq_pair * dp;
  // The operands the tile loop multiplies: bf16 (native) or the fp32 rows and panels.
  const Op* a_q = nullptr;
  const Op* a_do = nullptr;
  const Op* p_kt = nullptr;
  const Op* p_vt = nullptr;
  if constexpr (kNative) {
    a_q = q_rows16, a_do = do_rows16, p_kt = kt_pairs, p_vt = vt_pairs;
  } else {
    a_q = q_rows, a_do = do_rows, p_kt = kt_panels, p_vt = vt_panels;
  }
  int32_t* qpos = positions.data<int32_t>();
  int32_t* kpos = qpos + Sq_pad;
  read_positions(q_pos, Sq, qpos);
  read_positions(k_pos, Sk, kpos);
  for (int64_t j = Sk; j < Sk_pad; ++j) kpos[j] = INT32_MAX;
  const Tiles tiles = make_tiles(Sq, Sk, kBwdBq, kBwdBk, qpos, kpos);
  const float* lse_base = lse.data<float>();
  const int64_t ls0 = lse.stride(0), ls1 = lse.stride(1);

  for (int64_t b = 0; b < B; ++b) {
    for (int64_t hk = 0; hk < dm.Hkv; ++hk) {
      if constexpr (kNative) {
        pack_pairs_bf16(kv, b, hk, Sk, d, dp, k_pairs);
        pack_panels_bf16(kv, b, hk, Sk, d, dk_op, kt_pairs);
        pack_panels_bf16(vv, b, hk, Sk, d, dk_op, vt_pairs);
      } else {
        pack_rows(kv, b, hk, Sk, d, static_cast<int>(dp), k_rows);
        pack_panels(kv, b, hk, Sk, d, kt_panels, tmp_row, static_cast<int>(dp));
        pack_panels(vv, b, hk, Sk, d, vt_panels, tmp_row, static_cast<int>(dp));
      }
      std::memset(dk_acc, 0, sizeof(float) * Sk * dp);
      std::memset(dv_acc, 0, sizeof(float) * Sk * dp);
      for (int64_t h = hk * G; h < (hk + 1) * G; ++h) {
        // Per query head: Q and dO rows, D_i = rowsum(dO * O), lse in log2 units.
        for (int64_t i = 0; i < Sq; ++i) {
          qv.load(b, i, h, q_rows + i * dp, d, static_cast<int>(dp));
          dov.load(b, i, h, do_rows + i * dp, d, static_cast<int>(dp));
          ov.load(b, i, h, tmp_row, d, static_cast<int>(dp));
          float acc = 0.f;
          for (int x = 0; x < d; ++x) acc += tmp_row[x] * do_rows[i * dp + x];
          dvec[i] = acc;
          const float l = lse_base[b * ls0 + h * ls1 + i];
          // A row that saw no key (lse = -inf) has P = 0: exp2(c2 s - inf) = 0.
          lse2[i] = l == -INFINITY ? INFINITY : l * kLog2e;
          if constexpr (kNative) {
            load_row_bf16(qv, b, i, h, d, dp, q_rows16 + i * dp);
            load_row_bf16(dov, b, i, h, d, dp, do_rows16 + i * dp);
          }
        }
        if constexpr (kNative) {
          pack_pairs_bf16(qv, b, h, Sq, d, dp, q_pairs);
          pack_pairs_bf16(dov, b, h, Sq, d, dp, do_pairs);
        }
        for (int t = 0; t < nthreads; ++t)
          std::memset(thread_base + t * per_thread, 0, sizeof(float) * Sq * dp);

  #pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
        for (int64_t ktile = 0; ktile < tiles.nkt; ++ktile) {
          float* tb = thread_base + omp_get_thread_num() * per_thread;
          float* dq_acc = tb;
          float* pblk = dq_acc + Sq_pad * dp;
          float* dsblk = pblk + kBwdBq * kBwdBk;
          float* dpblk = dsblk + kBwdBq * kBwdBk;
          // Native: P^T and dS^T as pairs along queries [kBwdBq / 2][kBwdBk][2], dS as pairs
          // along keys (row-major bf16 [kBwdBq][kBwdBk]).
          uint16_t* pt16 = op_thread_base + omp_get_thread_num() * per_thread_op;
          uint16_t* dst16 = pt16 + kBwdBq * kBwdBk;
          uint16_t* ds16 = dst16 + kBwdBq * kBwdBk;
          const int64_t k0 = ktile * kBwdBk;
          const int64_t kn = std::min<int64_t>(kBwdBk, Sk - k0);
          const int64_t npan = ceil_div(kn, kPanel);
          const int64_t nvec = ceil_div(kn, kLanes);
          for (int64_t qt = 0; qt < tiles.nqt; ++qt) {
            const TileMode mode = classify(tiles, qt, ktile, vis);
            if (mode == TileMode::skip) continue;
            const bool masked = mode == TileMode::masked;
            const int64_t q0 = qt * kBwdBq;
            const int64_t qn = std::min<int64_t>(kBwdBq, Sq - q0);
            for (int64_t r0 = 0; r0 < qn; r0 += kNtRows) {
              const int R = static_cast<int>(std::min<int64_t>(kNtRows, qn - r0));
              float* prow0 = pblk + r0 * kBwdBk;
              nt_rows(R, a_q + (q0 + r0) * dp, dp, p_kt + (k0 / kPanel) * dk_op * kPanel, npan,
                      dk_op, prow0, kBwdBk);
              nt_rows(R, a_do + (q0 + r0) * dp, dp, p_vt + (k0 / kPanel) * dk_op * kPanel, npan,
                      dk_op, dpblk, kBwdBk);
              for (int r = 0; r < R; ++r) {
                const int64_t i = q0 + r0 + r;
                float* s = prow0 + r * kBwdBk;
                const float* dpr = dpblk + r * kBwdBk;
                float* ds = dsblk + (r0 + r) * kBwdBk;
                mask_row(s, kpos + k0, qpos[i], vis.lowest(qpos[i]), kn, masked);
                const Vec vc = vset(c2), vl = vset(-lse2[i]), vd = vset(dvec[i]);
                for (int64_t x = 0; x < nvec; ++x) {
                  const Vec p = exp2_scores(vfma(vload(s + x * kLanes), vc, vl));
                  vstore(s + x * kLanes, p);
                  vstore(ds + x * kLanes, p * (vload(dpr + x * kLanes) - vd));
                }
              }
            }
            // dV[k tile] += P^T dO;  dK[k tile] += dS^T Q;  dQ[q tile] += dS K.
            if constexpr (kNative) {
              // P and dS rounded to bf16 (pairs of query rows; an odd last row pairs with 0,
              // against the zero pad row of Q / dO pairs), then the bf16-pair kernels. Pairs
              // along keys cover ceil(kn / 2): the pad key of an odd kn has dS = 0 and K = 0.
              for (int64_t r = 0; r < qn; r += 2) {
                const bool two = r + 1 < qn;
                bf16_pair_rows(pblk + r * kBwdBk, two ? pblk + (r + 1) * kBwdBk : nullptr, nvec,
                               pt16 + r * kBwdBk);
                bf16_pair_rows(dsblk + r * kBwdBk, two ? dsblk + (r + 1) * kBwdBk : nullptr,
                               nvec, dst16 + r * kBwdBk);
              }
              for (int64_t r = 0; r < qn; ++r)
                bf16_row(dsblk + r * kBwdBk, nvec, ds16 + r * kBwdBk);
              const int Kq = static_cast<int>(ceil_div(qn, 2));
              gemm_nn_acc(kn, dp, Kq, pt16, 2, 2 * kBwdBk, do_pairs + q0 * dp, 2 * dp,
                          dv_acc + k0 * dp, dp);
              gemm_nn_acc(kn, dp, Kq, dst16, 2, 2 * kBwdBk, q_pairs + q0 * dp, 2 * dp,
                          dk_acc + k0 * dp, dp);
              gemm_nn_acc(qn, dp, static_cast<int>(ceil_div(kn, 2)), ds16, kBwdBk, 2,
                          k_pairs + k0 * dp, 2 * dp, dq_acc + q0 * dp, dp);
            } else {
              const int K = static_cast<int>(qn);
              gemm_nn_acc(kn, dp, K, pblk, 1, kBwdBk, do_rows + q0 * dp, dp, dv_acc + k0 * dp,
                          dp);
              gemm_nn_acc(kn, dp, K, dsblk, 1, kBwdBk, q_rows + q0 * dp, dp, dk_acc + k0 * dp,
                          dp);
              gemm_nn_acc(qn, dp, static_cast<int>(kn), dsblk, kBwdBk, 1, k_rows + k0 * dp, dp,
                          dq_acc + q0 * dp, dp);
            }
          }
        }
        // dq = scale * sum over threads (fixed order).
        for (int64_t i = 0; i < Sq; ++i) {
          float* row = thread_base + i * dp;
          for (int t = 1; t < nthreads; ++t) {
            const float* other = thread_base + t * per_thread + i * dp;
            for (int64_t x = 0; x < dp; ++x) row[x] += other[x];
          }
          store_row(row, dm.scale, acc_out, dqv.row(b, i, h), dqv.dtype, d);
        }
      }
      for (int64_t j = 0; j < Sk; ++j) {
        store_row(dk_acc + j * dp, dm.scale, acc_out, dkv.row(b, j, hk), dkv.dtype, d);
        store_row(dv_acc + j * dp, 1.f, acc_out, dvv.row(b, j, hk), dvv.dtype, d);
      }
    }
  }
  write_stats(stats, tiles, vis, B * dm.H, kBwdBq, kBwdBk);
}

}  // namespace

void CpuBackend::flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                          const Tensor& d_o, const Tensor& lse, const Tensor& q_pos,
                                          const Tensor& k_pos, Tensor& dq, Tensor& dk, Tensor& dv,
                                          const FlashAttentionOptions& options, FlashAttentionStats* stats) {
#if TSP_SIMD_AVX512_BF16
  if (use_native_bf16(q) && d_o.defined() && d_o.dtype() == DType::bf16)
    return backward_tiles<true>(q, k, v, o, d_o, lse, q_pos, k_pos, dq, dk, dv, options, stats);
#endif
  backward_tiles<false>(q, k, v, o, d_o, lse, q_pos, k_pos, dq, dk, dv, options, stats);
}

}  // namespace tsp::kernels
