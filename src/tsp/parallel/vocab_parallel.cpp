// VocabExchange (embedding by all-to-all of ids and rows) and the LM-head ring.
#include "tsp/parallel/vocab_parallel.h"

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/kernels/embedding.h"
#include "tsp/parallel/shard_exchange.h"

namespace tsp::parallel {

VocabExchange::VocabExchange(comm::Communicator& comm, const Tensor& ids_local, int64_t vocab_rows,
                             CommClock* clock)
    : comm_(comm), clock_(clock), vocab_rows_(vocab_rows) {
  ScopedCommWait wait(clock, CommSite::vocab);  // the exchange below is all communication
  const int D = comm.size();
  const int64_t T = ids_local.numel();
  const int32_t* ids = ids_local.data<int32_t>();
  send_counts_.assign(static_cast<size_t>(D), 0);
  for (int64_t i = 0; i < T; ++i) ++send_counts_[static_cast<size_t>(ids[i] / vocab_rows)];
  // Stable grouping by owner: order_[k] is the local index of the k-th id sent.
  std::vector<int64_t> start(static_cast<size_t>(D), 0);
  for (int j = 1; j < D; ++j) start[j] = start[j - 1] + send_counts_[j - 1];
  order_.assign(static_cast<size_t>(T), 0);
  Tensor send_ids = Tensor::empty({T}, DType::i32, MemCategory::comm);
  int32_t* sid = send_ids.data<int32_t>();
  for (int64_t i = 0; i < T; ++i) {
    const int64_t k = start[static_cast<size_t>(ids[i] / vocab_rows)]++;
    order_[static_cast<size_t>(k)] = i;
    sid[k] = ids[i];
  }
  Tensor counts_out = Tensor::empty({D}, DType::i64, MemCategory::comm);
  Tensor counts_in = Tensor::empty({D}, DType::i64, MemCategory::comm);
  for (int j = 0; j < D; ++j) counts_out.data<int64_t>()[j] = send_counts_[j];
  comm::all_to_all(comm, counts_out, counts_in);
  recv_counts_.assign(counts_in.data<int64_t>(), counts_in.data<int64_t>() + D);
  int64_t total = 0;
  for (int64_t c : recv_counts_) total += c;
  recv_ids_ = Tensor::empty({total}, DType::i32, MemCategory::comm);
  comm::all_to_all_v(comm, send_ids, send_counts_, recv_ids_, recv_counts_);
}

std::vector<int64_t> VocabExchange::scaled(const std::vector<int64_t>& counts, int64_t h) const {
  std::vector<int64_t> out(counts);
  for (int64_t& c : out) c *= h;
  return out;
}

void VocabExchange::lookup(const Tensor& table_shard, const Tensor& out) {
  const int64_t h = table_shard.dim(1), T = static_cast<int64_t>(order_.size());
  Tensor rows = Tensor::empty({recv_ids_.numel(), h}, table_shard.dtype(), MemCategory::comm);
  kernels::embedding_forward(recv_ids_, table_shard, rows,
                             {.row_offset = comm_.rank() * vocab_rows_});
  Tensor got = Tensor::empty({T, h}, table_shard.dtype(), MemCategory::comm);
  {
    ScopedCommWait wait(clock_, CommSite::vocab);
    comm::all_to_all_v(comm_, rows, scaled(recv_counts_, h), got, scaled(send_counts_, h));
  }
  for (int64_t k = 0; k < T; ++k) out.select(0, order_[static_cast<size_t>(k)]).copy_from(got.select(0, k));
}

void VocabExchange::scatter_add(const Tensor& dout, const Tensor& dtable_shard) {
  const int64_t h = dtable_shard.dim(1), T = static_cast<int64_t>(order_.size());
  Tensor send = Tensor::empty({T, h}, DType::f32, MemCategory::comm);
  for (int64_t k = 0; k < T; ++k) send.select(0, k).copy_from(dout.select(0, order_[static_cast<size_t>(k)]));
  Tensor rows = Tensor::empty({recv_ids_.numel(), h}, DType::f32, MemCategory::comm);
  {
    ScopedCommWait wait(clock_, CommSite::vocab);
    comm::all_to_all_v(comm_, send, scaled(send_counts_, h), rows, scaled(recv_counts_, h));
  }
  kernels::embedding_backward(recv_ids_, rows, dtable_shard,
                              {.row_offset = comm_.rank() * vocab_rows_});
}

kernels::CrossEntropyTotals vocab_ring_forward(comm::Communicator& comm, const Tensor& x_local,
                                               const Tensor& head_shard, const Tensor& targets,
                                               const Tensor& lse,
                                               const kernels::CrossEntropyOptions& options,
                                               CommClock* clock) {
  const int64_t rows = head_shard.dim(0);
  kernels::CrossEntropyState state(x_local.dim(0));
  ShardRing ring(comm, head_shard, MemCategory::comm, clock);
  for (int t = 0; t < comm.size(); ++t) {
    const Tensor& w = ring.acquire(t);
    kernels::cross_entropy_chunk_forward(x_local, w, ring.owner(t) * rows, targets, state, options);
  }
  return kernels::cross_entropy_finalize(state, targets, lse, Tensor(), options);
}

void vocab_ring_backward(comm::Communicator& comm, const Tensor& x_local, const Tensor& head_shard,
                         const Tensor& targets, const Tensor& lse, float scale, const Tensor& dx,
                         const Tensor& dhead_shard, const kernels::CrossEntropyOptions& options,
                         CommClock* clock) {
  const int64_t rows = head_shard.dim(0);
  ShardRing ring(comm, head_shard, MemCategory::comm, clock);
  GradRing grads(comm, head_shard.numel(), MemCategory::comm, clock);
  for (int t = 0; t < comm.size(); ++t) {
    const Tensor& w = ring.acquire(t);
    const Tensor dw = t == 0 ? dhead_shard : grads.acquire(t).view(head_shard.shape());
    kernels::cross_entropy_chunk_backward(x_local, w, ring.owner(t) * rows, targets, lse, scale,
                                          dx, dw, options);
    if (t > 0) grads.release(t);
  }
  grads.finish(dhead_shard.view({dhead_shard.numel()}));
}

}  // namespace tsp::parallel
