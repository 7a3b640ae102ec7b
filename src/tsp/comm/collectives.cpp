// Tensor collectives over the communicator's Backend, their nonblocking variants, and the ring
// reduce-scatter: checks, bf16 through f32, the ledger and the watchdog, written once for every
// transport. Cost notes: the f32/integer paths hand the tensor's memory to the backend (no
// copies), so the wrapper costs only argument checks, one virtual call and a ledger update; bf16
// reductions pay two conversions (bf16 -> f32 comm buffer -> bf16) and put 4 bytes per element
// on the wire.
#include "tsp/comm/collectives.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <string>

#include "tsp/comm/watchdog.h"
#include "tsp/core/check.h"

namespace tsp::comm {
namespace {

void check_buffer(const Tensor& t, const char* op, const char* name) {
  TSP_CHECK_T(LayoutError, t.defined(), op, ": ", name, " is an undefined tensor");
  TSP_CHECK_T(LayoutError, t.is_contiguous(), op, ": ", name, " must be contiguous, got ",
              t.describe());
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  TSP_CHECK_DTYPE(a.dtype() == b.dtype(), op, ": dtypes differ: ", a.describe(), " vs ",
                  b.describe());
}

int to_count(int64_t n, const char* op) {
  TSP_CHECK(n >= 0 && n <= INT_MAX, op, ": element count ", n, " does not fit MPI's int count");
  return static_cast<int>(n);
}

void check_rank(const Communicator& comm, int r, const char* op, const char* what) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  TSP_CHECK(r >= 0 && r < comm.size(), op, ": ", what, " ", r, " outside communicator '",
            comm.name(), "' of size ", comm.size());
}

// Wire bytes per element: bf16 reductions travel as f32.
int64_t bytes_of(const Tensor& t) { return static_cast<int64_t>(t.nbytes()); }

int64_t wire_bytes(DType t, bool reducing) {
  return (reducing && t == DType::bf16) ? 4 : static_cast<int64_t>(dtype_size(t));
}

Tensor f32_comm_copy(const Tensor& x) { return Tensor::copy_of(x, DType::f32, MemCategory::comm); }

struct CountsAndDispls {
  std::vector<int> counts;
  std::vector<int> displs;
  int64_t total = 0;
};

CountsAndDispls counts_and_displs(std::span<const int64_t> counts, int D, const char* op) {
  TSP_CHECK_EQ(static_cast<int>(counts.size()), D, op, ": one count per rank");
  CountsAndDispls c;
  for (int64_t n : counts) {
    c.counts.push_back(to_count(n, op));
    c.displs.push_back(to_count(c.total, op));
    c.total += n;
  }
  to_count(c.total, op);
  return c;
}

std::vector<int64_t> equal_counts(int64_t n, int D) { return std::vector<int64_t>(D, n); }

template <class T>
void combine(T* acc, const T* x, int64_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      for (int64_t i = 0; i < n; ++i) acc[i] += x[i];
      break;
    case ReduceOp::max:
      for (int64_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], x[i]);
      break;
    case ReduceOp::min:
      for (int64_t i = 0; i < n; ++i) acc[i] = std::min(acc[i], x[i]);
      break;
  }
}

// "irecv on 'world' from rank 1": names a receive in its count error.
std::string recv_what(const Communicator& comm, const char* op, int source) {
  return std::string(op) + " on '" + comm.name() + "' from rank " + std::to_string(source);
}

[[noreturn]] void throw_count_mismatch(int got, int expected, const std::string& what) {
  TSP_THROW(CommError, what, ": expected ", expected, " elements, got ",
            got == kPartialElementCount ? std::string("a partial element count")
                                        : std::to_string(got));
}

// Throws CommError unless exactly `expected` elements arrived (`got`, as a Backend's receive
// reports it) in `op`'s receive from `source`; the message is built only on failure.
void check_received(int got, int expected, const Communicator& comm, const char* op,
                    int source) {
  if (got != expected) throw_count_mismatch(got, expected, recv_what(comm, op, source));
}

