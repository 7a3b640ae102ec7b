// Collectives and their duals under mpirun (1..4 ranks): exact results on rank-encoded data in
// every dtype, random data with random sizes (0 and non-divisible included) against a serial
// computation, the adjoint identity of every pair, and argument errors.
#include "tsp/comm/collectives.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "fp_bounds.h"
#include "mpi_test_util.h"
#include "tsp/core/memory.h"

namespace tsp::comm {
namespace {

using ::tsp::testing::enc;
using ::tsp::testing::expect_values;
using ::tsp::testing::filled;
using ::tsp::testing::kAllDTypes;

class CollectivesTest : public ::testing::Test {
 protected:
  Communicator comm = Communicator::world();
  int D = comm.size();
  int me = comm.rank();
};

// Element counts per rank: 0, 1, a prime, and one not divisible by 2, 3 or 4.
constexpr int64_t kSizes[] = {0, 1, 13, 1001};

TEST_F(CollectivesTest, BroadcastFromEveryRoot) {
  for (DType dt : kAllDTypes)
    for (int64_t n : kSizes)
      for (int root = 0; root < D; ++root) {
        Tensor x = filled(n, dt, [&](int64_t i) { return enc(me, i); });
        broadcast(comm, x, root);
        expect_values(x, [&](int64_t i) { return enc(root, i); }, "broadcast");
      }
}

TEST_F(CollectivesTest, ReduceToEveryRoot) {
  for (DType dt : kAllDTypes)
    for (int64_t n : kSizes)
      for (int root = 0; root < D; ++root) {
        Tensor x = filled(n, dt, [&](int64_t i) { return enc(me, i); });
        reduce(comm, x, root);
        if (me == root) {
          expect_values(x, [&](int64_t i) {
            int64_t s = 0;
            for (int r = 0; r < D; ++r) s += enc(r, i);
            return s;
          }, "reduce");
        } else {
          expect_values(x, [&](int64_t i) { return enc(me, i); }, "reduce leaves non-root input");
        }
      }
}

TEST_F(CollectivesTest, AllReduceSumMaxMin) {
  for (DType dt : kAllDTypes)
    for (int64_t n : kSizes) {
      Tensor s = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor mx = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor mn = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      all_reduce(comm, s);
      all_reduce(comm, mx, ReduceOp::max);
      all_reduce(comm, mn, ReduceOp::min);
      expect_values(s, [&](int64_t i) {
        int64_t v = 0;
        for (int r = 0; r < D; ++r) v += enc(r, i);
        return v;
      }, "all_reduce sum");
      expect_values(mx, [&](int64_t i) { return enc(D - 1, i); }, "all_reduce max");
      expect_values(mn, [&](int64_t i) { return enc(0, i); }, "all_reduce min");
    }
}

TEST_F(CollectivesTest, AllGatherEqualCounts) {
  for (DType dt : kAllDTypes)
    for (int64_t n : kSizes) {
      Tensor in = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor out = Tensor::empty({D * n}, dt, MemCategory::workspace);
      all_gather(comm, in, out);
      expect_values(out, [&](int64_t k) { return enc(static_cast<int>(k / n), k % n); }, "all_gather");
    }
}

TEST_F(CollectivesTest, ReduceScatterEveryAlgorithm) {
  for (ReduceScatterAlgo algo :
       {ReduceScatterAlgo::automatic, ReduceScatterAlgo::mpi, ReduceScatterAlgo::ring})
    for (DType dt : kAllDTypes)
      for (int64_t n : kSizes) {
        Tensor in = filled(D * n, dt, [&](int64_t k) { return enc(me, k); });
        Tensor out = Tensor::empty({n}, dt, MemCategory::workspace);
        reduce_scatter(comm, in, out, ReduceOp::sum, algo);
        expect_values(out, [&](int64_t i) {
          int64_t v = 0;
          for (int r = 0; r < D; ++r) v += enc(r, me * n + i);
          return v;
        }, "reduce_scatter algo " + std::to_string(static_cast<int>(algo)));
      }
}

// ReduceScatterAlgo::automatic resolves on the input's wire size: both sides of the threshold.
TEST_F(CollectivesTest, ReduceScatterAutomaticResolvesOnThreshold) {
  constexpr int64_t T = kRingReduceScatterMinBytes;
  EXPECT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::automatic, 0), ReduceScatterAlgo::mpi);
  EXPECT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::automatic, T - 1), ReduceScatterAlgo::mpi);
  EXPECT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::automatic, T), ReduceScatterAlgo::ring);
  EXPECT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::automatic, 64 * T), ReduceScatterAlgo::ring);
  EXPECT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::mpi, 64 * T), ReduceScatterAlgo::mpi);
  EXPECT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::ring, 0), ReduceScatterAlgo::ring);
}

