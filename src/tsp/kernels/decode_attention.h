// The decode attention kernel: one query per sequence against cached keys and values read in
// place (no packing), online softmax in fp32. Flash attention's contract restricted to Sq = 1.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

// Same contract as kernels::flash_attention_forward (kernels/flash_attention.h) with causal
// masking and one query row:
//   q, o [B, 1, H, d]; k, v [B, Sk, Hkv, d] (query head h uses kv head h / (H / Hkv)); every view
//   with unit inner stride, other strides free (k, v may be slot ranges of a KV cache);
//   q_pos [1], k_pos [Sk] i32: key j is visible iff k_pos[j] <= q_pos[0] (any order; kEmptySlot =
//   INT32_MAX is never visible); lse [B, H, 1] f32 natural-log log-sum-exp of the scaled scores.
//   A row that sees no key gets o = 0 and lse = -inf (the empty partial of merge_partials).
//   dtypes: q, k, v, o all f32 or all bf16 (fp32 math); scale 1/sqrt(d).
// Why not flash attention: with Sq = 1 it would pack every key and value of the cache into fp32
// panels on every call, which costs more than the attention itself; here each cached row is read
// once per kv head and shared by the head's H / Hkv query heads. Parallel over (batch, kv head)
// with OpenMP when there is enough work; the result does not depend on the thread count.
// (A candidate for kernels/ next to flash attention; tested against it.)
// window > 0: keys W or more positions older than the query are invisible too (Mistral's sliding
// window, as kernels::FlashAttentionOptions::window).
void decode_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                      const Tensor& k_pos, Tensor& o, Tensor& lse, int64_t window = 0);

}  // namespace tsp::kernels