// Ring reduce-scatter, D-1 steps. At step s rank r sends to r+1 the partial of block (r-1-s) and
// receives from r-1 the partial of block (r-2-s), adding its own contribution; after the last
// step (s = D-2) it has received block r, complete. Partials alternate between two buffers of the
// largest block, so a send buffer is never the receive buffer of the same step. The two buffers
// live in the communicator's grow-only scratch (MemCategory::comm), so a steady-state call
// allocates nothing.
template <class T>
void ring_reduce_scatter(Communicator& comm, const T* in, T* out, const CountsAndDispls& c,
                         ReduceOp op, DType type) {
  const int D = comm.size(), r = comm.rank();
  const int next = comm.next_rank(), prev = comm.prev_rank();
  const int max_count = *std::max_element(c.counts.begin(), c.counts.end());
  T* scratch = static_cast<T*>(comm.scratch(2 * static_cast<size_t>(max_count) * sizeof(T)));
  T* bufs[2] = {scratch, scratch + max_count};
  const int first = (r - 1 + D) % D;
  const T* sbuf = in + c.displs[first];
  int scount = c.counts[first];
  for (int s = 0; s <= D - 2; ++s) {
    const int b = ((r - 2 - s) % D + D) % D;
    T* rbuf = (s == D - 2) ? out : bufs[s % 2];
    const int got = comm.backend().sendrecv(sbuf, scount, next, rbuf, c.counts[b], prev, type,
                                            kRingReduceScatterTag);
    check_received(got, c.counts[b], comm, "ring reduce_scatter", prev);
    combine(rbuf, in + c.displs[b], c.counts[b], op);
    sbuf = rbuf;
    scount = c.counts[b];
  }
}

// Reduce-scatter of f32/i32/i64 buffers (bf16 was converted by the caller).
void reduce_scatter_native(Communicator& comm, const Tensor& in, Tensor& out,
                           const CountsAndDispls& c, ReduceOp op, ReduceScatterAlgo algo) {
  if (comm.size() == 1) {
    if (out.nbytes() > 0) std::memcpy(out.raw(), in.raw(), out.nbytes());
    return;
  }
  const bool ring = resolve_reduce_scatter_algo(algo, static_cast<int64_t>(in.nbytes())) ==
                    ReduceScatterAlgo::ring;
  const DType type = in.dtype();
  if (!ring) {
    comm.backend().reduce_scatter(in.raw(), out.raw(), c.counts.data(), type, op);
    return;
  }
  switch (in.dtype()) {
    case DType::f32: ring_reduce_scatter(comm, in.data<float>(), out.data<float>(), c, op, type); break;
    case DType::i32: ring_reduce_scatter(comm, in.data<int32_t>(), out.data<int32_t>(), c, op, type); break;
    case DType::i64: ring_reduce_scatter(comm, in.data<int64_t>(), out.data<int64_t>(), c, op, type); break;
    case DType::bf16: TSP_ASSERT(false, "bf16 reduce_scatter must go through f32"); break;
    case DType::f16: TSP_ASSERT(false, "f16 is a storage dtype: reduce_scatter goes through f32"); break;
  }
}

}  // namespace

// A posted operation: the backend's PendingOp and everything it reads or writes until it has
// finished (tensor handles, comm buffers, count arrays), plus what completion still checks and
// does.
struct RequestState {
  // The operation as the watchdog names it while wait() blocks (comm outlives the request).
  const Communicator* comm = nullptr;
  const char* op = "";
  int64_t bytes = 0;
  std::unique_ptr<PendingOp> pending;
  std::vector<Tensor> keep_alive;
  std::vector<int> counts;            // count arrays the backend reads until completion
  int expected_recv = -1;             // elements the receive must deliver (-1: no receive)
  std::string recv_what;              // "irecv on 'world' from rank 1", for the error message
  std::function<void()> on_complete;  // runs once after the operation completed and was checked
};