// Exact results of `automatic` just below the threshold (MPI_Reduce_scatter) and from it up (the
// hand ring), in every dtype; bf16 travels as f32, so its wire size is 4 bytes per element.
TEST_F(CollectivesTest, ReduceScatterAutomaticBothSidesOfThreshold) {
  constexpr int64_t kWireElems = kRingReduceScatterMinBytes / 4;  // f32 elements at the threshold
  for (const bool large : {false, true}) {
    // Elements per rank: the whole input (D * n) is just below / at least the threshold.
    const int64_t n = large ? (kWireElems + D - 1) / D + 1 : (kWireElems - 1) / D;
    for (DType dt : kAllDTypes) {
      const int64_t wire_bytes = D * n * (dt == DType::bf16 ? 4 : static_cast<int64_t>(dtype_size(dt)));
      ASSERT_EQ(resolve_reduce_scatter_algo(ReduceScatterAlgo::automatic, wire_bytes),
                (large || dt == DType::i64) ? ReduceScatterAlgo::ring : ReduceScatterAlgo::mpi)
          << dtype_name(dt) << " " << wire_bytes << " bytes";
      Tensor in = filled(D * n, dt, [&](int64_t k) { return enc(me, k); });
      Tensor out = Tensor::empty({n}, dt, MemCategory::workspace);
      reduce_scatter(comm, in, out, ReduceOp::sum, ReduceScatterAlgo::automatic);
      expect_values(out, [&](int64_t i) {
        int64_t v = 0;
        for (int r = 0; r < D; ++r) v += enc(r, me * n + i);
        return v;
      }, std::string("automatic reduce_scatter, ") + (large ? ">=" : "<") + " threshold");
    }
  }
}

// The ring keeps its scratch in the communicator: a repeated call of the same size allocates
// nothing more (f32: no conversion buffers either), and the buffer is accounted as comm memory.
TEST_F(CollectivesTest, RingReduceScatterReusesScratch) {
  if (D == 1) GTEST_SKIP() << "one rank copies; no ring";
  const int64_t n = 3001;
  Tensor in = filled(D * n, DType::f32, [&](int64_t k) { return enc(me, k); });
  Tensor out = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  reduce_scatter(comm, in, out, ReduceOp::sum, ReduceScatterAlgo::ring);
  const size_t capacity = comm.scratch_capacity();
  EXPECT_GE(capacity, 2 * n * sizeof(float));
  const MemStats before = MemoryLedger::process().stats(MemCategory::comm);
  EXPECT_GE(before.live_bytes, static_cast<int64_t>(capacity));
  reduce_scatter(comm, in, out, ReduceOp::sum, ReduceScatterAlgo::ring);
  const MemStats after = MemoryLedger::process().stats(MemCategory::comm);
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_EQ(comm.scratch_capacity(), capacity);
  expect_values(out, [&](int64_t i) {
    int64_t v = 0;
    for (int r = 0; r < D; ++r) v += enc(r, me * n + i);
    return v;
  }, "ring reduce_scatter with reused scratch");
}

TEST_F(CollectivesTest, ReduceScatterRingMaxMin) {
  const int64_t n = 17;
  for (ReduceOp op : {ReduceOp::max, ReduceOp::min}) {
    Tensor in = filled(D * n, DType::f32, [&](int64_t k) { return enc(me, k); });
    Tensor out = Tensor::empty({n}, DType::f32, MemCategory::workspace);
    reduce_scatter(comm, in, out, op, ReduceScatterAlgo::ring);
    const int src = op == ReduceOp::max ? D - 1 : 0;
    expect_values(out, [&](int64_t i) { return enc(src, me * n + i); }, "ring reduce_scatter max/min");
  }
}

TEST_F(CollectivesTest, VariableCountsAllGatherAndReduceScatter) {
  for (uint64_t seed = 1; seed <= 6; ++seed)
    for (DType dt : kAllDTypes) {
      const std::vector<int64_t> counts = ::tsp::testing::random_counts(seed, D, 40);
      std::vector<int64_t> displs(D, 0);
      for (int r = 1; r < D; ++r) displs[r] = displs[r - 1] + counts[r - 1];
      const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
      auto owner = [&](int64_t k) {
        int r = 0;
        while (r + 1 < D && k >= displs[r + 1]) ++r;
        return r;
      };
      Tensor in = filled(counts[me], dt, [&](int64_t i) { return enc(me, i); });
      Tensor gathered = Tensor::empty({total}, dt, MemCategory::workspace);
      all_gather_v(comm, in, gathered, counts);
      expect_values(gathered, [&](int64_t k) { return enc(owner(k), k - displs[owner(k)]); },
                    "all_gather_v");
      for (ReduceScatterAlgo algo : {ReduceScatterAlgo::mpi, ReduceScatterAlgo::ring}) {
        Tensor full = filled(total, dt, [&](int64_t k) { return enc(me, k); });
        Tensor mine = Tensor::empty({counts[me]}, dt, MemCategory::workspace);
        reduce_scatter_v(comm, full, mine, counts, ReduceOp::sum, algo);
        expect_values(mine, [&](int64_t i) {
          int64_t v = 0;
          for (int r = 0; r < D; ++r) v += enc(r, displs[me] + i);
          return v;
        }, "reduce_scatter_v");
      }
    }
}

