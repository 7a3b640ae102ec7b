// Reuse of large buffers across training steps: a first-fit, address-ordered, coalescing heap of
// mmap'd pages that keeps freed pages mapped, so a step that repeats the last one page-faults ~0 times.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace tsp {

// Blocks of at least this many bytes (after page rounding) come from the arena; smaller ones stay
// in glibc's heap, which reuses them without faults. Equal to the glibc mmap threshold that
// memory.cpp pins, so exactly the buffers that used to be mmap'd and faulted every step move here.
inline constexpr size_t kArenaMinBlockBytes = size_t{1} << 20;

// Layout: segments of address space mapped at least 256 MiB (or the arena's current size) at a
// time; each has a "top" below which pages have been touched. A block is cut from the first cached
// range (in address order) that fits, where a range ending at its segment's top can grow into the
// untouched rest, as a heap grows; else from a segment's untouched rest; else from a new segment.
// A step that repeats the previous one therefore gets the same addresses, all already resident.
// Untouched pages cost address space only, not memory.
//
// Footprint bound: resident bytes (live + cached) never exceed the largest live total the arena
// has had since its cache was last released (its "ceiling"), plus 1/32 of it. Freeing keeps the
// footprint; reusing cached pages keeps it; touching new pages is allowed only up to that bound,
// and when a request cannot be met otherwise cached ranges are unmapped (smallest first) until it
// fits. The 1/32 is fragmentation room: first fit over a layout left by an earlier phase can need
// a few MiB beyond the live peak to settle into a layout that repeats (measured: a 2-layer model
// step needed 2.4% of its 86 MiB; without the room it unmapped and re-faulted 4k pages per step,
// with it 0). So the resident memory the arena adds stays within 3.1% of the ledger's peak, which
// the 5% RSS cross-check absorbs (measured there: +1.5% in all, +3.4% in one run).
//
// Thread safe (one mutex; only blocks >= 1 MiB take it, a handful per layer and step).
class PageArena {
 public:
  PageArena();
  ~PageArena();
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;

  // The page-rounded size a request of `bytes` occupies.
  size_t block_bytes(size_t bytes) const noexcept { return (bytes + page_ - 1) / page_ * page_; }
  // Page aligned, or nullptr if the kernel refuses the mapping (after releasing the cache once).
  void* allocate(size_t bytes) noexcept;
  // `bytes` must be the size passed to allocate().
  void deallocate(void* ptr, size_t bytes) noexcept;
  // Unmaps every cached range and the untouched rest of each segment; returns the cached bytes
  // released.
  int64_t release_cached() noexcept;

  int64_t cached_bytes() const noexcept;  // freed, resident, kept for reuse
  int64_t live_bytes() const noexcept;    // page-rounded bytes of blocks in use
  int64_t new_mappings() const noexcept;  // mmap calls so far

 private:
  struct Segment {
    uintptr_t end = 0;
    uintptr_t top = 0;  // pages in [base, top) have been handed out (touched or holes)
    int64_t live_blocks = 0;
  };
  std::map<uintptr_t, Segment>::iterator segment_of(uintptr_t addr) noexcept;
  void* try_cut_locked(size_t bytes) noexcept;
  void* cut_locked(uintptr_t start, size_t cached_range, size_t bytes) noexcept;
  void* map_segment_locked(size_t bytes) noexcept;
  void insert_free_locked(uintptr_t start, size_t bytes) noexcept;
  void unmap_cached_locked() noexcept;
  void unmap_smallest_cached_locked(size_t bytes) noexcept;
  bool within_bound(size_t bytes, size_t new_pages) const noexcept;

  size_t page_;
  mutable std::mutex mu_;
  std::map<uintptr_t, Segment> segments_;  // by base address
  std::map<uintptr_t, size_t> free_;       // cached ranges by start; coalesced within a segment
  int64_t live_ = 0, cached_ = 0, ceiling_ = 0, mappings_ = 0, mapped_ = 0;
};

}  // namespace tsp
