// FLOPs, link selection by placement, and the overlap rules of the step-time model, on numbers
// chosen so that every time is a round hand-computed value.
#include "tsp/plan/time_model.h"

#include <gtest/gtest.h>

#include "plan_test_util.h"
#include "tsp/model/model_config.h"
#include "tsp/plan/placement.h"

namespace tsp::plan {
namespace {

using testing::fp32_work;
using testing::hand_config;

// 1000 FLOP/s, 1000 B/s (or 100 B/s) links, no latency: seconds are FLOPs / 1000 and bytes / bw.
Cluster slow_cluster(double bytes_per_s) {
  Cluster c;
  c.name = "slow";
  c.devices_per_node = 8;
  c.memory_per_device_gib = 1;
  c.matmul_tflops_bf16 = 1e-9;
  c.matmul_tflops_fp32 = 1e-9;
  c.intra_node_bandwidth_gbs = bytes_per_s / 1e9;
  c.inter_node_bandwidth_gbs = bytes_per_s / 1e9;
  return c;
}

// model_flops against a count made here from the engine's matmul shapes: per layer q [h, qd],
// k and v [h, kvd], o [qd, h], gate and up [h, F], down [F, h], each 2 T in out forward; causal
// attention per sequence and head: QK^T and PV, 2 d flops each per visible (query, key) pair, the
// S (S + 1) / 2 pairs of the lower triangle with its diagonal; the LM head [h, V]. Backward is 2x
// forward (dX and dW, or dQ/dK and dP/dV), recomputation is not counted. The planner counts S^2/2
// pairs (the diagonal's S pairs, relative 1/S, left out): that difference is subtracted exactly.
double engine_shape_flops(const model::ModelConfig& c, int64_t B, int64_t S) {
  const double T = static_cast<double>(B * S), h = static_cast<double>(c.hidden_size()),
               qd = static_cast<double>(c.q_dim()), kvd = static_cast<double>(c.kv_dim()),
               F = static_cast<double>(c.intermediate_size()), V = static_cast<double>(c.vocab_size()),
               d = static_cast<double>(c.head_dim()), H = static_cast<double>(c.num_attention_heads());
  auto mm = [&](double in, double out) { return 2 * T * in * out; };
  const double pairs = static_cast<double>(S) * static_cast<double>(S + 1) / 2;
  const double attention = static_cast<double>(B) * H * pairs * (2 * d + 2 * d);
  const double layer = mm(h, qd) + 2 * mm(h, kvd) + mm(qd, h) + 2 * mm(h, F) + mm(F, h) + attention;
  return 3 * (static_cast<double>(c.num_hidden_layers()) * layer + mm(h, V));
}

// Mistral's sliding window: the attention FLOPs shrink by the share of (query, key) pairs the
// window keeps, counted here pair by pair (query i sees min(i + 1, W) keys); a window at least as
// long as the sequence changes nothing.
TEST(TimeModel, SlidingWindowScalesAttentionByTheVisiblePairs) {
  model::ModelConfigFields f = model::preset("tiny").fields();
  const model::ModelConfig plain(f);
  f.model_type = model::ModelType::mistral;
  for (const auto& [S, W] : {std::pair<int64_t, int64_t>{1000, 100}, {4096, 4096}, {300, 1}, {64, 1000}}) {
    f.sliding_window = W;
    const model::ModelConfig windowed(f);
    const Workload w = fp32_work(2, S);
    double kept = 0, causal = 0;
    for (int64_t i = 0; i < S; ++i) {
      kept += static_cast<double>(std::min(i + 1, W));
      causal += static_cast<double>(i + 1);
    }
    EXPECT_NEAR(layer_attention_flops(windowed, w, Layout{}).forward,
                layer_attention_flops(plain, w, Layout{}).forward * kept / causal,
                1e-12 * layer_attention_flops(plain, w, Layout{}).forward)
        << "S " << S << " W " << W;
  }
}

TEST(TimeModel, ModelFlopsMatchTheEngineShapes) {
  for (const model::ModelConfig& c : {model::preset("tiny"), hand_config(1), hand_config(2)}) {
    for (const auto& [B, S] : {std::pair<int64_t, int64_t>{1, 8}, {4, 64}, {2, 1000}}) {
      Workload w = fp32_work(B, S);
      const double diagonal = 3.0 * static_cast<double>(c.num_hidden_layers()) * 2 * static_cast<double>(B * S) *
                              static_cast<double>(c.q_dim());
      // Sums of exact integers below 2^53: equal up to the rounding of the last additions.
      EXPECT_NEAR(model_flops(c, w), engine_shape_flops(c, B, S) - diagonal, 1e-12 * engine_shape_flops(c, B, S))
          << c.summary() << " B " << B << " S " << S;
      // Recomputation and the layout change hardware FLOPs, not model FLOPs.
      w.recompute = Recompute::full;
      EXPECT_NEAR(model_flops(c, w), engine_shape_flops(c, B, S) - diagonal, 1e-12 * engine_shape_flops(c, B, S));
    }
  }
}

TEST(TimeModel, LayerFlopsByHand) {
  // 2 * 1024 * 8 matmul + 2 * 1 * 8^2 * 8 attention = 16384 + 1024 = 17408 per layer.
  const Flops one = layer_flops(hand_config(), fp32_work(1, 8), dp_layout(1));
  EXPECT_DOUBLE_EQ(one.forward, 17408);
  EXPECT_DOUBLE_EQ(one.backward, 34816);
  EXPECT_DOUBLE_EQ(one.recompute, 0);
  const Flops tsp = layer_flops(hand_config(), fp32_work(1, 8), tsp_layout(2));
  EXPECT_DOUBLE_EQ(tsp.forward, 8704);
  // Head: 2 * 16 * 8 * 8 / 2 = 1024 forward, 3x backward.
  EXPECT_DOUBLE_EQ(head_flops(hand_config(), fp32_work(1, 8), tsp_layout(2)).backward, 3072);
}

TEST(TimeModel, GroupsOnConsecutiveRanksStayInANode) {
  EXPECT_EQ(nodes_spanned(tsp_layout(8, 2), Axis::tsp, 8), 1);
  EXPECT_EQ(nodes_spanned(tsp_layout(8, 2), Axis::dp, 8), 2);
  EXPECT_EQ(axis_stride(tsp_layout(8, 2), Axis::dp), 8);
  // tp 4 x sp 2 on nodes of 4: tp inside, sp across.
  EXPECT_EQ(nodes_spanned(tp_sp_layout(4, 2), Axis::tp, 4), 1);
  EXPECT_EQ(nodes_spanned(tp_sp_layout(4, 2), Axis::sp, 4), 2);
  const Cluster mi = cluster_preset("mi300x");
  // Full mesh: a collective over 8 uses 7 links of 64 GB/s, a ring shift one.
  EXPECT_DOUBLE_EQ(collective_link(mi, tsp_layout(8), Axis::tsp, CollectiveOp::all_gather).bytes_per_s,
                   7 * 64e9);
  EXPECT_DOUBLE_EQ(collective_link(mi, tsp_layout(8), Axis::tsp, CollectiveOp::sendrecv).bytes_per_s,
                   64e9);
  const Link dp = collective_link(mi, tsp_layout(8, 2), Axis::dp, CollectiveOp::all_reduce);
  EXPECT_TRUE(dp.inter_node);
  EXPECT_DOUBLE_EQ(dp.bytes_per_s, 50e9);
  EXPECT_DOUBLE_EQ(collective_link(cluster_preset("h100"), tp_layout(4), Axis::tp,
                                   CollectiveOp::all_reduce).bytes_per_s, 450e9);
}

TEST(TimeModel, TspOverlapsItsTrafficWithCompute) {
  // TSP 2 forward: compute 8704 FLOP = 8.704 s; traffic 2304 B (512 + 256 + 1536).
  const StepTime fast = step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), slow_cluster(1000));
  EXPECT_DOUBLE_EQ(fast.layer_forward_s, 8.704);  // max(8.704, 2.304)
  const StepTime slow = step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), slow_cluster(100));
  EXPECT_NEAR(slow.layer_forward_s, 23.04, 1e-9);  // max(8.704, 23.04)
  EXPECT_EQ(slow.dominant, "tsp comm (exposed)");
  EXPECT_EQ(fast.dominant, "compute");
}

