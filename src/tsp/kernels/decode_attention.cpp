// decode_attention: keys in chunks of kChunk (the parallel work items, a fixed size so results do
// not depend on the thread count), each chunk in blocks of kBlock keys: scores of every query head
// (log2 domain, as flash attention) with the cache rows read in memory order, one online-softmax
// update per head and block, then P V with the accumulators in registers. Chunk partials are
// combined with kernels::merge_lse. Vec vectors of kernels/simd.h (16 lanes on AVX-512, else 8);
// the last d % kLanes lanes use masked tail loads.
#include "tsp/kernels/decode_attention.h"
#include "tsp/kernels/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/kernels/simd.h"
#include "tsp/kernels/softmax_merge.h"

namespace tsp::kernels {

namespace {

using namespace kernels::simd;

constexpr int64_t kBlock = 64;    // keys per online-softmax block (a multiple of kLanes)
constexpr int64_t kChunk = 1024;  // keys per parallel work item (a multiple of kBlock)

struct Dims {
  int64_t B, Sk, H, Hkv, G, d, nv, w;  // nv = ceil(d / kLanes) vectors per row, w = kLanes nv floats
  float c2;                            // scale * log2(e): scores in the log2 domain
  int32_t lo = INT32_MIN;              // oldest visible key position (a sliding window's edge)
};

// A [B, S, heads, d] view: element pointers.
template <class T>
struct Rows {
  T* base;
  int64_t s0, s1, s2;
  explicit Rows(const Tensor& t)
      : base(static_cast<T*>(t.raw())), s0(t.stride(0)), s1(t.stride(1)), s2(t.stride(2)) {}
  T* at(int64_t b, int64_t s, int64_t h) const { return base + b * s0 + s * s1 + h * s2; }
};

template <class T>
inline Vec load_vec(const T* row, int64_t x, int64_t d) {
  return x * kLanes + kLanes <= d ? vload(row + x * kLanes) : vload_tail(row + x * kLanes, d - x * kLanes);
}

Dims check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                  const Tensor& k_pos, const Tensor& o, const Tensor& lse) {
  const auto shapes = [&] {
    return tsp::detail::concat(" (q ", q.describe(), ", k ", k.describe(), ", v ", v.describe(),
                               ", o ", o.describe(), ", lse ", lse.describe(), ")");
  };
  TSP_CHECK_SHAPE(q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && o.rank() == 4 &&
                      q.dim(1) == 1 && k.shape() == v.shape() && o.shape() == q.shape() &&
                      q.dim(0) == k.dim(0) && q.dim(3) == k.dim(3) && q.dim(3) > 0 &&
                      k.dim(2) > 0 && q.dim(2) % k.dim(2) == 0,
                  "decode_attention: need q, o [B, 1, H, d] and k, v [B, Sk, Hkv, d] with H % Hkv == 0",
                  shapes());
  TSP_CHECK_SHAPE(lse.rank() == 3 && lse.dim(0) == q.dim(0) && lse.dim(1) == q.dim(2) && lse.dim(2) == 1,
                  "decode_attention: lse must be [B, H, 1]", shapes());
  TSP_CHECK_DTYPE((q.dtype() == DType::f32 || q.dtype() == DType::bf16) && k.dtype() == q.dtype() &&
                      v.dtype() == q.dtype() && o.dtype() == q.dtype() && lse.dtype() == DType::f32,
                  "decode_attention: q, k, v, o must share f32 or bf16 and lse must be f32", shapes());
  TSP_CHECK_T(LayoutError, q.has_unit_inner_stride() && k.has_unit_inner_stride() &&
                               v.has_unit_inner_stride() && o.has_unit_inner_stride(),
              "decode_attention: q, k, v, o need unit inner stride", shapes());
  TSP_CHECK_SHAPE(q_pos.defined() && q_pos.rank() == 1 && q_pos.dim(0) == 1 && q_pos.dtype() == DType::i32,
                  "decode_attention: q_pos must be i32 [1], got ",
                  q_pos.defined() ? q_pos.describe() : std::string("undefined"));
  TSP_CHECK_SHAPE(k_pos.defined() && k_pos.rank() == 1 && k_pos.dim(0) == k.dim(1) &&
                      k_pos.dtype() == DType::i32,
                  "decode_attention: k_pos must be i32 [", k.dim(1), "], got ",
                  k_pos.defined() ? k_pos.describe() : std::string("undefined"));
  const int64_t d = q.dim(3), nv = (d + kLanes - 1) / kLanes;
  return {q.dim(0), k.dim(1), q.dim(2), k.dim(2), q.dim(2) / k.dim(2), d, nv, kLanes * nv,
          kLog2e / std::sqrt(static_cast<float>(d))};
}

// One work item's running softmax state for every query head: acc [H][w], m [H], l [H] (log2
// domain), plus the thread's scratch: the scaled queries [H][w] and one block of scores [H][kBlock].
struct State {
  float* acc;
  float* m;
  float* l;
  float* q;
  float* s;
};

// s[h][j] = c2 q_h . k_j for the visible keys of block [k0, k0 + kn), -inf for the others. Rows
// are read in memory order (slot, then kv head); each visible slot's value rows are prefetched
// for block_values, whose loop runs along the slots of one head.
template <class T>
void block_scores(const Dims& dm, const Rows<const T>& k, const Rows<const T>& v,
                  const int32_t* kpos, int32_t qp, int64_t b, int64_t k0, int64_t kn, State& st) {
  const int64_t row_bytes = dm.d * static_cast<int64_t>(sizeof(T));
  for (int64_t j = 0; j < kBlock; ++j) {
    if (j >= kn || kpos[k0 + j] > qp || kpos[k0 + j] < dm.lo) {
      for (int64_t h = 0; h < dm.H; ++h) st.s[h * kBlock + j] = -INFINITY;
      continue;
    }
    for (int64_t hk = 0; hk < dm.Hkv; ++hk) {
      const char* vrow = reinterpret_cast<const char*>(v.at(b, k0 + j, hk));
      for (int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(vrow + off);
      const T* row = k.at(b, k0 + j, hk);
      for (int64_t h = hk * dm.G; h < (hk + 1) * dm.G; ++h) {
        const float* qh = st.q + h * dm.w;
        Vec dot = vset(0.f);
        for (int64_t x = 0; x < dm.nv; ++x) dot = vfma(vload(qh + x * kLanes), load_vec(row, x, dm.d), dot);
        st.s[h * kBlock + j] = vhsum(dot);
      }
    }
  }
}

// Online-softmax update of head h with its block of scores, which become p = 2^(s - m).
// Returns false when the head sees no key in the block (nothing changes). A NaN score (NaN or
// inf in q or k: a corrupt checkpoint) makes the running max NaN, so the head's output and lse are
// NaN (NaN in, NaN out) and the generation loop's finiteness check reports it; max8 alone would
// drop it (vmaxps returns its second operand when either is NaN) and the head would look masked.
bool softmax_update(const Dims& dm, int64_t h, State& st) {
  float* s = st.s + h * kBlock;
  Vec smax = vset(-INFINITY);
  for (int64_t j = 0; j < kBlock; j += kLanes) smax = vmax(smax, vload(s + j));
  float bmax = vhmax(smax);
  for (int64_t j = 0; j < kBlock; ++j) bmax = std::isnan(s[j]) ? s[j] : bmax;
  if (bmax == -INFINITY) return false;
  if (std::isnan(bmax) || bmax > st.m[h]) {
    const float rescale = st.m[h] == -INFINITY ? 0.f : std::exp2(st.m[h] - bmax);
    st.l[h] *= rescale;
    float* acc = st.acc + h * dm.w;
    for (int64_t x = 0; x < dm.w; x += kLanes) vstore(acc + x, vset(rescale) * vload(acc + x));
    st.m[h] = bmax;
  }
  const Vec neg_m = vset(-st.m[h]);
  Vec sum = vset(0.f);
  for (int64_t j = 0; j < kBlock; j += kLanes) {
    const Vec p = vexp2(vload(s + j) + neg_m);  // -inf -> 0
    sum = sum + p;
    vstore(s + j, p);
  }
  st.l[h] += vhsum(sum);
  return true;
}

// acc[h] += sum_j p[h][j] v_j over the visible keys of the block, NV = ceil(d / kLanes) accumulators
// held in registers along the slots.
template <class T, int NV>
void values_nv(const Dims& dm, const Rows<const T>& v, const int32_t* kpos, int32_t qp, int64_t b,
               int64_t k0, int64_t kn, int64_t h, State& st) {
  const int64_t hk = h / dm.G;
  const float* p = st.s + h * kBlock;
  float* out = st.acc + h * dm.w;
  Vec acc[NV];
  for (int x = 0; x < NV; ++x) acc[x] = vload(out + x * kLanes);
  for (int64_t j = 0; j < kn; ++j) {
    if (kpos[k0 + j] > qp || kpos[k0 + j] < dm.lo) continue;
    const Vec pj = vset(p[j]);
    const T* row = v.at(b, k0 + j, hk);
    for (int x = 0; x < NV; ++x) acc[x] = vfma(pj, load_vec(row, x, dm.d), acc[x]);
  }
  for (int x = 0; x < NV; ++x) vstore(out + x * kLanes, acc[x]);
}

// The same for any d, one kLanes-wide column of the head at a time.
template <class T>
void values_any(const Dims& dm, const Rows<const T>& v, const int32_t* kpos, int32_t qp,
                int64_t b, int64_t k0, int64_t kn, int64_t h, State& st) {
  const int64_t hk = h / dm.G;
  const float* p = st.s + h * kBlock;
  for (int64_t x = 0; x < dm.nv; ++x) {
    Vec acc = vload(st.acc + h * dm.w + x * kLanes);
    for (int64_t j = 0; j < kn; ++j) {
      if (kpos[k0 + j] <= qp && kpos[k0 + j] >= dm.lo) acc = vfma(vset(p[j]), load_vec(v.at(b, k0 + j, hk), x, dm.d), acc);
    }
    vstore(st.acc + h * dm.w + x * kLanes, acc);
  }
}

template <class T>
void block_values(const Dims& dm, const Rows<const T>& v, const int32_t* kpos, int32_t qp,
                  int64_t b, int64_t k0, int64_t kn, int64_t h, State& st) {
  switch (dm.nv) {
    case 1: return values_nv<T, 1>(dm, v, kpos, qp, b, k0, kn, h, st);
    case 2: return values_nv<T, 2>(dm, v, kpos, qp, b, k0, kn, h, st);
    case 4: return values_nv<T, 4>(dm, v, kpos, qp, b, k0, kn, h, st);
    case 8: return values_nv<T, 8>(dm, v, kpos, qp, b, k0, kn, h, st);
    case 16: return values_nv<T, 16>(dm, v, kpos, qp, b, k0, kn, h, st);
    default: return values_any(dm, v, kpos, qp, b, k0, kn, h, st);
  }
}

// Keys [c0, c0 + cn) of sequence b: the softmax state of every head after them.
template <class T>
void attend_chunk(const Dims& dm, const Rows<const T>& q, const Rows<const T>& k,
                  const Rows<const T>& v, const int32_t* kpos, int32_t qp, int64_t b, int64_t c0,
                  int64_t cn, State& st) {
  for (int64_t h = 0; h < dm.H; ++h) {
    const T* row = q.at(b, 0, h);
    for (int64_t x = 0; x < dm.nv; ++x) vstore(st.q + h * dm.w + x * kLanes, vset(dm.c2) * load_vec(row, x, dm.d));
    std::fill(st.acc + h * dm.w, st.acc + (h + 1) * dm.w, 0.f);
    st.m[h] = -INFINITY;
    st.l[h] = 0.f;
  }
  for (int64_t k0 = c0; k0 < c0 + cn; k0 += kBlock) {
    const int64_t kn = std::min(kBlock, c0 + cn - k0);
    block_scores(dm, k, v, kpos, qp, b, k0, kn, st);
    for (int64_t h = 0; h < dm.H; ++h) {
      if (softmax_update(dm, h, st)) block_values(dm, v, kpos, qp, b, k0, kn, h, st);
    }
  }
}

// Normalises each chunk's state to (o, natural-log lse) and folds the chunks of sequence b in
// order with merge_lse; writes o and lse.
template <class T>
void finish(const Dims& dm, int64_t chunks, const float* acc, const float* m, const float* l,
            int64_t b, const Rows<T>& o, float* lse, int64_t ls0, int64_t ls1) {
  std::vector<float> out(static_cast<size_t>(dm.w));
  for (int64_t h = 0; h < dm.H; ++h) {
    float total = kernels::kNegInf;
    std::fill(out.begin(), out.end(), 0.f);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t i = (b * chunks + c) * dm.H + h;
      if (l[i] == 0.f) continue;  // the chunk saw no key of this head (a NaN l goes on: NaN out)
      const float chunk_lse = kLn2 * (m[i] + std::log2(l[i]));
      const kernels::LseMerge mg = kernels::merge_lse(total, chunk_lse);
      const float wb = mg.wb / l[i];
      for (int64_t x = 0; x < dm.w; ++x) out[x] = mg.wa * out[x] + wb * acc[i * dm.w + x];
      total = mg.lse;
    }
    T* dst = o.at(b, 0, h);
    for (int64_t x = 0; x < dm.nv; ++x) {
      const Vec ox = vload(out.data() + x * kLanes);
      if (x * kLanes + kLanes <= dm.d) vstore(dst + x * kLanes, ox);
      else vstore_tail(dst + x * kLanes, ox, dm.d - x * kLanes);
    }
    lse[b * ls0 + h * ls1] = total;
  }
}

template <class T>
void run(const Dims& dm, const Tensor& q, const Tensor& k, const Tensor& v, const int32_t* kpos,
         int32_t qp, Tensor& o, Tensor& lse) {
  const int64_t chunks = std::max<int64_t>(1, (dm.Sk + kChunk - 1) / kChunk), items = dm.B * chunks;
  const int nthreads = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(items)));
  // Per item: acc [H][w], m [H], l [H]; per thread: q [H][w], s [H][kBlock].
  Tensor state = Tensor::empty({items * dm.H * (dm.w + 2)}, DType::f32, MemCategory::workspace);
  Tensor scratch = Tensor::empty({nthreads * dm.H * (dm.w + kBlock)}, DType::f32, MemCategory::workspace);
  float* acc = state.data<float>();
  float* m = acc + items * dm.H * dm.w;
  float* l = m + items * dm.H;
  const Rows<const T> qr(q), kr(k), vr(v);
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1)
  for (int64_t item = 0; item < items; ++item) {
    float* tb = scratch.data<float>() + omp_get_thread_num() * dm.H * (dm.w + kBlock);
    State st{acc + item * dm.H * dm.w, m + item * dm.H, l + item * dm.H, tb, tb + dm.H * dm.w};
    const int64_t b = item / chunks, c0 = (item % chunks) * kChunk;
    attend_chunk(dm, qr, kr, vr, kpos, qp, b, c0, std::min(kChunk, dm.Sk - c0), st);
  }
  const Rows<T> orows(o);
  for (int64_t b = 0; b < dm.B; ++b)
    finish(dm, chunks, acc, m, l, b, orows, lse.data<float>(), lse.stride(0), lse.stride(1));
}

}  // namespace

