// Attention of each sequence's newest query against the slots it holds in a KV cache: the
// per-rank partial (output + log-sum-exp) of the sharded decode, merged by log-sum-exp.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"
#include "tsp/infer/kv_cache.h"

namespace tsp::infer {

// q: [B, 1, H, d] (one query per sequence, after RoPE; unit inner stride, any other strides),
// q_pos: [B] i32 its global positions. For each sequence b, attends q[b] to the filled slots of
// `cache` at `layer` (keys visible iff their position <= q_pos[b]) and writes
//   o   [B, 1, H, d] (the cache's dtype)   softmax-weighted values of the keys seen
//   lse [B, H, 1] f32                      log-sum-exp of the scaled scores (-inf: no key seen)
// so that partials over disjoint slot sets (the ranks of a sharded cache) combine exactly with
// kernels::merge_partials. `parts` > 1 splits each sequence's slots into that many contiguous
// ranges, attends each separately and merges them the same way (what a sharded decode does with
// the ranks' partials; bf16 partials are rounded to bf16 before the merge, as they would be on
// the wire). decode_attention.h does the work.
void cache_attention(const Tensor& q, const Tensor& q_pos, const KvCache& cache, int64_t layer,
                     Tensor& o, Tensor& lse, int64_t parts = 1);

}  // namespace tsp::infer
