// The TSP step's traffic ledger equals the analytic count exactly (TSP.md §5.1, per layer and for
// the vocabulary-parallel embedding and head), with and without recomputation; and the per-rank
// memory: weights and gradients 1/D of single-rank plus the replicated norm gains, activations
// exactly the single-rank formula at S/D tokens, comm buffers within the stated in-flight bound.
#include <gtest/gtest.h>

#include "layout_test_util.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/traffic_ledger.h"
#include "tsp/model/weight_names.h"
#include "tsp/parallel/shard_exchange.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {
namespace {

using comm::CommOp;
using comm::TrafficBytes;
using comm::TrafficCounters;

struct Expected {
  TrafficCounters by_op[comm::kNumCommOps];
  void add(CommOp op, int64_t calls, TrafficBytes b) {
    TrafficCounters& c = by_op[static_cast<int>(op)];
    c.calls += calls;
    c.bytes_sent += b.sent;
    c.bytes_received += b.received;
  }
};

// Tokens of the global batch that rank `r` holds and whose vocabulary row rank `owner` owns.
int64_t routed(const testing::Batch& b, int D, int r, int owner, int64_t vocab_rows) {
  const Zigzag z(b.tokens.dim(1), D, r);
  const Tensor local = z.take_local(b.tokens, MemCategory::workspace);
  int64_t n = 0;
  for (int64_t i = 0; i < local.numel(); ++i) n += local.data<int32_t>()[i] / vocab_rows == owner;
  return n;
}

// The analytic count of one forward_backward on this rank (docs/tsp.md, "Traffic").
Expected analytic(const model::ModelConfig& c, DType dt, const testing::Batch& b, int D, int p,
                  bool recompute) {
  const TpShardSizes s = TpShardSizes::of(c, D);
  const int64_t e = static_cast<int64_t>(dtype_size(dt)), L = c.num_hidden_layers();
  const int64_t h = c.hidden_size(), T = b.tokens.numel() / D, kv = 2 * s.kv_rows;
  const int64_t passes = recompute ? 3 : 2;  // forward, backward, (recomputed forward)
  Expected x;
  // Attention: D broadcasts of the packed shard and D all-gathers of one group's K|V per pass.
  for (int r = 0; r < D; ++r) {
    x.add(CommOp::broadcast, L * passes,
          {L * passes * (p == r ? (D - 1) * s.attn_elements * e : 0),
           L * passes * (p == r ? 0 : s.attn_elements * e)});
  }
  x.add(CommOp::all_gather, L * passes * D,
        {L * passes * D * (D - 1) * T * kv * e, L * passes * D * (D - 1) * T * kv * e});
  // Backward: dK|dV reduce-scattered (f32) and group weight gradients reduced onto owners (f32).
  x.add(CommOp::reduce_scatter, L * D, {L * D * (D - 1) * T * kv * 4, L * D * (D - 1) * T * kv * 4});
  const int64_t mine = comm::traffic::balanced_block(s.attn_elements, D, p);
  x.add(CommOp::reduce, L * D, {L * D * (s.attn_elements - mine) * 4, L * D * (D - 1) * mine * 4});
  // Rings: MLP shard D-1 hops per pass, its f32 gradient D-1 hops; head likewise (fwd + bwd).
  const int64_t hops = D - 1, vr = s.vocab_rows * h;
  const int64_t ring_calls = hops * (L * passes + L + 3);
  const int64_t ring_bytes = hops * (L * passes * s.mlp_elements * e + L * s.mlp_elements * 4 +
                                     2 * vr * e + vr * 4);
  x.add(CommOp::sendrecv, ring_calls, {ring_bytes, ring_bytes});
  // Embedding: counts (i64), ids (i32), rows back (e), row gradients to owners (f32).
  int64_t sent = 0, received = 0;
  for (int j = 0; j < D; ++j) {
    if (j == p) continue;
    const int64_t mine_to_j = routed(b, D, p, j, s.vocab_rows);
    const int64_t j_to_me = routed(b, D, j, p, s.vocab_rows);
    sent += 8 + 4 * mine_to_j + h * e * j_to_me + 4 * h * mine_to_j;
    received += 8 + 4 * j_to_me + h * e * mine_to_j + 4 * h * j_to_me;
  }
  x.add(CommOp::all_to_all, 4, {sent, received});
  return x;
}

void check_traffic(const testing::TinyModel& m, DType dt, bool recompute) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  const model::ModelConfig config = testing::tiny_config(m);
  const testing::Batch b = testing::random_batch(2, 24, config.vocab_size(), 17);
  const TpWeights w = TpWeights::initialize(config, dt, 4, D, world.rank());
  TpWeights grads(config, DType::f32, D, world.rank(), MemCategory::grads);
  const Zigzag z(24, D, world.rank());
  TspTransformer model(world, config, {.dtype = dt, .recompute = recompute, .vocab_chunk = 40});
  world.ledger().reset();
  model.forward_backward(w, z.take_local(b.tokens, MemCategory::workspace),
                         z.take_local(b.targets, MemCategory::workspace), 24, grads, 0.01f);
  const Expected x = analytic(config, dt, b, D, world.rank(), recompute);
  for (int op = 0; op < comm::kNumCommOps; ++op) {
    const TrafficCounters got = world.ledger().get(static_cast<CommOp>(op));
    const TrafficCounters& want = x.by_op[op];
    EXPECT_EQ(got.bytes_sent, want.bytes_sent) << comm::comm_op_name(static_cast<CommOp>(op));
    EXPECT_EQ(got.bytes_received, want.bytes_received) << comm::comm_op_name(static_cast<CommOp>(op));
    if (D > 1) {  // at D = 1 the ring schedules post nothing, the collectives still count calls
      EXPECT_EQ(got.calls, want.calls) << comm::comm_op_name(static_cast<CommOp>(op));
    }
  }
}

