// cache_attention over caches holding arbitrary subsets of positions: two "ranks" holding the
// zigzag halves of a sequence (plus a decoded token each), merged by log-sum-exp with
// kernels::merge_partials, equal one cache holding everything: the attention step of the sharded
// decode, on one rank. Also slot claiming and splitting into parts.
#include "tsp/infer/cache_attention.h"

#include <gtest/gtest.h>

#include <vector>

#include "fp_bounds.h"
#include "infer_test_util.h"
#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/kernels/softmax_merge.h"

namespace tsp::infer {
namespace {

using testing::kGqaUntied;
using testing::make_config;

// K and V of one token (all layers share them here) for position p: deterministic per position.
void write_token(KvCache& cache, int64_t b, int32_t position) {
  const int64_t slot = cache.claim_slot(b, position);
  for (int64_t l = 0; l < cache.layers(); ++l) {
    Tensor k = tsp::testing::random_tensor({1, 1, cache.k(l).dim(2), cache.k(l).dim(3)}, cache.dtype(),
                                           1000 + static_cast<uint64_t>(position) + 7919 * b);
    Tensor v = tsp::testing::random_tensor(k.shape(), cache.dtype(), 5000 + static_cast<uint64_t>(position) + 7919 * b);
    cache.k(l).slice(0, b, 1).slice(1, slot, 1).copy_from(k);
    cache.v(l).slice(0, b, 1).slice(1, slot, 1).copy_from(v);
  }
}

struct Partial {
  Tensor o, lse;
};

Partial attend(const KvCache& cache, const Tensor& q, const Tensor& q_pos, int64_t parts = 1) {
  const model::ModelConfig& c = cache.config();
  Partial p{Tensor::empty({cache.batch(), 1, c.num_attention_heads(), c.head_dim()}, cache.dtype(),
                          MemCategory::workspace),
            Tensor::empty({cache.batch(), c.num_attention_heads(), 1}, DType::f32, MemCategory::workspace)};
  cache_attention(q, q_pos, cache, 1, p.o, p.lse, parts);
  return p;
}

TEST(CacheAttention, ZigzagShardsMergedByLseEqualTheWholeCache) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const int64_t B = 2, S = 24, D = 2, chunk = S / (2 * D);
  KvCache whole(c, DType::f32, B, 32), rank0(c, DType::f32, B, 16), rank1(c, DType::f32, B, 16);
  for (int64_t b = 0; b < B; ++b) {
    for (int32_t p = 0; p < S; ++p) {
      write_token(whole, b, p);
      const int64_t owner = std::min(p / chunk, 2 * D - 1 - p / chunk);  // zigzag: chunks r, 2D-1-r
      write_token(owner == 0 ? rank0 : rank1, b, p);
    }
    write_token(whole, b, S);  // the decoded token goes to one rank (here rank 1)
    write_token(rank1, b, S);
  }
  EXPECT_EQ(rank0.length(0), S / 2);
  EXPECT_EQ(rank1.length(0), S / 2 + 1);
  const Tensor q = tsp::testing::random_tensor({B, 1, c.num_attention_heads(), c.head_dim()}, DType::f32, 9);
  Tensor q_pos = Tensor::empty({B}, DType::i32, MemCategory::workspace);
  q_pos.data<int32_t>()[0] = S;
  q_pos.data<int32_t>()[1] = S - 5;  // sequence 1 attends to a prefix only: masking by position
  const Partial ref = attend(whole, q, q_pos);
  Partial merged = attend(rank0, q, q_pos);
  const Partial other = attend(rank1, q, q_pos);
  kernels::merge_partials(merged.o, merged.lse, other.o, other.lse, merged.o, merged.lse);
  // Derived (tests/fp_bounds.h): o = sum_j p_j v_j is the end of the scores (d terms), the
  // softmax normaliser and P V (<= S + 1 keys each) and the lse merge (<= 20 roundings: exp of
  // lse differences, rescaling, division), each within gamma = (d + 2 (S + 1) + 20) 2^-24 of
  // exact relative to the magnitude of its terms, sum_j p_j |v_j| <= max |v| ~ 1..4 for these
  // N(0, 1) values: floor 1 (an output that cancels to ~0 errs on that scale, not its own); two
  // computations: 2 gamma. lse = log(sum of positive terms) errs absolutely (relative error of
  // the sum, the scores' errors): the same 2 gamma on a floor of 1 (plus |lse| for its rounding).
  const double tol = 2 * ::tsp::testing::gamma_n(c.head_dim() + 2 * (S + 1) + 20);
  EXPECT_CLOSE(merged.o, ref.o, tol, 1.0);
  EXPECT_CLOSE(merged.lse, ref.lse, tol, 1.0);
  for (const int64_t parts : {2, 5, 100}) {
    const Partial split = attend(whole, q, q_pos, parts);
    EXPECT_CLOSE(split.o, ref.o, tol, 1.0);
    EXPECT_CLOSE(split.lse, ref.lse, tol, 1.0);
  }
}

TEST(CacheAttention, AnEmptyCacheGivesTheEmptyPartial) {
  const model::ModelConfig c = make_config(kGqaUntied);
  KvCache cache(c, DType::f32, 1, 4);
  const Tensor q = tsp::testing::random_tensor({1, 1, 4, 4}, DType::f32, 1);
  Tensor q_pos = Tensor::zeros({1}, DType::i32, MemCategory::workspace);
  const Partial p = attend(cache, q, q_pos);
  for (int64_t i = 0; i < p.o.numel(); ++i) EXPECT_EQ(p.o.item_f32(i), 0.f);
  for (int64_t i = 0; i < p.lse.numel(); ++i) EXPECT_EQ(p.lse.item_f32(i), kernels::kNegInf);
}

TEST(CacheAttention, ClaimSlotRecordsPositionsAndRefusesAFullRow) {
  KvCache cache(make_config(kGqaUntied), DType::f32, 1, 2);
  EXPECT_EQ(cache.claim_slot(0, 7), 0);
  EXPECT_EQ(cache.claim_slot(0, 3), 1);
  EXPECT_EQ(cache.positions_filled(0).data<int32_t>()[0], 7);
  EXPECT_EQ(cache.positions_filled(0).data<int32_t>()[1], 3);
  EXPECT_THROW(cache.claim_slot(0, 8), InvalidArgument);
  cache.clear();
  EXPECT_THROW(cache.claim_slot(0, kEmptySlot), InvalidArgument);
}

}  // namespace
}  // namespace tsp::infer
