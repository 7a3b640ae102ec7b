// Prefill: the model's forward pass over a batch of prompts that keeps every layer's K (after RoPE)
// and V in the KV cache and returns the logits of each prompt's last token.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/infer/prompt_batch.h"
#include "tsp/model/model_weights.h"

namespace tsp::infer {

// prompts: B token lists (B == cache.batch()), each non-empty, ids in [0, V), each at most
// cache.capacity() tokens. cache: empty (every length 0), of the weights' config and dtype.
//
// Prompts of different lengths are LEFT-ALIGNED in one [B, S_max] batch (S_max = the longest
// prompt), padded at the end with kPrefillPadId, and run with the shared positions 0..S_max-1.
// Exact for every real token: a padding key sits at a position after every real query of its row,
// so causal attention never sees it. Afterwards slot s of sequence b holds position s for
// s < len_b and kEmptySlot for padding, and length(b) = len_b; the next decode step overwrites
// slot len_b. Cost: B * S_max tokens (sort prompts by length into batches to limit the waste).
//
// Returns logits [B, V] f32 of position len_b - 1 of each prompt. Everything is validated before
// anything is allocated (InvalidArgument naming the prompt and the numbers).
Tensor prefill(const model::ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
               KvCache& cache);

}  // namespace tsp::infer