// Block j of rank s holds 100 * s + 10 * j + i % 10 (fits bf16 exactly only for small values, so
// use i32/i64/f32 here and bf16 with a smaller code).
TEST_F(CollectivesTest, AllToAllEqualAndVariable) {
  auto code = [](DType dt, int s, int d, int64_t i) -> int64_t {
    return dt == DType::bf16 ? 1 + s * 4 + d + i % 3 : 100 * s + 10 * d + i % 10;
  };
  for (DType dt : kAllDTypes) {
    for (int64_t n : kSizes) {
      Tensor in = filled(D * n, dt, [&](int64_t k) { return code(dt, me, static_cast<int>(k / std::max<int64_t>(n, 1)), k % std::max<int64_t>(n, 1)); });
      Tensor out = Tensor::empty({D * n}, dt, MemCategory::workspace);
      all_to_all(comm, in, out);
      expect_values(out, [&](int64_t k) { return code(dt, static_cast<int>(k / n), me, k % n); },
                    "all_to_all");
    }
    // Rank s sends (s + 2d) % 3 + (d == 1 ? 0 : 5) elements to rank d: zeros and uneven blocks.
    auto cnt = [](int s, int d) -> int64_t { return (s + 2 * d) % 3 + (d == 1 ? 0 : 5); };
    std::vector<int64_t> sc(D), rc(D);
    for (int d = 0; d < D; ++d) {
      sc[d] = cnt(me, d);
      rc[d] = cnt(d, me);
    }
    std::vector<int64_t> sdis(D, 0), rdis(D, 0);
    for (int d = 1; d < D; ++d) {
      sdis[d] = sdis[d - 1] + sc[d - 1];
      rdis[d] = rdis[d - 1] + rc[d - 1];
    }
    const int64_t st = sdis[D - 1] + sc[D - 1], rt = rdis[D - 1] + rc[D - 1];
    auto block_of = [&](const std::vector<int64_t>& dis, int64_t k) {
      int d = 0;
      while (d + 1 < D && k >= dis[d + 1]) ++d;
      return d;
    };
    Tensor in = filled(st, dt, [&](int64_t k) { const int d = block_of(sdis, k); return code(dt, me, d, k - sdis[d]); });
    Tensor out = Tensor::empty({rt}, dt, MemCategory::workspace);
    all_to_all_v(comm, in, sc, out, rc);
    expect_values(out, [&](int64_t k) { const int s = block_of(rdis, k); return code(dt, s, me, k - rdis[s]); },
                  "all_to_all_v");
  }
}

TEST_F(CollectivesTest, PointToPointAndRingShift) {
  for (DType dt : kAllDTypes) {
    const int64_t n = 11;
    if (D > 1) {
      // Rank 0 sends to rank D-1, which checks and sends back the double.
      if (me == 0) {
        send(comm, filled(n, dt, [&](int64_t i) { return enc(0, i); }), D - 1, 3);
        Tensor back = Tensor::empty({n}, dt, MemCategory::workspace);
        recv(comm, back, D - 1, 4);
        expect_values(back, [&](int64_t i) { return 2 * enc(0, i); }, "recv");
      } else if (me == D - 1) {
        Tensor x = Tensor::empty({n}, dt, MemCategory::workspace);
        recv(comm, x, 0, 3);
        expect_values(x, [&](int64_t i) { return enc(0, i); }, "recv");
        send(comm, filled(n, dt, [&](int64_t i) { return 2 * ::tsp::testing::value_at(x, i); }), 0, 4);
      }
    }
    for (int offset : {1, -1, 2, D}) {
      Tensor out = Tensor::empty({n}, dt, MemCategory::workspace);
      ring_shift(comm, filled(n, dt, [&](int64_t i) { return enc(me, i); }), out, offset);
      const int src = ((me - offset) % D + D) % D;
      expect_values(out, [&](int64_t i) { return enc(src, i); }, "ring_shift");
    }
  }
}

TEST_F(CollectivesTest, NonblockingVariantsMatchBlocking) {
  for (DType dt : kAllDTypes)
    for (int64_t n : kSizes) {
      Tensor b = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor a = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor g_in = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor g_out = Tensor::empty({D * n}, dt, MemCategory::workspace);
      Tensor rs_in = filled(D * n, dt, [&](int64_t k) { return enc(me, k); });
      Tensor rs_out = Tensor::empty({n}, dt, MemCategory::workspace);
      Tensor t_in = filled(D * n, dt, [&](int64_t k) { return enc(me, k); });
      Tensor t_out = Tensor::empty({D * n}, dt, MemCategory::workspace);
      Tensor sh_out = Tensor::empty({n}, dt, MemCategory::workspace);
      Tensor sh_in = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      Tensor red = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      const int red_root = D / 2;
      std::vector<Request> reqs;
      reqs.push_back(ibroadcast(comm, b, D - 1));
      reqs.push_back(ireduce(comm, red, red_root));
      reqs.push_back(iall_reduce(comm, a));
      reqs.push_back(iall_gather(comm, g_in, g_out));
      reqs.push_back(ireduce_scatter(comm, rs_in, rs_out));
      reqs.push_back(iall_to_all(comm, t_in, t_out));
      reqs.push_back(iring_shift(comm, sh_in, sh_out, 1));
      wait_all(reqs);
      for (const Request& r : reqs) EXPECT_FALSE(r.pending());
      expect_values(b, [&](int64_t i) { return enc(D - 1, i); }, "ibroadcast");
      if (me == red_root)  // non-roots' buffers are unspecified after a reduce, as MPI's
        expect_values(red, [&](int64_t i) {
          int64_t v = 0;
          for (int r = 0; r < D; ++r) v += enc(r, i);
          return v;
        }, "ireduce");
      expect_values(a, [&](int64_t i) {
        int64_t v = 0;
        for (int r = 0; r < D; ++r) v += enc(r, i);
        return v;
      }, "iall_reduce");
      expect_values(g_out, [&](int64_t k) { return enc(static_cast<int>(k / n), k % n); }, "iall_gather");
      expect_values(rs_out, [&](int64_t i) {
        int64_t v = 0;
        for (int r = 0; r < D; ++r) v += enc(r, me * n + i);
        return v;
      }, "ireduce_scatter");
      expect_values(t_out, [&](int64_t k) { return enc(static_cast<int>(k / n), me * n + k % n); },
                    "iall_to_all");
      expect_values(sh_out, [&](int64_t i) { return enc((me - 1 + D) % D, i); }, "iring_shift");
    }
}

