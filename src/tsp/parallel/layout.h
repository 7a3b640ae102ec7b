// A layout of one model replica, as the trainer sees it: this rank's weight and gradient shards,
// forward/backward on the replica's rows of the global batch, and the gradient reductions inside
// the replica. TSP (tsp_layout.h), the TP/SP/DP baselines (tp_sp_layout.h), FSDP over SP
// (fsdp_sp_layout.h) and the plain model on one process (single_layout.h) implement it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

class Layout {
 public:
  virtual ~Layout() = default;

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
  // True on the ranks of the ONE replica group that writes checkpoints (e.g. dp coordinate 0).
  virtual bool primary() const = 0;

  virtual void zero_grads() = 0;
  // tokens, targets: [b, S] i32, the replica's rows (every rank of the replica passes the same).
  // Returns THIS RANK's share of the loss sums such that each token's loss is counted once on one
  // rank of the replica: the sum over every rank of the mesh is the whole batch's (each dp
  // replica contributes its rows).
  // Gradients of grad_scale * loss are accumulated into grads().
  virtual model::LossSum forward_backward(const Tensor& tokens, const Tensor& targets,
                                          float grad_scale) = 0;
  virtual model::LossSum forward(const Tensor& tokens, const Tensor& targets) = 0;
  // Once per step, after every micro-batch: the layout's reductions inside its data-parallel
  // replica (e.g. TSP's replicated gains over tsp, SP's replicated weights over sp). The trainer
  // then sums every gradient over the dp axis itself.
  virtual void reduce_grads() = 0;
  // Wall time this rank has spent blocked on communication inside the layout so far, in total and
  // per CommSite.
  virtual const CommClock& comm_wait() const = 0;
  double comm_wait_seconds() const { return comm_wait().seconds; }
  // Activation bytes (MemCategory::activations) of one forward_backward on [b, S] replica rows.
  virtual int64_t predicted_activation_peak_bytes(int64_t batch, int64_t seq) const = 0;
};

}  // namespace tsp::parallel