namespace {

// `op`, `comm` and `bytes` describe the operation to the watchdog while wait() blocks.
std::unique_ptr<RequestState> new_state(const Communicator& comm, const char* op, int64_t bytes,
                                        std::initializer_list<Tensor> keep_alive) {
  auto st = std::make_unique<RequestState>();
  st->comm = &comm;
  st->op = op;
  st->bytes = bytes;
  st->keep_alive.assign(keep_alive.begin(), keep_alive.end());
  return st;
}

// ---------------------------------------------------------------------------------------------
// Validation: one prepare_<op> per operation, called by both its blocking and its nonblocking
// variant. Each checks every argument and computes every count before anything is posted, so an
// invalid call throws (on every rank, since the arguments are collective) before any transport
// call, and the two variants cannot drift apart.

void check_user_tag(int tag, const char* op) {
  TSP_CHECK(tag >= 0 && tag < kReservedTagBase, op, ": tag ", tag, " outside [0, ",
            kReservedTagBase, ") (tags from ", kReservedTagBase, " up are reserved)");
}

// broadcast / ibroadcast: elements of x.
int prepare_broadcast(const Communicator& comm, const Tensor& x, int root, const char* op) {
  check_rank(comm, root, op, "root");
  check_buffer(x, op, "x");
  return to_count(x.numel(), op);
}

// reduce: elements of x.
int prepare_reduce(const Communicator& comm, const Tensor& x, int root, const char* op) {
  check_rank(comm, root, op, "root");
  check_buffer(x, op, "x");
  return to_count(x.numel(), op);
}

// all_reduce / iall_reduce: elements of x.
int prepare_all_reduce(const Communicator& comm, const Tensor& x, const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(x, op, "x");
  return to_count(x.numel(), op);
}

// all_gather / iall_gather: elements per rank (the result's total is checked to fit too).
int prepare_all_gather(const Communicator& comm, const Tensor& in, const Tensor& out,
                       const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(in, op, "in");
  check_buffer(out, op, "out");
  check_same_dtype(in, out, op);
  TSP_CHECK_SHAPE(out.numel() == in.numel() * comm.size(), op, " over ", comm.size(),
                  " ranks: out ", out.shape(), " must hold ", comm.size(), " x in ", in.shape());
  const int n = to_count(in.numel(), op);
  to_count(out.numel(), op);
  return n;
}

CountsAndDispls prepare_all_gather_v(const Communicator& comm, const Tensor& in, const Tensor& out,
                                     std::span<const int64_t> counts, const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(in, op, "in");
  check_buffer(out, op, "out");
  check_same_dtype(in, out, op);
  CountsAndDispls c = counts_and_displs(counts, comm.size(), op);
  TSP_CHECK_SHAPE(in.numel() == counts[comm.rank()], op, ": in ", in.shape(), " but rank ",
                  comm.rank(), "'s count is ", counts[comm.rank()]);
  TSP_CHECK_SHAPE(out.numel() == c.total, op, ": out ", out.shape(), " but counts sum to ",
                  c.total);
  return c;
}

struct ReduceScatterPlan {
  std::vector<int64_t> counts;  // elements of each rank's block
  CountsAndDispls c;            // the same as the backend's int counts, with displacements
};

// reduce_scatter_v (and, through prepare_reduce_scatter, reduce_scatter / ireduce_scatter).
ReduceScatterPlan prepare_reduce_scatter_v(const Communicator& comm, const Tensor& in,
                                           const Tensor& out, std::span<const int64_t> counts,
                                           const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(in, op, "in");
  check_buffer(out, op, "out");
  check_same_dtype(in, out, op);
  ReduceScatterPlan plan{std::vector<int64_t>(counts.begin(), counts.end()),
                         counts_and_displs(counts, comm.size(), op)};
  TSP_CHECK_SHAPE(out.numel() == counts[comm.rank()], op, ": out ", out.shape(), " but rank ",
                  comm.rank(), "'s count is ", counts[comm.rank()]);
  TSP_CHECK_SHAPE(in.numel() == plan.c.total, op, ": in ", in.shape(), " but counts sum to ",
                  plan.c.total);
  return plan;
}

ReduceScatterPlan prepare_reduce_scatter(const Communicator& comm, const Tensor& in,
                                         const Tensor& out, const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(in, op, "in");
  check_buffer(out, op, "out");
  TSP_CHECK_SHAPE(in.numel() == out.numel() * comm.size(), op, " over ", comm.size(),
                  " ranks: in ", in.shape(), " must hold ", comm.size(), " x out ", out.shape());
  const std::vector<int64_t> counts = equal_counts(out.numel(), comm.size());
  return prepare_reduce_scatter_v(comm, in, out, counts, op);
}

// all_to_all / iall_to_all: elements per block (the total is checked to fit too).
int prepare_all_to_all(const Communicator& comm, const Tensor& in, const Tensor& out,
                       const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(in, op, "in");
  check_buffer(out, op, "out");
  check_same_dtype(in, out, op);
  const int D = comm.size();
  TSP_CHECK_SHAPE(in.numel() == out.numel() && in.numel() % D == 0, op, " over ", D,
                  " ranks: in ", in.shape(), " and out ", out.shape(),
                  " must have equal element counts divisible by ", D);
  const int n = to_count(in.numel() / D, op);
  to_count(in.numel(), op);
  return n;
}

struct AllToAllVPlan {
  CountsAndDispls send;
  CountsAndDispls recv;
};

AllToAllVPlan prepare_all_to_all_v(const Communicator& comm, const Tensor& in,
                                   std::span<const int64_t> send_counts, const Tensor& out,
                                   std::span<const int64_t> recv_counts, const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  check_buffer(in, op, "in");
  check_buffer(out, op, "out");
  check_same_dtype(in, out, op);
  AllToAllVPlan p{counts_and_displs(send_counts, comm.size(), "all_to_all_v(send)"),
                  counts_and_displs(recv_counts, comm.size(), "all_to_all_v(recv)")};
  TSP_CHECK_SHAPE(in.numel() == p.send.total, op, ": in ", in.shape(), " but send counts sum to ",
                  p.send.total);
  TSP_CHECK_SHAPE(out.numel() == p.recv.total, op, ": out ", out.shape(),
                  " but receive counts sum to ", p.recv.total);
  return p;
}

// send / isend / recv / irecv: elements of x. `role` is "dest" or "source".
int prepare_point_to_point(const Communicator& comm, const Tensor& x, int peer, int tag,
                           const char* op, const char* role) {
  check_rank(comm, peer, op, role);
  check_buffer(x, op, "x");
  check_user_tag(tag, op);
  return to_count(x.numel(), op);
}

struct SendRecvPlan {
  int send_count;
  int recv_count;
  DType type;
};

// sendrecv (user tag, checked by the caller) and, through prepare_ring_shift, the ring shifts.
SendRecvPlan prepare_sendrecv(const Communicator& comm, const Tensor& send_buf, int dest,
                              const Tensor& recv_buf, int source, const char* op) {
  check_rank(comm, dest, op, "dest");
  check_rank(comm, source, op, "source");
  check_buffer(send_buf, op, "send_buf");
  check_buffer(recv_buf, op, "recv_buf");
  check_same_dtype(send_buf, recv_buf, op);
  return {to_count(send_buf.numel(), op), to_count(recv_buf.numel(), op), send_buf.dtype()};
}


struct ShiftPeers {
  int dest;
  int source;
};

ShiftPeers shift_peers(const Communicator& comm, int offset, const char* op) {
  TSP_CHECK(comm.valid(), op, " on a null communicator");
  const int D = comm.size();
  const int k = ((offset % D) + D) % D;
  return {(comm.rank() + k) % D, (comm.rank() - k + D) % D};
}

// ring_shift / iring_shift: peers and counts; send and receive must have equal sizes.
struct ShiftPlan {
  ShiftPeers peers;
  SendRecvPlan sr;
};

ShiftPlan prepare_ring_shift(const Communicator& comm, const Tensor& send_buf,
                             const Tensor& recv_buf, int offset, const char* op) {
  const ShiftPeers p = shift_peers(comm, offset, op);
  const SendRecvPlan sr = prepare_sendrecv(comm, send_buf, p.dest, recv_buf, p.source, op);
  TSP_CHECK_SHAPE(send_buf.numel() == recv_buf.numel(), op, ": send ", send_buf.shape(),
                  " and recv ", recv_buf.shape(), " differ in size");
  return {p, sr};
}

// Blocking sendrecv after validation: checks the received count, records the traffic.
void sendrecv_prepared(Communicator& comm, const Tensor& send_buf, int dest, Tensor& recv_buf,
                       int source, int tag, const SendRecvPlan& sr, const char* op) {
  int got = 0;
  {
    const InFlight watch(comm, op, bytes_of(send_buf) + bytes_of(recv_buf));
    got = comm.backend().sendrecv(send_buf.raw(), sr.send_count, dest, recv_buf.raw(),
                                  sr.recv_count, source, sr.type, tag);
  }
  check_received(got, sr.recv_count, comm, op, source);
  comm.ledger().record(CommOp::sendrecv, {static_cast<int64_t>(send_buf.nbytes()),
                                          static_cast<int64_t>(recv_buf.nbytes())});
}

// A ring shift onto this rank itself (D == 1 or offset % D == 0): a local copy, 0 bytes counted.
void ring_shift_local(Communicator& comm, const Tensor& send_buf, Tensor& recv_buf) {
  if (recv_buf.nbytes() > 0) std::memmove(recv_buf.raw(), send_buf.raw(), recv_buf.nbytes());
  comm.ledger().record(CommOp::sendrecv, {});
}

// ---------------------------------------------------------------------------------------------
// Request completion

// The watchdog's guard over a blocking wait of `st`.
InFlight watch_wait(const RequestState& st) { return InFlight(*st.comm, st.op, st.bytes); }

// Finishes a state whose operation has finished: raises its transport failure, then a
// receive-count mismatch, as CommError, then runs on_complete. `state` is empty afterwards, its
// buffers released, or leaked when the transport may still own them.
void finish(std::unique_ptr<RequestState>& state) {
  if (state->pending->failed()) {
    std::unique_ptr<RequestState> failed = std::move(state);
    const PendingOp& pending = *failed->pending;
    if (pending.may_still_use_buffers())
      (void)failed.release();  // deliberate leak: the transport may still write these buffers
    pending.throw_failure();
  }
  const std::unique_ptr<RequestState> done = std::move(state);
  if (done->expected_recv >= 0) {
    const int got = done->pending->received_count();
    if (got != done->expected_recv) throw_count_mismatch(got, done->expected_recv, done->recv_what);
  }
  if (done->on_complete) done->on_complete();
}

// Hands a freshly posted state to a Request; an operation posted only in part (the backend
// reports it failed at once) throws here instead, its buffers leaked.
Request posted(std::unique_ptr<RequestState> state) {
  if (state->pending->failed()) finish(state);
  return Request(std::move(state));
}

}  // namespace

