// The ledger convention of docs/running.md, one call at a time, with uneven block splits.
#include "tsp/plan/collective_bytes.h"

#include <gtest/gtest.h>

#include <vector>

#include "tsp/core/error.h"

namespace tsp::plan {
namespace {

TEST(CollectiveBytes, BalancedBlocksGiveTheRemainderToTheFirstRanks) {
  // 10 over 4: 3, 3, 2, 2.
  EXPECT_EQ(balanced_block(10, 4, 0), 3);
  EXPECT_EQ(balanced_block(10, 4, 1), 3);
  EXPECT_EQ(balanced_block(10, 4, 2), 2);
  EXPECT_EQ(balanced_block(10, 4, 3), 2);
  EXPECT_THROW(balanced_block(10, 4, 4), InvalidArgument);
}

TEST(CollectiveBytes, BroadcastRootSendsNonRootsReceive) {
  EXPECT_EQ(ledger_broadcast(100, 4, true), (Bytes{.sent = 300, .received = 0}));
  EXPECT_EQ(ledger_broadcast(100, 4, false), (Bytes{.sent = 0, .received = 100}));
}

TEST(CollectiveBytes, ReduceAndAllReduceUseThisRanksBlock) {
  // n = 10 f32 over 4 ranks; rank 0's block 3, rank 3's block 2.
  EXPECT_EQ(ledger_reduce(10, 4, 4, 0), (Bytes{.sent = (10 - 3) * 4, .received = 3 * 3 * 4}));
  EXPECT_EQ(ledger_reduce(10, 4, 4, 3), (Bytes{.sent = (10 - 2) * 4, .received = 3 * 2 * 4}));
  // all-reduce: (n + (g-2) c_r) w = (10 + 2*3) * 4 = 64 for rank 0, (10 + 2*2) * 4 = 56 for rank 3.
  EXPECT_EQ(ledger_all_reduce(10, 4, 4, 0), (Bytes{.sent = 64, .received = 64}));
  EXPECT_EQ(ledger_all_reduce(10, 4, 4, 3), (Bytes{.sent = 56, .received = 56}));
  // Ring all-reduce of 8 elements on 4 ranks: 2 (g-1)/g of the buffer = 12 elements.
  EXPECT_EQ(ledger_all_reduce(8, 1, 4, 1), (Bytes{.sent = 12, .received = 12}));
  EXPECT_EQ(ledger_all_reduce(8, 4, 1, 0), (Bytes{}));
}

TEST(CollectiveBytes, GatherAndScatterWithUnevenCounts) {
  const std::vector<int64_t> counts = {3, 3, 2, 2};
  EXPECT_EQ(ledger_all_gather(counts, 2, 0), (Bytes{.sent = 3 * 3 * 2, .received = 7 * 2}));
  EXPECT_EQ(ledger_all_gather(counts, 2, 2), (Bytes{.sent = 3 * 2 * 2, .received = 8 * 2}));
  EXPECT_EQ(ledger_reduce_scatter(counts, 4, 0), (Bytes{.sent = 7 * 4, .received = 3 * 3 * 4}));
  EXPECT_EQ(ledger_reduce_scatter(counts, 4, 3), (Bytes{.sent = 8 * 4, .received = 3 * 2 * 4}));
  EXPECT_EQ(ledger_all_gather(5, 4, 3), (Bytes{.sent = 40, .received = 40}));
}

TEST(CollectiveBytes, AllToAllAndPointToPoint) {
  const std::vector<int64_t> send = {1, 2, 3}, recv = {4, 5, 6};
  EXPECT_EQ(ledger_all_to_all(send, recv, 4, 1), (Bytes{.sent = (1 + 3) * 4, .received = (4 + 6) * 4}));
  EXPECT_EQ(ledger_sendrecv(96, 4), (Bytes{.sent = 96, .received = 96}));
  EXPECT_EQ(ledger_sendrecv(96, 1), (Bytes{}));  // a shift to oneself
}

TEST(CollectiveBytes, OpNamesMatchTheEngine) {
  EXPECT_EQ(collective_op_name(CollectiveOp::broadcast), "broadcast");
  EXPECT_EQ(collective_op_name(CollectiveOp::reduce_scatter), "reduce_scatter");
  EXPECT_EQ(collective_op_name(CollectiveOp::all_to_all), "all_to_all");
  EXPECT_EQ(collective_op_name(CollectiveOp::sendrecv), "sendrecv");
}

}  // namespace
}  // namespace tsp::plan
