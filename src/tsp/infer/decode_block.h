// The decoder block's math for the B new tokens of a decode step, written once: a head group's
// q/k/v projection, its attention against its KV cache and an MLP slice, each returning its f32
// contribution to the residual (the whole model is the group of all heads and the slice of all F
// rows). The single-rank decoder adds it; the TP decoder sums it over its group first; the TSP
// decoder uses the projection and the MLP (its attention runs over a sequence-sharded cache).
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/kernels/rope.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::infer {

// One layer's weights as the decode block reads them, in HF [out, in] layout.
struct DecodeLayerViews {
  Tensor input_norm, post_norm;   // [h]
  Tensor q, k, v;                 // the group's rows: [heads d, h], [kv_heads d, h], [kv_heads d, h]
  Tensor q_bias, k_bias, v_bias;  // their biases (Qwen2), else undefined
  Tensor o;                       // the group's o_proj columns [h, heads d]
  Tensor gate, up;                // the slice's rows [f, h]
  Tensor down;                    // the slice's down_proj columns [h, f]
  int64_t heads = 0, kv_heads = 0;
};
// The whole layer (every head, every MLP row).
DecodeLayerViews whole_layer_views(const model::ModelConfig& config, const model::LayerWeights& w);
// This rank's head group and MLP slice of `layer` (views into the packed shards).
DecodeLayerViews shard_layer_views(const parallel::TpWeights& w, int64_t layer);

// [B, (heads + 2 kv_heads) d]: q | k | v of the group for the B rows of x (rmsnorm with the input
// gain, one decode_linear per projection, the biases before RoPE), q and k rotated by `rope` (a
// table of B positions, one per row: the rows seen as one "sequence" [1, B, heads, d]).
Tensor decode_qkv(const model::ModelConfig& config, const DecodeLayerViews& w, const kernels::RopeTable& rope,
                  const Tensor& x);

// The group's attention for the B new tokens, [B, h] f32 (before any sum over a group): q|k|v,
// each sequence's k and v into its last claimed slot of `cache` (the group's heads), the query
// against the sequence's slots (cache_attention, kv_parts ranges), then the o_proj columns.
Tensor decode_attention_block(const model::ModelConfig& config, const DecodeLayerViews& w,
                              const kernels::RopeTable& rope, const Tensor& pos, const Tensor& x, KvCache& cache,
                              int64_t layer, int64_t kv_parts);

// The MLP slice for the B new tokens, [B, h] f32: down(silu(gate(n)) * up(n)), n = rmsnorm(x).
Tensor decode_mlp_block(const model::ModelConfig& config, const DecodeLayerViews& w, const Tensor& x);

// x [B, h] (f32 or bf16, contiguous) += y [B, h] f32, rounded once into x's dtype (the rounding
// point of a GEMM with beta = 1 into the residual, as the forward's).
void add_f32_into(const Tensor& x, const Tensor& y_f32);

}  // namespace tsp::infer