TEST_F(CollectivesTest, RequestDestroyedUnwaitedCompletes) {
  Tensor x = filled(257, DType::bf16, [&](int64_t i) { return enc(me, i); });
  {
    Request r = iall_reduce(comm, x);
    Request moved = std::move(r);  // the moved-from request is empty; `moved` waits in its destructor
    EXPECT_FALSE(r.pending());
  }
  expect_values(x, [&](int64_t i) {
    int64_t v = 0;
    for (int r = 0; r < D; ++r) v += enc(r, i);
    return v;
  }, "iall_reduce completed by the destructor");
  // Two shifts in flight at once, each into its own buffer (two pending receives into one buffer
  // would be erroneous MPI).
  Tensor p1 = Tensor::empty({5}, DType::f32, MemCategory::workspace);
  Tensor p2 = Tensor::empty({5}, DType::f32, MemCategory::workspace);
  Tensor q = filled(5, DType::f32, [&](int64_t i) { return enc(me, i); });
  Request a = iring_shift(comm, q, p1, 1);
  a = iring_shift(comm, q, p2, -1);  // assignment completes the first shift before taking the second
  expect_values(p1, [&](int64_t i) { return enc((me - 1 + D) % D, i); }, "first iring_shift");
  a.wait();
  EXPECT_FALSE(a.pending());
  EXPECT_TRUE(a.test());
  expect_values(p2, [&](int64_t i) { return enc((me + 1) % D, i); }, "second iring_shift");
}

// isend / irecv pairs around the ring (to next, from previous; to and from itself on 1 rank),
// several messages with different tags in flight at once, completed out of posting order.
TEST_F(CollectivesTest, IsendIrecvExactData) {
  const int next = (me + 1) % D, prev = (me - 1 + D) % D;
  for (DType dt : kAllDTypes)
    for (int64_t n : kSizes) {
      Tensor in_a = Tensor::empty({n}, dt, MemCategory::workspace);
      Tensor in_b = Tensor::empty({n + 2}, dt, MemCategory::workspace);
      Request ra = irecv(comm, in_a, prev, 1);
      Request rb = irecv(comm, in_b, prev, 2);
      const Tensor out_a = filled(n, dt, [&](int64_t i) { return enc(me, i); });
      const Tensor out_b = filled(n + 2, dt, [&](int64_t i) { return enc(me, i + 3); });
      Request sb = isend(comm, out_b, next, 2);
      Request sa = isend(comm, out_a, next, 1);
      rb.wait();
      ra.wait();
      std::vector<Request> sends;
      sends.push_back(std::move(sa));
      sends.push_back(std::move(sb));
      wait_all(sends);
      for (const Request* r : {&ra, &rb, &sends[0], &sends[1]}) EXPECT_FALSE(r->pending());
      expect_values(in_a, [&](int64_t i) { return enc(prev, i); }, "irecv tag 1");
      expect_values(in_b, [&](int64_t i) { return enc(prev, i + 3); }, "irecv tag 2");
    }
}

// test() polled until completion: the receive is posted and tested before its sender has sent
// (the sender only sends after a barrier that follows the first test()), so the first test() is
// false, then a polling loop completes it.
TEST_F(CollectivesTest, TestPollsUntilCompletion) {
  const int next = (me + 1) % D, prev = (me - 1 + D) % D;
  for (DType dt : {DType::f32, DType::bf16}) {
    const int64_t n = 4099;  // beyond the eager limit of shared-memory transports too
    Tensor got = Tensor::empty({n}, dt, MemCategory::workspace);
    Request r = irecv(comm, got, prev, 9);
    EXPECT_FALSE(r.test()) << "nothing has been sent yet";
    EXPECT_TRUE(r.pending());
    comm.barrier();
    const Tensor out = filled(n, dt, [&](int64_t i) { return enc(me, i); });
    Request s = isend(comm, out, next, 9);
    const double deadline = MPI_Wtime() + 20.0;
    int polls = 0;
    bool r_done = false, s_done = false;
    while (!(r_done && s_done) && MPI_Wtime() < deadline) {
      if (!r_done) r_done = r.test();
      if (!s_done) s_done = s.test();
      ++polls;
    }
    ASSERT_TRUE(r_done && s_done) << "not complete after " << polls << " test() calls";
    EXPECT_FALSE(r.pending());
    EXPECT_FALSE(s.pending());
    EXPECT_TRUE(r.test());  // a completed request stays complete
    expect_values(got, [&](int64_t i) { return enc(prev, i); }, "irecv completed by test()");
  }
}