ReduceScatterAlgo resolve_reduce_scatter_algo(ReduceScatterAlgo requested,
                                              int64_t input_wire_bytes) {
  if (requested != ReduceScatterAlgo::automatic) return requested;
  return input_wire_bytes >= kRingReduceScatterMinBytes ? ReduceScatterAlgo::ring
                                                        : ReduceScatterAlgo::mpi;
}

// ---------------------------------------------------------------------------------------------
// Request

Request::Request(std::unique_ptr<RequestState> state) : state_(std::move(state)) {}

Request::Request() noexcept = default;

Request::Request(Request&& other) noexcept = default;

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    this->~Request();
    new (this) Request(std::move(other));
  }
  return *this;
}

Request::~Request() {
  if (!state_) return;
  if (std::uncaught_exceptions() > 0 || !state_->pending->transport_alive()) {
    (void)state_.release();  // deliberate leak: the transport may still own these buffers
    return;
  }
  try {
    {
      const InFlight watch = watch_wait(*state_);
      state_->pending->progress(/*block=*/true);
    }
    finish(state_);
  } catch (...) {
  }
}

void Request::wait() {
  if (!state_) return;
  {
    const InFlight watch = watch_wait(*state_);
    state_->pending->progress(/*block=*/true);
  }
  finish(state_);
}

