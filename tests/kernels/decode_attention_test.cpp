// decode_attention against flash_attention_forward (the oracle) with one query row: GQA and MHA,
// head dims with a tail (d % 8 != 0), several key blocks, positions in any order with invisible
// and empty (kEmptySlot) keys, strided cache views, bf16, no visible key, and the thread count.
#include "tsp/kernels/decode_attention.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "fp_bounds.h"
#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using tsp::testing::random_tensor;

// The KV cache's empty slot (infer/kv_cache.h): a position no query reaches.
constexpr int32_t kEmptySlot = std::numeric_limits<int32_t>::max();

struct Shape4 {
  int64_t B, Sk, H, Hkv, d;
};

Tensor positions(const std::vector<int32_t>& p) {
  Tensor t = Tensor::empty({static_cast<int64_t>(p.size())}, DType::i32, MemCategory::workspace);
  std::copy(p.begin(), p.end(), t.data<int32_t>());
  return t;
}

// Keys at shuffled positions 0..Sk-1 with every 7th slot empty; the query at `q_at`.
std::vector<int32_t> key_positions(int64_t sk) {
  std::vector<int32_t> p(static_cast<size_t>(sk));
  for (int64_t j = 0; j < sk; ++j) p[j] = static_cast<int32_t>((j * 37) % sk);
  for (int64_t j = 3; j < sk; j += 7) p[j] = kEmptySlot;
  return p;
}

// Runs both kernels; k and v are slot ranges of wider [B, cap, Hkv, d] buffers (strided views).
void expect_matches_flash(const Shape4& s, DType dt, int32_t q_at, double tol, double floor = 0.25) {
  const Tensor q = random_tensor({s.B, 1, s.H, s.d}, dt, 1);
  const Tensor k_all = random_tensor({s.B, s.Sk + 5, s.Hkv, s.d}, dt, 2, 2.f);
  const Tensor v_all = random_tensor({s.B, s.Sk + 5, s.Hkv, s.d}, dt, 3);
  const Tensor k = k_all.slice(1, 2, s.Sk), v = v_all.slice(1, 2, s.Sk);
  const Tensor q_pos = positions({q_at}), k_pos = positions(key_positions(s.Sk));
  Tensor o = Tensor::empty(q.shape(), dt, MemCategory::workspace);
  Tensor o_ref = Tensor::empty(q.shape(), dt, MemCategory::workspace);
  Tensor lse = Tensor::empty({s.B, s.H, 1}, DType::f32, MemCategory::workspace);
  Tensor lse_ref = Tensor::empty({s.B, s.H, 1}, DType::f32, MemCategory::workspace);
  decode_attention(q, k, v, q_pos, k_pos, o, lse);
  kernels::flash_attention_forward(q, k, v, q_pos, k_pos, o_ref, lse_ref);
  EXPECT_CLOSE(o, o_ref, tol, floor);  // floor: outputs near 0 come from cancelling N(0, 1) values
  EXPECT_CLOSE(lse, lse_ref, tol, 1.0);
}

// fp32: both kernels compute the same sums in different orders (exp2 polynomials identical).
// Derived (tests/fp_bounds.h): o = sum_j p_j v_j is the end of the scores (d terms), the softmax
// normaliser and P V (Sk keys each) and <= 20 pointwise roundings, each kernel within
// gamma = (d + 2 Sk + 20) 2^-24 of exact relative to the magnitude of the summed terms,
// sum_j p_j |v_j| <= max |v| (1..4 for these N(0, 1) values, scores within a few units): floor 1,
// so an output that cancels to ~0 is judged on that scale; two kernels: 2 gamma. lse (the log of a
// sum of positive terms) errs absolutely by the same: floor 1.
double attention_tol(const Shape4& s) { return 2 * tsp::testing::gamma_n(s.d + 2 * s.Sk + 20); }

