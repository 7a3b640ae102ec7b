// The TSP layout (TSP.md §3-§5) behind the Layout interface: this rank's TpWeights and f32
// gradient shards, TspTransformer on the rank's zigzag columns of the replica's rows, composed
// with dp and with pipeline stages on the pp axis.
#pragma once

#include <memory>

#include "tsp/comm/mesh.h"
#include "tsp/parallel/sharded_layout.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::parallel {

class TspLayout final : public ShardedLayout<TpWeights> {
 public:
  // tsp: the tsp axis communicator (degree = its size). weights: this rank's shards of the whole
  // model (moved in). primary: this rank's TSP group writes checkpoints (dp coordinate 0).
  TspLayout(comm::Communicator& tsp, const model::TransformerOptions& options, TpWeights weights,
            bool primary = true);
  // On a mesh dp x pp x tsp: weights are this rank's shards of its pipeline stage's layers
  // (PipelineStage::on(mesh pp axis); checked). With pp > 1 the replica group spans the stages
  // (the pp x tsp ranks of this dp coordinate) and is owned here. Collective over the mesh.
  TspLayout(comm::Mesh& mesh, const model::TransformerOptions& options, TpWeights weights);

  std::string describe() const override;
  // The norm gains' gradients summed over tsp.
  void reduce_grads() override;
  int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const override;
  const CommClock& comm_wait() const override { return model_.comm_wait(); }

 protected:
  void check_batch(const Tensor& tokens, const Tensor& targets) const override;
  std::unique_ptr<model::StepStrategy> make_step(const Tensor& tokens, const Tensor& targets,
                                                 bool backward) override;
  bool recompute() const override { return model_.options().recompute; }

 private:
  // The stage and, across stages, the replica group (built after the stage was checked).
  struct StageGroup {
    PipelineStage stage;  // pp null: the whole model
    comm::Communicator group;
  };
  static StageGroup checked_stage_group(comm::Mesh& mesh, const TpWeights& w);
  TspLayout(comm::Communicator& tsp, const model::TransformerOptions& options, TpWeights&& weights,
            bool primary, StageGroup placement);

  TspTransformer model_;
};

}  // namespace tsp::parallel
