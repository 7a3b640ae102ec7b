// The order in which an epoch visits its windows: a pseudo-random permutation of [0, n) computed
// index by index in O(1) memory, so a loader's state does not grow with the dataset.
#pragma once

#include <array>
#include <cstdint>

#include "tsp/core/random.h"

namespace tsp::data {

// A keyed 4-round Feistel network on the smallest domain of 2h bits holding n (h >= 1), walked
// back into [0, n) ("cycle walking": re-encrypt while the value is >= n): a bijection of [0, n)
// (the network is one of [0, 4^h), and walking from a point of [0, n) stops at the first point of
// its cycle inside [0, n), which no other start reaches first). The domain is < 4n, so a step
// costs at most a few rounds on average. Stored: n, h and four 64-bit keys.
class WindowPermutation {
 public:
  WindowPermutation() = default;
  static WindowPermutation identity(int64_t n);
  WindowPermutation(int64_t n, Rng& rng);  // four keys drawn from rng

  int64_t size() const { return static_cast<int64_t>(n_); }
  int64_t operator()(int64_t i) const;  // i in [0, size())

 private:
  uint64_t encrypt(uint64_t x) const;
  uint64_t n_ = 0;
  int half_bits_ = 1;
  uint64_t half_mask_ = 1;
  std::array<uint64_t, 4> keys_{};
  bool identity_ = true;
};

}  // namespace tsp::data