TEST(DecodeAttention, MatchesFlashAttentionF32) {
  for (const Shape4 s : {Shape4{1, 1, 4, 4, 8}, Shape4{2, 300, 8, 2, 32}, Shape4{1, 129, 4, 4, 12},
                         Shape4{3, 1000, 16, 1, 64}, Shape4{1, 70, 6, 3, 5}}) {
    SCOPED_TRACE(::testing::Message() << "B=" << s.B << " Sk=" << s.Sk << " H=" << s.H << " Hkv=" << s.Hkv
                                      << " d=" << s.d);
    expect_matches_flash(s, DType::f32, static_cast<int32_t>(s.Sk / 2), attention_tol(s), 1.0);
    expect_matches_flash(s, DType::f32, static_cast<int32_t>(s.Sk), attention_tol(s), 1.0);  // sees every key
  }
}

// bf16 storage: both round the fp32 result once to bf16 (2^-9 relative); a different summation
// order can put the two on either side of a rounding boundary: one bf16 ulp, 2^-8.
TEST(DecodeAttention, MatchesFlashAttentionBf16) {
  expect_matches_flash({2, 300, 8, 2, 32}, DType::bf16, 200, 8e-3);
  expect_matches_flash({1, 77, 4, 4, 12}, DType::bf16, 77, 8e-3);
}

// Head dims that are not multiples of the vector (masked tails of either width) in bf16 storage,
// same bound as MatchesFlashAttentionBf16.
TEST(DecodeAttention, MaskedTailsBf16) {
  for (const Shape4 s : {Shape4{1, 129, 4, 2, 12}, Shape4{1, 70, 6, 3, 5}, Shape4{2, 200, 4, 4, 17},
                         Shape4{1, 100, 2, 1, 33}}) {
    SCOPED_TRACE(::testing::Message() << "Sk=" << s.Sk << " H=" << s.H << " Hkv=" << s.Hkv << " d=" << s.d);
    expect_matches_flash(s, DType::bf16, static_cast<int32_t>(s.Sk / 2), 8e-3);
  }
}

