// What every sharded layout (TSP, the TP/SP/TP+SP/DP baselines, FSDP over SP) has alike: its
// weights type's shards of this rank's pipeline stage and their f32 gradients as ParamShard
// lists, the replica group, and whether this replica writes the checkpoints.
#pragma once

#include <utility>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/check.h"
#include "tsp/parallel/layout.h"

namespace tsp::parallel {

// Weights: TpWeights or FsdpSpWeights (config(), degree(), rank(), stage(), params(), zero(), and a
// constructor (config, dtype, degree, rank, category, stage) for the zero gradients).
template <class Weights>
class ShardedLayout : public Layout {
 public:
  const std::vector<ParamShard>& weights() const final { return weight_shards_; }
  const std::vector<ParamShard>& grads() const final { return grad_shards_; }
  // The model-parallel axis (its ranks hold every parameter of the stage once), or across
  // pipeline stages pp x that axis (pipeline_replica_group).
  comm::Communicator& replica_group() final { return pipeline_group_.valid() ? pipeline_group_ : *inner_; }
  bool primary() const final { return primary_; }
  void zero_grads() final { grads_.zero(); }
  const model::ModelConfig& model_config() const final { return weights_.config(); }

 protected:
  // inner: the axis the weights are sharded over; pipeline_group: pipeline_replica_group(mesh,
  // inner axis) (invalid without a pipeline); weights: this rank's shards of stage.range.
  ShardedLayout(PipelineStage stage, comm::Communicator& inner, comm::Communicator pipeline_group,
                bool primary, Weights&& weights)
      : Layout(stage),
        inner_(&inner),
        pipeline_group_(std::move(pipeline_group)),
        primary_(primary),
        weights_(checked(std::move(weights), inner, stage)),
        grads_(weights_.config(), DType::f32, weights_.degree(), weights_.rank(), MemCategory::grads,
               weights_.stage()),
        weight_shards_(weights_.params()),
        grad_shards_(grads_.params()) {
  }

  // `w` itself, once it is known to be this rank's shards (degree and rank of `inner`, layers of
  // `stage`): checked before the gradients are allocated.
  static Weights&& checked(Weights&& w, const comm::Communicator& inner, const PipelineStage& stage) {
    TSP_CHECK(w.degree() == inner.size() && w.rank() == inner.rank(), "layout: the weights are the shards of rank ",
              w.rank(), " of ", w.degree(), ", but this is rank ", inner.rank(), " of ", inner.size(), " on ",
              inner.name());
    TSP_CHECK(w.stage() == stage.range, "layout: the weights hold layers [", w.stage().first_layer, ", ",
              w.stage().end_layer, "), this rank's stage runs [", stage.range.first_layer, ", ",
              stage.range.end_layer, ")");
    return std::move(w);
  }

  comm::Communicator* inner_;
  comm::Communicator pipeline_group_;  // pp x inner when pipelined, else invalid
  bool primary_;
  Weights weights_, grads_;
  std::vector<ParamShard> weight_shards_, grad_shards_;
};

}  // namespace tsp::parallel
