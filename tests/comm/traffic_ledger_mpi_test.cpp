// The traffic ledger under mpirun: every operation records the documented formula (checked both
// against the closed forms of TSP.md §5.1 for sizes divisible by D and against the balanced-block
// arithmetic for other sizes), bytes are conserved over ranks, and reset/report work.
#include "tsp/comm/traffic_ledger.h"

#include <gtest/gtest.h>

#include "mpi_test_util.h"
#include "tsp/comm/collectives.h"

namespace tsp::comm {
namespace {

using ::tsp::testing::sum_over_ranks;

class TrafficLedgerTest : public ::testing::Test {
 protected:
  Communicator comm = Communicator::world();
  int D = comm.size();
  int me = comm.rank();

  // Runs `op` on a fresh ledger and returns what it recorded for `kind` (exactly one call).
  template <class Fn>
  TrafficCounters measure(CommOp kind, Fn&& op) {
    comm.ledger().reset();
    op();
    const TrafficCounters c = comm.ledger().get(kind);
    EXPECT_EQ(c.calls, 1) << comm_op_name(kind);
    EXPECT_EQ(comm.ledger().total(), c) << "only " << comm_op_name(kind) << " was recorded";
    // Conservation: what all ranks send is what all ranks receive.
    EXPECT_EQ(sum_over_ranks(comm, c.bytes_sent), sum_over_ranks(comm, c.bytes_received))
        << comm_op_name(kind);
    return c;
  }
  Tensor t(int64_t n, DType dt = DType::f32) { return Tensor::zeros({n}, dt, MemCategory::workspace); }
};

TEST_F(TrafficLedgerTest, ClosedFormsWhenDivisible) {
  const int64_t n = 12 * D;  // elements of the full buffer
  const int64_t B = n * 4;   // f32 bytes
  for (int root = 0; root < D; ++root) {
    Tensor x = t(n);
    const TrafficCounters b = measure(CommOp::broadcast, [&] { broadcast(comm, x, root); });
    EXPECT_EQ(b.bytes_received, me == root ? 0 : B);
    EXPECT_EQ(b.bytes_sent, me == root ? (D - 1) * B : 0);
    const TrafficCounters r = measure(CommOp::reduce, [&] { reduce(comm, x, root); });
    EXPECT_EQ(r.bytes_received, (D - 1) * B / D);
    EXPECT_EQ(r.bytes_sent, (D - 1) * B / D);
  }
  Tensor x = t(n);
  const TrafficCounters ar = measure(CommOp::all_reduce, [&] { all_reduce(comm, x); });
  EXPECT_EQ(ar.bytes_received, 2 * (D - 1) * B / D);
  EXPECT_EQ(ar.bytes_sent, 2 * (D - 1) * B / D);
  Tensor part = t(n / D);
  const TrafficCounters ag = measure(CommOp::all_gather, [&] { all_gather(comm, part, x); });
  EXPECT_EQ(ag.bytes_received, (D - 1) * B / D);  // (D-1)/D of the result
  EXPECT_EQ(ag.bytes_sent, (D - 1) * B / D);
  const TrafficCounters rs = measure(CommOp::reduce_scatter, [&] { reduce_scatter(comm, x, part); });
  EXPECT_EQ(rs.bytes_received, (D - 1) * B / D);  // (D-1)/D of the input
  EXPECT_EQ(rs.bytes_sent, (D - 1) * B / D);
  Tensor y = t(n);
  const TrafficCounters a2a = measure(CommOp::all_to_all, [&] { all_to_all(comm, x, y); });
  EXPECT_EQ(a2a.bytes_received, (D - 1) * B / D);
  EXPECT_EQ(a2a.bytes_sent, (D - 1) * B / D);
  Tensor z = t(n);
  const TrafficCounters sh = measure(CommOp::sendrecv, [&] { ring_shift(comm, x, z, 1); });
  EXPECT_EQ(sh.bytes_received, D > 1 ? B : 0);  // point to point: exactly the message
  EXPECT_EQ(sh.bytes_sent, D > 1 ? B : 0);
}

TEST_F(TrafficLedgerTest, Bf16ReductionsTravelAsF32AndMovesAsBf16) {
  const int64_t n = 6 * D;
  Tensor x = t(n, DType::bf16);
  const TrafficCounters ar = measure(CommOp::all_reduce, [&] { all_reduce(comm, x); });
  EXPECT_EQ(ar.bytes_received, 2 * (D - 1) * n * 4 / D);
  Tensor part = t(n / D, DType::bf16);
  const TrafficCounters rs = measure(CommOp::reduce_scatter, [&] { reduce_scatter(comm, x, part); });
  EXPECT_EQ(rs.bytes_received, (D - 1) * n * 4 / D);
  const TrafficCounters ag = measure(CommOp::all_gather, [&] { all_gather(comm, part, x); });
  EXPECT_EQ(ag.bytes_received, (D - 1) * n * 2 / D);
  const TrafficCounters b = measure(CommOp::broadcast, [&] { broadcast(comm, x, 0); });
  EXPECT_EQ(b.bytes_received, me == 0 ? 0 : n * 2);
}

TEST_F(TrafficLedgerTest, NonDivisibleSizesFollowTheBalancedBlocks) {
  for (int64_t n : {0, 1, 7, 1001}) {
    Tensor x = t(n, DType::i64);
    const TrafficCounters ar = measure(CommOp::all_reduce, [&] { all_reduce(comm, x); });
    const int64_t own = traffic::balanced_block(n, D, me);
    EXPECT_EQ(ar.bytes_received, ((n - own) + (D - 1) * own) * 8);
    const TrafficCounters r = measure(CommOp::reduce, [&] { reduce(comm, x, D - 1); });
    EXPECT_EQ(r.bytes_received, (D - 1) * own * 8);
    EXPECT_EQ(r.bytes_sent, (n - own) * 8);
  }
  const std::vector<int64_t> counts = ::tsp::testing::random_counts(5, D, 50);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  Tensor in = t(counts[me], DType::i32), out = t(total, DType::i32);
  const TrafficCounters ag = measure(CommOp::all_gather, [&] { all_gather_v(comm, in, out, counts); });
  EXPECT_EQ(ag.bytes_received, (total - counts[me]) * 4);
  EXPECT_EQ(ag.bytes_sent, (D - 1) * counts[me] * 4);
  const TrafficCounters rs = measure(CommOp::reduce_scatter, [&] { reduce_scatter_v(comm, out, in, counts); });
  EXPECT_EQ(rs.bytes_received, (D - 1) * counts[me] * 4);
  EXPECT_EQ(rs.bytes_sent, (total - counts[me]) * 4);
}

TEST_F(TrafficLedgerTest, PointToPointAndNonblocking) {
  Tensor x = t(10), y = t(10);
  comm.ledger().reset();
  if (D > 1 && me == 0) send(comm, x, 1);
  if (D > 1 && me == 1) recv(comm, y, 0);
  const TrafficCounters s = comm.ledger().get(CommOp::send), r = comm.ledger().get(CommOp::recv);
  EXPECT_EQ(s, (D > 1 && me == 0 ? TrafficCounters{1, 40, 0} : TrafficCounters{}));
  EXPECT_EQ(r, (D > 1 && me == 1 ? TrafficCounters{1, 0, 40} : TrafficCounters{}));
  EXPECT_EQ(sum_over_ranks(comm, s.bytes_sent), sum_over_ranks(comm, r.bytes_received));
  comm.ledger().reset();
  Request req = iall_reduce(comm, x);
  req.wait();
  EXPECT_EQ(comm.ledger().get(CommOp::all_reduce).bytes_received,
            traffic::all_reduce(10, 4, D, me).received);
  // ireduce records what the blocking reduce records.
  comm.ledger().reset();
  reduce(comm, x, 0);
  const TrafficCounters blocking = comm.ledger().get(CommOp::reduce);
  comm.ledger().reset();
  Request red = ireduce(comm, x, 0);
  red.wait();
  EXPECT_EQ(comm.ledger().get(CommOp::reduce), blocking);
}

TEST_F(TrafficLedgerTest, ResetAndReport) {
  Tensor x = t(4 * D);
  all_reduce(comm, x);
  all_reduce(comm, x);
  EXPECT_EQ(comm.ledger().get(CommOp::all_reduce).calls, 2);
  const std::string report = comm.ledger().report("world");
  EXPECT_NE(report.find("world all_reduce: 2 calls"), std::string::npos) << report;
  comm.ledger().reset();
  EXPECT_EQ(comm.ledger().total(), TrafficCounters{});
  EXPECT_EQ(comm.ledger().report("world"), "");
}

TEST(TrafficFormulas, PureArithmetic) {
  EXPECT_EQ(traffic::balanced_block(10, 4, 0), 3);
  EXPECT_EQ(traffic::balanced_block(10, 4, 1), 3);
  EXPECT_EQ(traffic::balanced_block(10, 4, 2), 2);
  EXPECT_EQ(traffic::balanced_block(10, 4, 3), 2);
  EXPECT_EQ(traffic::all_reduce(8, 4, 4, 1), (TrafficBytes{48, 48}));  // 2*3/4*32 bytes
  EXPECT_EQ(traffic::all_reduce(8, 4, 1, 0), (TrafficBytes{0, 0}));
  EXPECT_EQ(traffic::broadcast(8, 2, 3, 0, 0), (TrafficBytes{32, 0}));
  const int64_t counts[] = {2, 0, 3};
  EXPECT_EQ(traffic::all_gather(counts, 4, 0), (TrafficBytes{16, 12}));
  EXPECT_EQ(traffic::reduce_scatter(counts, 4, 2), (TrafficBytes{8, 24}));
}

}  // namespace
}  // namespace tsp::comm
