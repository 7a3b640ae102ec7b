// Communicator: a move-only owner of one MPI_Comm (never MPI_COMM_WORLD itself: the library dups
// it), with its rank and size cached, MPI_ERRORS_RETURN set, a name for logs ("world", "tsp", ...)
// and the TrafficLedger of everything sent and received through it.
// It also owns a grow-only scratch buffer for the comm layer's internal algorithms (see scratch()).
// Its members' world ranks are computed once at creation (the watchdog's messages name them).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <string>
#include <vector>

#include "tsp/comm/traffic_ledger.h"
#include "tsp/core/tensor.h"

namespace tsp::comm {

class Communicator {
 public:
  Communicator() = default;  // null communicator: valid() is false
  // An owned duplicate of `comm` (e.g. MPI_COMM_WORLD) named `name`.
  static Communicator dup(MPI_Comm comm, std::string name);
  static Communicator world() { return dup(MPI_COMM_WORLD, "world"); }

  ~Communicator();  // frees the handle unless MPI is already finalised; never throws
  Communicator(Communicator&& other) noexcept;
  Communicator& operator=(Communicator&& other) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // Collective over this communicator: ranks with the same `color` (>= 0) form one new
  // communicator, ordered by `key` (ties by rank here). Returns it, owned and named `name`.
  Communicator split(int color, int key, std::string name) const;
  // Explicit free for callers who want the error; afterwards valid() is false.
  void free();

  bool valid() const { return comm_ != MPI_COMM_NULL; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm handle() const { return comm_; }
  const std::string& name() const { return name_; }
  // MPI_COMM_WORLD rank of each member, indexed by this communicator's rank.
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  // Ring neighbours in this communicator: (rank + 1) % size and (rank - 1 + size) % size.
  int next_rank() const { return (rank_ + 1) % size_; }
  int prev_rank() const { return (rank_ + size_ - 1) % size_; }

  void barrier();

  TrafficLedger& ledger() { return ledger_; }
  const TrafficLedger& ledger() const { return ledger_; }

  // Internal to the comm layer (the ring reduce-scatter): a 64-byte aligned buffer of at least
  // `bytes`, accounted under MemCategory::comm. It grows on demand and is kept until the
  // communicator is destroyed, so repeated calls of one size allocate once; its contents are not
  // preserved across calls. Valid until the next scratch() call on this communicator.
  void* scratch(size_t bytes);
  size_t scratch_capacity() const { return scratch_.defined() ? scratch_.nbytes() : 0; }

 private:
  Communicator(MPI_Comm owned, std::string name);
  void release() noexcept;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
  std::string name_;
  std::vector<int> world_ranks_;
  TrafficLedger ledger_;
  Tensor scratch_;  // i64 elements, MemCategory::comm
};

}  // namespace tsp::comm
