// The communication backend seam: the transport one Communicator owns (MPI today, in
// comm/mpi/; an NCCL/RCCL backend would be a second implementation, see docs/architecture.md).
// A Backend moves raw buffers of a DType between the members of one group; everything above it
// (argument checks, bf16 through f32, the ledger, the watchdog, the ring reduce-scatter, Request's
// buffer lifetimes) is written once in communicator.cpp and collectives.cpp, against this
// interface. Counts are elements and fit an int (collectives.cpp checks before calling).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "tsp/core/dtype.h"

namespace tsp::comm {

enum class ReduceOp : uint8_t { sum, max, min };

// A received message's element count when a partial element arrived (not a whole count).
inline constexpr int kPartialElementCount = -1;

// A nonblocking operation a Backend has posted: one collective, or one receive plus at most one
// send (isendrecv). Its buffers stay alive, owned by the Request above it, until progress() has
// returned true and, after an error, until may_still_use_buffers() says they are free.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  // Advances every part of the operation (blocking until all have finished when `block`) and
  // returns true once they all have. Never throws: a failure is remembered and the part counts
  // as finished.
  virtual bool progress(bool block) noexcept = 0;
  // Whether some part failed (also right after posting, when only part of it was posted).
  virtual bool failed() const = 0;
  // After a failure: whether the transport may still write the buffers (then they are leaked).
  virtual bool may_still_use_buffers() const = 0;
  // Throws the first failure as CommError.
  [[noreturn]] virtual void throw_failure() const = 0;
  // Elements that arrived in the operation's receive (or kPartialElementCount), once finished
  // without failure; only asked of operations with a receive.
  virtual int received_count() const = 0;
  // False once the transport is shut down (then an unfinished operation is abandoned, not waited).
  virtual bool transport_alive() const = 0;
};

// One group's transport. Buffers are contiguous runs of `count` elements of `type`; bf16 and f16
// arrive only in non-reducing calls (moved as raw 16-bit words): reductions see f32, i32, i64.
// Every call throws CommError on a transport failure. Calls are collective where the operation is.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The world rank of each member, indexed by rank here (for the watchdog's messages).
  virtual std::vector<int> world_ranks() const = 0;

  // Collective: an independent transport over the same group.
  virtual std::unique_ptr<Backend> dup() const = 0;
  // Collective: the group of the members with the same `color` (>= 0), ordered by `key`.
  virtual std::unique_ptr<Backend> split(int color, int key) const = 0;
  // Releases the transport's resources now, with errors thrown; the destructor then has nothing
  // to release (the destructor itself releases silently and never throws).
  virtual void free() = 0;

  virtual void barrier() = 0;

  // Blocking collectives, the shapes of collectives.h on raw buffers.
  virtual void broadcast(void* buf, int count, DType type, int root) = 0;
  // On root `buf` becomes op over every member's `buf`; elsewhere it is only read.
  virtual void reduce(void* buf, int count, DType type, ReduceOp op, int root) = 0;
  virtual void all_reduce(void* buf, int count, DType type, ReduceOp op) = 0;  // in place
  virtual void all_gather(const void* in, int count, void* out, DType type) = 0;
  virtual void all_gather_v(const void* in, void* out, const int* counts, const int* displs,
                            DType type) = 0;
  // The transport's own reduce-scatter (ReduceScatterAlgo::mpi): out = op over members of their
  // block `rank` of `in`, blocks of counts[i] elements in rank order.
  virtual void reduce_scatter(const void* in, void* out, const int* counts, DType type,
                              ReduceOp op) = 0;
  virtual void all_to_all(const void* in, int count, void* out, DType type) = 0;
  virtual void all_to_all_v(const void* in, const int* send_counts, const int* send_displs,
                            void* out, const int* recv_counts, const int* recv_displs,
                            DType type) = 0;

  // Point to point; the receives return the element count that arrived (at most the count asked
  // for: a longer message is a failure), or kPartialElementCount.
  virtual void send(const void* buf, int count, DType type, int dest, int tag) = 0;
  virtual int recv(void* buf, int count, DType type, int source, int tag) = 0;
  virtual int sendrecv(const void* send_buf, int send_count, int dest, void* recv_buf,
                       int recv_count, int source, DType type, int tag) = 0;

  // Nonblocking variants: post and return. Pointers (count arrays included) must stay valid until
  // the PendingOp has finished. A call throws only when nothing was posted; an operation posted
  // in part comes back already failed().
  virtual std::unique_ptr<PendingOp> ibroadcast(void* buf, int count, DType type, int root) = 0;
  virtual std::unique_ptr<PendingOp> ireduce(void* buf, int count, DType type, ReduceOp op,
                                             int root) = 0;
  virtual std::unique_ptr<PendingOp> iall_reduce(void* buf, int count, DType type,
                                                 ReduceOp op) = 0;
  virtual std::unique_ptr<PendingOp> iall_gather(const void* in, int count, void* out,
                                                 DType type) = 0;
  virtual std::unique_ptr<PendingOp> ireduce_scatter(const void* in, void* out, const int* counts,
                                                     DType type, ReduceOp op) = 0;
  virtual std::unique_ptr<PendingOp> iall_to_all(const void* in, int count, void* out,
                                                 DType type) = 0;
  virtual std::unique_ptr<PendingOp> isend(const void* buf, int count, DType type, int dest,
                                           int tag) = 0;
  virtual std::unique_ptr<PendingOp> irecv(void* buf, int count, DType type, int source,
                                           int tag) = 0;
  // The receive is posted before the send.
  virtual std::unique_ptr<PendingOp> isendrecv(const void* send_buf, int send_count, int dest,
                                               void* recv_buf, int recv_count, int source,
                                               DType type, int tag) = 0;
};

}  // namespace tsp::comm
