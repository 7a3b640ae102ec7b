// Vocabulary-sharded embedding and LM head (TSP.md §4.3, §5): token ids travel to the owners of
// their embedding rows and the rows come back (activation-sized traffic, the table never moves);
// the head's vocabulary shards circulate in a ring while each rank folds its tokens' logits into
// a running log-sum-exp, so [T, V] logits never exist.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/parallel/comm_clock.h"

namespace tsp::parallel {

// The routing of one batch of local token ids to the owners of their vocabulary rows (rank
// id / vocab_rows). Construction exchanges the counts (all_to_all) and the ids (all_to_all_v).
class VocabExchange {
 public:
  // ids_local: [T] i32 in [0, degree * vocab_rows) (checked by the caller).
  VocabExchange(comm::Communicator& comm, const Tensor& ids_local, int64_t vocab_rows,
                CommClock* clock = nullptr);

  // out [T, h] (table dtype) := rows of the local ids; table_shard [vocab_rows, h] is this rank's.
  void lookup(const Tensor& table_shard, const Tensor& out);
  // The adjoint: dtable_shard [vocab_rows, h] f32 += the rows' gradients dout [T, h] f32 of every
  // rank's tokens whose ids this rank owns.
  void scatter_add(const Tensor& dout, const Tensor& dtable_shard);

 private:
  std::vector<int64_t> scaled(const std::vector<int64_t>& counts, int64_t h) const;

  comm::Communicator& comm_;
  CommClock* clock_;
  int64_t vocab_rows_;
  std::vector<int64_t> send_counts_, recv_counts_;  // tokens to / from each rank
  std::vector<int64_t> order_;  // local token index of the i-th id sent (grouped by owner)
  Tensor recv_ids_;             // [sum recv_counts] i32: ids this rank looks up for others
};

// Folds every rank's head shard [vocab_rows, h] (circulated in a ring) into the cross-entropy of
// the local tokens: x_local [T, h], targets [T] global ids or ignore_index. Writes lse [T] f32;
// returns this rank's totals (sum them over the group).
kernels::CrossEntropyTotals vocab_ring_forward(comm::Communicator& comm, const Tensor& x_local,
                                               const Tensor& head_shard, const Tensor& targets,
                                               const Tensor& lse,
                                               const kernels::CrossEntropyOptions& options,
                                               CommClock* clock = nullptr);
// Backward of the above: dx [T, h] f32 += local tokens' gradient; dhead_shard [vocab_rows, h] f32
// += every rank's contribution to this rank's shard (accumulators ride the ring, D-1 hops).
void vocab_ring_backward(comm::Communicator& comm, const Tensor& x_local, const Tensor& head_shard,
                         const Tensor& targets, const Tensor& lse, float scale, const Tensor& dx,
                         const Tensor& dhead_shard, const kernels::CrossEntropyOptions& options,
                         CommClock* clock = nullptr);

}  // namespace tsp::parallel
