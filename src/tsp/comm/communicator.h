// Communicator: a move-only owner of one group's transport (a comm::Backend: an MPI communicator
// today, never MPI's world communicator itself: the library dups it), with its rank and size
// cached, a name for logs ("world", "tsp", ...) and the TrafficLedger of everything sent and
// received through it.
// It also owns a grow-only scratch buffer for the comm layer's internal algorithms (see scratch()).
// Its members' world ranks are computed once at creation (the watchdog's messages name them).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tsp/comm/backend.h"
#include "tsp/comm/traffic_ledger.h"
#include "tsp/core/tensor.h"

namespace tsp::comm {

class Communicator {
 public:
  Communicator() = default;  // null communicator: valid() is false
  // Owns `backend` (a transport over its group, e.g. comm/mpi's) under the name `name`.
  Communicator(std::unique_ptr<Backend> backend, std::string name);
  // An owned duplicate of MPI's world communicator named "world" (in comm/mpi/mpi_backend.cpp).
  static Communicator world();
  // Collective: an owned duplicate of this communicator (same group, own transport) named `name`.
  Communicator dup(std::string name) const;

  ~Communicator();  // releases the transport (silently if it is already shut down); never throws
  Communicator(Communicator&& other) noexcept;
  Communicator& operator=(Communicator&& other) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // Collective over this communicator: ranks with the same `color` (>= 0) form one new
  // communicator, ordered by `key` (ties by rank here). Returns it, owned and named `name`.
  Communicator split(int color, int key, std::string name) const;
  // Explicit free for callers who want the error; afterwards valid() is false.
  void free();

  bool valid() const { return backend_ != nullptr; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return name_; }
  // World rank of each member, indexed by this communicator's rank.
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

  // Internal to the comm layer (collectives.cpp, the backends' own helpers): the transport.
  // Engine code communicates through collectives.h, which keeps the ledger and the checks.
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }

 private:
  std::unique_ptr<Backend> backend_;
  int rank_ = 0;
  int size_ = 0;
  std::string name_;
  std::vector<int> world_ranks_;
  TrafficLedger ledger_;
  Tensor scratch_;  // i64 elements, MemCategory::comm
};

}  // namespace tsp::comm
