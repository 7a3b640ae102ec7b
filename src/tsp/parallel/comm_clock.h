// Wall time a layout spends blocked on communication (waiting for a prefetched shard, a blocking
// all-gather, a reduce): the "comm wait" of the progress line and of the benchmarks. Transfers
// that complete behind compute cost nothing here, which is the point of the TSP schedule.
#pragma once

#include <chrono>

namespace tsp::parallel {

struct CommClock {
  double seconds = 0;
};

// Adds the lifetime of the scope to clock->seconds (no-op for a null clock).
class ScopedCommWait {
 public:
  explicit ScopedCommWait(CommClock* clock)
      : clock_(clock), t0_(clock ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{}) {}
  ~ScopedCommWait() {
    if (clock_)
      clock_->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  ScopedCommWait(const ScopedCommWait&) = delete;
  ScopedCommWait& operator=(const ScopedCommWait&) = delete;

 private:
  CommClock* clock_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace tsp::parallel
