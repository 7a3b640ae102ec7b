// Decoder: what a generation loop needs from a model placement (single rank, TSP or TP group):
// prefill a batch of prompts into a KV cache, then one token per sequence per step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/infer/kv_cache.h"

namespace tsp::infer {

// Options of every decoder's decode step.
struct DecodeOptions {
  // Split each sequence's cached slots into this many ranges whose attention partials are merged
  // by log-sum-exp (cache_attention.h); 1 = one attention call per sequence and layer.
  int64_t kv_parts = 1;
};

// One placement of the model plus its KV cache. generate() (generate.h) is the only loop over it;
// SingleDecoder (single_decoder.h), TspDecoder (tsp_decode.h) and TpDecoder (tp_decode.h)
// implement it. On a sharded decoder both calls are collective over its group, and every rank
// returns the same logits.
class Decoder {
 public:
  virtual ~Decoder() = default;

  // prompts: B non-empty lists of ids in [0, V), each at most the capacity the decoder was made
  // for (generate() checks both first). Fills the cache; returns the logits [B, V] f32 of each
  // prompt's last token.
  virtual Tensor prefill(const std::vector<std::vector<int32_t>>& prompts) = 0;
  // One token per sequence, at the next position of each; returns the next-token logits [B, V]
  // f32. After prefill().
  virtual Tensor decode_step(std::span<const int32_t> tokens) = 0;
  // This rank's cache (its capacity and bytes are what generate() reports). After prefill().
  virtual const KvCache& cache() const = 0;
};

// Makes a decoder with room for `batch` sequences of `capacity` positions each; generate() calls
// it once, after its checks, so nothing is allocated for input it refuses.
using DecoderFactory = std::function<std::unique_ptr<Decoder>(int64_t batch, int64_t capacity)>;

}  // namespace tsp::infer
