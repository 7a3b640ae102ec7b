// The accounting allocator: live/peak bytes per category, and the RSS cross-check.
#include "tsp/core/memory.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <cstring>
#include <vector>

#include "tsp/core/tensor.h"

namespace tsp {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;  // the ledger bypasses the page arena so ASan sees every buffer
#else
constexpr bool kSanitized = false;
#endif

TEST(MemoryLedger, TracksLiveAndPeakPerCategory) {
  MemoryLedger& ledger = MemoryLedger::process();
  const int64_t base_live = ledger.stats(MemCategory::kv_cache).live_bytes;
  ledger.reset_peaks();
  {
    Tensor a = Tensor::empty({1000}, DType::f32, MemCategory::kv_cache);
    Tensor b = Tensor::empty({500}, DType::bf16, MemCategory::kv_cache);
    EXPECT_EQ(ledger.stats(MemCategory::kv_cache).live_bytes, base_live + 5000);
    Tensor view = a.slice(0, 10, 10);  // views allocate nothing
    EXPECT_EQ(ledger.stats(MemCategory::kv_cache).live_bytes, base_live + 5000);
  }
  EXPECT_EQ(ledger.stats(MemCategory::kv_cache).live_bytes, base_live);
  EXPECT_EQ(ledger.stats(MemCategory::kv_cache).peak_bytes, base_live + 5000);
  ledger.reset_peaks();
  EXPECT_EQ(ledger.stats(MemCategory::kv_cache).peak_bytes, base_live);
  EXPECT_NE(ledger.report().find("kv_cache"), std::string::npos);
}

TEST(MemoryLedger, RssFollowsLargeAllocationsAndReturnsThem) {
  if (!reset_process_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  const int64_t before = process_rss_bytes();
  ASSERT_GT(before, 0);
  constexpr int64_t kBytes = 256ll << 20;
  {
    Tensor big = Tensor::empty({kBytes / 4}, DType::f32, MemCategory::activations);
    std::memset(big.raw(), 1, kBytes);  // touch every page
    EXPECT_GE(process_rss_bytes() - before, kBytes * 9 / 10);
  }
  // The freed buffer stays mapped for reuse until the cache is released.
  if (!kSanitized) {
    EXPECT_GE(MemoryLedger::process().total().cached_bytes, kBytes);
  }
  MemoryLedger::process().release_cached();
  // Released: the arena unmaps it (without the arena, as under ASan, a block this large is its own
  // mapping and free unmaps it). VmHWM remembers it.
  EXPECT_LT(process_rss_bytes() - before, kBytes / 10);
  EXPECT_GE(process_peak_rss_bytes() - before, kBytes * 9 / 10);
}

TEST(MemoryLedger, CachingLeavesLiveAndPeakExactAndReusesTheBlock) {
  if (kSanitized) GTEST_SKIP() << "no page arena under AddressSanitizer";
  MemoryLedger& ledger = MemoryLedger::process();
  ledger.release_cached();
  const MemStats base = ledger.stats(MemCategory::activations);
  const int64_t total_live = ledger.total().live_bytes;
  ledger.reset_peaks();
  constexpr int64_t kBytes = 3 << 20;  // over the arena's 1 MiB threshold
  const void* first = nullptr;
  {
    Tensor a = Tensor::empty({kBytes / 4}, DType::f32, MemCategory::activations);
    first = a.raw();
  }
  EXPECT_EQ(ledger.stats(MemCategory::activations).live_bytes, base.live_bytes);
  EXPECT_EQ(ledger.total().live_bytes, total_live);  // cached bytes are not live
  EXPECT_EQ(ledger.total().cached_bytes, (kBytes + 4095) / 4096 * 4096);
  EXPECT_EQ(ledger.stats(MemCategory::activations).cached_bytes, 0);  // reported in total() only
  EXPECT_NE(ledger.report().find("cached"), std::string::npos);
  {
    // Same size, another category: the same block, and the peak counts it once.
    Tensor b = Tensor::empty({kBytes / 4}, DType::f32, MemCategory::workspace);
    EXPECT_EQ(b.raw(), first);
    EXPECT_EQ(ledger.total().cached_bytes, 0);
    EXPECT_EQ(ledger.total().peak_bytes, total_live + kBytes);
  }
  EXPECT_EQ(ledger.stats(MemCategory::activations).peak_bytes, base.live_bytes + kBytes);
  EXPECT_EQ(ledger.total().peak_bytes, total_live + kBytes);
  EXPECT_GT(ledger.release_cached(), 0);
  EXPECT_EQ(ledger.total().cached_bytes, 0);
}

TEST(MemoryLedger, ConcurrentTensorsFromOpenMpThreadsKeepTheLedgerExact) {
  MemoryLedger& ledger = MemoryLedger::process();
  const int64_t live = ledger.total().live_bytes;
  const int64_t count = ledger.total().allocations;
  constexpr int kThreads = 4, kRounds = 100;
  std::vector<int> bad(kThreads, 0);
#pragma omp parallel num_threads(kThreads)
  {
    const int t = omp_get_thread_num();
    for (int r = 0; r < kRounds; ++r) {
      // Sizes on both sides of the 1 MiB arena threshold.
      const int64_t n = (int64_t{1} << 18) * (1 + (r + t) % 6);
      Tensor x = Tensor::empty({n}, DType::f32, MemCategory::workspace);
      const float tag = static_cast<float>(t * 1000 + r);
      std::fill(x.data<float>(), x.data<float>() + n, tag);
      for (int64_t i = 0; i < n; i += 1024) bad[static_cast<size_t>(t)] += x.data<float>()[i] != tag;
    }
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[static_cast<size_t>(t)], 0) << "thread " << t;
  EXPECT_EQ(ledger.total().live_bytes, live);
  EXPECT_EQ(ledger.total().allocations, count + kThreads * kRounds);
}

}  // namespace
}  // namespace tsp
