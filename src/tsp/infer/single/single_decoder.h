// SingleDecoder: the whole model on one rank as a Decoder (decoder.h): prefill.h's batched
// forward into its own KvCache, then decode_step.h per token.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tsp/infer/single/decode_step.h"
#include "tsp/infer/decoder.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/model/model_weights.h"

namespace tsp::infer {

class SingleDecoder final : public Decoder {
 public:
  // Allocates the cache (batch x capacity positions, all heads, in the weights' dtype) at once.
  // `w` must outlive the decoder.
  SingleDecoder(const model::ModelWeights& w, int64_t batch, int64_t capacity,
                const DecodeOptions& options = {});

  Tensor prefill(const std::vector<std::vector<int32_t>>& prompts) override;
  Tensor decode_step(std::span<const int32_t> tokens) override;
  const KvCache& cache() const override { return cache_; }

 private:
  const model::ModelWeights* w_;
  DecodeOptions options_;
  KvCache cache_;
};

}  // namespace tsp::infer