void CpuBackend::decode_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& q_pos, const Tensor& k_pos, Tensor& o, Tensor& lse,
                                  int64_t window) {
  TSP_CHECK(window >= 0, "decode_attention: window must be >= 0 (0 = none), got ", window);
  Dims dm = check_inputs(q, k, v, q_pos, k_pos, o, lse);
  if (dm.B == 0 || dm.H == 0) return;
  // The key positions as one contiguous array (a KV cache's row of positions already is).
  Tensor kpos = k_pos;
  if (!k_pos.is_contiguous()) kpos = Tensor::copy_of(k_pos, DType::i32, MemCategory::workspace);
  const int32_t qp = q_pos.data<int32_t>()[0];
  if (window > 0) {  // clamped as in flash attention: no int64 overflow for any window
    const int64_t w = std::min<int64_t>(window, int64_t{1} << 32);
    dm.lo = static_cast<int32_t>(std::max<int64_t>(int64_t{qp} - w + 1, INT32_MIN));
  }
  const int32_t* kp = dm.Sk > 0 ? kpos.data<int32_t>() : nullptr;
  if (q.dtype() == DType::f32) run<float>(dm, q, k, v, kp, qp, o, lse);
  else run<bf16>(dm, q, k, v, kp, qp, o, lse);
}

}  // namespace tsp::kernels
