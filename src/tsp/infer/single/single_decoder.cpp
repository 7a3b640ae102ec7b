// SingleDecoder: forwards to the single-rank prefill and decode step over its own cache.
#include "tsp/infer/single/single_decoder.h"

#include "tsp/infer/single/prefill.h"

namespace tsp::infer {

SingleDecoder::SingleDecoder(const model::ModelWeights& w, int64_t batch, int64_t capacity,
                             const DecodeOptions& options)
    : w_(&w), options_(options), cache_(w.config(), w.dtype(), batch, capacity) {}

Tensor SingleDecoder::prefill(const std::vector<std::vector<int32_t>>& prompts) {
  return infer::prefill(*w_, prompts, cache_);
}

Tensor SingleDecoder::decode_step(std::span<const int32_t> tokens) {
  return infer::decode_step(*w_, tokens, cache_, options_);
}

}  // namespace tsp::infer
