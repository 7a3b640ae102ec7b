// TspLayout: zigzag slicing of the replica's rows, TspTransformer, and the one reduction TSP needs
// inside a replica (the replicated norm gains' gradients).
#include "tsp/parallel/tsp_layout.h"

#include "tsp/core/check.h"
#include "tsp/model/token_batch.h"
#include "tsp/parallel/sharded_grad.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

using comm::MeshAxis;

TspLayout::TspLayout(comm::Communicator& tsp, const model::TransformerOptions& options,
                     TpWeights weights, bool primary)
    : TspLayout(tsp, options, std::move(weights), primary, StageGroup{}) {}

TspLayout::StageGroup TspLayout::checked_stage_group(comm::Mesh& mesh, const TpWeights& w) {
  const PipelineStage stage = PipelineStage::on(mesh.axis(MeshAxis::pp), w.config().num_hidden_layers());
  TSP_CHECK(w.stage() == stage.range, "tsp layout: the weights hold layers [", w.stage().first_layer, ", ",
            w.stage().end_layer, "), but pipeline stage ", stage.index(), " of ", stage.stages(), " runs [",
            stage.range.first_layer, ", ", stage.range.end_layer, ")");
  // The collective split after the check: weights built for another stage stop this rank before
  // the split (the job is then aborted; ranks whose weights fit would wait in the split).
  return {stage, pipeline_replica_group(mesh, MeshAxis::tsp)};
}

// `weights` is only bound (TpWeights&&) until the delegated constructor's base moves it, so
// checked_stage_group reads it intact whatever the order of the arguments' evaluation.
TspLayout::TspLayout(comm::Mesh& mesh, const model::TransformerOptions& options, TpWeights weights)
    : TspLayout(mesh.axis(MeshAxis::tsp), options, std::move(weights), mesh.coord(MeshAxis::dp) == 0,
                checked_stage_group(mesh, weights)) {}

TspLayout::TspLayout(comm::Communicator& tsp, const model::TransformerOptions& options, TpWeights&& weights,
                     bool primary, StageGroup placement)
    : ShardedLayout(placement.stage.pp != nullptr ? placement.stage
                                                  : PipelineStage::whole_model(weights.config().num_hidden_layers()),
                    tsp, std::move(placement.group), primary, std::move(weights)),
      model_(tsp, weights_.config(), options) {}

std::string TspLayout::describe() const {
  return "tsp D=" + std::to_string(inner_->size()) + " (rank " + std::to_string(inner_->rank()) + ")" +
         stage_suffix();
}

void TspLayout::check_batch(const Tensor& tokens, const Tensor& targets) const {
  model::check_token_batch(weights_.config(), tokens, targets, "tsp layout");
  validate_tsp(weights_.config(), inner_->size(), tokens.dim(1));
}

std::unique_ptr<model::StepStrategy> TspLayout::make_step(const Tensor& tokens, const Tensor& targets,
                                                          bool backward) {
  const Zigzag z(tokens.dim(1), inner_->size(), inner_->rank());
  return model_.step(weights_, z.take_local(tokens, MemCategory::activations),
                     z.take_local(targets, MemCategory::activations), tokens.dim(1),
                     backward ? &grads_ : nullptr);
}

void TspLayout::reduce_grads() {
  sum_replicated_grads(*inner_, grad_shards_);
}

int64_t TspLayout::predicted_activation_peak_bytes(int64_t batch, int64_t seq) const {
  return tsp_predicted_activation_peak_bytes(weights_.config(), model_.options(), inner_->size(),
                                             batch, seq);
}

}  // namespace tsp::parallel
