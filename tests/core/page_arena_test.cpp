// The page arena on its own: reuse without new mappings or faults, splitting and coalescing, the
// footprint bound (cached ranges unmapped under pressure), and concurrent use from OpenMP threads.
#include "tsp/core/page_arena.h"

#include <gtest/gtest.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace tsp {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

int64_t minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

bool is_mapped(const void* p, size_t bytes) {
  // msync fails with ENOMEM when part of the range is not mapped.
  return ::msync(const_cast<void*>(p), bytes, MS_ASYNC) == 0;
}

TEST(PageArena, ReusesAFreedBlockWithoutNewMappingsOrFaults) {
  PageArena arena;
  constexpr size_t kBytes = 4 * kMiB;
  char* p = static_cast<char*>(arena.allocate(kBytes));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  std::memset(p, 1, kBytes);  // first touch: these are the faults reuse avoids
  arena.deallocate(p, kBytes);
  EXPECT_EQ(arena.cached_bytes(), static_cast<int64_t>(kBytes));
  EXPECT_EQ(arena.live_bytes(), 0);
  const int64_t mappings = arena.new_mappings();

  const int64_t faults_before = minor_faults();
  char* q = static_cast<char*>(arena.allocate(kBytes));
  std::memset(q, 2, kBytes);
  const int64_t faults = minor_faults() - faults_before;
  EXPECT_EQ(q, p);
  EXPECT_EQ(arena.new_mappings(), mappings);
  EXPECT_EQ(arena.cached_bytes(), 0);
  // A fresh 4 MiB mapping takes one fault per 4 KiB page (1024) without huge pages; reused pages
  // take none. 1024 / 8 leaves room for faults of this thread's stack or gtest, not for the pages.
  EXPECT_LT(faults, static_cast<int64_t>(kBytes / 4096 / 8)) << faults << " minor faults";
  arena.deallocate(q, kBytes);
}

TEST(PageArena, SplitsACachedRangeAndCoalescesItBack) {
  PageArena arena;
  char* whole = static_cast<char*>(arena.allocate(8 * kMiB));
  ASSERT_NE(whole, nullptr);
  arena.deallocate(whole, 8 * kMiB);
  const int64_t mappings = arena.new_mappings();
  // First fit in address order: both parts come from the cached 8 MiB, in order.
  char* a = static_cast<char*>(arena.allocate(2 * kMiB));
  char* b = static_cast<char*>(arena.allocate(6 * kMiB - 100));  // rounded up to whole pages
  EXPECT_EQ(a, whole);
  EXPECT_EQ(b, whole + 2 * kMiB);
  EXPECT_EQ(arena.cached_bytes(), 0);
  EXPECT_EQ(arena.live_bytes(), static_cast<int64_t>(8 * kMiB));
  arena.deallocate(b, 6 * kMiB - 100);
  arena.deallocate(a, 2 * kMiB);
  // Coalesced back into one range: the whole 8 MiB fits again.
  EXPECT_EQ(arena.allocate(8 * kMiB), whole);
  EXPECT_EQ(arena.new_mappings(), mappings);
  arena.deallocate(whole, 8 * kMiB);
  EXPECT_EQ(arena.release_cached(), static_cast<int64_t>(8 * kMiB));
  EXPECT_FALSE(is_mapped(whole, 8 * kMiB));
}

TEST(PageArena, UnmapsCachedRangesWhenNewPagesWouldExceedTheCeiling) {
  PageArena arena;
  constexpr size_t kSmall = 4 * kMiB, kLarge = 6 * kMiB;
  char* a = static_cast<char*>(arena.allocate(kSmall));
  char* b = static_cast<char*>(arena.allocate(kSmall));  // above a: a's range cannot grow
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  arena.deallocate(a, kSmall);
  // Live 4 MiB, cached 4 MiB, ceiling 8 MiB. 6 MiB fits no cached range, and touching 6 new MiB
  // beside the cached 4 would make 14 > max(8, 4 + 6) * 33/32: the cached range goes back first.
  void* c = arena.allocate(kLarge);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(arena.cached_bytes(), 0);
  EXPECT_EQ(arena.live_bytes(), static_cast<int64_t>(kSmall + kLarge));
  EXPECT_FALSE(is_mapped(a, kSmall));
  EXPECT_TRUE(is_mapped(b, kSmall));
  arena.deallocate(c, kLarge);
  arena.deallocate(b, kSmall);
  // Both freed ranges are cached now, and within the ceiling (10 MiB live at most).
  EXPECT_EQ(arena.cached_bytes(), static_cast<int64_t>(kSmall + kLarge));
}

TEST(PageArena, FootprintNeverExceedsTheLargestLiveTotal) {
  // A random mix of sizes and lifetimes: after every call, live + cached (the bytes the arena
  // keeps mapped, i.e. what it adds to RSS) is at most the largest live total seen so far plus
  // the arena's 1/32 fragmentation room (page_arena.h).
  PageArena arena;
  std::mt19937 rng(7);
  std::vector<std::pair<void*, size_t>> held;
  int64_t max_live = 0;
  for (int i = 0; i < 2000; ++i) {
    if (held.empty() || (held.size() < 24 && rng() % 2 == 0)) {
      const size_t bytes = kMiB + rng() % (15 * kMiB);
      void* p = arena.allocate(bytes);
      ASSERT_NE(p, nullptr);
      static_cast<char*>(p)[bytes - 1] = 1;
      held.emplace_back(p, bytes);
    } else {
      const size_t k = rng() % held.size();
      arena.deallocate(held[k].first, held[k].second);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(k));
    }
    max_live = std::max(max_live, arena.live_bytes());
    ASSERT_LE(arena.live_bytes() + arena.cached_bytes(), max_live + max_live / 32) << "after call " << i;
  }
  for (const auto& [p, bytes] : held) arena.deallocate(p, bytes);
  EXPECT_EQ(arena.live_bytes(), 0);
}

TEST(PageArena, ConcurrentAllocationsFromOpenMpThreadsNeverOverlap) {
  PageArena arena;
  constexpr int kThreads = 4, kRounds = 200;
  std::vector<int> bad(kThreads, 0);
#pragma omp parallel num_threads(kThreads)
  {
    const int t = omp_get_thread_num();
    std::mt19937 rng(static_cast<unsigned>(t) + 1);
    for (int r = 0; r < kRounds; ++r) {
      const size_t bytes = kMiB + (rng() % 4) * kMiB;
      unsigned char* p = static_cast<unsigned char*>(arena.allocate(bytes));
      if (p == nullptr) {
        ++bad[static_cast<size_t>(t)];
        continue;
      }
      const unsigned char tag = static_cast<unsigned char>(t * 64 + r % 64);
      std::memset(p, tag, bytes);
      // Another thread writing into this block meanwhile would show here.
      for (size_t i = 0; i < bytes; i += 4096) bad[static_cast<size_t>(t)] += p[i] != tag;
      if (p[bytes - 1] != tag) ++bad[static_cast<size_t>(t)];
      arena.deallocate(p, bytes);
    }
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[static_cast<size_t>(t)], 0) << "thread " << t;
  EXPECT_EQ(arena.live_bytes(), 0);
  // At most one block per thread was live at once: 4 threads x 4 MiB.
  EXPECT_LE(arena.cached_bytes(), static_cast<int64_t>(kThreads * 4 * kMiB));
}

}  // namespace
}  // namespace tsp
