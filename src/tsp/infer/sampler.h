// Next-token sampling from logits: greedy, temperature, top-k, top-p (nucleus), with a seeded,
// platform-independent random stream per sequence (core/random.h).
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "tsp/core/random.h"
#include "tsp/core/tensor.h"

namespace tsp::infer {

// Definitions (applied in this order to one row of logits l over the vocabulary):
//   greedy (or temperature == 0): the first index of the largest logit; nothing is drawn.
//   temperature T > 0: p_i proportional to exp(l_i / T) (T < 1 sharpens, T > 1 flattens).
//   top_k = k > 0: keep only the k largest logits (ties broken towards the lower id).
//   top_p = p < 1: of what is left, keep the smallest set of most likely tokens whose probability
//     sums to at least p (at least one token), then renormalise.
//   One uniform draw u in [0, 1) (53 bits) picks the token by inverse CDF over the kept tokens in
//   decreasing probability order. A token outside the kept set is never returned.
struct SamplingOptions {
  bool greedy = false;      // argmax; the other fields are ignored
  float temperature = 1.f;  // finite, >= 0; 0 means greedy
  int64_t top_k = 0;        // >= 0; 0 keeps every token
  float top_p = 1.f;        // in (0, 1]; 1 keeps every token
  uint64_t seed = 0;        // sequence b draws from Rng(seed, b)
};

// Throws InvalidArgument naming the offending value.
void validate(const SamplingOptions& options);

// The first index of the largest value. Throws InvalidArgument on an empty row or a NaN.
int32_t argmax(std::span<const float> logits);

class Sampler {
 public:
  // `sequences`: how many independent streams (one per sequence of a batch). Sequence b's draws
  // depend only on (seed, b) and its own logits, never on the other sequences of the batch.
  explicit Sampler(const SamplingOptions& options, int64_t sequences = 1);

  const SamplingOptions& options() const { return options_; }
  bool is_greedy() const { return options_.greedy || options_.temperature == 0.f; }

  // The next token of sequence `seq` from one row of logits [V]. NaN logits are refused
  // (InvalidArgument); -inf logits have probability 0 (a row of only -inf is refused).
  int32_t sample(std::span<const float> logits, int64_t seq = 0);
  // One token per row of logits [B, V] f32 (row b is sequence b; B <= sequences).
  std::vector<int32_t> sample(const Tensor& logits);

 private:
  SamplingOptions options_;
  std::vector<Rng> rngs_;
  std::vector<std::pair<float, int32_t>> candidates_;  // (logit, id), reused across calls
};

}  // namespace tsp::infer
