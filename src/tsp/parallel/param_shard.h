// How one rank's piece of a parameter maps onto the logical (HF) tensor: replicated, a range of
// rows, or a range of columns. Layout-independent code (optimizer, clipping, checkpoints, tests)
// works on lists of ParamShard and never needs to know which layout produced them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"

namespace tsp::parallel {

enum class ShardKind : uint8_t {
  replicated,  // every rank of the group holds the whole tensor (norm gains)
  rows,        // rows [offset, offset + extent) of a [R, C] tensor (or of a 1-D tensor)
  cols,        // columns [offset, offset + extent) of a [R, C] tensor
};

struct ParamShard {
  std::string name;  // HF name, e.g. "model.layers.0.self_attn.o_proj.weight"
  Shape full_shape;  // the logical tensor's shape
  ShardKind kind = ShardKind::replicated;
  int64_t offset = 0;  // first row/column held (0 for replicated)
  int64_t extent = 0;  // rows/columns held (full size for replicated)
  Tensor local;        // this rank's piece: [extent, C], [R, extent] or full_shape; a view
  // A copy of a piece that another pipeline stage owns (the tied embedding, which the last stage
  // holds as its LM head): its gradient is summed with the owner's and it is updated like the
  // owner's, but the gradient norm and checkpoints skip it (replica_view).
  bool mirror = false;

  // The shard's shape inside the logical tensor, e.g. [R, extent] for cols.
  Shape local_shape() const;
  // The view of a full logical tensor that this shard corresponds to.
  Tensor view_of_full(const Tensor& full) const;
};

// local := the shard's part of `full` (same logical shape; dtype converted).
void copy_shard_from_full(const ParamShard& shard, const Tensor& full);
// The shard's part of `full` := local.
void copy_shard_to_full(const ParamShard& shard, const Tensor& full);

// Each shard := its part of model::initial_value of its tensor, the shards listed in
// model::weight_specs(config) order (every layout's params() order; a pipeline stage's subset):
// exactly the shards of ModelWeights::initialize(config, dtype, seed), one logical tensor in
// memory at a time.
void initialize_shards(const model::ModelConfig& config, uint64_t seed,
                       const std::vector<ParamShard>& shards);

// The shard list of a replica group that spans pipeline stages, for the operations over the whole
// group (gradient norm, checkpoint writing), which need every rank to list every tensor of
// model::weight_specs(config), in order, and each element held exactly once over the group:
// - this rank's row and column pieces as they are;
// - a replicated tensor (a norm gain, held by every rank of its stage's inner group) becomes a
//   row piece: whole on the inner group's rank 0 (`counts_replicated`), empty elsewhere;
// - mirrors and the tensors of other stages become empty row pieces (extent 0, a [0, ...] local
//   of `mine`'s dtype).
// The locals are views of `mine`'s. `mine` must be a subset of the specs in their order.
std::vector<ParamShard> replica_view(const model::ModelConfig& config, const std::vector<ParamShard>& mine,
                                     bool counts_replicated);

// Sum of local numel over the shards.
int64_t local_elements(const std::vector<ParamShard>& shards);

}  // namespace tsp::parallel
