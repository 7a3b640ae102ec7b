// The MPI transport: comm::Backend over an owned MPI_Comm (errors returned, thrown as CommError),
// its nonblocking operations (MpiPendingOp), and Communicator::world().
#include "tsp/comm/mpi/mpi_backend.h"

#include <numeric>
#include <string>
#include <utility>

#include "tsp/comm/mpi_environment.h"
#include "tsp/core/check.h"

namespace tsp::comm {

Communicator Communicator::world() {
  return Communicator(mpi::MpiBackend::dup_of(MPI_COMM_WORLD), "world");
}

namespace mpi {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::bf16: return MPI_UINT16_T;  // moved as raw bits; never reduced as bf16
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::f16: return MPI_UINT16_T;  // storage only: moved as raw bits, never reduced
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

namespace {

// Frees a freshly created MPI_Comm unless ownership was handed over (the constructor below may
// throw before an MpiBackend owns it; a throwing constructor runs no destructor).
class CommGuard {
 public:
  explicit CommGuard(MPI_Comm c) : comm_(c) {}
  ~CommGuard() {
    if (comm_ != MPI_COMM_NULL && !MpiEnvironment::is_finalized()) MPI_Comm_free(&comm_);
  }
  CommGuard(const CommGuard&) = delete;
  CommGuard& operator=(const CommGuard&) = delete;
  MPI_Comm release() { return std::exchange(comm_, MPI_COMM_NULL); }

 private:
  MPI_Comm comm_;
};

// World rank of each member of `comm` (local: groups only, no communication).
std::vector<int> translate_to_world(MPI_Comm comm, int size) {
  std::vector<int> mine(static_cast<size_t>(size)), world(static_cast<size_t>(size));
  std::iota(mine.begin(), mine.end(), 0);
  MPI_Group group = MPI_GROUP_NULL, world_group = MPI_GROUP_NULL;
  check_mpi(MPI_Comm_group(comm, &group), "MPI_Comm_group");
  check_mpi(MPI_Comm_group(MPI_COMM_WORLD, &world_group), "MPI_Comm_group(world)");
  const int rc = MPI_Group_translate_ranks(group, size, mine.data(), world_group, world.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  check_mpi(rc, "MPI_Group_translate_ranks");
  return world;
}

// Elements that arrived in the message of `status`, or kPartialElementCount.
int count_of(const MPI_Status& status, MPI_Datatype type) {
  int got = 0;
  check_mpi(MPI_Get_count(&status, type, &got), "MPI_Get_count");
  return got == MPI_UNDEFINED ? kPartialElementCount : got;
}

// One posted operation: its MPI requests, completed one by one. Requests are deliberately not
// completed with MPI_Waitall/MPI_Testall: Open MPI 4.1 (MPI_THREAD_MULTIPLE) can spin forever in
// MPI_Waitall when one request has completed in error (a truncated receive) beside a pending one.
// A request whose completion returned an error counts as finished; for a truncation that is
// certain (the message was consumed), for any other error MPI may still own the buffers.
class MpiPendingOp final : public PendingOp {
 public:
  // `receive`: requests[0] is a receive of `recv_type` whose count is asked after completion.
  MpiPendingOp(size_t requests, bool receive, MPI_Datatype recv_type)
      : requests_(requests, MPI_REQUEST_NULL),
        statuses_(requests),
        finished_(requests, 0),
        receive_(receive),
        recv_type_(recv_type) {}

  MPI_Request* request(size_t i) { return &requests_[i]; }

  // A later part of the operation could not be posted (the earlier ones are pending).
  void post_failed(int rc, const char* what) {
    error_ = rc;
    what_ = what;
    error_may_leave_pending_ = true;
  }

  bool progress(bool block) noexcept override {
    bool all = true;
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (finished_[i]) continue;
      int flag = 1;
      const int rc = block ? MPI_Wait(&requests_[i], &statuses_[i])
                           : MPI_Test(&requests_[i], &flag, &statuses_[i]);
      if (rc != MPI_SUCCESS) {
        int cls = rc;
        MPI_Error_class(rc, &cls);
        if (error_ == MPI_SUCCESS) {
          error_ = rc;
          what_ = block ? "MPI_Wait" : "MPI_Test";
        }
        if (cls != MPI_ERR_TRUNCATE) error_may_leave_pending_ = true;
        finished_[i] = 1;
      } else if (flag) {
        finished_[i] = 1;
      } else {
        all = false;
      }
    }
    return all;
  }

  bool failed() const override { return error_ != MPI_SUCCESS; }
  bool may_still_use_buffers() const override { return error_may_leave_pending_; }
  [[noreturn]] void throw_failure() const override {
    check_mpi(error_, what_);
    TSP_THROW(CommError, what_, ": failed");  // not reached: error_ is an MPI error
  }
  int received_count() const override {
    TSP_ASSERT(receive_, "received_count of an operation without a receive");
    return count_of(statuses_[0], recv_type_);
  }
  bool transport_alive() const override { return !MpiEnvironment::is_finalized(); }

 private:
  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
  std::vector<char> finished_;
  bool receive_;
  MPI_Datatype recv_type_;
  int error_ = MPI_SUCCESS;
  const char* what_ = "";
  bool error_may_leave_pending_ = false;  // an error other than truncation: leak the buffers
};

// A posted operation of one MPI request, or a throw when posting failed (nothing posted).
template <class Post>
std::unique_ptr<PendingOp> post_one(Post&& post, const char* what) {
  auto op = std::make_unique<MpiPendingOp>(1, false, MPI_DATATYPE_NULL);
  check_mpi(post(op->request(0)), what);
  return op;
}

}  // namespace

MpiBackend::MpiBackend(MPI_Comm owned) {
  CommGuard guard(owned);
  check_mpi(MPI_Comm_set_errhandler(owned, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(owned, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(owned, &size_), "MPI_Comm_size");
  world_ranks_ = translate_to_world(owned, size_);
  comm_ = guard.release();
}

std::unique_ptr<MpiBackend> MpiBackend::dup_of(MPI_Comm comm) {
  MPI_Comm out = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(comm, &out), "MPI_Comm_dup");
  return std::make_unique<MpiBackend>(out);
}

MpiBackend::~MpiBackend() {
  if (comm_ != MPI_COMM_NULL && !MpiEnvironment::is_finalized()) MPI_Comm_free(&comm_);
}

std::unique_ptr<Backend> MpiBackend::dup() const { return dup_of(comm_); }

std::unique_ptr<Backend> MpiBackend::split(int color, int key) const {
  MPI_Comm out = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm_, color, key, &out), "MPI_Comm_split");
  return std::make_unique<MpiBackend>(out);
}

void MpiBackend::free() {
  if (comm_ == MPI_COMM_NULL) return;
  MPI_Comm c = std::exchange(comm_, MPI_COMM_NULL);
  check_mpi(MPI_Comm_free(&c), "MPI_Comm_free");
}

void MpiBackend::barrier() { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

// ---------------------------------------------------------------------------------------------
// Blocking

void MpiBackend::broadcast(void* buf, int count, DType type, int root) {
  check_mpi(MPI_Bcast(buf, count, mpi_type(type), root, comm_), "MPI_Bcast");
}

void MpiBackend::reduce(void* buf, int count, DType type, ReduceOp op, int root) {
  const bool is_root = rank_ == root;
  check_mpi(MPI_Reduce(is_root ? MPI_IN_PLACE : buf, is_root ? buf : nullptr, count,
                       mpi_type(type), mpi_op(op), root, comm_),
            "MPI_Reduce");
}

void MpiBackend::all_reduce(void* buf, int count, DType type, ReduceOp op) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, buf, count, mpi_type(type), mpi_op(op), comm_),
            "MPI_Allreduce");
}

