// The accounting allocator: every engine buffer is allocated here under a category, so live and
// peak bytes per category can be reported per rank and compared with the planner's prediction.
// Buffers of 1 MiB and more come from a PageArena that keeps freed pages for the next step.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tsp {

enum class MemCategory : uint8_t {
  weights,
  grads,
  optimizer,
  activations,
  kv_cache,
  comm,
  workspace,
};
inline constexpr int kNumMemCategories = 7;
inline constexpr size_t kTensorAlignment = 64;

std::string_view mem_category_name(MemCategory c);

struct MemStats {
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;     // high-water mark of live_bytes since the last reset_peaks()
  int64_t allocations = 0;    // number of allocate() calls since construction
  // Bytes freed but kept mapped for reuse (page arena). Not part of live/peak. The arena is shared
  // by all categories (a freed activation's pages may serve a workspace of another size), so only
  // total() reports it; per category it is 0.
  int64_t cached_bytes = 0;
};

// Process-wide ledger. It is the single deliberate global of the engine: like malloc itself it
// serves every layer, and a per-object ledger could not see the process peak. Thread safe.
class MemoryLedger {
 public:
  static MemoryLedger& process();

  // 64-byte aligned; throws OutOfMemory. Zero bytes returns a valid, distinct pointer.
  void* allocate(size_t bytes, MemCategory category);
  void deallocate(void* ptr, size_t bytes, MemCategory category) noexcept;

  MemStats stats(MemCategory category) const;
  MemStats total() const;
  // Sets every peak (per category and total) to the current live bytes.
  void reset_peaks() noexcept;
  // Returns every cached (freed, still mapped) large block to the kernel; returns the bytes
  // released. Call where a phase ends or before an RSS measurement should start from live bytes.
  int64_t release_cached() noexcept;
  // One line per category with live and peak MiB, the total, the cached bytes and the process
  // RSS (current and peak).
  std::string report() const;

 private:
  MemoryLedger() = default;
  struct Counter {
    std::atomic<int64_t> live{0};
    std::atomic<int64_t> peak{0};
    std::atomic<int64_t> count{0};
  };
  static void add(Counter& c, int64_t delta) noexcept;
  std::array<Counter, kNumMemCategories> categories_;
  Counter total_;
};

// Process resident-set high-water mark (VmHWM) in bytes, as the kernel reports it; 0 if unknown.
int64_t process_peak_rss_bytes();
// Current resident set (VmRSS) in bytes; 0 if unknown.
int64_t process_rss_bytes();
// Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs). Returns false if refused.
bool reset_process_peak_rss();

}  // namespace tsp
