// Accounting allocator implementation and /proc-based RSS readings.
// Blocks >= 1 MiB go to the page arena (reused across steps); smaller ones to glibc, whose mmap
// threshold is pinned at 1 MiB so large buffers allocated outside the ledger return to the OS.
#include "tsp/core/memory.h"

#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "tsp/core/check.h"
#include "tsp/core/page_arena.h"

namespace tsp {
namespace {

// Ledger blocks >= 1 MiB never reach glibc (page arena). What does: ledger blocks under 1 MiB and
// libraries' own buffers (oneDNN's GEMM packing buffers, ~1.4 MiB per call and thread). glibc's
// defaults would unmap those after every call and trim the heap top whenever 128 KiB are free,
// so each step faulted them in again. Up to 4 MiB they now stay in the heap, and the heap keeps
// up to 64 MiB of free top: steady-state steps reuse them. The RSS cross-check is unaffected:
// they are either under 1 MiB (a few MiB per step at most) or outside the ledger anyway.
const bool kMallocConfigured = [] {
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  return true;
}();

#if defined(__SANITIZE_ADDRESS__)
// ASan must see every buffer through malloc to find overflows and use after free; reuse would
// hide the latter. Sanitized builds therefore allocate everything with aligned_alloc.
constexpr bool kArenaEnabled = false;
#else
constexpr bool kArenaEnabled = true;
#endif

// Intentionally never destroyed: buffers held by static objects may be freed during exit.
PageArena& arena() {
  static PageArena* const a = new PageArena;
  return *a;
}

bool from_arena(size_t bytes) { return kArenaEnabled && arena().block_bytes(bytes) >= kArenaMinBlockBytes; }

int64_t read_status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(f, line)) {
    if (line.rfind(prefix, 0) == 0) return std::atoll(line.c_str() + prefix.size());
  }
  return 0;
}

}  // namespace

std::string_view mem_category_name(MemCategory c) {
  switch (c) {
    case MemCategory::weights: return "weights";
    case MemCategory::grads: return "grads";
    case MemCategory::optimizer: return "optimizer";
    case MemCategory::activations: return "activations";
    case MemCategory::kv_cache: return "kv_cache";
    case MemCategory::comm: return "comm";
    case MemCategory::workspace: return "workspace";
  }
  return "?";
}

MemoryLedger& MemoryLedger::process() {
  static MemoryLedger ledger;
  (void)kMallocConfigured;
  return ledger;
}

void MemoryLedger::add(Counter& c, int64_t delta) noexcept {
  const int64_t now = c.live.fetch_add(delta, std::memory_order_relaxed) + delta;
  if (delta >= 0) {
    int64_t peak = c.peak.load(std::memory_order_relaxed);
    while (now > peak && !c.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
}

void* MemoryLedger::allocate(size_t bytes, MemCategory category) {
  if (bytes > static_cast<size_t>(PTRDIFF_MAX) - kTensorAlignment) {
    TSP_THROW(OutOfMemory, "allocation of ", bytes, " bytes for ", mem_category_name(category),
              " exceeds the address space");
  }
  const size_t rounded = (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
  void* p = from_arena(bytes) ? arena().allocate(bytes)  // page aligned
                              : std::aligned_alloc(kTensorAlignment, rounded == 0 ? kTensorAlignment : rounded);
  if (p == nullptr) {
    TSP_THROW(OutOfMemory, "allocation of ", bytes, " bytes for ", mem_category_name(category),
              " failed; ledger: ", report());
  }
  Counter& c = categories_[static_cast<int>(category)];
  c.count.fetch_add(1, std::memory_order_relaxed);
  total_.count.fetch_add(1, std::memory_order_relaxed);
  add(c, static_cast<int64_t>(bytes));
  add(total_, static_cast<int64_t>(bytes));
  return p;
}

void MemoryLedger::deallocate(void* ptr, size_t bytes, MemCategory category) noexcept {
  if (ptr == nullptr) return;
  if (from_arena(bytes)) arena().deallocate(ptr, bytes);
  else std::free(ptr);
  add(categories_[static_cast<int>(category)], -static_cast<int64_t>(bytes));
  add(total_, -static_cast<int64_t>(bytes));
}

MemStats MemoryLedger::stats(MemCategory category) const {
  const Counter& c = categories_[static_cast<int>(category)];
  return {c.live.load(), c.peak.load(), c.count.load()};
}

MemStats MemoryLedger::total() const {
  return {total_.live.load(), total_.peak.load(), total_.count.load(), arena().cached_bytes()};
}

int64_t MemoryLedger::release_cached() noexcept { return arena().release_cached(); }

void MemoryLedger::reset_peaks() noexcept {
  for (Counter& c : categories_) c.peak.store(c.live.load());
  total_.peak.store(total_.live.load());
}

std::string MemoryLedger::report() const {
  std::ostringstream os;
  char buf[128];
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  std::snprintf(buf, sizeof buf, "%-12s %12s %12s\n", "category", "live MiB", "peak MiB");
  os << buf;
  for (int i = 0; i < kNumMemCategories; ++i) {
    const MemStats s = stats(static_cast<MemCategory>(i));
    std::snprintf(buf, sizeof buf, "%-12s %12.2f %12.2f\n",
                  std::string(mem_category_name(static_cast<MemCategory>(i))).c_str(), mib(s.live_bytes),
                  mib(s.peak_bytes));
    os << buf;
  }
  const MemStats t = total();
  std::snprintf(buf, sizeof buf, "%-12s %12.2f %12.2f\n", "total", mib(t.live_bytes), mib(t.peak_bytes));
  os << buf;
  std::snprintf(buf, sizeof buf, "%-12s %12.2f %12s\n", "cached", mib(t.cached_bytes), "-");
  os << buf;
  std::snprintf(buf, sizeof buf, "%-12s %12.2f %12.2f\n", "process RSS", mib(process_rss_bytes()),
                mib(process_peak_rss_bytes()));
  os << buf;
  return os.str();
}

int64_t process_peak_rss_bytes() { return read_status_kib("VmHWM") * 1024; }
int64_t process_rss_bytes() { return read_status_kib("VmRSS") * 1024; }

bool reset_process_peak_rss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

}  // namespace tsp