void MpiBackend::all_gather(const void* in, int count, void* out, DType type) {
  const MPI_Datatype t = mpi_type(type);
  check_mpi(MPI_Allgather(in, count, t, out, count, t, comm_), "MPI_Allgather");
}

void MpiBackend::all_gather_v(const void* in, void* out, const int* counts, const int* displs,
                              DType type) {
  const MPI_Datatype t = mpi_type(type);
  check_mpi(MPI_Allgatherv(in, counts[rank_], t, out, counts, displs, t, comm_),
            "MPI_Allgatherv");
}

void MpiBackend::reduce_scatter(const void* in, void* out, const int* counts, DType type,
                                ReduceOp op) {
  check_mpi(MPI_Reduce_scatter(in, out, counts, mpi_type(type), mpi_op(op), comm_),
            "MPI_Reduce_scatter");
}

void MpiBackend::all_to_all(const void* in, int count, void* out, DType type) {
  const MPI_Datatype t = mpi_type(type);
  check_mpi(MPI_Alltoall(in, count, t, out, count, t, comm_), "MPI_Alltoall");
}

void MpiBackend::all_to_all_v(const void* in, const int* send_counts, const int* send_displs,
                              void* out, const int* recv_counts, const int* recv_displs,
                              DType type) {
  const MPI_Datatype t = mpi_type(type);
  check_mpi(MPI_Alltoallv(in, send_counts, send_displs, t, out, recv_counts, recv_displs, t,
                          comm_),
            "MPI_Alltoallv");
}

void MpiBackend::send(const void* buf, int count, DType type, int dest, int tag) {
  check_mpi(MPI_Send(buf, count, mpi_type(type), dest, tag, comm_), "MPI_Send");
}

