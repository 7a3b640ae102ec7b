// Which rank of a TSP group caches each token of each sequence: the real tokens of its zigzag
// chunks after prefill, then every decoded position on the rank holding the fewest of them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tsp::infer {

// Replicated bookkeeping: every rank holds the same table and updates it identically, so the
// owner of a new position is known everywhere without communication.
class TspKvPlacement {
 public:
  // D ranks, B sequences, all empty. Throws InvalidArgument unless degree >= 1 and batch >= 1.
  TspKvPlacement(int degree, int64_t batch);

  int degree() const { return degree_; }
  int64_t batch() const { return static_cast<int64_t>(counts_.size()); }

  // Real tokens (positions < len) that rank `rank` holds after a TSP prefill of a sequence of
  // `len` tokens padded at the end to `seq_padded` (a multiple of 2D): the real part of its zigzag
  // chunks `rank` and 2D-1-rank. Padding positions are not cached anywhere.
  static int64_t prompt_share(int64_t len, int64_t seq_padded, int degree, int rank);
  // Slots every rank needs so that a sequence of `len` prompt tokens can grow to `total` tokens:
  // max(largest prompt share, ceil(total / D)). The fewest-slots rule fills the ranks like water,
  // so the fullest rank never exceeds this.
  static int64_t slots_needed(int64_t len, int64_t total, int64_t seq_padded, int degree);

  // Every sequence b holds lengths[b] prompt tokens spread as prompt_share says.
  void assign_prompts(std::span<const int64_t> lengths, int64_t seq_padded);
  // The rank that stores the next position of sequence b: the one holding the fewest of its
  // tokens, ties to the lowest rank (round-robin once the shares are equal).
  int owner_of_next(int64_t b) const;
  // Assigns the next position of sequence b to owner_of_next(b) and returns that rank.
  int append(int64_t b);

  int64_t count(int64_t b, int rank) const;  // tokens of sequence b that `rank` holds
  int64_t length(int64_t b) const;           // tokens of sequence b on all ranks = next position

 private:
  int degree_;
  std::vector<std::vector<int64_t>> counts_;  // [B][D]
};

}  // namespace tsp::infer