TEST(TimeModel, WithoutBackgroundProgressOnlyEagerBytesOverlap) {
  // TSP 2 across two nodes of one device: the forward's 2304 B at 1000 B/s hide behind 8.704 s of
  // compute when the link progresses by itself, and add (8.704 + 2.304) when transfers move only
  // inside MPI calls (Open MPI over TCP, docs/cluster.md) and nothing is sent eagerly.
  Cluster c = slow_cluster(1000);
  c.devices_per_node = 1;
  EXPECT_DOUBLE_EQ(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 8.704);
  c.inter_node_background_progress = false;
  c.inter_node_eager_bytes = 0;
  EXPECT_NEAR(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 11.008, 1e-9);
  // The eager part of each message still moves when posted. Messages: the 512 B attention shard
  // (0.512 s for the two broadcasts), the 128 B K|V blocks (0.256 s), the 1536 B MLP ring shard
  // (1.536 s). Eager 256 B: K|V hidden, half the broadcasts and a sixth of the ring:
  // 8.704 + 0.256 + 1.28. Eager 512 B: the broadcasts hidden too, a third of the ring: + 1.024.
  c.inter_node_eager_bytes = 256;
  EXPECT_NEAR(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 10.24, 1e-9);
  c.inter_node_eager_bytes = 512;
  EXPECT_NEAR(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 9.728, 1e-9);
  // Messages no larger than the eager limit hide as with background progress.
  c.inter_node_eager_bytes = 1536;
  EXPECT_DOUBLE_EQ(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 8.704);
  // Inside one node the setting changes nothing: the group never uses the inter-node link.
  c.devices_per_node = 8;
  EXPECT_DOUBLE_EQ(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 8.704);
}