// A receive that gets a different element count than it expects raises CommError on completion:
// a shorter message by the count check (naming expected and actual), a longer one by MPI
// (truncation, through test()); afterwards the communicator still works.
TEST_F(CollectivesTest, IrecvSizeMismatchRaisesCommError) {
  const int next = (me + 1) % D, prev = (me - 1 + D) % D;
  const int64_t n = 8;
  {
    Tensor got = Tensor::empty({n}, DType::i32, MemCategory::workspace);
    Request r = irecv(comm, got, prev, 3);
    const Tensor shorter = filled(n - 3, DType::i32, [&](int64_t i) { return enc(me, i); });
    Request s = isend(comm, shorter, next, 3);
    try {
      r.wait();
      ADD_FAILURE() << "irecv of a short message did not throw";
    } catch (const CommError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("irecv on 'world' from rank " + std::to_string(prev)), std::string::npos)
          << msg;
      EXPECT_NE(msg.find("expected 8 elements, got 5"), std::string::npos) << msg;
    }
    EXPECT_FALSE(r.pending());
    s.wait();
  }
  // Open MPI 4.1 does not report truncation of a message a rank sends to itself, so the longer
  // message is checked between distinct ranks only.
  if (D > 1) {
    Tensor got = Tensor::empty({n}, DType::f32, MemCategory::workspace);
    Request r = irecv(comm, got, prev, 4);
    const Tensor longer = filled(n + 3, DType::f32, [&](int64_t i) { return enc(me, i); });
    Request s = isend(comm, longer, next, 4);
    s.wait();
    bool threw = false;
    const double deadline = MPI_Wtime() + 20.0;
    try {
      while (!r.test() && MPI_Wtime() < deadline) {
      }
    } catch (const CommError&) {
      threw = true;
    }
    EXPECT_TRUE(threw) << "irecv of a longer message (truncation) did not throw";
    EXPECT_FALSE(r.pending());
  }
  // The same through the blocking recv, and the communicator is still usable afterwards.
  {
    Tensor got = Tensor::empty({n}, DType::i64, MemCategory::workspace);
    const Tensor shorter = filled(n - 1, DType::i64, [&](int64_t i) { return enc(me, i); });
    Request s = isend(comm, shorter, next, 5);
    EXPECT_THROW(recv(comm, got, prev, 5), CommError);
    s.wait();
  }
  comm.barrier();
  Tensor x = filled(5, DType::i32, [&](int64_t i) { return enc(me, i); });
  all_reduce(comm, x);
  expect_values(x, [&](int64_t i) {
    int64_t v = 0;
    for (int r = 0; r < D; ++r) v += enc(r, i);
    return v;
  }, "all_reduce after the failed receives");
}

// iring_shift checks what arrives: rank 0 shifts one element more than everybody else, so rank 1
// receives too many (truncation) and rank 0 too few (count check); the others are unaffected.
TEST_F(CollectivesTest, IringShiftReceivedCountChecked) {
  if (D == 1) GTEST_SKIP() << "needs a peer (sizes are equal on one rank)";
  const int64_t n = me == 0 ? 6 : 5;
  const Tensor out = filled(n, DType::f32, [&](int64_t i) { return enc(me, i); });
  Tensor got = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  Request r = iring_shift(comm, out, got, 1);
  if (me == 0) {
    try {
      r.wait();
      ADD_FAILURE() << "short ring message did not throw";
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("expected 6 elements, got 5"), std::string::npos)
          << e.what();
    }
  } else if (me == 1) {
    EXPECT_THROW(r.wait(), CommError);
  } else {
    EXPECT_NO_THROW(r.wait());
    expect_values(got, [&](int64_t i) { return enc(me - 1, i); }, "iring_shift, equal sizes");
  }
  EXPECT_FALSE(r.pending());
  comm.barrier();
}

// Ring shifts use a reserved tag: a user receive with tag 0 pending from the same peer does not
// capture the shift's message (it did when ring_shift used tag 0: the job deadlocked).
TEST_F(CollectivesTest, RingShiftDoesNotMatchUserMessages) {
  const int next = (me + 1) % D, prev = (me - 1 + D) % D;
  Tensor user_in = Tensor::empty({3}, DType::i32, MemCategory::workspace);
  Request user_r = irecv(comm, user_in, prev, 0);
  const Tensor x = filled(7, DType::i32, [&](int64_t i) { return enc(me, i); });
  Tensor y = Tensor::empty({7}, DType::i32, MemCategory::workspace);
  ring_shift(comm, x, y, 1);
  Tensor y2 = Tensor::empty({7}, DType::i32, MemCategory::workspace);
  Request ry2 = iring_shift(comm, x, y2, 1);
  ry2.wait();
  const Tensor user_out = filled(3, DType::i32, [&](int64_t i) { return 100 + enc(me, i); });
  Request user_s = isend(comm, user_out, next, 0);
  user_r.wait();
  user_s.wait();
  expect_values(y, [&](int64_t i) { return enc(prev, i); }, "ring_shift beside a user receive");
  expect_values(y2, [&](int64_t i) { return enc(prev, i); }, "iring_shift beside a user receive");
  expect_values(user_in, [&](int64_t i) { return 100 + enc(prev, i); }, "user message, tag 0");
}

