// Per-collective traffic on configs small enough to work out by hand (see plan_test_util.h),
// the TSP.md §5.1 closed forms, and the B*S >= 8h crossover of TSP vs TP.
#include "tsp/plan/traffic.h"

#include <gtest/gtest.h>

#include "plan_test_util.h"
#include "tsp/core/error.h"

namespace tsp::plan {
namespace {

using testing::bf16_work;
using testing::fp32_work;
using testing::hand_config;
using testing::mha_config;

const CollectiveTraffic& find(const PhaseTraffic& phase, Axis axis, CollectiveOp op,
                              const std::string& what_prefix = "") {
  for (const CollectiveTraffic& t : phase) {
    if (t.axis == axis && t.op == op && t.what.rfind(what_prefix, 0) == 0) return t;
  }
  throw std::runtime_error("no such collective");
}

void expect(const CollectiveTraffic& t, int64_t calls, int64_t sent, int64_t received) {
  EXPECT_EQ(t.calls, calls) << t.what;
  EXPECT_EQ(t.bytes_sent, sent) << t.what;
  EXPECT_EQ(t.bytes_received, received) << t.what;
}

// h = 8, qd = kvd = 8, F = 32, D = 2, B = 1, S = 8: T_loc = 4.
// attention shard (2*8 + 2*8) * 8 / 2 = 128 elements; MLP shard 3*32*8/2 = 384;
// K|V block of one head group: 4 tokens * 2*8/2 columns = 32 elements.
TEST(Traffic, TspForwardByHandFp32) {
  const LayerTraffic t = layer_traffic(hand_config(), fp32_work(1, 8), tsp_layout(2));
  ASSERT_EQ(t.forward.size(), 3u);
  // 2 broadcasts of 128 * 4 = 512 B: rank 0 is root once (sends 1 * 512), receives once (512).
  expect(find(t.forward, Axis::tsp, CollectiveOp::broadcast), 2, 512, 512);
  // 2 all-gathers, each (D-1) * 32 * 4 = 128 B.
  expect(find(t.forward, Axis::tsp, CollectiveOp::all_gather), 2, 256, 256);
  // D-1 = 1 ring shift of 384 * 4 = 1536 B.
  expect(find(t.forward, Axis::tsp, CollectiveOp::sendrecv), 1, 1536, 1536);
  // TSP.md §5.1: (D-1)/D * (W + 2 T h) * 4 = 1/2 * (1024 + 128) * 4 = 2304.
  EXPECT_EQ(totals(t.forward).bytes_received, 2304);
  EXPECT_TRUE(t.recompute.empty());
}

TEST(Traffic, TspBackwardByHandFp32) {
  const LayerTraffic t = layer_traffic(hand_config(), fp32_work(1, 8), tsp_layout(2));
  expect(find(t.backward, Axis::tsp, CollectiveOp::broadcast), 2, 512, 512);
  expect(find(t.backward, Axis::tsp, CollectiveOp::all_gather), 2, 256, 256);
  // dK|dV in f32: 2 reduce-scatters, each (D-1) * 32 * 4 = 128 B.
  expect(find(t.backward, Axis::tsp, CollectiveOp::reduce_scatter), 2, 256, 256);
  // shard gradients f32: 2 reduces of 128 elements; block 64: recv (D-1)*64*4, sent (128-64)*4.
  expect(find(t.backward, Axis::tsp, CollectiveOp::reduce), 2, 512, 512);
  expect(find(t.backward, Axis::tsp, CollectiveOp::sendrecv, "MLP shard"), 1, 1536, 1536);
  expect(find(t.backward, Axis::tsp, CollectiveOp::sendrecv, "MLP gradient"), 1, 1536, 1536);
  // §5.1: (D-1)/D * (W + W + 2Th + 2Th) * 4 = 1/2 * 2304 * 4 = 4608.
  EXPECT_EQ(totals(t.backward).bytes_received, 4608);
}

TEST(Traffic, TspBf16MovesWeightsAndKvIn2BytesGradientsIn4) {
  const LayerTraffic t = layer_traffic(hand_config(), bf16_work(1, 8), tsp_layout(2));
  // 256 broadcast + 128 gather + 768 ring.
  EXPECT_EQ(totals(t.forward).bytes_received, 1152);
  // 256 + 128 + 256 (dK|dV f32) + 512 (shard grads f32) + 768 + 1536 (f32 accumulator).
  EXPECT_EQ(totals(t.backward).bytes_received, 3456);
}

TEST(Traffic, RecomputationRepeatsTheForward) {
  Workload w = fp32_work(1, 8);
  w.recompute = Recompute::full;
  const LayerTraffic tsp = layer_traffic(hand_config(), w, tsp_layout(2));
  EXPECT_EQ(totals(tsp.recompute).bytes_received, 2304);
  // TP repeats the attention's all-reduce only: the recomputed MLP stops after gate/up.
  const LayerTraffic tp = layer_traffic(hand_config(), w, tp_layout(2));
  EXPECT_EQ(totals(tp.recompute).bytes_received, 256);
  // FSDP gathers the layer's weights once for recompute + backward: only K|V repeats (256 B).
  const LayerTraffic fsdp = layer_traffic(hand_config(), w, fsdp_sp_layout(2));
  EXPECT_EQ(totals(fsdp.recompute).bytes_received, 256);
}

TEST(Traffic, TpAllReducesByHand) {
  // 2 all-reduces of T h = 64 f32 on 2 ranks: (64 + 0 * 32) * 4 = 256 B each.
  const LayerTraffic t = layer_traffic(hand_config(), fp32_work(1, 8), tp_layout(2));
  ASSERT_EQ(t.forward.size(), 2u);
  EXPECT_EQ(totals(t.forward, Axis::tp, CollectiveOp::all_reduce).bytes_received, 512);
  EXPECT_EQ(totals(t.forward, Axis::tp, CollectiveOp::all_reduce).calls, 2);
  EXPECT_EQ(totals(t.backward).bytes_received, 512);
  // bf16 activations still reduce in f32 (the engine's rule): the same 512 B.
  EXPECT_EQ(totals(layer_traffic(hand_config(), bf16_work(1, 8), tp_layout(2)).forward).bytes_received,
            512);
}

TEST(Traffic, SpAndTpSpByHand) {
  // SP 2: t = 4 tokens, K|V of all heads 4 * 16 = 64 elements per rank: (2-1) * 64 * 4 = 256.
  const LayerTraffic sp = layer_traffic(hand_config(), fp32_work(1, 8), sp_layout(2));
  expect(find(sp.forward, Axis::sp, CollectiveOp::all_gather), 1, 256, 256);
  expect(find(sp.backward, Axis::sp, CollectiveOp::reduce_scatter), 1, 256, 256);
  EXPECT_EQ(totals(sp.backward).bytes_received, 512);
  // TP 2 x SP 2 with S = 8: t = 4; all-reduces of 4*8 = 32 f32: (32 + 0) * 4 = 128 B each;
  // K|V of 1 head of 2: 4 * 16 / 2 = 32 elements: 1 * 32 * 4 = 128 B.
  const LayerTraffic tpsp = layer_traffic(hand_config(), fp32_work(1, 8), tp_sp_layout(2, 2));
  EXPECT_EQ(totals(tpsp.forward, Axis::tp).bytes_received, 256);
  EXPECT_EQ(totals(tpsp.forward, Axis::sp).bytes_received, 128);
}

// The size of one message per peer and call, for the eager share of docs/planner.md §5: a TSP 4
// layer's ring shift, broadcasts and K|V gather (real ledgers at D = 4), and rooted operations.
TEST(Traffic, MessageBytesPerPeerAndCall) {
  auto entry = [](CollectiveOp op, int64_t group, int64_t calls, Bytes b) {
    return CollectiveTraffic{.what = "x", .axis = Axis::tsp, .op = op, .group = group, .calls = calls,
                             .bytes_sent = b.sent, .bytes_received = b.received};
  };
  // Ring: 3 shifts of a 1000 B shard, each to one neighbour.
  Bytes ring;
  for (int k = 0; k < 3; ++k) ring += ledger_sendrecv(1000, 4);
  EXPECT_DOUBLE_EQ(message_bytes(entry(CollectiveOp::sendrecv, 4, 3, ring)), 1000);
  // Broadcasts of a 1000 B shard from each of 4 roots: this rank is root once.
  Bytes bcast;
  for (int r = 0; r < 4; ++r) bcast += ledger_broadcast(1000, 4, r == 1);
  EXPECT_DOUBLE_EQ(message_bytes(entry(CollectiveOp::broadcast, 4, 4, bcast)), 1000);
  // All-gather of 250 B per rank over 4: one 250 B block per peer.
  EXPECT_DOUBLE_EQ(message_bytes(entry(CollectiveOp::all_gather, 4, 1, ledger_all_gather(250, 1, 4))), 250);
  // Reduce of a 1000-element f32 buffer onto each of 4 roots in turn: the whole 4000 B buffer.
  Bytes reduce;
  for (int r = 0; r < 4; ++r) reduce += ledger_reduce(1000, 4, 4, 2);
  EXPECT_DOUBLE_EQ(message_bytes(entry(CollectiveOp::reduce, 4, 4, reduce)), 4000);
  // Groups of 2: every kind is the whole buffer.
  EXPECT_DOUBLE_EQ(message_bytes(entry(CollectiveOp::reduce, 2, 1, ledger_reduce(1000, 4, 2, 0))), 4000);
  Bytes pair = ledger_broadcast(1000, 2, true);
  pair += ledger_broadcast(1000, 2, false);
  EXPECT_DOUBLE_EQ(message_bytes(entry(CollectiveOp::broadcast, 2, 2, pair)), 1000);
  EXPECT_EQ(message_bytes(entry(CollectiveOp::sendrecv, 4, 0, {})), 0);
}

TEST(Traffic, FsdpGathersWholeLayersByHand) {
  // Layer unit 1024 + 16 = 1040 elements, 520 per rank: gather receives 520 * 4 = 2080 B.
  const LayerTraffic t = layer_traffic(hand_config(), fp32_work(1, 8), fsdp_sp_layout(2));
  expect(find(t.forward, Axis::sp, CollectiveOp::all_gather, "layer weights"), 1, 2080, 2080);
  expect(find(t.forward, Axis::sp, CollectiveOp::all_gather, "K|V"), 1, 256, 256);
  expect(find(t.backward, Axis::sp, CollectiveOp::reduce_scatter, "layer weight"), 1, 2080, 2080);
  EXPECT_EQ(totals(t.backward).bytes_received, 2080 + 256 + 256 + 2080);
  // Uneven split over 3 ranks (S = 12): blocks 347, 347, 346; rank 2 receives (1040 - 346) * 4.
  const LayerTraffic u = layer_traffic(hand_config(), fp32_work(1, 12), fsdp_sp_layout(3),
                                       RankCoords{.sp = 2});
  expect(find(u.forward, Axis::sp, CollectiveOp::all_gather, "layer weights"), 1, 2 * 346 * 4,
         694 * 4);
}

TEST(Traffic, TspStepTrafficByHand) {
  // D = 2, T_loc = 4, V/D = 8 rows of h = 8, fp32.
  const StepTraffic s = step_traffic(hand_config(), fp32_work(1, 8), tsp_layout(2));
  // ids: 2 of the 4 local tokens go to the other owner: 2 * 4 B; rows back: 2 * 8 * 4 B.
  expect(find(s.forward, Axis::tsp, CollectiveOp::all_to_all, "token ids"), 1, 8, 8);
  expect(find(s.forward, Axis::tsp, CollectiveOp::all_to_all, "embedding rows"), 1, 64, 64);
  // head ring: D-1 = 1 shift of 8 * 8 * 4 = 256 B; backward again + f32 accumulator 256 B.
  expect(find(s.forward, Axis::tsp, CollectiveOp::sendrecv), 1, 256, 256);
  EXPECT_EQ(totals(s.backward, Axis::tsp, CollectiveOp::sendrecv).bytes_received, 512);
  expect(find(s.backward, Axis::tsp, CollectiveOp::all_to_all), 1, 64, 64);
  // norm gains: (2L + 1) h = 40 f32, all-reduced on 2 ranks: (40 + 0) * 4 = 160 B.
  expect(find(s.gradient_sync, Axis::tsp, CollectiveOp::all_reduce), 1, 160, 160);
  EXPECT_EQ(s.gradient_sync.size(), 1u);  // no dp
}

TEST(Traffic, DpAllReducesEveryGradientShard) {
  // dp 2 x tsp 2: this rank's parameters L*(1024/2 + 16) + 8 + 2*16*8/2 = 1192 f32 over 2 ranks:
  // (1192 + 0) * 4 = 4768 B.
  const StepTraffic s = step_traffic(hand_config(), fp32_work(1, 8), tsp_layout(2, 2));
  expect(find(s.gradient_sync, Axis::dp, CollectiveOp::all_reduce), 1, 4768, 4768);
  // Pure DP over 2: all 2*(1024+16) + 8 + 256 = 2344 parameters: 2344 * 4 = 9376 B.
  const StepTraffic d = step_traffic(hand_config(), fp32_work(1, 8), dp_layout(2));
  expect(find(d.gradient_sync, Axis::dp, CollectiveOp::all_reduce), 1, 9376, 9376);
  EXPECT_TRUE(layer_traffic(hand_config(), fp32_work(1, 8), dp_layout(2)).forward.empty());
}

TEST(Traffic, TspAndTpClosedFormsForMha) {
  // §5.1 at h = 64, D = 4, T = 512, fp32: TSP forward 3/4 (16 h^2 + 2 T h) * 4 = 393216,
  // TP forward 4 * 3/4 * T h * 4 = 393216: exactly the crossover T = 8h.
  const model::ModelConfig c = mha_config(64, 4);
  EXPECT_EQ(totals(layer_traffic(c, fp32_work(1, 512), tsp_layout(4)).forward).bytes_received,
            393216);
  EXPECT_EQ(totals(layer_traffic(c, fp32_work(1, 512), tp_layout(4)).forward).bytes_received,
            393216);
  // T = 504 (below 8h): TSP 3/4 (65536 + 64512) 4 = 390144 > TP 3 * 504 * 64 * 4 = 387072.
  EXPECT_EQ(totals(layer_traffic(c, fp32_work(1, 504), tsp_layout(4)).forward).bytes_received,
            390144);
  EXPECT_EQ(totals(layer_traffic(c, fp32_work(1, 504), tp_layout(4)).forward).bytes_received,
            387072);
  // T = 520 (above): TSP 3/4 (65536 + 66560) 4 = 396288 < TP 3 * 520 * 64 * 4 = 399360.
  EXPECT_EQ(totals(layer_traffic(c, fp32_work(1, 520), tsp_layout(4)).forward).bytes_received,
            396288);
  EXPECT_EQ(totals(layer_traffic(c, fp32_work(1, 520), tp_layout(4)).forward).bytes_received,
            399360);
}

TEST(Traffic, TspMovesNoMoreThanTpExactlyWhenBSAtLeast8h) {
  // MHA, F = 4h, equal wire sizes: TSP forward <= TP forward iff B*S >= 8h, on both sides.
  const int64_t h = 64;
  const model::ModelConfig c = mha_config(h, 8);
  int below = 0, above = 0;
  for (int64_t D : {2, 4, 8}) {
    for (int64_t B : {1, 2, 3}) {
      for (int64_t S = 2 * D; S <= 2048; S += 2 * D) {
        const Workload w = fp32_work(B, S);
        const int64_t tsp = totals(layer_traffic(c, w, tsp_layout(D)).forward).bytes_received;
        const int64_t tp = totals(layer_traffic(c, w, tp_layout(D)).forward).bytes_received;
        EXPECT_EQ(tsp <= tp, B * S >= 8 * h) << "D=" << D << " B=" << B << " S=" << S;
        ++(B * S >= 8 * h ? above : below);
      }
    }
  }
  EXPECT_GT(below, 100);
  EXPECT_GT(above, 100);
}

TEST(Traffic, RejectsLayoutsThatDoNotDivide) {
  try {
    layer_traffic(hand_config(), fp32_work(1, 8), tsp_layout(4));
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("2 attention heads are not divisible by tsp=4"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(layer_traffic(hand_config(), fp32_work(1, 6), sp_layout(2)), InvalidArgument);
  EXPECT_THROW(layer_traffic(hand_config(), fp32_work(1, 8), tsp_layout(2), RankCoords{.tsp = 2}),
               InvalidArgument);
}

}  // namespace
}  // namespace tsp::plan
