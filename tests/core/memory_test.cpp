// The accounting allocator: live/peak bytes per category, and the RSS cross-check.
#include "tsp/core/memory.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tsp/core/tensor.h"

namespace tsp {
namespace {

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
  // mmap threshold is pinned, so the freed buffer is returned to the OS, but VmHWM remembers it.
  EXPECT_LT(process_rss_bytes() - before, kBytes / 10);
  EXPECT_GE(process_peak_rss_bytes() - before, kBytes * 9 / 10);
}

}  // namespace
}  // namespace tsp
