// Collectives on tensors over one Communicator (one mesh axis). Each forward collective sits next
// to its backward dual (the adjoint: sum over ranks of <f(x), y> == sum over ranks of <x, f*(y)>):
//   broadcast(root)      <-> reduce(to root; the exact adjoint also zeroes the non-roots' copies)
//   all_gather(_v)       <-> reduce_scatter(_v)
//   all_to_all(_v)       <-> all_to_all(_v) with send and receive counts swapped
//   send / ring_shift(k) <-> recv / ring_shift(-k)
//   all_reduce           <-> identity (copy)
//
// Conventions shared by every function:
// - Tensors must be contiguous (LayoutError otherwise); they are treated as flat buffers, and
//   "block i" means the i-th run of elements in rank order (dim 0 when the blocks are whole rows).
// - dtypes f32, bf16, i32, i64; every tensor of one call has the same dtype (DTypeError).
// - Counts are in elements and must fit an int (the backends' count type, MPI's and NCCL's).
// - Reductions of bf16 accumulate in f32: the data is converted into an f32 comm buffer, reduced
//   in f32 and rounded back once. So bf16 reductions put 4 bytes per element on the wire, and the
//   ledger counts 4; non-reducing collectives move bf16 as 2 bytes.
// - Every call records its traffic in comm.ledger() under the convention of traffic_ledger.h,
//   once the transport call has succeeded (nonblocking variants: once the operation is posted).
// - Group size 1 is valid everywhere (no traffic beyond local copies, zero bytes counted).
// - Arguments are validated by one checking step per operation, shared by the blocking and the
//   nonblocking variant, before anything is posted: an invalid call throws on every rank before
//   any transport call, so no peer is left waiting and no request is left dangling.
// - Every receive checks the element count that arrived (blocking: at once; nonblocking: in
//   Request::wait()/test()): a shorter message throws CommError naming the expected and actual
//   counts, a longer one fails in the transport (truncation) and throws CommError too.
// - Transport failures throw CommError.
// - The transport is the communicator's comm::Backend (backend.h; MPI in comm/mpi/): these
//   functions are written once above it, so a second backend changes none of their callers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"

namespace tsp::comm {

// Message tags. User point-to-point tags (send, recv, sendrecv, isend, irecv) must lie in
// [0, kReservedTagBase); tags from kReservedTagBase up carry the library's internal
// point-to-point traffic, so it can never match a user's message on the same communicator:
//   kRingReduceScatterTag  the steps of the hand ring reduce-scatter
//   kRingShiftTag          ring_shift / iring_shift
// (MPI guarantees tags up to 32767 = 0x7FFF.)
inline constexpr int kReservedTagBase = 0x7A51;
inline constexpr int kRingReduceScatterTag = kReservedTagBase;
inline constexpr int kRingShiftTag = kReservedTagBase + 1;

// Reduce-scatter algorithm: the backend's own (MPI's variable-count Reduce_scatter; its
// Reduce_scatter_block is pathologically slow in Open MPI 4.1) or a hand-written ring of
// sendrecv + local combine over the backend's point-to-point.
// `automatic` picks the ring from kRingReduceScatterMinBytes of input up: on this 2-core machine
// (2 ranks, tsp_bench_comm, idle) the ring beat MPI's Reduce_scatter at every measured size from
// 64 KiB to 64 MiB by 2.5-16x; below 64 KiB (latency-bound, unmeasured) MPI's call is kept.
// Re-measure on other machines.
// (`mpi` names the backend's own algorithm, MPI's today.)
enum class ReduceScatterAlgo : uint8_t { automatic, mpi, ring };
inline constexpr int64_t kRingReduceScatterMinBytes = int64_t{64} << 10;
// The algorithm a reduce-scatter of `input_wire_bytes` (the input as it travels: bf16 counts 4
// bytes per element) actually runs: `requested` unless it is `automatic`, which resolves to `ring`
// from kRingReduceScatterMinBytes up and to `mpi` below. (Group size 1 runs neither: a copy.)
ReduceScatterAlgo resolve_reduce_scatter_algo(ReduceScatterAlgo requested, int64_t input_wire_bytes);

// ---------------------------------------------------------------------------------------------
// Nonblocking request: move-only, owns the backend's pending operation and keeps every buffer of
// the operation alive (tensor handles, comm buffers, count arrays) until completion. wait()
// completes it: checks the element count of every receive against the expected one, then runs
// any finishing step (e.g. rounding an f32 reduction buffer back into a bf16 tensor); it throws
// CommError on a transport failure or a count mismatch. test() does the same once the operation
// has completed. An error is raised only once every part of the operation has finished, so the
// buffers can be released (a truncated receive included); after any other transport error, when
// the transport may still own the buffers, they are leaked instead. Destroyed un-waited, it waits
// and swallows errors; destroyed during stack unwinding (an exception is in flight, the job is
// about to be aborted) or after the transport shut down, it neither waits (the peer may never
// come) nor frees its buffers (the transport may still write them): they are leaked on purpose.
struct RequestState;  // defined in collectives.cpp: the buffers and the backend's PendingOp

class Request {
 public:
  Request() noexcept;  // not pending; out of line, where RequestState is complete
  ~Request();
  Request(Request&& other) noexcept;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  bool pending() const { return state_ != nullptr; }
  void wait();
  bool test();  // true when complete (then the request is no longer pending)

