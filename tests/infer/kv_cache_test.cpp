// KvCache: exact byte formula, accounting under MemCategory::kv_cache, shapes, empty slots,
// validation before allocation.
#include "tsp/infer/kv_cache.h"

#include <gtest/gtest.h>

#include "infer_test_util.h"
#include "tsp/core/error.h"
#include "tsp/core/memory.h"

namespace tsp::infer {
namespace {

using testing::kGqaUntied;
using testing::make_config;

TEST(KvCache, BytesAreTwoLBCapacityKvdElementSizeAndAccountedUnderKvCache) {
  const model::ModelConfig c = make_config(kGqaUntied, /*layers=*/3);  // kvd = 2 heads x 4 = 8
  MemoryLedger& ledger = MemoryLedger::process();
  for (const DType dt : {DType::f32, DType::bf16}) {
    const int64_t e = dt == DType::f32 ? 4 : 2, B = 3, cap = 17;
    const MemStats before = ledger.stats(MemCategory::kv_cache);
    {
      KvCache cache(c, dt, B, cap);
      EXPECT_EQ(cache.bytes(), 2 * 3 * B * cap * c.kv_dim() * e) << dt;
      EXPECT_EQ(cache.bytes(), KvCache::bytes_for(c, dt, B, cap));
      EXPECT_EQ(cache.position_bytes(), 4 * B * cap);
      const MemStats during = ledger.stats(MemCategory::kv_cache);
      EXPECT_EQ(during.live_bytes - before.live_bytes, cache.allocated_bytes());
      EXPECT_EQ(during.allocations - before.allocations, 2 * 3 + 1);  // K, V per layer + positions
      for (int64_t l = 0; l < 3; ++l) {
        EXPECT_EQ(cache.k(l).shape(), Shape({B, cap, 2, 4}));
        EXPECT_EQ(cache.v(l).dtype(), dt);
        EXPECT_EQ(cache.k(l).category(), MemCategory::kv_cache);
      }
      EXPECT_EQ(cache.positions().category(), MemCategory::kv_cache);
    }
    EXPECT_EQ(ledger.stats(MemCategory::kv_cache).live_bytes, before.live_bytes);
  }
}

TEST(KvCache, StartsEmptyAndTracksLengths) {
  KvCache cache(make_config(kGqaUntied), DType::f32, 2, 5);
  for (int64_t b = 0; b < 2; ++b) EXPECT_EQ(cache.length(b), 0);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(cache.positions().data<int32_t>()[i], kEmptySlot);
  cache.set_length(1, 5);
  EXPECT_EQ(cache.k_filled(0, 1).shape(), Shape({1, 5, 2, 4}));
  EXPECT_EQ(cache.positions_filled(1).shape(), Shape({5}));
  EXPECT_THROW(cache.set_length(0, 6), InvalidArgument);
  EXPECT_THROW(cache.length(2), InvalidArgument);
  cache.clear();
  EXPECT_EQ(cache.length(1), 0);
}

TEST(KvCache, InvalidSizesAreRefusedBeforeAllocating) {
  const model::ModelConfig c = make_config(kGqaUntied, 2, /*max_pos=*/64);
  const int64_t allocations = MemoryLedger::process().stats(MemCategory::kv_cache).allocations;
  try {
    KvCache cache(c, DType::f32, 1, 65);
    ADD_FAILURE() << "no exception";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("capacity 65 positions exceeds the model's "
                                         "max_position_embeddings 64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(KvCache(c, DType::f32, 0, 8), InvalidArgument);
  EXPECT_THROW(KvCache(c, DType::f32, 1, 0), InvalidArgument);
  EXPECT_THROW(KvCache(c, DType::i32, 1, 8), DTypeError);
  EXPECT_EQ(MemoryLedger::process().stats(MemCategory::kv_cache).allocations, allocations);
}

}  // namespace
}  // namespace tsp::infer