// The kernel is written once against simd.h Vec (16 lanes with AVX-512, else 8); bf16 rows are
// widened to fp32 (no vdpbf16ps: docs/kernels.md says why). Names the path that ran.
TEST(DecodeAttention, RunsOnTheBuildsWidestVector) {
  std::printf("[   simd   ] decode_attention: %s (%d fp32 lanes)\n", kernels::simd::kVecName,
              kernels::simd::kLanes);
  RecordProperty("simd", kernels::simd::kVecName);
  EXPECT_EQ(kernels::simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

TEST(DecodeAttention, NoVisibleKeyGivesTheEmptyPartial) {
  const Tensor q = random_tensor({1, 1, 4, 8}, DType::f32, 1);
  const Tensor k = random_tensor({1, 3, 2, 8}, DType::f32, 2);
  Tensor o = random_tensor({1, 1, 4, 8}, DType::f32, 3);
  Tensor lse = Tensor::empty({1, 4, 1}, DType::f32, MemCategory::workspace);
  decode_attention(q, k, k, positions({5}), positions({6, 7, kEmptySlot}), o, lse);
  for (int64_t i = 0; i < o.numel(); ++i) EXPECT_EQ(o.item_f32(i), 0.f);
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(lse.item_f32(i), -INFINITY);
}

TEST(DecodeAttention, ResultDoesNotDependOnTheThreadCount) {
  const Tensor q = random_tensor({2, 1, 8, 32}, DType::f32, 1);
  const Tensor k = random_tensor({2, 4096, 4, 32}, DType::f32, 2);
  const Tensor v = random_tensor({2, 4096, 4, 32}, DType::f32, 3);
  const Tensor k_pos = positions(key_positions(4096));
  Tensor o1 = Tensor::empty(q.shape(), DType::f32, MemCategory::workspace), o2 = o1.to_f32();
  Tensor l1 = Tensor::empty({2, 8, 1}, DType::f32, MemCategory::workspace), l2 = l1.to_f32();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  decode_attention(q, k, v, positions({3000}), k_pos, o1, l1);
  omp_set_num_threads(4);
  decode_attention(q, k, v, positions({3000}), k_pos, o2, l2);
  omp_set_num_threads(threads);
  for (int64_t i = 0; i < o1.numel(); ++i) ASSERT_EQ(o1.item_f32(i), o2.item_f32(i)) << i;
  for (int64_t i = 0; i < l1.numel(); ++i) ASSERT_EQ(l1.item_f32(i), l2.item_f32(i)) << i;
}

// A NaN in one visible key (a corrupt checkpoint) makes every query head of its kv head NaN, o
// and lse (NaN in, NaN out), in the first block, inside a block and in a later chunk; the other kv
// head is untouched. A NaN in an invisible key changes nothing. Before the fix the NaN block
// maximum was taken for a fully masked block and the head silently attended to the other keys.
TEST(DecodeAttention, NanKeyGivesNanHeadsNotAMaskedZero) {
  const int64_t B = 1, Sk = 1500, H = 4, Hkv = 2, d = 16;
  const Tensor q = random_tensor({B, 1, H, d}, DType::f32, 1);
  const Tensor v = random_tensor({B, Sk, Hkv, d}, DType::f32, 3);
  std::vector<int32_t> kp(Sk);
  for (int64_t j = 0; j < Sk; ++j) kp[j] = static_cast<int32_t>(j);
  const Tensor k_pos = positions(kp), q_pos = positions({1400});  // keys 1401.. are invisible
  const auto attend = [&](const Tensor& k, Tensor& o, Tensor& lse) {
    o = Tensor::empty(q.shape(), DType::f32, MemCategory::workspace);
    lse = Tensor::empty({B, H, 1}, DType::f32, MemCategory::workspace);
    decode_attention(q, k, v, q_pos, k_pos, o, lse);
  };
  const Tensor k_clean = random_tensor({B, Sk, Hkv, d}, DType::f32, 2);
  Tensor o_clean, lse_clean;
  attend(k_clean, o_clean, lse_clean);
  for (const int64_t slot : {int64_t{0}, int64_t{37}, int64_t{1100}, int64_t{1450}}) {
    Tensor k = k_clean.to_f32();
    k.data<float>()[(slot * Hkv + 1) * d + 5] = std::nanf("");  // kv head 1 of key `slot`
    Tensor o, lse;
    attend(k, o, lse);
    const bool visible = kp[slot] <= 1400;
    for (int64_t h = 0; h < H; ++h) {
      const bool poisoned = visible && h / (H / Hkv) == 1;
      EXPECT_EQ(std::isnan(lse.item_f32(h)), poisoned) << "slot " << slot << " head " << h;
      for (int64_t x = 0; x < d; ++x) {
        const float got = o.item_f32(h * d + x);
        if (poisoned) EXPECT_TRUE(std::isnan(got)) << "slot " << slot << " head " << h << " x " << x;
        else EXPECT_EQ(got, o_clean.item_f32(h * d + x)) << "slot " << slot << " head " << h;
      }
    }
  }
}

TEST(DecodeAttention, RefusesBadShapes) {
  const Tensor q = random_tensor({1, 2, 4, 8}, DType::f32, 1);  // two query rows
  const Tensor k = random_tensor({1, 3, 2, 8}, DType::f32, 2);
  Tensor o = Tensor::empty(q.shape(), DType::f32, MemCategory::workspace);
  Tensor lse = Tensor::empty({1, 4, 2}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(decode_attention(q, k, k, positions({1}), positions({0, 1, 2}), o, lse), ShapeError);
  const Tensor q1 = q.slice(1, 0, 1);
  Tensor o1 = o.slice(1, 0, 1), lse1 = Tensor::empty({1, 4, 1}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(decode_attention(q1, k, k, positions({1}), positions({0, 1}), o1, lse1), ShapeError);
}

}  // namespace
}  // namespace tsp::kernels
