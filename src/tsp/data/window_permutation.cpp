// A keyed Feistel permutation of [0, n) with cycle walking (see window_permutation.h).
#include "tsp/data/window_permutation.h"

#include "tsp/core/check.h"

namespace tsp::data {

namespace {

// splitmix64's finaliser: every input bit affects every output bit.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

WindowPermutation WindowPermutation::identity(int64_t n) {
  TSP_CHECK(n >= 0, "permutation size ", n, " is negative");
  WindowPermutation p;
  p.n_ = static_cast<uint64_t>(n);
  return p;
}

WindowPermutation::WindowPermutation(int64_t n, Rng& rng) : WindowPermutation(identity(n)) {
  identity_ = false;
  while (half_bits_ < 32 && (uint64_t{1} << (2 * half_bits_)) < n_) ++half_bits_;
  half_mask_ = half_bits_ == 32 ? 0xFFFFFFFFull : (uint64_t{1} << half_bits_) - 1;
  for (uint64_t& k : keys_) k = rng.next_u64();
}

uint64_t WindowPermutation::encrypt(uint64_t x) const {
  uint64_t left = (x >> half_bits_) & half_mask_, right = x & half_mask_;
  for (uint64_t k : keys_) {
    const uint64_t next = left ^ (mix64(right ^ k) & half_mask_);
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

int64_t WindowPermutation::operator()(int64_t i) const {
  TSP_CHECK(i >= 0 && static_cast<uint64_t>(i) < n_, "window ", i, " outside [0, ", n_, ")");
  if (identity_) return i;
  uint64_t x = static_cast<uint64_t>(i);
  do x = encrypt(x);
  while (x >= n_);
  return static_cast<int64_t>(x);
}

}  // namespace tsp::data