TEST(TimeModel, AttentionAtItsOwnRate) {
  // Layer forward 17408 FLOP, of which attention 2 * 8^2 * 8 = 1024; TSP 2 halves both. At
  // 1000 FLOP/s for matmuls and 250 for attention: (8704 - 512) / 1000 + 512 / 250 = 10.24 s.
  EXPECT_DOUBLE_EQ(layer_attention_flops(hand_config(), fp32_work(1, 8), tsp_layout(2)).forward, 512);
  Cluster c = slow_cluster(1e9);
  EXPECT_DOUBLE_EQ(c.attention_flops(false), c.matmul_flops(false));  // 0: the matmul rate
  c.attention_tflops_fp32 = 0.25e-9;
  EXPECT_NEAR(step_time(hand_config(), fp32_work(1, 8), tsp_layout(2), c).layer_forward_s, 10.24, 1e-9);
}

TEST(TimeModel, TpAllReducesAreOnTheCriticalPath) {
  // TP 2 forward: compute 8.704 s + 512 B / 1000 B/s = 0.512 s.
  const StepTime t = step_time(hand_config(), fp32_work(1, 8), tp_layout(2), slow_cluster(1000));
  EXPECT_NEAR(t.layer_forward_s, 9.216, 1e-9);
  // Backward: 17.408 s + 512 B of f32 input gradients.
  EXPECT_NEAR(t.layer_backward_s, 17.92, 1e-9);
}

TEST(TimeModel, StepAddsUpAndCountsTokens) {
  Workload w = fp32_work(2, 8);
  w.micro_batches = 3;
  const StepTime t = step_time(hand_config(), w, tsp_layout(2, 4), slow_cluster(1000));
  EXPECT_EQ(t.tokens_per_step, 4 * 3 * 2 * 8);
  double sum = 0;
  for (const TimeTerm& term : t.terms) sum += term.seconds;
  EXPECT_NEAR(sum, t.step_s, 1e-9 * t.step_s);
  EXPECT_DOUBLE_EQ(t.tokens_per_s, static_cast<double>(t.tokens_per_step) / t.step_s);
}

TEST(TimeModel, TspBeatsTpAtLongSequencesOnMi300x) {
  const model::ModelConfig c = model::preset("7b");
  const Workload w = testing::bf16_work(1, 131072);
  const Cluster mi = cluster_preset("mi300x");
  const StepTime tsp = step_time(c, w, tsp_layout(8), mi);
  const StepTime tp = step_time(c, w, tp_layout(8), mi);
  EXPECT_EQ(tsp.dominant, "compute");
  EXPECT_GT(tsp.tokens_per_s, tp.tokens_per_s);
}

}  // namespace
}  // namespace tsp::plan
