// Gradient reductions over shard lists of any layout: summing replicated gradients over the group,
// summing every gradient over the data-parallel replicas, and the global norm and clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

// Upper bound of the staging buffer sum_over_replicas packs small gradients into (MemCategory::comm).
inline constexpr int64_t kGradStagingBytes = int64_t{16} << 20;

// Every gradient is a contiguous f32 local piece; each function checks that first (on every rank,
// before any communication) and throws DTypeError / LayoutError otherwise.

// All-reduce (sum) over `group` of the gradient of every replicated parameter (the norm gains of
// TSP, whose gradients are partial sums over the group's tokens), packed into one buffer: one
// all_reduce. No-op (no traffic, no buffer) when the group has one rank or nothing is replicated.
void sum_replicated_grads(comm::Communicator& group, const std::vector<ParamShard>& grads);

// All-reduce (sum) over the data-parallel axis `dp` of every gradient (each dp rank holds the same
// shards of different data; the trainer already scales by 1 / n_valid of the GLOBAL batch, so the
// sum is the gradient of the global mean). Gradients smaller than the staging buffer
// (<= kGradStagingBytes, allocated once per call) are packed together in order; larger ones are
// reduced in place in chunks of that size. So the number of all_reduce calls is about
// total bytes / kGradStagingBytes + 1, and nothing bigger than the buffer is allocated.
// No-op when dp has one rank.
void sum_over_replicas(comm::Communicator& dp, const std::vector<ParamShard>& grads);

// sqrt of the sum of squares over the LOGICAL model: each rank sums its sharded pieces, replicated
// tensors are counted once (by group rank 0), in double with train::global_grad_norm's fixed-block
// order per tensor; the per-rank sums are all-gathered and added in rank order, so every rank gets
// the same value and a one-rank group gives exactly train::global_grad_norm. One collective.
// `group`: the ranks that together hold one copy of the model (the tsp axis; after
// sum_over_replicas the dp replicas agree, so they need not take part).
double global_grad_norm(comm::Communicator& group, const std::vector<ParamShard>& grads);

struct ClipResult {
  double norm = 0;   // global L2 norm before clipping
  double scale = 1;  // factor applied (1 when not clipped)
  bool clipped = false;
};

// The one gradient clipping, over the logical model: norm = global_grad_norm(group, grads); if
// max_norm > 0, the norm is finite and norm > max_norm, every local element (replicated copies
// included, so they stay identical) is multiplied by float(max_norm / (norm + 1e-6)).
ClipResult clip_grad_norm(comm::Communicator& group, const std::vector<ParamShard>& grads, double max_norm);
// The same with the norm taken over `counted` (the replica group's view of the same gradients,
// Layout::replica_shards: across pipeline stages every tensor once) and the scale applied to
// every element of `grads` (this rank's own shards, mirrors included).
ClipResult clip_grad_norm(comm::Communicator& group, const std::vector<ParamShard>& counted,
                          const std::vector<ParamShard>& grads, double max_norm);

}  // namespace tsp::parallel
