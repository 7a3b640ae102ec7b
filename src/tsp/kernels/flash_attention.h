// Causal flash attention (forward and backward) on the CPU: tiled, online softmax, fp32 math,
// position-based masking with block skipping, GQA. This is the attention kernel of every layout
// (TSP, SP, TP, DP) and of decode; see docs/spec §4.1, §5 and §6 for how its inputs are sharded.
//
// Layout (every tensor a view with unit inner stride; other strides are free, so q/k/v may be
// column slices of one fused projection output [B, S, (H + 2 Hkv) d]):
//   q, o, dq     [B, Sq, H, d]
//   k, v, dk, dv [B, Sk, Hkv, d]     query head hq uses kv head hq / (H / Hkv)
//   lse          [B, H, Sq] f32      natural-log log-sum-exp of the scaled scores of each row
//   q_pos [Sq], k_pos [Sk] i32       global token positions, shared by the batch
// Masking (causal): key j is visible to query i iff k_pos[j] <= q_pos[i] (and, with a sliding
// window W, q_pos[i] - k_pos[j] < W). Positions may be in any
// order (zigzag shards, keys gathered in rank order, a KV cache; padding keys at INT32_MAX are never
// visible). Non-causal attention sees every key and ignores positions. A query row that sees no
// key gets o = 0 and lse = -inf, which merge_partials (softmax_merge.h) treats as an empty partial.
// Undefined (default-constructed) position tensors mean 0, 1, ..., S-1.
//
// dtypes: q, k, v, o (and d_o) all f32 or all bf16 (bf16 storage, fp32 math); lse f32; gradients
// dq, dk, dv each f32 or bf16 independently (f32 dK/dV are the partial sums to reduce-scatter).
// Work: query tiles x key tiles; a tile pair whose keys are all masked is skipped, one whose keys
// are all visible runs unmasked, only the rest is masked element-wise. Scratch comes from the
// accounting allocator (MemCategory::workspace), once per call, O(S d) per head, never O(S^2).
// Parallel over (head, query tile) in the forward and key tiles in the backward with OpenMP;
// results do not depend on the thread count (each output element has one fixed summation order,
// except dq, which sums per-thread partials in a fixed order: bitwise equal at a fixed count).
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp::kernels {

struct FlashAttentionOptions {
  bool causal = true;
  // Sliding window (Mistral's sliding_window): > 0 hides keys W or more positions older than the
  // query, so key j is visible to query i iff 0 <= q_pos[i] - k_pos[j] < window; tile pairs wholly
  // outside the window are skipped (work O(S W)). 0: none. Needs causal.
  int64_t window = 0;
  float scale = 0.f;              // softmax scale; 0 means 1/sqrt(d). Must be finite and >= 0.
  bool accumulate_grads = false;  // backward: dq/dk/dv += gradient instead of =
};

// Tile accounting of one call (summed over batch and heads), to check block skipping.
struct FlashAttentionStats {
  int64_t tile_pairs = 0;  // (query tile, key tile) pairs considered
  int64_t computed = 0;    // pairs computed (full + masked)
  int64_t masked = 0;      // of those, pairs that needed the element-wise mask
  int64_t skipped = 0;     // pairs skipped because every key was masked
  int64_t block_q = 0;     // query rows per tile
  int64_t block_k = 0;     // keys per tile
};

// o = softmax(scale * q k^T + mask) v per head; writes o and lse.
void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& q_pos, const Tensor& k_pos, Tensor& o, Tensor& lse,
                             const FlashAttentionOptions& options = {},
                             FlashAttentionStats* stats = nullptr);

// Gradients of the forward above given d_o = dL/do, from the saved o and lse (FlashAttention-2:
// P is recomputed from lse, D_i = rowsum(dO * O)). lse and o may come from a merge of several
// partials (the global softmax): then dq/dk/dv are this key set's exact share of the gradient.
void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                              const Tensor& d_o, const Tensor& lse, const Tensor& q_pos,
                              const Tensor& k_pos, Tensor& dq, Tensor& dk, Tensor& dv,
                              const FlashAttentionOptions& options = {},
                              FlashAttentionStats* stats = nullptr);

}  // namespace tsp::kernels
