// The comm watchdog on healthy jobs (the aborting cases are stuck_rank_mpi + expect_comm_timeout
// .cmake): collectives that wait less than a short timeout complete with exact results; every live
// rank answers a liveness ping, also while its main thread is blocked in a barrier, and says where
// it waits; 0 disables; invalid timeouts and a second watchdog are refused.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <thread>

#include "tsp/comm/collectives.h"
#include "tsp/comm/watchdog.h"
#include "tsp/core/error.h"

namespace tsp::comm {
namespace {

using Clock = std::chrono::steady_clock;

TEST(WatchdogTest, RankRangesAreSortedAndCompressed) {
  EXPECT_EQ(format_rank_ranges({9, 1, 2, 3, 5, 2}), "1-3, 5, 9");
  EXPECT_EQ(format_rank_ranges({4}), "4");
  EXPECT_EQ(format_rank_ranges({}), "");
}

TEST(WatchdogTest, ZeroDisablesAndInvalidTimeoutsAreRefused) {
  Communicator world = Communicator::world();
  const CommWatchdog off(world, 0);
  EXPECT_FALSE(off.enabled());
  try {
    const CommWatchdog bad(world, -1);
    FAIL() << "a negative timeout was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--comm-timeout must be a number of seconds >= 0"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(CommWatchdog(world, std::numeric_limits<double>::infinity()), InvalidArgument);
}

TEST(WatchdogTest, OnlyOneWatchdogPerProcess) {
  Communicator world = Communicator::world();
  const CommWatchdog first(world, 30);
  ASSERT_TRUE(first.enabled());
  EXPECT_THROW(CommWatchdog(world, 30), CommError);  // refused before any collective: no hang
}

// The last rank arrives late (0.25 s) at each of 8 all-reduces under a 1 s timeout: every wait is
// shorter than the timeout, so the job goes on and the sums are exact.
TEST(WatchdogTest, WaitsShorterThanTheTimeoutAreLeftAlone) {
  Communicator world = Communicator::world();
  const CommWatchdog watchdog(world, 1.0);
  const int D = world.size();
  const auto t0 = Clock::now();
  for (int round = 0; round < 8; ++round) {
    if (world.rank() == D - 1) std::this_thread::sleep_for(std::chrono::milliseconds(250));
    Tensor x = Tensor::empty({3}, DType::i64, MemCategory::workspace);
    for (int64_t i = 0; i < 3; ++i) x.data<int64_t>()[i] = 100 * round + 10 * world.rank() + i;
    if (round % 2 == 0) {
      all_reduce(world, x);
    } else {
      Request r = iall_reduce(world, x);
      r.wait();
    }
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_EQ(x.data<int64_t>()[i], D * (100 * round + i) + 10 * (D * (D - 1) / 2)) << round;
  }
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - t0).count(), 8 * 0.25);
}

// Every rank but the last probes; the last one sits in a barrier meanwhile. Its watchdog thread
// answers although its main thread is blocked in MPI, and names the barrier.
TEST(WatchdogTest, EveryLiveRankAnswersAndSaysWhereItWaits) {
  Communicator world = Communicator::world();
  CommWatchdog watchdog(world, 60);
  const int D = world.size(), last = D - 1;
  if (world.rank() != last) {
    const auto until = Clock::now() + std::chrono::seconds(20);
    std::vector<PeerReply> replies;
    bool saw_barrier = false;
    while (!saw_barrier && Clock::now() < until) {  // until the last rank has entered the barrier
      replies = watchdog.probe_peers(5.0);
      ASSERT_EQ(static_cast<int>(replies.size()), D - 1);
      for (const PeerReply& p : replies) EXPECT_TRUE(p.heard) << "rank " << p.world_rank;
      saw_barrier = replies.back().state.starts_with("in barrier on 'world' (0 bytes, world ranks 0-" +
                                                     std::to_string(last) + ") for ");
    }
    int expected = 0;
    for (const PeerReply& p : replies) {
      if (expected == world.rank()) ++expected;
      EXPECT_EQ(p.world_rank, expected++);
    }
    EXPECT_TRUE(saw_barrier) << "the last rank answered '" << replies.back().state << "'";
  }
  world.barrier();
}

}  // namespace
}  // namespace tsp::comm
