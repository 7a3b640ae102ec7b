// Sampler: candidates sorted only as far as top-k / top-p need, probabilities in double relative
// to the largest logit (no overflow at small temperatures), inverse-CDF draw.
#include "tsp/infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "tsp/core/check.h"

namespace tsp::infer {

namespace {

// Higher logit first; equal logits: lower id first (deterministic ties).
bool more_likely(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

double uniform53(Rng& rng) { return static_cast<double>(rng.next_u64() >> 11) * 0x1.0p-53; }

}  // namespace

void validate(const SamplingOptions& o) {
  TSP_CHECK(std::isfinite(o.temperature) && o.temperature >= 0.f,
            "temperature must be finite and >= 0 (0 = greedy), got ", o.temperature);
  TSP_CHECK(o.top_k >= 0, "top-k must be >= 0 (0 = off), got ", o.top_k);
  TSP_CHECK(o.top_p > 0.f && o.top_p <= 1.f, "top-p must be in (0, 1] (1 = off), got ", o.top_p);
}

int32_t argmax(std::span<const float> logits) {
  TSP_CHECK(!logits.empty(), "argmax: empty logits");
  size_t best = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    TSP_CHECK(!std::isnan(logits[i]), "sampling: logit ", i, " is NaN");
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplingOptions& options, int64_t sequences) : options_(options) {
  validate(options);
  TSP_CHECK(sequences > 0, "Sampler: sequences must be positive, got ", sequences);
  for (int64_t b = 0; b < sequences; ++b) rngs_.emplace_back(options.seed, static_cast<uint64_t>(b));
}

int32_t Sampler::sample(std::span<const float> logits, int64_t seq) {
  TSP_CHECK(seq >= 0 && seq < static_cast<int64_t>(rngs_.size()), "Sampler: sequence ", seq,
            " outside [0, ", rngs_.size(), ")");
  const int32_t best = argmax(logits);  // also rejects NaN
  TSP_CHECK(logits[static_cast<size_t>(best)] > -INFINITY, "sampling: every logit is -inf");
  if (is_greedy()) return best;

  const auto vocab = static_cast<int64_t>(logits.size());
  candidates_.clear();
  for (int64_t i = 0; i < vocab; ++i) candidates_.emplace_back(logits[i], static_cast<int32_t>(i));
  // Sorted prefix: the k kept by top-k; all of them when top-p must walk them in order.
  const int64_t k = options_.top_k > 0 ? std::min(options_.top_k, vocab) : vocab;
  if (k < vocab || options_.top_p < 1.f) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + k, candidates_.end(), more_likely);
  }
  candidates_.resize(static_cast<size_t>(k));

  // Unnormalised probabilities exp((l - l_max) / T) in double: no overflow for any T > 0.
  const double inv_t = 1.0 / options_.temperature, top = logits[static_cast<size_t>(best)];
  std::vector<double> weight(candidates_.size());
  double total = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    weight[i] = std::exp((static_cast<double>(candidates_[i].first) - top) * inv_t);
    total += weight[i];
  }
  size_t kept = candidates_.size();
  if (options_.top_p < 1.f) {
    double cum = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      cum += weight[i];
      if (cum >= options_.top_p * total) {
        kept = i + 1;
        total = cum;
        break;
      }
    }
  }
  const double u = uniform53(rngs_[static_cast<size_t>(seq)]) * total;
  double cum = 0;
  for (size_t i = 0; i + 1 < kept; ++i) {
    cum += weight[i];
    if (u < cum) return candidates_[i].second;
  }
  return candidates_[kept - 1].second;
}

std::vector<int32_t> Sampler::sample(const Tensor& logits) {
  TSP_CHECK_SHAPE(logits.rank() == 2 && logits.dim(0) <= static_cast<int64_t>(rngs_.size()),
                  "Sampler: logits must be [B, V] with B <= ", rngs_.size(), ", got ",
                  logits.describe());
  const Tensor rows =
      logits.dtype() == DType::f32 && logits.is_contiguous() ? logits : logits.to_f32();
  const float* p = rows.data<float>();
  const int64_t vocab = rows.dim(1);
  std::vector<int32_t> out;
  for (int64_t b = 0; b < rows.dim(0); ++b) {
    out.push_back(sample(std::span<const float>(p + b * vocab, static_cast<size_t>(vocab)), b));
  }
  return out;
}

}  // namespace tsp::infer
