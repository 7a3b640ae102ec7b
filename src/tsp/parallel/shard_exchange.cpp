// ShardBroadcast, ShardRing and GradRing: double-buffered nonblocking weight and gradient movement.
#include "tsp/parallel/shard_exchange.h"

#include "tsp/core/check.h"

namespace tsp::parallel {

int64_t weight_buffers(int degree) { return degree <= 1 ? 0 : (degree == 2 ? 1 : 2); }
int64_t grad_buffers(int degree) { return degree <= 1 ? 0 : 2; }

void add_f32(const Tensor& a, const Tensor& b) {
  TSP_ASSERT(a.dtype() == DType::f32 && b.dtype() == DType::f32 && a.numel() == b.numel() &&
                 a.is_contiguous() && b.is_contiguous(),
             "add_f32: ", a.describe(), " += ", b.describe());
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) pa[i] += pb[i];
}

// ---- ShardBroadcast ----

ShardBroadcast::ShardBroadcast(comm::Communicator& comm, const Tensor& own, MemCategory category,
                               CommClock* clock)
    : comm_(comm), clock_(clock), own_(own) {
  for (int64_t i = 0; i < weight_buffers(comm.size()); ++i)
    bufs_[static_cast<size_t>(i)] = Tensor::empty(own.shape(), own.dtype(), category);
}

void ShardBroadcast::post(int root) {
  Tensor target = own_;
  if (root != comm_.rank()) {
    const int slot = next_slot_;
    next_slot_ = (next_slot_ + 1) % static_cast<int>(weight_buffers(comm_.size()));
    slot_of_[static_cast<size_t>(slot)] = root;
    target = bufs_[static_cast<size_t>(slot)];
  }
  pending_ = comm::ibroadcast(comm_, target, root);
  posted_ = root;
}

const Tensor& ShardBroadcast::acquire(int root) {
  TSP_ASSERT(root == posted_ + 1 || (root == posted_ && pending_.pending()),
             "ShardBroadcast: roots must be acquired in order, got ", root, " after ", posted_);
  if (posted_ < root) post(root);
  {
    ScopedCommWait w(clock_, CommSite::weight_fetch);
    pending_.wait();
  }
  current_ = own_;
  if (root != comm_.rank())
    for (size_t s = 0; s < 2; ++s)
      if (slot_of_[s] == root) current_ = bufs_[s];
  if (root + 1 < comm_.size()) post(root + 1);
  return current_;
}

// ---- ShardRing ----

ShardRing::ShardRing(comm::Communicator& comm, const Tensor& own, MemCategory category,
                     CommClock* clock)
    : comm_(comm), clock_(clock), own_(own) {
  for (int64_t i = 0; i < weight_buffers(comm.size()); ++i)
    bufs_[static_cast<size_t>(i)] = Tensor::empty(own.shape(), own.dtype(), category);
}

int ShardRing::owner(int t) const { return ((comm_.rank() - t) % comm_.size() + comm_.size()) % comm_.size(); }

const Tensor& ShardRing::acquire(int t) {
  const int D = comm_.size();
  TSP_ASSERT(t >= 0 && t < D, "ShardRing: step ", t, " outside [0, ", D, ")");
  if (t == 0) {
    current_ = own_;
  } else {
    ScopedCommWait w(clock_, CommSite::weight_fetch);
    pending_.wait();
    current_ = bufs_[static_cast<size_t>((t - 1) % 2)];
  }
  // The buffer receiving step t + 1 is not the one in hand: step t holds buffer (t - 1) % 2.
  if (t < D - 1) {
    Tensor recv = bufs_[static_cast<size_t>(t % 2)];
    pending_ = comm::iring_shift(comm_, current_, recv, 1);
  }
  return current_;
}

// ---- GradRing ----

GradRing::GradRing(comm::Communicator& comm, int64_t numel, MemCategory category, CommClock* clock)
    : comm_(comm), clock_(clock) {
  for (int64_t i = 0; i < grad_buffers(comm.size()); ++i)
    bufs_[static_cast<size_t>(i)] = Tensor::empty({numel}, DType::f32, category);
}

const Tensor& GradRing::acquire(int t) {
  TSP_ASSERT(t >= 1 && t < comm_.size(), "GradRing: step ", t, " outside [1, ", comm_.size(), ")");
  if (t == 1) {
    bufs_[0].zero();
  } else {
    ScopedCommWait w(clock_, CommSite::grad_reduce);
    pending_.wait();
  }
  return bufs_[static_cast<size_t>((t - 1) % 2)];
}

void GradRing::release(int t) {
  Tensor recv = bufs_[static_cast<size_t>(t % 2)];
  pending_ = comm::iring_shift(comm_, bufs_[static_cast<size_t>((t - 1) % 2)], recv, 1);
}

void GradRing::finish(const Tensor& own_grad) {
  if (comm_.size() == 1) return;
  {
    ScopedCommWait w(clock_, CommSite::grad_reduce);
    pending_.wait();
  }
  add_f32(own_grad, bufs_[static_cast<size_t>((comm_.size() - 1) % 2)]);
}

}  // namespace tsp::parallel
