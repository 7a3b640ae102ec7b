// Autograd pairs over one axis communicator (Megatron "mappings", picotron tp_communications):
// each struct's backward is the adjoint of its forward, so for any x and dy
//   sum over ranks <forward(x), dy> == sum over ranks <x, backward(dy)>
// (tests/comm/collectives_mpi_test.cpp checks every pair). Names read <movement>_to|from_<region>.
// Blocks are along dim 0: a "block" of a [D*m, ...] tensor is m rows. With one rank every pair is
// the identity and returns its argument (sharing storage); otherwise results are new tensors
// allocated under `category`.
#pragma once

#include <span>

#include "tsp/comm/collectives.h"

namespace tsp::comm {

// Replicated input entering a region that partitions the computation: identity / all-reduce(sum).
struct CopyToRegion {
  static Tensor forward(Communicator& comm, const Tensor& x);
  static Tensor backward(Communicator& comm, const Tensor& dy, MemCategory category = MemCategory::activations);
};

// Partial sums leaving a region: all-reduce(sum) / identity.
struct ReduceFromRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy);
};

// x [D*m, ...] replicated -> this rank's block [m, ...] / all-gather of the blocks.
struct ScatterToRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, MemCategory category = MemCategory::activations);
};

// x [m, ...] per rank -> [D*m, ...] replicated / keep this rank's block.
struct GatherFromRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, MemCategory category = MemCategory::activations);
};

// Sequence-parallel entry: x [m, ...] shard -> [D*m, ...] gathered / reduce-scatter(sum).
struct GatherFromSequenceRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, MemCategory category = MemCategory::activations);
};

// Sequence-parallel exit: partial x [D*m, ...] -> reduce-scatter(sum) [m, ...] / all-gather.
struct ReduceScatterToSequenceRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, MemCategory category = MemCategory::activations);
};

// Root's x delivered to every rank: broadcast / reduce(sum) to root, zero on the other ranks
// (their x did not influence the output, so their gradient is zero).
struct BroadcastFromRoot {
  static Tensor forward(Communicator& comm, const Tensor& x, int root, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, int root, MemCategory category = MemCategory::activations);
};

// Token exchange: all-to-all-v with (send_counts, recv_counts) / the same with them swapped.
// Counts are in rows of dim 0. x [sum(send_counts), ...] -> [sum(recv_counts), ...].
struct AllToAllRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, std::span<const int64_t> send_rows,
                        std::span<const int64_t> recv_rows, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, std::span<const int64_t> send_rows,
                         std::span<const int64_t> recv_rows, MemCategory category = MemCategory::activations);
};

// Ring shift: x moves to rank + offset / dy moves back to rank - offset.
struct RingShiftRegion {
  static Tensor forward(Communicator& comm, const Tensor& x, int offset = 1, MemCategory category = MemCategory::activations);
  static Tensor backward(Communicator& comm, const Tensor& dy, int offset = 1, MemCategory category = MemCategory::activations);
};

}  // namespace tsp::comm