// Random data, random sizes: f32 sums against a serial sum of every rank's (regenerated) input.
TEST_F(CollectivesTest, RandomDataAgainstSerialReference) {
  for (uint64_t seed = 11; seed <= 16; ++seed) {
    const std::vector<int64_t> counts = ::tsp::testing::random_counts(seed, D, 300);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    int64_t off = 0;
    for (int r = 0; r < me; ++r) off += counts[r];
    std::vector<Tensor> inputs;
    for (int r = 0; r < D; ++r) inputs.push_back(::tsp::testing::random_f32(total, seed, r));
    std::vector<double> ref(total, 0.0), mag(total, 0.0);
    for (int r = 0; r < D; ++r)
      for (int64_t k = 0; k < total; ++k) {
        ref[k] += inputs[r].data<float>()[k];
        mag[k] += std::fabs(inputs[r].data<float>()[k]);
      }
    auto check = [&](const Tensor& got, int64_t base, double eps, const char* what) {
      const Tensor g = got.to_f32();
      for (int64_t i = 0; i < g.numel(); ++i) {
        const double err = std::fabs(g.data<float>()[i] - ref[base + i]);
        if (err > eps * mag[base + i] + 1e-30) {
          ADD_FAILURE() << what << " seed " << seed << " element " << i << ": " << g.data<float>()[i]
                        << " vs " << ref[base + i];
          return;
        }
      }
    };
    Tensor ar = Tensor::copy_of(inputs[me], DType::f32, MemCategory::workspace);
    all_reduce(comm, ar);
    check(ar, 0, 4e-7 * D, "all_reduce f32");
    Tensor ar16 = Tensor::copy_of(inputs[me], DType::bf16, MemCategory::workspace);
    all_reduce(comm, ar16);
    check(ar16, 0, 2e-2, "all_reduce bf16 (f32 accumulation, inputs rounded to bf16)");
    for (ReduceScatterAlgo algo : {ReduceScatterAlgo::mpi, ReduceScatterAlgo::ring}) {
      Tensor mine = Tensor::empty({counts[me]}, DType::f32, MemCategory::workspace);
      reduce_scatter_v(comm, inputs[me], mine, counts, ReduceOp::sum, algo);
      check(mine, off, 4e-7 * D, "reduce_scatter_v f32");
    }
    // all_gather_v of each rank's slice of its own input reproduces the owners' data exactly.
    Tensor piece = Tensor::copy_of(inputs[me].slice(0, off, counts[me]), DType::f32, MemCategory::workspace);
    Tensor gathered = Tensor::empty({total}, DType::f32, MemCategory::workspace);
    all_gather_v(comm, piece, gathered, counts);
    int64_t k = 0;
    bool ok = true;
    for (int r = 0; r < D && ok; ++r)
      for (int64_t i = 0; i < counts[r] && ok; ++i, ++k)
        ok = gathered.data<float>()[k] == inputs[r].data<float>()[k];
    EXPECT_TRUE(ok) << "all_gather_v seed " << seed << " differs at element " << k - 1;
  }
}

// ---------------------------------------------------------------------------------------------
// Adjoint identities: sum_r <f(x)_r, y_r> == sum_r <x_r, f*(y)_r> with random x, y.

// A replicated tensor (identical on every rank, e.g. the input of a tensor-parallel region or the
// all-reduced output leaving it) is one variable, so its inner product is counted once, not summed
// over ranks: that is the space on which the Megatron pairs are adjoint.
enum class Space : uint8_t { per_rank, replicated };

class AdjointTest : public CollectivesTest {
 protected:
  double inner(const Tensor& a, const Tensor& b, Space space) {
    const double local = ::tsp::testing::local_dot(a, b);
    return space == Space::replicated ? local : ::tsp::testing::sum_over_ranks(comm, local);
  }
  // Largest |element| of t over every rank.
  double global_max_abs(const Tensor& t) {
    const Tensor f = t.to_f32();
    Tensor m = Tensor::zeros({1}, DType::f32, MemCategory::workspace);
    for (int64_t i = 0; i < f.numel(); ++i)
      m.data<float>()[0] = std::max(m.data<float>()[0], std::fabs(f.data<float>()[i]));
    all_reduce(comm, m, ReduceOp::max);
    return m.data<float>()[0];
  }
  Tensor abs_of(const Tensor& t) {
    Tensor f = Tensor::copy_of(t, DType::f32, MemCategory::workspace);
    for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = std::fabs(f.data<float>()[i]);
    return f;
  }
  Tensor ones_like(const Tensor& t) {
    Tensor f = Tensor::empty(t.shape(), DType::f32, MemCategory::workspace);
    f.fill(1.f);
    return f;
  }
  // <f(x), y> on f's output space == <x, f*(y)> on its input space. Derived bound (the two sides
  // can cancel to ~0, so not relative to them): every output element of these collectives is a
  // sum of at most D inputs with coefficients +-1 (or a copy), which fp32 computes within
  // gamma_D D max|x| in any reduction order; summed against |y| over f's output space (and the
  // same for f*(y) against |x|); the inner products themselves are double (2^-50 of their terms).
  void expect_adjoint(const Tensor& x, const Tensor& fx, const Tensor& y, const Tensor& fty,
                      Space in_space, Space out_space, const char* what) {
    const double lhs = inner(fx, y, out_space);
    const double rhs = inner(x, fty, in_space);
    const double l1_y = inner(abs_of(y), ones_like(y), out_space), l1_x = inner(abs_of(x), ones_like(x), in_space);
    const double terms = inner(abs_of(fx), abs_of(y), out_space) + inner(abs_of(x), abs_of(fty), in_space);
    const double tol = ::tsp::testing::gamma_n(D) * D * (global_max_abs(x) * l1_y + global_max_abs(y) * l1_x) +
                       0x1p-50 * terms;
    EXPECT_NEAR(lhs, rhs, tol) << what << " on " << D << " ranks";
  }
  void expect_adjoint(const Tensor& x, const Tensor& fx, const Tensor& y, const Tensor& fty,
                      const char* what) {
    expect_adjoint(x, fx, y, fty, Space::per_rank, Space::per_rank, what);
  }
  // Different on every rank.
  Tensor rnd(Shape s, uint64_t seed) { return rnd_stream(s, seed, static_cast<uint64_t>(me) + 100); }
  // Identical on every rank.
  Tensor rnd_replicated(Shape s, uint64_t seed) { return rnd_stream(s, seed, 99); }
  Tensor rnd_stream(Shape s, uint64_t seed, uint64_t stream) {
    Tensor t = Tensor::empty(s, DType::f32, MemCategory::workspace);
    Rng rng(seed, stream);
    fill_normal(t, rng);
    return t;
  }

