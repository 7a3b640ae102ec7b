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
#include "tsp/kernels/flash_attention.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "tsp/core/check.h"
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
// tile), or, if masked, kpos[i] > qp. kpos must be readable for 16 entries.
inline Vec mask_vec(Vec s, const int32_t* kpos, int32_t qp, int64_t lane0, int64_t kn,
                    bool masked) {
  __mmask16 visible = tail_mask16(kn - lane0);
  if (masked)
    visible &= _mm512_cmple_epi32_mask(_mm512_loadu_si512(kpos), _mm512_set1_epi32(qp));
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
inline Vec mask_vec(Vec s, const int32_t* kpos, int32_t qp, int64_t lane0, int64_t kn,
                    bool masked) {
  const __m256i lane = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                        _mm256_set1_epi32(static_cast<int32_t>(lane0)));
  __m256i inv = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(static_cast<int32_t>(kn - 1)));
  if (masked) {
    const __m256i kp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kpos));
    inv = _mm256_or_si256(inv, _mm256_cmpgt_epi32(kp, _mm256_set1_epi32(qp)));
  }
  return {_mm256_blendv_ps(s.v, _mm256_set1_ps(-INFINITY), _mm256_castsi256_ps(inv))};
}
#else
inline Vec mask_vec(Vec s, const int32_t* kpos, int32_t qp, int64_t lane0, int64_t kn,
                    bool masked) {
  for (int i = 0; i < kLanes; ++i)
    if (lane0 + i >= kn || (masked && kpos[i] > qp)) s.v[i] = -INFINITY;
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

template <int R>
inline void nn_rows(int nv, const float* a, int64_t a_rs, int64_t a_ks, int K, const float* b,
                    int64_t ldb, float* c, int64_t ldc) {
  static_assert(kNnVecs == 2 || kNnVecs == 4);
  if constexpr (kNnVecs == 4) {
    if (nv == 4) return kern_nn<R, 4>(a, a_rs, a_ks, K, b, ldb, c, ldc);
    if (nv == 3) return kern_nn<R, 3>(a, a_rs, a_ks, K, b, ldb, c, ldc);
  }
  if (nv == 2) kern_nn<R, 2>(a, a_rs, a_ks, K, b, ldb, c, ldc);
  else kern_nn<R, 1>(a, a_rs, a_ks, K, b, ldb, c, ldc);
}

// C[M x dp] += A(M x K) B[K x dp]; dp a multiple of kLanes.
void gemm_nn_acc(int64_t M, int64_t dp, int K, const float* a, int64_t a_rs, int64_t a_ks,
                 const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (K <= 0) return;
  static_assert(kNnRows == 6);
  for (int64_t r0 = 0; r0 < M; r0 += kNnRows) {
    const int R = static_cast<int>(std::min<int64_t>(kNnRows, M - r0));
    const float* ar = a + r0 * a_rs;
    float* cr = c + r0 * ldc;
    for (int64_t c0 = 0; c0 < dp; c0 += kNnVecs * kLanes) {
      const int nv = static_cast<int>(std::min<int64_t>(kNnVecs, (dp - c0) / kLanes));
      switch (R) {
        case 6: nn_rows<6>(nv, ar, a_rs, a_ks, K, b + c0, ldb, cr + c0, ldc); break;
        case 5: nn_rows<5>(nv, ar, a_rs, a_ks, K, b + c0, ldb, cr + c0, ldc); break;
        case 4: nn_rows<4>(nv, ar, a_rs, a_ks, K, b + c0, ldb, cr + c0, ldc); break;
        case 3: nn_rows<3>(nv, ar, a_rs, a_ks, K, b + c0, ldb, cr + c0, ldc); break;
        case 2: nn_rows<2>(nv, ar, a_rs, a_ks, K, b + c0, ldb, cr + c0, ldc); break;
        default: nn_rows<1>(nv, ar, a_rs, a_ks, K, b + c0, ldb, cr + c0, ldc); break;
      }
    }
  }
}

// Row counts 1 .. kNtRows as a compile-time constant.
template <int R>
inline void nt_panels(const float* a, int64_t lda, const float* panels, int64_t npanels, int d,
                      float* c, int64_t ldc) {
  for (int64_t p = 0; p < npanels; ++p)
    kern_nt<R>(a, lda, panels + p * d * kPanel, d, c + p * kPanel, ldc);
}
template <int... Rs>
inline void nt_dispatch(std::integer_sequence<int, Rs...>, int R, const float* a, int64_t lda,
                        const float* panels, int64_t npanels, int d, float* c, int64_t ldc) {
  ((R == Rs + 1 ? nt_panels<Rs + 1>(a, lda, panels, npanels, d, c, ldc) : void()), ...);
}

// C[R x kPanel npanels] = A[R x d] * panels (R <= kNtRows).
void nt_rows(int R, const float* a, int64_t lda, const float* panels, int64_t npanels, int d,
             float* c, int64_t ldc) {
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

inline TileMode classify(const Tiles& t, int64_t qt, int64_t kt, bool causal) {
  if (!causal) return TileMode::full;
  if (t.kmin[kt] > t.qmax[qt]) return TileMode::skip;
  if (t.kmax[kt] <= t.qmin[qt]) return TileMode::full;
  return TileMode::masked;
}

// Applies the causal mask of query position qp (if masked) and the tail of a partial key tile
// (lanes >= kn) to a row of scores s[0 .. kLanes nvec): invisible entries become -inf.
inline void mask_row(float* s, const int32_t* kpos, int32_t qp, int64_t kn, bool masked) {
  const int64_t nvec = ceil_div(kn, kLanes);
  if (!masked && nvec * kLanes == kn) return;
  for (int64_t v = masked ? 0 : nvec - 1; v < nvec; ++v)
    vstore(s + v * kLanes,
           mask_vec(vload(s + v * kLanes), kpos + v * kLanes, qp, v * kLanes, kn, masked));
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

struct StatCounts {
  int64_t pairs = 0, computed = 0, masked = 0, skipped = 0;
};

// Every (batch, head) sees the same positions and so the same tile modes: count them once from
// the tile bounds, outside the hot loops, and scale by the number of (batch, head) pairs.
void write_stats(FlashAttentionStats* stats, const Tiles& tiles, bool causal, int64_t heads_x_batch,
                 int64_t bq, int64_t bk) {
  if (!stats) return;
  StatCounts c;
  for (int64_t qt = 0; qt < tiles.nqt; ++qt) {
    for (int64_t kt = 0; kt < tiles.nkt; ++kt) {
      const TileMode mode = classify(tiles, qt, kt, causal);
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

void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& q_pos, const Tensor& k_pos, Tensor& o, Tensor& lse,
                             const FlashAttentionOptions& options, FlashAttentionStats* stats) {
  const Dims dm = check_inputs(q, k, v, q_pos, k_pos, o, lse, options);
  const int64_t B = dm.B, Sq = dm.Sq, Sk = dm.Sk, H = dm.H, G = dm.G, dp = dm.dp;
  const int d = static_cast<int>(dm.d);
  const float c2 = dm.scale * kLog2e;
  const bool causal = options.causal;
  if (B == 0 || Sq == 0 || H == 0) {
    write_stats(stats, Tiles{}, causal, 0, kFwdBq, kFwdBk);
    return;
  }

  const int64_t Sk_pad = round_up(std::max<int64_t>(Sk, 1), kFwdBk);
  const int nthreads = std::max(1, omp_get_max_threads());
  // Scratch, once per call: positions, K^T panels, V rows, and per thread a Q tile, an O
  // accumulator, a score block and the softmax state.
  const int64_t per_thread = 2 * kFwdBq * dp + kNtRows * kFwdBk + 2 * kFwdBq + dp;
  const int64_t n_f32 = Sk_pad * d + Sk_pad * dp + nthreads * per_thread;
  Tensor scratch = Tensor::empty({n_f32}, DType::f32, MemCategory::workspace);
  Tensor positions = Tensor::empty({Sq + Sk_pad}, DType::i32, MemCategory::workspace);
  float* kt_panels = scratch.data<float>();
  float* v_rows = kt_panels + Sk_pad * d;
  float* thread_base = v_rows + Sk_pad * dp;
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
      pack_panels(kv, b, hk, Sk, d, kt_panels, thread_base, static_cast<int>(dp));
      pack_rows(vv, b, hk, Sk, d, static_cast<int>(dp), v_rows);
      const int64_t n_items = G * tiles.nqt;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
      for (int64_t item = n_items - 1; item >= 0; --item) {  // long (late) query tiles first
        const int64_t h = hk * G + item % G;
        const int64_t qt = item / G;
        float* tb = thread_base + omp_get_thread_num() * per_thread;
        float* qtile = tb;
        float* oacc = qtile + kFwdBq * dp;
        float* sblk = oacc + kFwdBq * dp;
        float* mrow = sblk + kNtRows * kFwdBk;
        float* lrow = mrow + kFwdBq;
        const int64_t q0 = qt * kFwdBq;
        const int64_t qn = std::min<int64_t>(kFwdBq, Sq - q0);
        for (int64_t i = 0; i < qn; ++i) {
          qv.load(b, q0 + i, h, qtile + i * dp, d, static_cast<int>(dp));
          mrow[i] = -INFINITY;
          lrow[i] = 0.f;
        }
        std::memset(oacc, 0, sizeof(float) * qn * dp);

        for (int64_t ktile = 0; ktile < tiles.nkt; ++ktile) {
          const TileMode mode = classify(tiles, qt, ktile, causal);
          if (mode == TileMode::skip) continue;
          const bool masked = mode == TileMode::masked;
          const int64_t k0 = ktile * kFwdBk;
          const int64_t kn = std::min<int64_t>(kFwdBk, Sk - k0);
          const int64_t npan = ceil_div(kn, kPanel);
          const int64_t nvec = ceil_div(kn, kLanes);
          for (int64_t r0 = 0; r0 < qn; r0 += kNtRows) {
            const int R = static_cast<int>(std::min<int64_t>(kNtRows, qn - r0));
            nt_rows(R, qtile + r0 * dp, dp, kt_panels + (k0 / kPanel) * d * kPanel, npan, d,
                    sblk, kFwdBk);
            for (int r = 0; r < R; ++r) {
              const int64_t i = r0 + r;
              float* s = sblk + r * kFwdBk;
              mask_row(s, kpos + k0, qpos[q0 + i], kn, masked);
              Vec vm = vset(-INFINITY);
              for (int64_t x = 0; x < nvec; ++x) vm = vmax(vm, vload(s + x * kLanes));
              const float bmax = vhmax(vm);
              // -inf: this row sees nothing in this tile, unless the max dropped a NaN score
              // (maxps keeps its second operand): NaN in must give NaN out (o and lse), never an
              // empty partial that a merge would discard, so a NaN row takes the normal path.
              if (bmax == -INFINITY && !std::any_of(s, s + nvec * kLanes,
                                                    [](float x) { return std::isnan(x); })) {
                for (int64_t x = 0; x < nvec; ++x) vstore(s + x * kLanes, vset(0.f));
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
            }
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
  write_stats(stats, tiles, causal, B * H, kFwdBq, kFwdBk);
}

// =============================================================================================
// Backward.

void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
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
  const bool causal = options.causal;
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
      pack_rows(kv, b, hk, Sk, d, static_cast<int>(dp), k_rows);
      pack_panels(kv, b, hk, Sk, d, kt_panels, tmp_row, static_cast<int>(dp));
      pack_panels(vv, b, hk, Sk, d, vt_panels, tmp_row, static_cast<int>(dp));
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
          const int64_t k0 = ktile * kBwdBk;
          const int64_t kn = std::min<int64_t>(kBwdBk, Sk - k0);
          const int64_t npan = ceil_div(kn, kPanel);
          const int64_t nvec = ceil_div(kn, kLanes);
          for (int64_t qt = 0; qt < tiles.nqt; ++qt) {
            const TileMode mode = classify(tiles, qt, ktile, causal);
            if (mode == TileMode::skip) continue;
            const bool masked = mode == TileMode::masked;
            const int64_t q0 = qt * kBwdBq;
            const int64_t qn = std::min<int64_t>(kBwdBq, Sq - q0);
            for (int64_t r0 = 0; r0 < qn; r0 += kNtRows) {
              const int R = static_cast<int>(std::min<int64_t>(kNtRows, qn - r0));
              float* prow0 = pblk + r0 * kBwdBk;
              nt_rows(R, q_rows + (q0 + r0) * dp, dp, kt_panels + (k0 / kPanel) * d * kPanel,
                      npan, d, prow0, kBwdBk);
              nt_rows(R, do_rows + (q0 + r0) * dp, dp, vt_panels + (k0 / kPanel) * d * kPanel,
                      npan, d, dpblk, kBwdBk);
              for (int r = 0; r < R; ++r) {
                const int64_t i = q0 + r0 + r;
                float* s = prow0 + r * kBwdBk;
                const float* dpr = dpblk + r * kBwdBk;
                float* ds = dsblk + (r0 + r) * kBwdBk;
                mask_row(s, kpos + k0, qpos[i], kn, masked);
                const Vec vc = vset(c2), vl = vset(-lse2[i]), vd = vset(dvec[i]);
                for (int64_t x = 0; x < nvec; ++x) {
                  const Vec p = exp2_scores(vfma(vload(s + x * kLanes), vc, vl));
                  vstore(s + x * kLanes, p);
                  vstore(ds + x * kLanes, p * (vload(dpr + x * kLanes) - vd));
                }
              }
            }
            const int K = static_cast<int>(qn);
            // dV[k tile] += P^T dO;  dK[k tile] += dS^T Q;  dQ[q tile] += dS K.
            gemm_nn_acc(kn, dp, K, pblk, 1, kBwdBk, do_rows + q0 * dp, dp, dv_acc + k0 * dp, dp);
            gemm_nn_acc(kn, dp, K, dsblk, 1, kBwdBk, q_rows + q0 * dp, dp, dk_acc + k0 * dp, dp);
            gemm_nn_acc(qn, dp, static_cast<int>(kn), dsblk, kBwdBk, 1, k_rows + k0 * dp, dp,
                        dq_acc + q0 * dp, dp);
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
  write_stats(stats, tiles, causal, B * dm.H, kBwdBq, kBwdBk);
}

}  // namespace tsp::kernels