bool Request::test() {
  if (!state_) return true;
  if (!state_->pending->progress(/*block=*/false)) return false;
  finish(state_);
  return true;
}

void wait_all(std::span<Request> requests) {
  std::exception_ptr first;
  for (Request& r : requests) {
    try {
      r.wait();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

// ---------------------------------------------------------------------------------------------
// Broadcast <-> reduce

void broadcast(Communicator& comm, Tensor& x, int root) {
  const int n = prepare_broadcast(comm, x, root, "broadcast");
  const InFlight watch(comm, "broadcast", bytes_of(x));
  comm.backend().broadcast(x.raw(), n, x.dtype(), root);
  comm.ledger().record(CommOp::broadcast, traffic::broadcast(n, wire_bytes(x.dtype(), false),
                                                             comm.size(), comm.rank(), root));
}

void reduce(Communicator& comm, Tensor& x, int root, ReduceOp op) {
  const int n = prepare_reduce(comm, x, root, "reduce");
  if (comm.size() > 1) {
    const bool is_root = comm.rank() == root;
    Tensor buf = x.dtype() == DType::bf16 ? f32_comm_copy(x) : x;
    const InFlight watch(comm, "reduce", bytes_of(buf));
    comm.backend().reduce(buf.raw(), n, buf.dtype(), op, root);
    if (is_root && x.dtype() == DType::bf16) x.copy_from(buf);
  }
  comm.ledger().record(CommOp::reduce,
                       traffic::reduce(n, wire_bytes(x.dtype(), true), comm.size(), comm.rank()));
}

// ---------------------------------------------------------------------------------------------
// All-reduce <-> identity

void all_reduce(Communicator& comm, Tensor& x, ReduceOp op) {
  const int n = prepare_all_reduce(comm, x, "all_reduce");
  if (comm.size() > 1) {
    const InFlight watch(comm, "all_reduce", n * wire_bytes(x.dtype(), true));
    if (x.dtype() == DType::bf16) {
      Tensor buf = f32_comm_copy(x);
      comm.backend().all_reduce(buf.raw(), n, DType::f32, op);
      x.copy_from(buf);
    } else {
      comm.backend().all_reduce(x.raw(), n, x.dtype(), op);
    }
  }
  comm.ledger().record(CommOp::all_reduce, traffic::all_reduce(n, wire_bytes(x.dtype(), true),
                                                               comm.size(), comm.rank()));
}

// ---------------------------------------------------------------------------------------------
// All-gather <-> reduce-scatter

void all_gather(Communicator& comm, const Tensor& in, Tensor& out) {
  const int n = prepare_all_gather(comm, in, out, "all_gather");
  const InFlight watch(comm, "all_gather", bytes_of(out));
  comm.backend().all_gather(in.raw(), n, out.raw(), in.dtype());
  const std::vector<int64_t> counts = equal_counts(n, comm.size());
  comm.ledger().record(CommOp::all_gather,
                       traffic::all_gather(counts, wire_bytes(in.dtype(), false), comm.rank()));
}

namespace {
// reduce_scatter(_v) after validation.
void reduce_scatter_prepared(Communicator& comm, const Tensor& in, Tensor& out,
                             const ReduceScatterPlan& plan, ReduceOp op, ReduceScatterAlgo algo) {
  const InFlight watch(comm, "reduce_scatter",
                       in.numel() * wire_bytes(in.dtype(), true));  // the input as it travels
  if (in.dtype() == DType::bf16) {
    const Tensor in32 = f32_comm_copy(in);
    Tensor out32 = Tensor::empty(out.shape(), DType::f32, MemCategory::comm);
    reduce_scatter_native(comm, in32, out32, plan.c, op, algo);
    out.copy_from(out32);
  } else {
    reduce_scatter_native(comm, in, out, plan.c, op, algo);
  }
  comm.ledger().record(CommOp::reduce_scatter, traffic::reduce_scatter(
                                                   plan.counts, wire_bytes(in.dtype(), true),
                                                   comm.rank()));
}
}  // namespace

void reduce_scatter(Communicator& comm, const Tensor& in, Tensor& out, ReduceOp op,
                    ReduceScatterAlgo algo) {
  const ReduceScatterPlan plan = prepare_reduce_scatter(comm, in, out, "reduce_scatter");
  reduce_scatter_prepared(comm, in, out, plan, op, algo);
}

void all_gather_v(Communicator& comm, const Tensor& in, Tensor& out, std::span<const int64_t> counts) {
  const CountsAndDispls c = prepare_all_gather_v(comm, in, out, counts, "all_gather_v");
  const InFlight watch(comm, "all_gather_v", bytes_of(out));
  comm.backend().all_gather_v(in.raw(), out.raw(), c.counts.data(), c.displs.data(), in.dtype());
  comm.ledger().record(CommOp::all_gather,
                       traffic::all_gather(counts, wire_bytes(in.dtype(), false), comm.rank()));
}

void reduce_scatter_v(Communicator& comm, const Tensor& in, Tensor& out,
                      std::span<const int64_t> counts, ReduceOp op, ReduceScatterAlgo algo) {
  const ReduceScatterPlan plan = prepare_reduce_scatter_v(comm, in, out, counts, "reduce_scatter_v");
  reduce_scatter_prepared(comm, in, out, plan, op, algo);
}

// ---------------------------------------------------------------------------------------------
// All-to-all <-> all-to-all

void all_to_all(Communicator& comm, const Tensor& in, Tensor& out) {
  const int n = prepare_all_to_all(comm, in, out, "all_to_all");
  const InFlight watch(comm, "all_to_all", bytes_of(in));
  comm.backend().all_to_all(in.raw(), n, out.raw(), in.dtype());
  const std::vector<int64_t> counts = equal_counts(n, comm.size());
  comm.ledger().record(CommOp::all_to_all, traffic::all_to_all(counts, counts,
                                                               wire_bytes(in.dtype(), false),
                                                               comm.rank()));
}

void all_to_all_v(Communicator& comm, const Tensor& in, std::span<const int64_t> send_counts,
                  Tensor& out, std::span<const int64_t> recv_counts) {
  const AllToAllVPlan p =
      prepare_all_to_all_v(comm, in, send_counts, out, recv_counts, "all_to_all_v");
  const InFlight watch(comm, "all_to_all_v", bytes_of(in) + bytes_of(out));
  comm.backend().all_to_all_v(in.raw(), p.send.counts.data(), p.send.displs.data(), out.raw(),
                              p.recv.counts.data(), p.recv.displs.data(), in.dtype());
  comm.ledger().record(CommOp::all_to_all,
                       traffic::all_to_all(send_counts, recv_counts, wire_bytes(in.dtype(), false),
                                           comm.rank()));
}

// ---------------------------------------------------------------------------------------------
// Point to point

void send(Communicator& comm, const Tensor& x, int dest, int tag) {
  const int n = prepare_point_to_point(comm, x, dest, tag, "send", "dest");
  const InFlight watch(comm, "send", bytes_of(x));
  comm.backend().send(x.raw(), n, x.dtype(), dest, tag);
  comm.ledger().record(CommOp::send, {static_cast<int64_t>(x.nbytes()), 0});
}

void recv(Communicator& comm, Tensor& x, int source, int tag) {
  const int n = prepare_point_to_point(comm, x, source, tag, "recv", "source");
  const InFlight watch(comm, "recv", bytes_of(x));
  const int got = comm.backend().recv(x.raw(), n, x.dtype(), source, tag);
  check_received(got, n, comm, "recv", source);
  comm.ledger().record(CommOp::recv, {0, static_cast<int64_t>(x.nbytes())});
}

void sendrecv(Communicator& comm, const Tensor& send_buf, int dest, Tensor& recv_buf, int source,
              int tag) {
  const SendRecvPlan sr = prepare_sendrecv(comm, send_buf, dest, recv_buf, source, "sendrecv");
  check_user_tag(tag, "sendrecv");
  sendrecv_prepared(comm, send_buf, dest, recv_buf, source, tag, sr, "sendrecv");
}

void ring_shift(Communicator& comm, const Tensor& send_buf, Tensor& recv_buf, int offset) {
  const ShiftPlan p = prepare_ring_shift(comm, send_buf, recv_buf, offset, "ring_shift");
  if (p.peers.dest == comm.rank()) {
    ring_shift_local(comm, send_buf, recv_buf);
    return;
  }
  sendrecv_prepared(comm, send_buf, p.peers.dest, recv_buf, p.peers.source, kRingShiftTag, p.sr,
                    "ring_shift");
}

// ---------------------------------------------------------------------------------------------
// Nonblocking variants. Each builds its state (everything that can throw) before posting, posts
// through the backend (which throws only when nothing was posted), then records the traffic.

Request ibroadcast(Communicator& comm, Tensor& x, int root) {
  const int n = prepare_broadcast(comm, x, root, "ibroadcast");
  auto st = new_state(comm, "ibroadcast", bytes_of(x), {x});
  st->pending = comm.backend().ibroadcast(x.raw(), n, x.dtype(), root);
  comm.ledger().record(CommOp::broadcast, traffic::broadcast(n, wire_bytes(x.dtype(), false),
                                                             comm.size(), comm.rank(), root));
  return posted(std::move(st));
}

Request ireduce(Communicator& comm, Tensor& x, int root, ReduceOp op) {
  const int n = prepare_reduce(comm, x, root, "ireduce");
  if (comm.size() == 1) {
    comm.ledger().record(CommOp::reduce,
                         traffic::reduce(n, wire_bytes(x.dtype(), true), comm.size(), comm.rank()));
    return Request();
  }
  const bool is_root = comm.rank() == root, is_bf16 = x.dtype() == DType::bf16;
  Tensor buf = is_bf16 ? f32_comm_copy(x) : x;
  auto st = new_state(comm, "ireduce", bytes_of(buf), {x, buf});
  if (is_root && is_bf16) st->on_complete = [x, buf]() mutable { x.copy_from(buf); };
  st->pending = comm.backend().ireduce(buf.raw(), n, buf.dtype(), op, root);
  comm.ledger().record(CommOp::reduce,
                       traffic::reduce(n, wire_bytes(x.dtype(), true), comm.size(), comm.rank()));
  return posted(std::move(st));
}

Request iall_reduce(Communicator& comm, Tensor& x, ReduceOp op) {
  const int n = prepare_all_reduce(comm, x, "iall_reduce");
  const bool is_bf16 = x.dtype() == DType::bf16;
  Tensor buf = is_bf16 ? f32_comm_copy(x) : x;
  auto st = new_state(comm, "iall_reduce", bytes_of(buf), {x, buf});
  if (is_bf16) st->on_complete = [x, buf]() mutable { x.copy_from(buf); };
  st->pending = comm.backend().iall_reduce(buf.raw(), n, buf.dtype(), op);
  comm.ledger().record(CommOp::all_reduce, traffic::all_reduce(n, wire_bytes(x.dtype(), true),
                                                               comm.size(), comm.rank()));
  return posted(std::move(st));
}

Request iall_gather(Communicator& comm, const Tensor& in, Tensor& out) {
  const int n = prepare_all_gather(comm, in, out, "iall_gather");
  auto st = new_state(comm, "iall_gather", bytes_of(out), {in, out});
  st->pending = comm.backend().iall_gather(in.raw(), n, out.raw(), in.dtype());
  const std::vector<int64_t> counts = equal_counts(n, comm.size());
  comm.ledger().record(CommOp::all_gather,
                       traffic::all_gather(counts, wire_bytes(in.dtype(), false), comm.rank()));
  return posted(std::move(st));
}

// Always the backend's nonblocking reduce-scatter: see collectives.h for why the hand ring has no
// nonblocking form.
Request ireduce_scatter(Communicator& comm, const Tensor& in, Tensor& out, ReduceOp op) {
  const ReduceScatterPlan plan = prepare_reduce_scatter(comm, in, out, "ireduce_scatter");
  const bool is_bf16 = in.dtype() == DType::bf16;
  const Tensor in_buf = is_bf16 ? f32_comm_copy(in) : in;
  Tensor out_buf = is_bf16 ? Tensor::empty(out.shape(), DType::f32, MemCategory::comm) : out;
  auto st = new_state(comm, "ireduce_scatter", bytes_of(in_buf), {in, out, in_buf, out_buf});
  st->counts = plan.c.counts;  // the backend reads the counts until completion
  if (is_bf16) st->on_complete = [out, out_buf]() mutable { out.copy_from(out_buf); };
  st->pending = comm.backend().ireduce_scatter(in_buf.raw(), out_buf.raw(), st->counts.data(),
                                               in_buf.dtype(), op);
  comm.ledger().record(CommOp::reduce_scatter, traffic::reduce_scatter(
                                                   plan.counts, wire_bytes(in.dtype(), true),
                                                   comm.rank()));
  return posted(std::move(st));
}

Request iall_to_all(Communicator& comm, const Tensor& in, Tensor& out) {
  const int n = prepare_all_to_all(comm, in, out, "iall_to_all");
  auto st = new_state(comm, "iall_to_all", bytes_of(in), {in, out});
  st->pending = comm.backend().iall_to_all(in.raw(), n, out.raw(), in.dtype());
  const std::vector<int64_t> counts = equal_counts(n, comm.size());
  comm.ledger().record(CommOp::all_to_all, traffic::all_to_all(counts, counts,
                                                               wire_bytes(in.dtype(), false),
                                                               comm.rank()));
  return posted(std::move(st));
}

Request isend(Communicator& comm, const Tensor& x, int dest, int tag) {
  const int n = prepare_point_to_point(comm, x, dest, tag, "isend", "dest");
  auto st = new_state(comm, "isend", bytes_of(x), {x});
  st->pending = comm.backend().isend(x.raw(), n, x.dtype(), dest, tag);
  comm.ledger().record(CommOp::send, {static_cast<int64_t>(x.nbytes()), 0});
  return posted(std::move(st));
}

Request irecv(Communicator& comm, Tensor& x, int source, int tag) {
  const int n = prepare_point_to_point(comm, x, source, tag, "irecv", "source");
  auto st = new_state(comm, "irecv", bytes_of(x), {x});
  st->expected_recv = n;
  st->recv_what = recv_what(comm, "irecv", source);
  st->pending = comm.backend().irecv(x.raw(), n, x.dtype(), source, tag);
  comm.ledger().record(CommOp::recv, {0, static_cast<int64_t>(x.nbytes())});
  return posted(std::move(st));
}

Request iring_shift(Communicator& comm, const Tensor& send_buf, Tensor& recv_buf, int offset) {
  const ShiftPlan p = prepare_ring_shift(comm, send_buf, recv_buf, offset, "iring_shift");
  if (p.peers.dest == comm.rank()) {
    ring_shift_local(comm, send_buf, recv_buf);
    return Request();
  }
  // Everything that can throw is done before the receive is posted.
  auto st = new_state(comm, "iring_shift", bytes_of(send_buf) + bytes_of(recv_buf), {send_buf, recv_buf});
  st->expected_recv = p.sr.recv_count;
  st->recv_what = recv_what(comm, "iring_shift", p.peers.source);
  // The receive is posted first; a send that then fails comes back as a failed operation, which
  // posted() throws with its buffers leaked (the receive may still write recv_buf).
  st->pending = comm.backend().isendrecv(send_buf.raw(), p.sr.send_count, p.peers.dest,
                                         recv_buf.raw(), p.sr.recv_count, p.peers.source,
                                         p.sr.type, kRingShiftTag);
  if (st->pending->failed()) return posted(std::move(st));  // throws: not counted, as before
  comm.ledger().record(CommOp::sendrecv, {static_cast<int64_t>(send_buf.nbytes()),
                                          static_cast<int64_t>(recv_buf.nbytes())});
  return posted(std::move(st));
}

}  // namespace tsp::comm