  // The pairs' two sides as new tensors; blocks are along dim 0 (m rows of a [D*m, ...] tensor).
  static Shape with_dim0(Shape s, int64_t d0) {
    s[0] = d0;
    return s;
  }
  Tensor all_reduced(const Tensor& x) {
    Tensor out = Tensor::copy_of(x, x.dtype(), MemCategory::workspace);
    all_reduce(comm, out);
    return out;
  }
  Tensor own_block(const Tensor& x) {
    const int64_t m = x.dim(0) / D;
    return Tensor::copy_of(x.slice(0, me * m, m), x.dtype(), MemCategory::workspace);
  }
  Tensor gathered_rows(const Tensor& x) {
    Tensor out = Tensor::empty(with_dim0(x.shape(), x.dim(0) * D), x.dtype(), MemCategory::workspace);
    all_gather(comm, x, out);
    return out;
  }
  Tensor reduce_scattered_rows(const Tensor& x) {
    Tensor out = Tensor::empty(with_dim0(x.shape(), x.dim(0) / D), x.dtype(), MemCategory::workspace);
    reduce_scatter(comm, x, out);
    return out;
  }
  Tensor broadcast_from(const Tensor& x, int root) {
    Tensor out = Tensor::copy_of(x, x.dtype(), MemCategory::workspace);
    broadcast(comm, out, root);
    return out;
  }
  // The adjoint of a broadcast: reduce(sum) to root, zero on the other ranks (their x did not
  // influence the output, so their gradient is zero).
  Tensor reduced_to(const Tensor& dy, int root) {
    Tensor out = Tensor::copy_of(dy, dy.dtype(), MemCategory::workspace);
    reduce(comm, out, root);
    if (me != root) out.zero();
    return out;
  }
  Tensor exchanged_rows(const Tensor& x, std::span<const int64_t> send_rows,
                        std::span<const int64_t> recv_rows) {
    const int64_t row_elems = x.dim(1);  // x is [rows, k]
    std::vector<int64_t> send_elems, recv_elems;
    int64_t recv_total = 0;
    for (int64_t r : send_rows) send_elems.push_back(r * row_elems);
    for (int64_t r : recv_rows) {
      recv_elems.push_back(r * row_elems);
      recv_total += r;
    }
    Tensor out = Tensor::empty(with_dim0(x.shape(), recv_total), x.dtype(), MemCategory::workspace);
    all_to_all_v(comm, x, send_elems, out, recv_elems);
    return out;
  }
  Tensor shifted(const Tensor& x, int offset) {
    Tensor out = Tensor::empty(x.shape(), x.dtype(), MemCategory::workspace);
    ring_shift(comm, x, out, offset);
    return out;
  }
};

TEST_F(AdjointTest, CopyAndAllReduce) {
  const Tensor x_rep = rnd_replicated({7, 3}, 1), y = rnd({7, 3}, 2);
  expect_adjoint(x_rep, x_rep, y, all_reduced(y), Space::replicated, Space::per_rank,
                 "copy/all-reduce");
  const Tensor x = rnd({7, 3}, 3), y_rep = rnd_replicated({7, 3}, 4);
  expect_adjoint(x, all_reduced(x), y_rep, y_rep, Space::per_rank, Space::replicated,
                 "all-reduce/identity");
}

TEST_F(AdjointTest, SplitAndGatherRows) {
  const Tensor full_rep = rnd_replicated({3 * D, 5}, 3), part = rnd({3, 5}, 4);
  expect_adjoint(full_rep, own_block(full_rep), part, gathered_rows(part), Space::replicated,
                 Space::per_rank, "split/all-gather");
  expect_adjoint(part, gathered_rows(part), full_rep, own_block(full_rep), Space::per_rank,
                 Space::replicated, "all-gather/split");
  // Sequence parallel: every rank's gathered copy is its own variable (per-rank spaces).
  const Tensor full = rnd({3 * D, 5}, 5);
  expect_adjoint(part, gathered_rows(part), full, reduce_scattered_rows(full),
                 "all-gather/reduce-scatter");
  expect_adjoint(full, reduce_scattered_rows(full), part, gathered_rows(part),
                 "reduce-scatter/all-gather");
}

