// TspKvPlacement: zigzag shares of a padded prompt and the fewest-slots rule for new positions,
// pure arithmetic evaluated identically on every rank.
#include "tsp/infer/tsp/tsp_kv_placement.h"

#include <algorithm>

#include "tsp/core/check.h"

namespace tsp::infer {

TspKvPlacement::TspKvPlacement(int degree, int64_t batch) : degree_(degree) {
  TSP_CHECK(degree >= 1, "TspKvPlacement: degree must be >= 1, got ", degree);
  TSP_CHECK(batch >= 1, "TspKvPlacement: batch must be >= 1, got ", batch);
  counts_.assign(static_cast<size_t>(batch), std::vector<int64_t>(static_cast<size_t>(degree), 0));
}

int64_t TspKvPlacement::prompt_share(int64_t len, int64_t seq_padded, int degree, int rank) {
  TSP_CHECK(degree >= 1 && rank >= 0 && rank < degree, "TspKvPlacement: rank ", rank,
            " outside [0, ", degree, ")");
  TSP_CHECK(len >= 0 && len <= seq_padded && seq_padded % (2 * degree) == 0,
            "TspKvPlacement: a prompt of ", len, " tokens padded to ", seq_padded,
            " (must be >= the prompt and a multiple of 2D = ", 2 * degree, ")");
  const int64_t chunk = seq_padded / (2 * degree);
  auto real_in = [&](int64_t c) { return std::clamp<int64_t>(len - c * chunk, 0, chunk); };
  return real_in(rank) + real_in(2 * degree - 1 - rank);
}

int64_t TspKvPlacement::slots_needed(int64_t len, int64_t total, int64_t seq_padded, int degree) {
  int64_t largest = 0;
  for (int r = 0; r < degree; ++r) largest = std::max(largest, prompt_share(len, seq_padded, degree, r));
  return std::max(largest, (total + degree - 1) / degree);
}

void TspKvPlacement::assign_prompts(std::span<const int64_t> lengths, int64_t seq_padded) {
  TSP_CHECK(static_cast<int64_t>(lengths.size()) == batch(), "TspKvPlacement: ", lengths.size(),
            " prompt lengths for a batch of ", batch());
  for (size_t b = 0; b < lengths.size(); ++b)
    for (int r = 0; r < degree_; ++r)
      counts_[b][static_cast<size_t>(r)] = prompt_share(lengths[b], seq_padded, degree_, r);
}

int TspKvPlacement::owner_of_next(int64_t b) const {
  TSP_CHECK(b >= 0 && b < batch(), "TspKvPlacement: sequence ", b, " outside [0, ", batch(), ")");
  const std::vector<int64_t>& c = counts_[static_cast<size_t>(b)];
  return static_cast<int>(std::min_element(c.begin(), c.end()) - c.begin());  // first minimum
}

int TspKvPlacement::append(int64_t b) {
  const int owner = owner_of_next(b);
  ++counts_[static_cast<size_t>(b)][static_cast<size_t>(owner)];
  return owner;
}

int64_t TspKvPlacement::count(int64_t b, int rank) const {
  TSP_CHECK(b >= 0 && b < batch() && rank >= 0 && rank < degree_, "TspKvPlacement: (sequence ", b,
            ", rank ", rank, ") outside [0, ", batch(), ") x [0, ", degree_, ")");
  return counts_[static_cast<size_t>(b)][static_cast<size_t>(rank)];
}

int64_t TspKvPlacement::length(int64_t b) const {
  int64_t n = 0;
  for (int r = 0; r < degree_; ++r) n += count(b, r);
  return n;
}

}  // namespace tsp::infer
