// One decode step: every sequence of the batch advances by one token. Its K and V are appended to
// the KV cache and the logits of the following token are returned.
#pragma once

#include <cstdint>
#include <span>

#include "tsp/core/tensor.h"
#include "tsp/infer/decoder.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/model/model_weights.h"

namespace tsp::infer {

// tokens: one id per sequence (size cache.batch()), ids in [0, V). The token of sequence b takes
// position p_b = cache.length(b) and slot p_b (single rank: slot == position); every sequence must
// have a free slot (length < capacity), else InvalidArgument naming the sequence and capacity.
// Per layer, for the B new tokens (T = B rows):
//   n = rmsnorm(x); [q | k | v] = n @ [Wq; Wk; Wv]^T; RoPE(q, k) at p_b; cache[b, p_b] = k, v;
//   a_b = softmax(q_b K_b^T / sqrt(d)) V_b over sequence b's slots; x += a Wo^T;
//   x += down(silu(gate(n)) * up(n)) with n = rmsnorm(x);
// then logits = rmsnorm(x) * model.norm @ lm_head^T, returned as [B, V] f32.
// Validated before anything is allocated or written.
Tensor decode_step(const model::ModelWeights& w, std::span<const int32_t> tokens, KvCache& cache,
                   const DecodeOptions& options = {});

}  // namespace tsp::infer
