// Wall time a layout spends blocked on communication (waiting for a prefetched shard, a blocking
// all-gather, a reduce): the "comm wait" of the progress line and of the benchmarks, in total and
// per site, so the time still exposed can be attributed. Transfers that complete behind compute
// cost nothing here, which is the point of the TSP schedule.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace tsp::parallel {

// Where a rank waited. One site per kind of transfer, whichever layout issues it.
enum class CommSite : uint8_t {
  weight_fetch,       // weight shards arriving: TSP broadcast / ring, FSDP all-gather
  kv_gather,          // K/V all-gather along the sequence (forward, and recompute)
  kv_reduce_scatter,  // dK/dV partial sums back to the token owners (backward)
  grad_reduce,        // weight-gradient sums onto their owners: TSP reduce / ring, FSDP reduce-scatter
  activations,        // TP all-reduces / all-gathers of activations
  vocab,              // embedding and loss exchanges of the vocabulary-parallel head
  replica_sum,        // gradient sums over data-parallel (or SP) replicas
  pipeline,           // activations and their gradients between pipeline stages
  other,
};
inline constexpr int kNumCommSites = 9;
std::string_view comm_site_name(CommSite site);

struct CommClock {
  double seconds = 0;                            // all sites
  std::array<double, kNumCommSites> by_site{};   // seconds per CommSite

  void add(CommSite site, double s) {
    seconds += s;
    by_site[static_cast<int>(site)] += s;
  }
  // this - earlier, site by site: the waits of one step from two readings.
  CommClock since(const CommClock& earlier) const {
    CommClock d;
    d.seconds = seconds - earlier.seconds;
    for (int i = 0; i < kNumCommSites; ++i) d.by_site[static_cast<size_t>(i)] =
        by_site[static_cast<size_t>(i)] - earlier.by_site[static_cast<size_t>(i)];
    return d;
  }
};

// Adds the lifetime of the scope to clock (no-op for a null clock) under `site`.
class ScopedCommWait {
 public:
  explicit ScopedCommWait(CommClock* clock, CommSite site = CommSite::other)
      : clock_(clock), site_(site),
        t0_(clock ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{}) {}
  ~ScopedCommWait() {
    if (clock_)
      clock_->add(site_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  ScopedCommWait(const ScopedCommWait&) = delete;
  ScopedCommWait& operator=(const ScopedCommWait&) = delete;

 private:
  CommClock* clock_;
  CommSite site_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace tsp::parallel