  explicit Request(std::unique_ptr<RequestState> state);  // made by collectives.cpp only

 private:
  std::unique_ptr<RequestState> state_;
};

// Waits for every request in order; rethrows the first error after attempting all.
void wait_all(std::span<Request> requests);

// ---------------------------------------------------------------------------------------------
// Broadcast <-> reduce.

// x (every rank, same shape): after the call every rank holds root's x.
void broadcast(Communicator& comm, Tensor& x, int root);
// x (every rank, same shape): on root, x becomes op over all ranks' x; elsewhere x is unchanged.
void reduce(Communicator& comm, Tensor& x, int root, ReduceOp op = ReduceOp::sum);

// All-reduce <-> identity: x (every rank, same shape) becomes op over all ranks' x.
void all_reduce(Communicator& comm, Tensor& x, ReduceOp op = ReduceOp::sum);

// All-gather <-> reduce-scatter (equal counts).
// in: n elements per rank; out: D * n elements, block i = rank i's in.
void all_gather(Communicator& comm, const Tensor& in, Tensor& out);
// in: D * n elements per rank; out: n elements = op over ranks of in's block `rank`.
void reduce_scatter(Communicator& comm, const Tensor& in, Tensor& out, ReduceOp op = ReduceOp::sum,
                    ReduceScatterAlgo algo = ReduceScatterAlgo::automatic);

// Variable counts: counts[i] elements for rank i (identical on every rank), out/in = sum(counts).
void all_gather_v(Communicator& comm, const Tensor& in, Tensor& out, std::span<const int64_t> counts);
void reduce_scatter_v(Communicator& comm, const Tensor& in, Tensor& out,
                      std::span<const int64_t> counts, ReduceOp op = ReduceOp::sum,
                      ReduceScatterAlgo algo = ReduceScatterAlgo::automatic);

// All-to-all <-> all-to-all.
// in: D blocks of n elements, block j goes to rank j; out: D blocks, block j came from rank j.
void all_to_all(Communicator& comm, const Tensor& in, Tensor& out);
// send_counts[j]: elements of in sent to rank j (blocks in rank order); recv_counts[j]: elements
// received from rank j. recv_counts on rank r must equal send_counts[r] on each sender. The
// adjoint is the same call with the two count lists swapped.
void all_to_all_v(Communicator& comm, const Tensor& in, std::span<const int64_t> send_counts,
                  Tensor& out, std::span<const int64_t> recv_counts);

// Point to point: send <-> recv, ring_shift(k) <-> ring_shift(-k). Tags in [0, kReservedTagBase).
// recv (and irecv) require exactly x.numel() elements to arrive (CommError otherwise).
void send(Communicator& comm, const Tensor& x, int dest, int tag = 0);
void recv(Communicator& comm, Tensor& x, int source, int tag = 0);
// Sends `send_buf` to `dest` and receives `recv_buf` from `source` at once (no deadlock).
void sendrecv(Communicator& comm, const Tensor& send_buf, int dest, Tensor& recv_buf, int source,
              int tag = 0);
// Ring shift by `offset`: send_buf goes to rank + offset, recv_buf comes from rank - offset
// (mod D). send_buf and recv_buf must have the same element count (ShapeError). With D == 1 (or
// offset % D == 0) it copies send_buf into recv_buf. Messages use the reserved kRingShiftTag.
void ring_shift(Communicator& comm, const Tensor& send_buf, Tensor& recv_buf, int offset = 1);

// ---------------------------------------------------------------------------------------------
// Nonblocking variants: same arguments, validation and semantics; traffic is recorded once
// posted. The tensors must not be touched until the request completes.
Request ibroadcast(Communicator& comm, Tensor& x, int root);
Request ireduce(Communicator& comm, Tensor& x, int root, ReduceOp op = ReduceOp::sum);
Request iall_reduce(Communicator& comm, Tensor& x, ReduceOp op = ReduceOp::sum);
Request iall_gather(Communicator& comm, const Tensor& in, Tensor& out);
// Always the backend's nonblocking reduce-scatter (no ReduceScatterAlgo): the hand ring is D-1
// dependent steps, each a message plus a local combine that must run before the next step's
// send, so it cannot make progress in the background without a progress thread; posting it would
// either block (not nonblocking) or defer all the work to wait() (no overlap). Use the blocking
// reduce_scatter with ReduceScatterAlgo::ring where the ring's bandwidth matters more than overlap.
Request ireduce_scatter(Communicator& comm, const Tensor& in, Tensor& out, ReduceOp op = ReduceOp::sum);
Request iall_to_all(Communicator& comm, const Tensor& in, Tensor& out);
Request isend(Communicator& comm, const Tensor& x, int dest, int tag = 0);
Request irecv(Communicator& comm, Tensor& x, int source, int tag = 0);
Request iring_shift(Communicator& comm, const Tensor& send_buf, Tensor& recv_buf, int offset = 1);

}  // namespace tsp::comm
