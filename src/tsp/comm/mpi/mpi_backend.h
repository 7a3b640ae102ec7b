// Private to the comm layer: the MPI implementation of comm::Backend (the only header that
// includes <mpi.h>), for comm's own .cpp files and for tests and benchmarks that call MPI directly.
#pragma once

#include <mpi.h>

#include <memory>
#include <vector>

#include "tsp/comm/backend.h"
#include "tsp/comm/communicator.h"

namespace tsp::comm::mpi {

// MPI's element type for `t`: 16-bit dtypes travel as raw words (never reduced as such).
MPI_Datatype mpi_type(DType t);
MPI_Op mpi_op(ReduceOp op);

// Owns one MPI_Comm (MPI_ERRORS_RETURN set); frees it on destruction unless MPI is finalised.
class MpiBackend final : public Backend {
 public:
  // Takes ownership of `owned` (freed even if this throws).
  explicit MpiBackend(MPI_Comm owned);
  // An owned duplicate of `comm` (e.g. MPI_COMM_WORLD).
  static std::unique_ptr<MpiBackend> dup_of(MPI_Comm comm);
  ~MpiBackend() override;
  MpiBackend(const MpiBackend&) = delete;
  MpiBackend& operator=(const MpiBackend&) = delete;

  MPI_Comm handle() const { return comm_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<int> world_ranks() const override { return world_ranks_; }
  std::unique_ptr<Backend> dup() const override;
  std::unique_ptr<Backend> split(int color, int key) const override;
  void free() override;
  void barrier() override;

  void broadcast(void* buf, int count, DType type, int root) override;
  void reduce(void* buf, int count, DType type, ReduceOp op, int root) override;
  void all_reduce(void* buf, int count, DType type, ReduceOp op) override;
  void all_gather(const void* in, int count, void* out, DType type) override;
  void all_gather_v(const void* in, void* out, const int* counts, const int* displs,
                    DType type) override;
  void reduce_scatter(const void* in, void* out, const int* counts, DType type,
                      ReduceOp op) override;
  void all_to_all(const void* in, int count, void* out, DType type) override;
  void all_to_all_v(const void* in, const int* send_counts, const int* send_displs, void* out,
                    const int* recv_counts, const int* recv_displs, DType type) override;
  void send(const void* buf, int count, DType type, int dest, int tag) override;
  int recv(void* buf, int count, DType type, int source, int tag) override;
  int sendrecv(const void* send_buf, int send_count, int dest, void* recv_buf, int recv_count,
               int source, DType type, int tag) override;

  std::unique_ptr<PendingOp> ibroadcast(void* buf, int count, DType type, int root) override;
  std::unique_ptr<PendingOp> ireduce(void* buf, int count, DType type, ReduceOp op,
                                     int root) override;
  std::unique_ptr<PendingOp> iall_reduce(void* buf, int count, DType type, ReduceOp op) override;
  std::unique_ptr<PendingOp> iall_gather(const void* in, int count, void* out,
                                         DType type) override;
  std::unique_ptr<PendingOp> ireduce_scatter(const void* in, void* out, const int* counts,
                                             DType type, ReduceOp op) override;
  std::unique_ptr<PendingOp> iall_to_all(const void* in, int count, void* out,
                                         DType type) override;
  std::unique_ptr<PendingOp> isend(const void* buf, int count, DType type, int dest,
                                   int tag) override;
  std::unique_ptr<PendingOp> irecv(void* buf, int count, DType type, int source,
                                   int tag) override;
  std::unique_ptr<PendingOp> isendrecv(const void* send_buf, int send_count, int dest,
                                       void* recv_buf, int recv_count, int source, DType type,
                                       int tag) override;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
  std::vector<int> world_ranks_;
};

// The MPI_Comm under `comm`, for code that calls MPI itself (the host-name gather, the watchdog's
// pings, tests and benchmarks). Throws unless `comm` is valid and runs on MpiBackend.
MPI_Comm handle_of(const Communicator& comm);

}  // namespace tsp::comm::mpi