int MpiBackend::recv(void* buf, int count, DType type, int source, int tag) {
  const MPI_Datatype t = mpi_type(type);
  MPI_Status status;
  check_mpi(MPI_Recv(buf, count, t, source, tag, comm_, &status), "MPI_Recv");
  return count_of(status, t);
}

int MpiBackend::sendrecv(const void* send_buf, int send_count, int dest, void* recv_buf,
                         int recv_count, int source, DType type, int tag) {
  const MPI_Datatype t = mpi_type(type);
  MPI_Status status;
  check_mpi(MPI_Sendrecv(send_buf, send_count, t, dest, tag, recv_buf, recv_count, t, source, tag,
                         comm_, &status),
            "MPI_Sendrecv");
  return count_of(status, t);
}

// ---------------------------------------------------------------------------------------------
// Nonblocking

std::unique_ptr<PendingOp> MpiBackend::ibroadcast(void* buf, int count, DType type, int root) {
  return post_one(
      [&](MPI_Request* r) { return MPI_Ibcast(buf, count, mpi_type(type), root, comm_, r); },
      "MPI_Ibcast");
}

std::unique_ptr<PendingOp> MpiBackend::ireduce(void* buf, int count, DType type, ReduceOp op,
                                               int root) {
  const bool is_root = rank_ == root;
  return post_one(
      [&](MPI_Request* r) {
        return MPI_Ireduce(is_root ? MPI_IN_PLACE : buf, is_root ? buf : nullptr, count,
                           mpi_type(type), mpi_op(op), root, comm_, r);
      },
      "MPI_Ireduce");
}

std::unique_ptr<PendingOp> MpiBackend::iall_reduce(void* buf, int count, DType type,
                                                   ReduceOp op) {
  return post_one(
      [&](MPI_Request* r) {
        return MPI_Iallreduce(MPI_IN_PLACE, buf, count, mpi_type(type), mpi_op(op), comm_, r);
      },
      "MPI_Iallreduce");
}

std::unique_ptr<PendingOp> MpiBackend::iall_gather(const void* in, int count, void* out,
                                                   DType type) {
  const MPI_Datatype t = mpi_type(type);
  return post_one(
      [&](MPI_Request* r) { return MPI_Iallgather(in, count, t, out, count, t, comm_, r); },
      "MPI_Iallgather");
}

std::unique_ptr<PendingOp> MpiBackend::ireduce_scatter(const void* in, void* out,
                                                       const int* counts, DType type,
                                                       ReduceOp op) {
  return post_one(
      [&](MPI_Request* r) {
        return MPI_Ireduce_scatter(in, out, counts, mpi_type(type), mpi_op(op), comm_, r);
      },
      "MPI_Ireduce_scatter");
}

std::unique_ptr<PendingOp> MpiBackend::iall_to_all(const void* in, int count, void* out,
                                                   DType type) {
  const MPI_Datatype t = mpi_type(type);
  return post_one(
      [&](MPI_Request* r) { return MPI_Ialltoall(in, count, t, out, count, t, comm_, r); },
      "MPI_Ialltoall");
}

std::unique_ptr<PendingOp> MpiBackend::isend(const void* buf, int count, DType type, int dest,
                                             int tag) {
  return post_one(
      [&](MPI_Request* r) { return MPI_Isend(buf, count, mpi_type(type), dest, tag, comm_, r); },
      "MPI_Isend");
}

std::unique_ptr<PendingOp> MpiBackend::irecv(void* buf, int count, DType type, int source,
                                             int tag) {
  const MPI_Datatype t = mpi_type(type);
  auto op = std::make_unique<MpiPendingOp>(1, true, t);
  check_mpi(MPI_Irecv(buf, count, t, source, tag, comm_, op->request(0)), "MPI_Irecv");
  return op;
}

std::unique_ptr<PendingOp> MpiBackend::isendrecv(const void* send_buf, int send_count, int dest,
                                                 void* recv_buf, int recv_count, int source,
                                                 DType type, int tag) {
  const MPI_Datatype t = mpi_type(type);
  auto op = std::make_unique<MpiPendingOp>(2, true, t);
  check_mpi(MPI_Irecv(recv_buf, recv_count, t, source, tag, comm_, op->request(0)), "MPI_Irecv");
  const int rc = MPI_Isend(send_buf, send_count, t, dest, tag, comm_, op->request(1));
  if (rc != MPI_SUCCESS) op->post_failed(rc, "MPI_Isend");  // the receive is posted
  return op;
}

MPI_Comm handle_of(const Communicator& comm) {
  TSP_CHECK(comm.valid(), "the MPI handle of a null communicator");
  const auto* b = dynamic_cast<const MpiBackend*>(&comm.backend());
  TSP_CHECK(b != nullptr, "communicator '", comm.name(), "' does not run on MPI");
  return b->handle();
}

}  // namespace mpi
}  // namespace tsp::comm