TEST_F(AdjointTest, BroadcastReduce) {
  for (int root = 0; root < D; ++root) {
    const Tensor x = rnd({9}, 5 + root), y = rnd({9}, 50 + root);
    expect_adjoint(x, broadcast_from(x, root), y, reduced_to(y, root), "broadcast/reduce");
  }
}

TEST_F(AdjointTest, AllToAllWithTransposedCounts) {
  std::vector<int64_t> send_rows(D), recv_rows(D);
  auto cnt = [](int s, int d) -> int64_t { return (3 * s + d) % 4; };
  for (int d = 0; d < D; ++d) {
    send_rows[d] = cnt(me, d);
    recv_rows[d] = cnt(d, me);
  }
  const Tensor x = rnd({std::accumulate(send_rows.begin(), send_rows.end(), int64_t{0}), 2}, 6);
  const Tensor y = rnd({std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0}), 2}, 7);
  expect_adjoint(x, exchanged_rows(x, send_rows, recv_rows), y,
                 exchanged_rows(y, recv_rows, send_rows), "all-to-all");
}

TEST_F(AdjointTest, RingShiftForwardAndBack) {
  for (int offset : {1, 2, -1}) {
    const Tensor x = rnd({6}, 8), y = rnd({6}, 9);
    expect_adjoint(x, shifted(x, offset), y, shifted(y, -offset), "ring shift");
  }
}

TEST_F(AdjointTest, RawCollectivePairsWithVariableCounts) {
  // all_gather_v <-> reduce_scatter_v on the same counts.
  const std::vector<int64_t> counts = ::tsp::testing::random_counts(99, D, 30);
  const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  const Tensor x = rnd({counts[me]}, 10), y = rnd({total}, 11);
  Tensor fx = Tensor::empty({total}, DType::f32, MemCategory::workspace);
  Tensor fty = Tensor::empty({counts[me]}, DType::f32, MemCategory::workspace);
  all_gather_v(comm, x, fx, counts);
  reduce_scatter_v(comm, y, fty, counts);
  expect_adjoint(x, fx, y, fty, "all_gather_v/reduce_scatter_v");
}

// ---------------------------------------------------------------------------------------------
// Argument errors are thrown on every rank before any MPI call, so no rank is left waiting.

TEST_F(CollectivesTest, RejectsBadArguments) {
  Tensor m = Tensor::zeros({4, 6}, DType::f32, MemCategory::workspace);
  Tensor strided = m.transpose(0, 1);
  EXPECT_THROW(all_reduce(comm, strided), LayoutError);
  Tensor undefined;
  EXPECT_THROW(broadcast(comm, undefined, 0), LayoutError);
  Tensor i32 = Tensor::zeros({D}, DType::i32, MemCategory::workspace);
  Tensor f32 = Tensor::zeros({D}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(all_to_all(comm, i32, f32), DTypeError);
  Tensor small = Tensor::zeros({1}, DType::f32, MemCategory::workspace);
  Tensor wrong = Tensor::zeros({D + 1}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(all_gather(comm, small, wrong), ShapeError);
  EXPECT_THROW(reduce_scatter(comm, wrong, small), ShapeError);
  EXPECT_THROW(broadcast(comm, f32, D), InvalidArgument);
  const std::vector<int64_t> bad_counts(D + 1, 1);
  EXPECT_THROW(all_gather_v(comm, small, wrong, bad_counts), InvalidArgument);
}

// The nonblocking variants share the blocking validation: the same errors, thrown before anything
// is posted (no request, no traffic recorded).
TEST_F(CollectivesTest, NonblockingRejectsBadArgumentsBeforePosting) {
  const TrafficCounters before = comm.ledger().total();
  Tensor i32 = Tensor::zeros({D}, DType::i32, MemCategory::workspace);
  Tensor f32 = Tensor::zeros({D}, DType::f32, MemCategory::workspace);
  Tensor small = Tensor::zeros({1}, DType::f32, MemCategory::workspace);
  Tensor wrong = Tensor::zeros({D + 1}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(iall_to_all(comm, i32, f32), DTypeError);
  EXPECT_THROW(iall_to_all(comm, f32, wrong), ShapeError);
  EXPECT_THROW(iall_gather(comm, small, wrong), ShapeError);
  EXPECT_THROW(ireduce_scatter(comm, wrong, small), ShapeError);
  EXPECT_THROW(ibroadcast(comm, f32, D), InvalidArgument);
  // Send and receive sizes of a ring shift must agree, blocking or not, on any group size.
  EXPECT_THROW(iring_shift(comm, small, wrong, 1), ShapeError);
  EXPECT_THROW(ring_shift(comm, small, wrong, 1), ShapeError);
  EXPECT_THROW(iring_shift(comm, i32, f32, 1), DTypeError);
  // User tags stop below the reserved internal range.
  EXPECT_THROW(isend(comm, small, 0, kReservedTagBase), InvalidArgument);
  EXPECT_THROW(irecv(comm, small, 0, kRingShiftTag), InvalidArgument);
  EXPECT_THROW(send(comm, small, 0, -1), InvalidArgument);
  EXPECT_THROW(recv(comm, small, 0, kRingReduceScatterTag), InvalidArgument);
  EXPECT_THROW(irecv(comm, small, D, 0), InvalidArgument);
  EXPECT_EQ(comm.ledger().total(), before) << "a rejected call recorded traffic";
}

}  // namespace
}  // namespace tsp::comm
