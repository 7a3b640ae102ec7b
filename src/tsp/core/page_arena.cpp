// Page arena implementation: first fit over cached ranges in address order, coalescing on free,
// segments that grow geometrically, and the footprint bound.
#include "tsp/core/page_arena.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

namespace tsp {
namespace {

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

// Maps `bytes` at exactly `hint` (never replacing a mapping), or anywhere when hint is 0.
void* map_pages(uintptr_t hint, size_t bytes) noexcept {
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS | (hint != 0 ? MAP_FIXED_NOREPLACE : 0);
  void* p = ::mmap(reinterpret_cast<void*>(hint), bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (hint != 0 && reinterpret_cast<uintptr_t>(p) != hint) {  // a kernel older than 4.17 took it as a hint
    ::munmap(p, bytes);
    return nullptr;
  }
  return p;
}

}  // namespace

constexpr size_t kMinSegmentBytes = size_t{256} << 20;
constexpr int64_t kSlackDivisor = 32;

PageArena::PageArena() : page_(static_cast<size_t>(::sysconf(_SC_PAGESIZE))) {}

PageArena::~PageArena() { release_cached(); }

std::map<uintptr_t, PageArena::Segment>::iterator PageArena::segment_of(uintptr_t addr) noexcept {
  return std::prev(segments_.upper_bound(addr));
}

// Touching new_pages more pages for a block of s bytes keeps live + cached within the ceiling.
bool PageArena::within_bound(size_t s, size_t new_pages) const noexcept {
  if (new_pages == 0) return true;
  const int64_t ceiling_after = std::max(ceiling_, live_ + static_cast<int64_t>(s));
  return live_ + cached_ + static_cast<int64_t>(new_pages) <= ceiling_after + ceiling_after / kSlackDivisor;
}

void* PageArena::allocate(size_t bytes) noexcept {
  const size_t s = block_bytes(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  if (void* p = try_cut_locked(s)) return p;
  // Nothing fits within the bound: new address space. If touching s new pages beside the cached
  // ranges would lift the footprint above the ceiling, the cached ranges go back first.
  if (!within_bound(s, s)) {
    unmap_smallest_cached_locked(s);
    if (void* p = try_cut_locked(s)) return p;
  }
  if (void* p = map_segment_locked(s)) return p;
  if (cached_ > 0) {  // the address space or overcommit limit: give the cache back and retry
    unmap_cached_locked();
    return map_segment_locked(s);
  }
  return nullptr;
}

void* PageArena::try_cut_locked(size_t s) noexcept {
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const auto seg = segment_of(it->first);
    const bool at_top = it->first + it->second == seg->second.top;
    const size_t room = it->second + (at_top ? seg->second.end - seg->second.top : 0);
    const size_t new_pages = s > it->second ? s - it->second : 0;
    if (room >= s && within_bound(s, new_pages)) return cut_locked(it->first, it->second, s);
  }
  for (auto& [base, seg] : segments_) {
    if (seg.end - seg.top >= s && within_bound(s, s)) {
      const uintptr_t start = seg.top;
      seg.top += s;
      ++seg.live_blocks;
      live_ += static_cast<int64_t>(s);
      ceiling_ = std::max(ceiling_, live_);
      return reinterpret_cast<void*>(start);
    }
  }
  return nullptr;
}

// Hands out [start, start + s) from the cached range [start, start + range) (growing into the
// segment's untouched rest when s > range); what is left of the range stays cached.
void* PageArena::cut_locked(uintptr_t start, size_t range, size_t s) noexcept {
  free_.erase(start);
  auto seg = segment_of(start);
  if (range > s) free_.emplace(start + s, range - s);
  else seg->second.top = std::max(seg->second.top, start + s);
  ++seg->second.live_blocks;
  cached_ -= static_cast<int64_t>(std::min(range, s));
  live_ += static_cast<int64_t>(s);
  ceiling_ = std::max(ceiling_, live_);
  return reinterpret_cast<void*>(start);
}

// A new segment of max(s, 256 MiB, the arena's mapped size) so that it grows geometrically; its
// first s bytes are the block. Extends the highest segment in place when the kernel allows.
void* PageArena::map_segment_locked(size_t s) noexcept {
  const size_t want = block_bytes(std::max({s, kMinSegmentBytes, static_cast<size_t>(mapped_)}));
  if (!segments_.empty()) {
    auto last = std::prev(segments_.end());
    if (map_pages(last->second.end, want) != nullptr) {
      ++mappings_;
      mapped_ += static_cast<int64_t>(want);
      last->second.end += want;
      if (void* p = try_cut_locked(s)) return p;
    }
  }
  for (const size_t size : {want, s}) {
    void* p = map_pages(0, size);
    if (p == nullptr) continue;
    ++mappings_;
    mapped_ += static_cast<int64_t>(size);
    const uintptr_t base = reinterpret_cast<uintptr_t>(p);
    segments_.emplace(base, Segment{base + size, base + s, 1});
    live_ += static_cast<int64_t>(s);
    ceiling_ = std::max(ceiling_, live_);
    return p;
  }
  return nullptr;
}

void PageArena::deallocate(void* ptr, size_t bytes) noexcept {
  if (ptr == nullptr) return;
  const size_t s = block_bytes(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  --segment_of(reinterpret_cast<uintptr_t>(ptr))->second.live_blocks;
  live_ -= static_cast<int64_t>(s);
  cached_ += static_cast<int64_t>(s);
  insert_free_locked(reinterpret_cast<uintptr_t>(ptr), s);
}

// Coalesces with cached neighbours in the same segment (a range never spans two segments, so
// releasing a segment with no live blocks never unmaps a block of another).
void PageArena::insert_free_locked(uintptr_t start, size_t bytes) noexcept {
  const auto seg = segment_of(start);
  const uintptr_t seg_base = seg->first, seg_end = seg->second.end;
  auto next = free_.lower_bound(start);
  if (next != free_.end() && start + bytes == next->first && next->first < seg_end) {
    bytes += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    const auto prev = std::prev(next);
    if (prev->first + prev->second == start && prev->first >= seg_base) {
      prev->second += bytes;
      return;
    }
  }
  free_.emplace_hint(next, start, bytes);
}

// Unmaps cached ranges, smallest first (fragments are the least likely to fit a later request),
// until s new pages fit under the ceiling; the layout of the rest stays as the next step expects.
void PageArena::unmap_smallest_cached_locked(size_t s) noexcept {
  std::vector<std::pair<size_t, uintptr_t>> by_size;
  by_size.reserve(free_.size());
  for (const auto& [start, bytes] : free_) by_size.emplace_back(bytes, start);
  std::sort(by_size.begin(), by_size.end());
  for (const auto& [bytes, start] : by_size) {
    if (within_bound(s, s)) break;
    ::munmap(reinterpret_cast<void*>(start), bytes);
    free_.erase(start);
    cached_ -= static_cast<int64_t>(bytes);
  }
}

void PageArena::unmap_cached_locked() noexcept {
  for (const auto& [start, bytes] : free_) ::munmap(reinterpret_cast<void*>(start), bytes);
  free_.clear();
  cached_ = 0;
}

int64_t PageArena::release_cached() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t released = cached_;
  unmap_cached_locked();
  ceiling_ = live_;  // from here the footprint is bounded by the live bytes to come
  for (auto it = segments_.begin(); it != segments_.end();) {
    Segment& seg = it->second;
    if (seg.live_blocks == 0) {
      ::munmap(reinterpret_cast<void*>(it->first), seg.end - it->first);
      mapped_ -= static_cast<int64_t>(seg.end - it->first);
      it = segments_.erase(it);
      continue;
    }
    ::munmap(reinterpret_cast<void*>(seg.top), seg.end - seg.top);
    mapped_ -= static_cast<int64_t>(seg.end - seg.top);
    seg.end = seg.top;
    ++it;
  }
  return released;
}

int64_t PageArena::cached_bytes() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

int64_t PageArena::live_bytes() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return live_;
}

int64_t PageArena::new_mappings() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return mappings_;
}

}  // namespace tsp
