// Which parameters one rank holds under a layout: its pipeline stage's layers, each matrix's
// share (1/D for TSP, 1/T for TP, a flat 1/D block for FSDP), replicated norms, embedding, head.
#pragma once

#include <cstdint>

#include "tsp/model/model_config.h"
#include "tsp/plan/layout.h"

namespace tsp::plan {

// Parameter elements held by one rank. Stage s of pp holds layers [s L/pp, (s+1) L/pp); stage 0
// also the embedding, stage pp-1 the final norm and the LM head (with tied embeddings and pp > 1
// the last stage keeps its own copy of the shared matrix, as Megatron does).
struct ParamShare {
  int64_t layers = 0;       // decoder layers on this stage
  int64_t per_layer = 0;    // elements of one layer held: matrix share + norm gains (or FSDP block)
  int64_t layer_norms = 0;  // of which replicated norm gains (2h; 0 under FSDP, which shards them)
  int64_t embedding = 0;    // embedding elements held
  int64_t head = 0;         // LM head elements held (FSDP: the head unit's block, final norm inside)
  int64_t final_norm = 0;   // replicated final norm gain (0 under FSDP)

  int64_t total() const { return layers * per_layer + embedding + head + final_norm; }
  // Norm gains replicated over the model-parallel group, whose gradients TSP sums over tsp.
  int64_t replicated_norms() const { return layers * layer_norms + final_norm; }
};

// The LM head matrix held by the last stage: its own V x h matrix, or with tied embeddings
// nothing extra when pp = 1 and a copy of the embedding when pp > 1.
int64_t head_matrix_on_last_stage(const model::ModelConfig& config, int64_t pp);

// FSDP's flat units (each gathered whole before use, its gradient reduce-scattered):
// one per layer (matrices + norms), the embedding, and the head unit (LM head matrix as above +
// final norm).
int64_t fsdp_layer_unit(const model::ModelConfig& config);
int64_t fsdp_embedding_unit(const model::ModelConfig& config);
int64_t fsdp_head_unit(const model::ModelConfig& config, int64_t pp);

// stage in [0, pp); shard_rank is the rank's coordinate on the weight-sharding axis (it only
// matters for FSDP's balanced blocks when a unit does not split evenly).
ParamShare param_share(const model::ModelConfig& config, const Layout& layout, int64_t stage,
                       int64_t shard_rank = 0);

}  // namespace tsp::plan