TEST(TspTraffic, MhaF32EqualsAnalyticCount) { check_traffic({}, DType::f32, false); }
TEST(TspTraffic, GqaTiedBf16EqualsAnalyticCount) {
  check_traffic({.gqa = true, .tied = true}, DType::bf16, false);
}
TEST(TspTraffic, RecomputeRepeatsTheForwardTraffic) { check_traffic({.gqa = true}, DType::f32, true); }

// Per-rank memory, from the accounting allocator, against the stated prediction.
TEST(TspMemory, ShardsAreOneOverDAndActivationsFollowTheFormula) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  const testing::TinyModel m{.gqa = true, .layers = 3};
  const model::ModelConfig config = testing::tiny_config(m);
  const int64_t B = 2, S = 32;
  const testing::Batch b = testing::random_batch(B, S, config.vocab_size(), 3);
  MemoryLedger& ledger = MemoryLedger::process();

  // Weights and gradients: every matrix 1/D, the 2L+1 norm gains whole.
  const int64_t norms = (2 * config.num_hidden_layers() + 1) * config.hidden_size();
  const int64_t matrices = config.total_params() - norms;
  const int64_t w0 = ledger.stats(MemCategory::weights).live_bytes;
  const TpWeights w = TpWeights::initialize(config, DType::f32, 1, D, world.rank());
  EXPECT_EQ(ledger.stats(MemCategory::weights).live_bytes - w0, 4 * (matrices / D + norms));
  const int64_t g0 = ledger.stats(MemCategory::grads).live_bytes;
  TpWeights grads(config, DType::f32, D, world.rank(), MemCategory::grads);
  EXPECT_EQ(ledger.stats(MemCategory::grads).live_bytes - g0, 4 * (matrices / D + norms));
  // Optimizer: two fp32 moments of the same split (bf16 weights add fp32 masters of it too).
  const int64_t o0 = ledger.stats(MemCategory::optimizer).live_bytes;
  const ShardedAdamW adam(w.params(), {});
  EXPECT_EQ(ledger.stats(MemCategory::optimizer).live_bytes - o0, 2 * 4 * (matrices / D + norms));
  const TpWeights w16 = TpWeights::initialize(config, DType::bf16, 1, D, world.rank());
  const int64_t m0 = ledger.stats(MemCategory::optimizer).live_bytes;
  const ShardedAdamW adam16(w16.params(), {});
  EXPECT_EQ(ledger.stats(MemCategory::optimizer).live_bytes - m0, 3 * 4 * (matrices / D + norms));

  const Zigzag z(S, D, world.rank());
  const Tensor tokens = z.take_local(b.tokens, MemCategory::workspace);
  const Tensor targets = z.take_local(b.targets, MemCategory::workspace);
  const model::TransformerOptions options{.vocab_chunk = 40};
  TspTransformer model(world, config, options);
  ledger.reset_peaks();
  const int64_t a0 = ledger.stats(MemCategory::activations).live_bytes;
  const int64_t c0 = ledger.stats(MemCategory::comm).live_bytes;
  model.forward_backward(w, tokens, targets, S, grads, 0.01f);
  // Activations: exactly the single-rank model's formula at S/D tokens (1/D of single-rank).
  EXPECT_EQ(ledger.stats(MemCategory::activations).peak_bytes - a0,
            tsp_predicted_activation_peak_bytes(config, options, D, B, S));
  EXPECT_EQ(tsp_predicted_activation_peak_bytes(config, options, D, B, S),
            model::predicted_activation_peak_bytes(config, options, B, S / D));
  // Comm buffers: one head group's gathered K|V (and its f32 dK|dV share), the in-flight weight
  // shards (double-buffered) and f32 gradient accumulators, the embedding exchange, and the ring
  // reduce-scatter's scratch. The stated bound: the largest phase, the attention backward.
  const TpShardSizes s = TpShardSizes::of(config, D);
  const int64_t T = B * S / D, kv = 2 * s.kv_rows;
  const int64_t attn_bwd = weight_buffers(D) * s.attn_elements * 4 + T * kv * 4 /*send*/ +
                           D * T * kv * 4 /*gathered*/ + s.attn_elements * 4 /*wgrad*/ +
                           T * kv * 4 /*dK|dV share*/ + D * T * kv * 4 /*ring scratch*/;
  const int64_t mlp_bwd = (weight_buffers(D) + grad_buffers(D)) * s.mlp_elements * 4;
  const int64_t head_bwd = (weight_buffers(D) + grad_buffers(D)) * s.vocab_rows * 64 * 4;
  const int64_t exchange = B * S * 4 /*ids held*/ + 2 * B * S * 64 * 4 /*rows in flight*/;
  const int64_t bound = std::max({attn_bwd, mlp_bwd, head_bwd}) + exchange;
  const int64_t comm_peak = ledger.stats(MemCategory::comm).peak_bytes - c0;
  EXPECT_LE(comm_peak, bound);
  if (D > 1) {
    EXPECT_GE(comm_peak, D * T * kv * 4);  // the gathered K|V of one group is there
  }
  if (world.rank() == 0)
    std::cout << "D=" << D << " per-rank bytes: weights " << 4 * (matrices / D + norms)
              << " (single-rank " << 4 * (matrices + norms) << "), activations peak "
              << tsp_predicted_activation_peak_bytes(config, options, D, B, S) << " (single-rank "
              << model::predicted_activation_peak_bytes(config, options, B, S) << "), comm peak "
              << comm_peak << " <= " << bound << "\n";
}

}  // namespace
}  // namespace tsp::parallel
