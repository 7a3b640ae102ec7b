// The whole Llama model under TSP on one rank of a TSP group: vocabulary-sharded embedding, L TSP
// blocks on the rank's zigzag tokens, final RMSNorm and the LM-head ring with a running
// log-sum-exp. Same math as model::Transformer, which it is tested against (docs/tsp.md).
#pragma once

#include <cstdint>
#include <memory>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/tp_weights.h"
#include "tsp/parallel/tsp_block.h"  // validate_tsp

namespace tsp::parallel {

// Activations (MemCategory::activations) of forward_backward per rank: exactly the single-rank
// model's at S / D tokens (model::predicted_activation_peak_bytes(config, options, B, S / D)).
int64_t tsp_predicted_activation_peak_bytes(const model::ModelConfig& config,
                                            const model::TransformerOptions& options, int degree,
                                            int64_t batch, int64_t seq);

class TspTransformer {
 public:
  // comm: the tsp axis of the mesh (degree = comm.size()). options as for model::Transformer.
  TspTransformer(comm::Communicator& comm, const model::ModelConfig& config,
                 const model::TransformerOptions& options = {});

  const model::ModelConfig& config() const { return config_; }
  const model::TransformerOptions& options() const { return options_; }
  int degree() const { return comm_->size(); }
  // Wall time spent blocked on communication by every call so far (docs/tsp.md).
  double comm_wait_seconds() const { return clock_.seconds; }
  const CommClock& comm_wait() const { return clock_; }

  // tokens_local, targets_local: [B, S/D] i32, this rank's zigzag columns (Zigzag::take_local) of
  // the global [B, seq] batch. Returns THIS RANK's loss sum and valid count (sum over the group,
  // and over dp, for the batch's total). Collective over the tsp group.
  model::LossSum forward(const TpWeights& w, const Tensor& tokens_local,
                         const Tensor& targets_local, int64_t seq);

  // Forward + backward; gradients of grad_scale * (the group's loss sum) are ACCUMULATED into
  // this rank's shards `grads` (f32). The replicated norm gains get this rank's partial sums:
  // sum them over the group once per step (sum_replicated_grads) before the optimizer.
  model::LossSum forward_backward(const TpWeights& w, const Tensor& tokens_local,
                                  const Tensor& targets_local, int64_t seq, TpWeights& grads,
                                  float grad_scale);

  // The step strategy of one batch (checked as forward / forward_backward check it; grads null
  // for a forward-only step), for a pipeline stage's share of the layers (the weights may be one
  // stage's). w, grads and this object must outlive it.
  std::unique_ptr<model::StepStrategy> step(const TpWeights& w, const Tensor& tokens_local,
                                            const Tensor& targets_local, int64_t seq, TpWeights* grads);

 private:
  void validate(const TpWeights& w, const Tensor& tokens, const Tensor& targets, int64_t seq,
                const TpWeights* grads) const;

  comm::Communicator* comm_;
  model::ModelConfig config_;
  model::TransformerOptions options_;
  CommClock clock_;
};

}  // namespace tsp::parallel
