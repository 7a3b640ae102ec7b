// Forward/backward pairs built from the collectives; each returns early when the group has one rank.
#include "tsp/comm/region_ops.h"

#include <vector>

#include "tsp/core/check.h"

namespace tsp::comm {
namespace {

Tensor contiguous(const Tensor& x, MemCategory category) {
  return x.is_contiguous() ? x : Tensor::copy_of(x, x.dtype(), category);
}

Shape with_dim0(const Shape& s, int64_t d0) {
  Shape out = s;
  out[0] = d0;
  return out;
}

int64_t row_elems(const Tensor& x) {
  int64_t n = 1;
  for (int i = 1; i < x.rank(); ++i) n *= x.dim(i);
  return n;
}

Tensor own_block(Communicator& comm, const Tensor& x, MemCategory category) {
  TSP_CHECK_SHAPE(x.rank() >= 1 && x.dim(0) % comm.size() == 0, "split along dim 0 over ",
                  comm.size(), " ranks of ", x.shape());
  const int64_t m = x.dim(0) / comm.size();
  return Tensor::copy_of(x.slice(0, comm.rank() * m, m), x.dtype(), category);
}

Tensor gather_rows(Communicator& comm, const Tensor& x, MemCategory category) {
  TSP_CHECK_SHAPE(x.rank() >= 1, "gather along dim 0 of a scalar");
  const Tensor in = contiguous(x, category);
  Tensor out = Tensor::empty(with_dim0(x.shape(), x.dim(0) * comm.size()), x.dtype(), category);
  all_gather(comm, in, out);
  return out;
}

Tensor reduce_scatter_rows(Communicator& comm, const Tensor& x, MemCategory category) {
  TSP_CHECK_SHAPE(x.rank() >= 1 && x.dim(0) % comm.size() == 0, "reduce-scatter along dim 0 over ",
                  comm.size(), " ranks of ", x.shape());
  const Tensor in = contiguous(x, category);
  Tensor out = Tensor::empty(with_dim0(x.shape(), x.dim(0) / comm.size()), x.dtype(), category);
  reduce_scatter(comm, in, out);
  return out;
}

Tensor all_reduced(Communicator& comm, const Tensor& x, MemCategory category) {
  Tensor out = Tensor::copy_of(x, x.dtype(), category);
  all_reduce(comm, out);
  return out;
}

Tensor exchange_rows(Communicator& comm, const Tensor& x, std::span<const int64_t> send_rows,
                     std::span<const int64_t> recv_rows, MemCategory category) {
  TSP_CHECK_SHAPE(x.rank() >= 1, "all-to-all along dim 0 of a scalar");
  const int64_t row = row_elems(x);
  std::vector<int64_t> send_elems, recv_elems;
  int64_t recv_total = 0;
  for (int64_t r : send_rows) send_elems.push_back(r * row);
  for (int64_t r : recv_rows) {
    recv_elems.push_back(r * row);
    recv_total += r;
  }
  const Tensor in = contiguous(x, category);
  Tensor out = Tensor::empty(with_dim0(x.shape(), recv_total), x.dtype(), category);
  all_to_all_v(comm, in, send_elems, out, recv_elems);
  return out;
}

Tensor shifted(Communicator& comm, const Tensor& x, int offset, MemCategory category) {
  const Tensor in = contiguous(x, category);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), category);
  ring_shift(comm, in, out, offset);
  return out;
}

}  // namespace

Tensor CopyToRegion::forward(Communicator&, const Tensor& x) { return x; }
Tensor CopyToRegion::backward(Communicator& comm, const Tensor& dy, MemCategory category) {
  return comm.size() == 1 ? dy : all_reduced(comm, dy, category);
}

Tensor ReduceFromRegion::forward(Communicator& comm, const Tensor& x, MemCategory category) {
  return comm.size() == 1 ? x : all_reduced(comm, x, category);
}
Tensor ReduceFromRegion::backward(Communicator&, const Tensor& dy) { return dy; }

Tensor ScatterToRegion::forward(Communicator& comm, const Tensor& x, MemCategory category) {
  return comm.size() == 1 ? x : own_block(comm, x, category);
}
Tensor ScatterToRegion::backward(Communicator& comm, const Tensor& dy, MemCategory category) {
  return comm.size() == 1 ? dy : gather_rows(comm, dy, category);
}

Tensor GatherFromRegion::forward(Communicator& comm, const Tensor& x, MemCategory category) {
  return comm.size() == 1 ? x : gather_rows(comm, x, category);
}
Tensor GatherFromRegion::backward(Communicator& comm, const Tensor& dy, MemCategory category) {
  return comm.size() == 1 ? dy : own_block(comm, dy, category);
}

Tensor GatherFromSequenceRegion::forward(Communicator& comm, const Tensor& x, MemCategory category) {
  return comm.size() == 1 ? x : gather_rows(comm, x, category);
}
Tensor GatherFromSequenceRegion::backward(Communicator& comm, const Tensor& dy, MemCategory category) {
  return comm.size() == 1 ? dy : reduce_scatter_rows(comm, dy, category);
}

Tensor ReduceScatterToSequenceRegion::forward(Communicator& comm, const Tensor& x,
                                              MemCategory category) {
  return comm.size() == 1 ? x : reduce_scatter_rows(comm, x, category);
}
Tensor ReduceScatterToSequenceRegion::backward(Communicator& comm, const Tensor& dy,
                                               MemCategory category) {
  return comm.size() == 1 ? dy : gather_rows(comm, dy, category);
}

Tensor BroadcastFromRoot::forward(Communicator& comm, const Tensor& x, int root, MemCategory category) {
  if (comm.size() == 1) return x;
  Tensor out = Tensor::copy_of(x, x.dtype(), category);
  broadcast(comm, out, root);
  return out;
}
Tensor BroadcastFromRoot::backward(Communicator& comm, const Tensor& dy, int root,
                                   MemCategory category) {
  if (comm.size() == 1) return dy;
  Tensor out = Tensor::copy_of(dy, dy.dtype(), category);
  reduce(comm, out, root);
  if (comm.rank() != root) out.zero();
  return out;
}

Tensor AllToAllRegion::forward(Communicator& comm, const Tensor& x, std::span<const int64_t> send_rows,
                               std::span<const int64_t> recv_rows, MemCategory category) {
  return comm.size() == 1 ? x : exchange_rows(comm, x, send_rows, recv_rows, category);
}
Tensor AllToAllRegion::backward(Communicator& comm, const Tensor& dy,
                                std::span<const int64_t> send_rows,
                                std::span<const int64_t> recv_rows, MemCategory category) {
  return comm.size() == 1 ? dy : exchange_rows(comm, dy, recv_rows, send_rows, category);
}

Tensor RingShiftRegion::forward(Communicator& comm, const Tensor& x, int offset, MemCategory category) {
  return comm.size() == 1 ? x : shifted(comm, x, offset, category);
}
Tensor RingShiftRegion::backward(Communicator& comm, const Tensor& dy, int offset,
                                 MemCategory category) {
  return comm.size() == 1 ? dy : shifted(comm, dy, -offset, category);
}

}  // namespace tsp::comm
