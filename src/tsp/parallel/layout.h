// A layout of one model replica, as the trainer sees it: this rank's weight and gradient shards
// (of its pipeline stage), forward/backward on the replica's rows of the global batch, and the
// gradient reductions inside the replica. TSP (tsp_layout.h), the TP/SP/DP baselines
// (tp_sp_layout.h), FSDP over SP (fsdp_sp_layout.h) and the plain model on one process
// (single_layout.h) implement it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/param_shard.h"
#include "tsp/parallel/pipeline_stage.h"

namespace tsp::parallel {

// One micro-batch of the replica's rows: [b, S] i32 tokens and targets.
struct MicroBatch {
  Tensor tokens, targets;
};

class Layout {
 public:
  // `stage`: the layers this rank holds (PipelineStage::whole_model without a pipeline).
  explicit Layout(PipelineStage stage) : stage_(stage) {}
  virtual ~Layout() = default;
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;

  // This rank's pipeline stage: its layer range and the pp axis (docs/pipeline.md).
  const PipelineStage& stage() const { return stage_; }
  // ", pipeline stage s/P" when pipelined, else empty: the end of every describe().
  std::string stage_suffix() const;

  // "tsp D=4 (rank 2)".
  virtual std::string describe() const = 0;
  // This rank's shards in weight_specs() order; views of the layout's own storage.
  virtual const std::vector<ParamShard>& weights() const = 0;
  virtual const std::vector<ParamShard>& grads() const = 0;  // f32, same layout
  // A group of ranks that together hold exactly one copy of every parameter: each sharded piece
  // once, ShardKind::replicated tensors on every rank (counted once). The gradient norm,
  // clipping and checkpoints run over it. Ranks outside it (other dp replicas, or other sp ranks
  // of a layout whose weights are replicated over sp) hold identical copies of the same pieces.
  virtual comm::Communicator& replica_group() = 0;
  // The lists the replica-group operations run on (gradient norm, checkpoints): `mine` (weights()
  // or grads(), or the optimizer's lists of the same shards) itself without a pipeline; across
  // stages, replica_view's (param_shard.h: every tensor listed on every rank, each held once).
  std::vector<ParamShard> replica_shards(const std::vector<ParamShard>& mine);
  // The model this layout runs (whole, whatever this rank's stage).
  virtual const model::ModelConfig& model_config() const = 0;
  // True on the ranks of the ONE replica group that writes checkpoints (e.g. dp coordinate 0).
  virtual bool primary() const = 0;

  virtual void zero_grads() = 0;
  // Written once for every layout (layout.cpp) over make_step: the micro-batches of one step in
  // 1F1B order through this rank's pipeline stage (parallel/pipeline_schedule.h), or, without a
  // pipeline, each one's forward and backward in turn. Each micro-batch: [b, S] i32 tokens and
  // targets, the replica's rows (every rank of the replica passes the same). Returns THIS RANK's
  // share of the loss sums such that each token's loss is counted once on one rank of the
  // replica (on the last stage): the sum over every rank of the mesh is the whole batch's (each dp
  // replica contributes its rows). Gradients of grad_scale * loss are accumulated into grads().
  model::LossSum forward_backward(std::span<const MicroBatch> micro_batches, float grad_scale);
  model::LossSum forward_backward(const Tensor& tokens, const Tensor& targets, float grad_scale);
  // Loss only (evaluation), the same share.
  model::LossSum forward(const Tensor& tokens, const Tensor& targets);
  // Once per step, after every micro-batch: the layout's reductions inside its data-parallel
  // replica (e.g. TSP's replicated gains over tsp, SP's replicated weights over sp).
  virtual void reduce_grads() = 0;
  // The step's whole gradient synchronisation, written once: reduce_grads(), every gradient summed
  // over the `dp` replicas (sum_over_replicas), then across pipeline stages the tied embedding's
  // two parts (sum_tied_embedding_grads). The tied sum comes last so that both holders add the
  // same two dp totals (a + b == b + a): the two copies stay bit-equal whatever dp's reduction
  // order (the dp sums of the two end stages pack different neighbours).
  void sync_grads(comm::Communicator& dp);
  // Wall time this rank has spent blocked on communication inside the layout's steps so far, in
  // total and per CommSite (the stage-to-stage transfers are pipeline_wait()'s).
  virtual const CommClock& comm_wait() const = 0;
  // Blocked in the transfers between pipeline stages (CommSite::pipeline), kept by the base.
  const CommClock& pipeline_wait() const { return pipeline_wait_; }
  // Both together: the "comm wait" of the progress line.
  double comm_wait_seconds() const { return comm_wait().seconds + pipeline_wait_.seconds; }
  // Activation bytes (MemCategory::activations) of one forward_backward on [b, S] replica rows,
  // of the whole model (pp = 1); a pipeline stage's are plan::memory_of_stage's (docs/pipeline.md).
  virtual int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const = 0;

 protected:
  // Throws (InvalidArgument, ShapeError, ...) unless tokens and targets are a batch this layout
  // runs: [b, S] i32 ids in the vocabulary (model::check_token_batch) and S fits the layout's
  // sizes. Allocates nothing; forward_backward checks every micro-batch before the first runs.
  virtual void check_batch(const Tensor& tokens, const Tensor& targets) const = 0;
  // The layout's strategy for one micro-batch (model/step_executor.h): checks the batch, places
  // this rank's tokens, builds the step's contexts; with `backward` its gradients accumulate into
  // grads(). tokens and targets are the replica's [b, S] rows.
  virtual std::unique_ptr<model::StepStrategy> make_step(const Tensor& tokens, const Tensor& targets,
                                                         bool backward) = 0;
  // Full activation recomputation in the backward (TransformerOptions::recompute).
  virtual bool recompute() const = 0;

 private:
  PipelineStage stage_;
  CommClock pipeline_wait_;
};

}  // namespace tsp::parallel
