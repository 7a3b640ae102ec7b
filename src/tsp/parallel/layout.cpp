// Layout::forward_backward and forward, written once: every layout supplies a micro-batch's step
// strategy, the pipeline schedule runs it through this rank's stage.
#include "tsp/parallel/layout.h"

#include <cmath>

#include "tsp/core/check.h"
#include "tsp/parallel/pipeline_schedule.h"
#include "tsp/parallel/sharded_grad.h"

namespace tsp::parallel {

model::LossSum Layout::forward_backward(std::span<const MicroBatch> micro_batches, float grad_scale) {
  TSP_CHECK(std::isfinite(grad_scale), describe(), ": grad_scale must be finite, got ", grad_scale);
  TSP_CHECK(!micro_batches.empty(), describe(), ": forward_backward needs at least one micro-batch");
  // Every micro-batch before the first one runs (and allocates, and communicates).
  for (const MicroBatch& mb : micro_batches) check_batch(mb.tokens, mb.targets);
  return run_pipeline_forward_backward(
      stage_, static_cast<int64_t>(micro_batches.size()),
      [&](int64_t i) {
        const MicroBatch& mb = micro_batches[static_cast<size_t>(i)];
        return make_step(mb.tokens, mb.targets, /*backward=*/true);
      },
      recompute(), grad_scale, &pipeline_wait_);
}

model::LossSum Layout::forward_backward(const Tensor& tokens, const Tensor& targets, float grad_scale) {
  const MicroBatch one{tokens, targets};
  return forward_backward(std::span<const MicroBatch>(&one, 1), grad_scale);
}

void Layout::sync_grads(comm::Communicator& dp) {
  reduce_grads();
  sum_over_replicas(dp, grads());
  sum_tied_embedding_grads(stage_, model_config(), grads());
}

std::string Layout::stage_suffix() const {
  if (!stage_.pipelined()) return {};
  return ", pipeline stage " + std::to_string(stage_.index()) + "/" + std::to_string(stage_.stages());
}

std::vector<ParamShard> Layout::replica_shards(const std::vector<ParamShard>& mine) {
  if (!stage_.pipelined()) return mine;
  // The replica group is pp x (the stage's inner group), ranked stage-major: the inner rank is
  // the group rank modulo the inner group's size.
  comm::Communicator& group = replica_group();
  const int inner = group.size() / stage_.stages();
  return replica_view(model_config(), mine, group.rank() % inner == 0);
}

model::LossSum Layout::forward(const Tensor& tokens, const Tensor& targets) {
  check_batch(tokens, targets);
  const std::unique_ptr<model::StepStrategy> step = make_step(tokens, targets, /*backward=*/false);
  return run_pipeline_forward(stage_, *step, &pipeline_wait_);
}

}  // namespace tsp::parallel
