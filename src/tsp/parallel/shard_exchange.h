// The weight movements of TSP (TSP.md §4-§5), as small schedulers over one group communicator:
// ShardBroadcast hands every rank's shard around in turn (attention), ShardRing circulates the
// shards in a ring (MLP, LM head), GradRing carries gradient accumulators to their owners.
// Each posts the next transfer before the current shard is used, so the transfer overlaps compute.
#pragma once

#include <array>
#include <cstdint>

#include "tsp/comm/collectives.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/core/tensor.h"

namespace tsp::parallel {

// Number of receive buffers ShardBroadcast / ShardRing allocate for a group of D: min(2, D - 1).
int64_t weight_buffers(int degree);
// Number of f32 accumulators GradRing allocates: 0 for D = 1, else 2.
int64_t grad_buffers(int degree);

// acquire(r) for r = 0, 1, ..., D-1 returns root r's packed shard (own shard when r == rank); the
// broadcast of shard r + 1 is posted before acquire(r) returns. Buffers: weight_buffers(D), of
// own's shape and dtype, under `category`; the k-th foreign shard lands in buffer k % 2.
class ShardBroadcast {
 public:
  ShardBroadcast(comm::Communicator& comm, const Tensor& own, MemCategory category,
                 CommClock* clock = nullptr);
  const Tensor& acquire(int root);

 private:
  void post(int root);

  comm::Communicator& comm_;
  CommClock* clock_;
  Tensor own_;
  std::array<Tensor, 2> bufs_;
  std::array<int, 2> slot_of_{-1, -1};  // root whose shard each buffer receives (in flight/held)
  int next_slot_ = 0;
  int posted_ = -1;  // highest root posted
  Tensor current_;
  comm::Request pending_;
};

// Step t = 0..D-1 of a ring: acquire(t) returns the shard of owner(t) = (rank - t) mod D (own at
// t = 0) and posts its forwarding to rank + 1 (receiving the next from rank - 1) unless t = D-1.
class ShardRing {
 public:
  ShardRing(comm::Communicator& comm, const Tensor& own, MemCategory category,
            CommClock* clock = nullptr);
  const Tensor& acquire(int t);
  int owner(int t) const;

 private:
  comm::Communicator& comm_;
  CommClock* clock_;
  Tensor own_;
  std::array<Tensor, 2> bufs_;
  Tensor current_;
  comm::Request pending_;
};

// Gradient accumulators riding a ShardRing (TSP.md §5.1): at step t = 0 the owner adds its own
// contribution straight into its gradient; from t = 1 every rank adds its contribution to the
// accumulator of shard owner(t) (zeros at t = 1, the one received from rank - 1 after) and passes
// it on; after D - 1 hops each accumulator reaches its owner, which adds it in finish().
// Accumulators are f32 (TSP.md §5.1: weight gradients travel in fp32).
class GradRing {
 public:
  GradRing(comm::Communicator& comm, int64_t numel, MemCategory category,
           CommClock* clock = nullptr);
  // t >= 1: the accumulator to add this rank's contribution to (shape [numel] f32).
  const Tensor& acquire(int t);
  // t >= 1, after the contribution: sends it to rank + 1 and receives the next from rank - 1.
  void release(int t);
  // After step D - 1: own_grad (f32, numel elements) += the accumulator that arrived.
  void finish(const Tensor& own_grad);

 private:
  comm::Communicator& comm_;
  CommClock* clock_;
  std::array<Tensor, 2> bufs_;
  comm::Request pending_;
};

// Every wait for a transfer is timed into `clock` when one is given.

// a += b (f32, same numel, both contiguous).
void add_f32(const Tensor& a, const Tensor& b);

}  // namespace tsp::parallel
