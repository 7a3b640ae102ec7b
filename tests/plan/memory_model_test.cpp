// Memory per category: model state by hand, the engine's activation formula mirrored exactly,
// and the scaling of every layout (TSP: 1/D of the matrices + replicated norms).
#include "tsp/plan/memory_model.h"

#include <gtest/gtest.h>

#include "plan_test_util.h"
#include "tsp/core/checked_math.h"
#include "tsp/model/transformer.h"
#include "tsp/plan/param_share.h"
#include "tsp/plan/time_model.h"
#include "tsp/plan/traffic.h"

namespace tsp::plan {
namespace {

using testing::bf16_work;
using testing::fp32_work;
using testing::hand_config;

// The inputs: byte counts beyond int64 are refused (never a negative or "fits" total), and
// the largest plannable seq is a real boundary: it plans with positive totals, one more is refused.
TEST(MemoryModel, SizesBeyondInt64AreRefusedWithTheLargestSeq) {
  const model::ModelConfig c = model::preset("7b");
  for (const Workload& w : {bf16_work(1, INT64_MAX), bf16_work(int64_t{1} << 62, 4096), bf16_work(2, int64_t{1} << 62)}) {
    EXPECT_THROW(memory(c, w, tsp_layout(8)), SizeOverflow) << w.batch << " x " << w.seq;
    EXPECT_THROW(validate_sizes(c, w), SizeOverflow);
  }
  try {
    validate_sizes(c, bf16_work(1, int64_t{1} << 40));
    ADD_FAILURE() << "2^40 tokens of 7b accepted";
  } catch (const SizeOverflow& e) {
    EXPECT_NE(std::string(e.what()).find("the largest seq at batch 1 with 1 micro-batches is"), std::string::npos)
        << e.what();
  }
  const int64_t n = largest_plannable_seq(c, bf16_work(1, 1));
  ASSERT_GT(n, 131072);
  const int64_t seq = n / 16 * 16;  // divisible for tsp8's zigzag split
  for (const Layout& l : {tsp_layout(8, 4), tp_layout(8, 2), tp_sp_layout(4, 2), dp_layout(1), fsdp_sp_layout(8, 2)}) {
    const MemoryEstimate m = memory(c, bf16_work(1, seq), l);
    for (const int64_t b : m.bytes) EXPECT_GE(b, 0) << l.name();
    EXPECT_GT(m.total(), m[MemCategory::activations]) << l.name();
    // Traffic and time at the same size (the rest of what `tsp plan` prints) stay positive too.
    const StepTraffic step = step_traffic(c, bf16_work(1, seq), l);
    EXPECT_GE(micro_batch_totals(layer_traffic(c, bf16_work(1, seq), l), step, c.num_hidden_layers()).bytes_sent, 0)
        << l.name();
    const StepTime t = step_time(c, bf16_work(1, seq), l, cluster_preset("mi300x"));
    EXPECT_GT(t.tokens_per_step, 0) << l.name();
    EXPECT_GT(t.step_s, 0) << l.name();
  }
  EXPECT_NO_THROW(validate_sizes(c, bf16_work(1, n)));
  EXPECT_THROW(validate_sizes(c, bf16_work(1, n + 1)), SizeOverflow);
  Workload many = bf16_work(1, 4096);
  many.micro_batches = int64_t{1} << 62;
  EXPECT_THROW(validate_sizes(c, many), SizeOverflow);
}

TEST(MemoryModel, TspModelStateByHand) {
  // Per rank, D = 2: L * (1024/2 + 16) + 8 (final norm) + 128/2 (embedding) + 128/2 (head) = 1192.
  const MemoryEstimate fp32 = memory(hand_config(), fp32_work(1, 8), tsp_layout(2));
  EXPECT_EQ(fp32[MemCategory::weights], 1192 * 4);
  EXPECT_EQ(fp32[MemCategory::grads], 1192 * 4);
  EXPECT_EQ(fp32[MemCategory::optimizer], 1192 * 8);  // two f32 moments, no masters
  EXPECT_EQ(fp32[MemCategory::kv_cache], 0);
  const MemoryEstimate bf16 = memory(hand_config(), bf16_work(1, 8), tsp_layout(2));
  EXPECT_EQ(bf16[MemCategory::weights], 1192 * 2);
  EXPECT_EQ(bf16[MemCategory::grads], 1192 * 4);
  EXPECT_EQ(bf16[MemCategory::optimizer], 1192 * 12);  // f32 masters + two f32 moments
}

TEST(MemoryModel, TspActivationsByHand) {
  // t = 4 local tokens, fp32: x = 4 * 8 * 4 = 128 B; a block saves t (h + qkv 24 + attn 8 +
  // 2F 64) = 4 * 104 * 4 = 1664 B plus lse 4 * H * t = 32 B: 1696 B. No recompute:
  // (L+1) x + L block + 4 t = 384 + 3392 + 16 = 3792. Recompute: 384 + max(1696, 16) = 2080.
  EXPECT_EQ(activation_peak_bytes(hand_config(), fp32_work(1, 8), tsp_layout(2)), 3792);
  Workload w = fp32_work(1, 8);
  w.recompute = Recompute::full;
  EXPECT_EQ(activation_peak_bytes(hand_config(), w, tsp_layout(2)), 2080);
}

TEST(MemoryModel, TspCommIsTheLargestPhaseOfInFlightBuffers) {
  // fp32, D = 2 (one receive buffer per shard, two f32 accumulators): one group's K|V is 8 per
  // token: send copy 4 tokens * 8 * 4 B = 128, gathered 8 * 8 * 4 = 256 -> 384; attention shard
  // 128 el, MLP shard 384 el, head shard 16/2 * 8 = 64 el.
  // forward max(128*4 + 384, 384*4) = 1536; backward attention 128*4 + 384 + 128*4 (f32 grad)
  // + 4*8*4 (dK|dV share) = 1536; backward MLP 384*4 + 2*384*4 = 4608; head 64*4 + 2*64*4 = 768;
  // plus the 4 token ids looked up for the other rank (16 B) -> 4624.
  EXPECT_EQ(memory(hand_config(), fp32_work(1, 8), tsp_layout(2))[MemCategory::comm], 4624);
}

TEST(MemoryModel, SingleDeviceActivationsMirrorTheEngineFormula) {
  for (const char* name : {"tiny", "tiny-gqa", "small"}) {
    const model::ModelConfig c = model::preset(name);
    for (bool recompute : {false, true}) {
      for (DType dt : {DType::f32, DType::bf16}) {
        Workload w = dt == DType::bf16 ? bf16_work(2, 64) : fp32_work(2, 64);
        w.recompute = recompute ? Recompute::full : Recompute::none;
        const model::TransformerOptions o{.dtype = dt, .recompute = recompute};
        const int64_t engine = model::predicted_activation_peak_bytes(c, o, 2, 64);
        EXPECT_EQ(activation_peak_bytes(c, w, dp_layout(1)), engine) << name;
        // Token sharding divides everything by the degree exactly.
        EXPECT_EQ(activation_peak_bytes(c, w, tsp_layout(2)) * 2, engine) << name;
        EXPECT_EQ(activation_peak_bytes(c, w, sp_layout(4)) * 4, engine) << name;
      }
    }
  }
}

TEST(MemoryModel, TspModelStateIsOneOverDPlusReplicatedNorms) {
  const model::ModelConfig c = model::preset("7b");
  const Workload w = bf16_work(1, 4096);
  const int64_t L = 32, h = 4096;
  const int64_t sharded = L * c.matrix_params_per_layer() + 2 * c.embedding_params();
  const int64_t norms = (2 * L + 1) * h;
  for (int64_t D : {1, 2, 4, 8}) {
    const MemoryEstimate m = memory(c, w, tsp_layout(D));
    EXPECT_EQ(m[MemCategory::weights], (sharded / D + norms) * 2) << D;
    EXPECT_EQ(m[MemCategory::grads], (sharded / D + norms) * 4) << D;
    EXPECT_EQ(m[MemCategory::optimizer], (sharded / D + norms) * 12) << D;
  }
  // TP divides the same matrices by T; SP and DP replicate everything.
  EXPECT_EQ(memory(c, w, tp_layout(8))[MemCategory::weights], (sharded / 8 + norms) * 2);
  EXPECT_EQ(memory(c, w, sp_layout(8))[MemCategory::weights], c.total_params() * 2);
  EXPECT_EQ(memory(c, w, dp_layout(8))[MemCategory::weights], c.total_params() * 2);
}

TEST(MemoryModel, TpKeepsActivationsWholeExceptHeadShardedTensors) {
  // TP 2, fp32, T = 8: x = 8*8*4 = 256; block 8 (8 + 24/2 + 8/2 + 64/2) 4 + 4 * 1 * 8 = 1824;
  // (L+1) x + L block + 4T = 768 + 3648 + 32 = 4448.
  EXPECT_EQ(activation_peak_bytes(hand_config(), fp32_work(1, 8), tp_layout(2)), 4448);
}

TEST(MemoryModel, FsdpShardsEverythingFlat) {
  // 2 layer units of 1040 -> 520 each, embedding 128 -> 64, head unit 128 + 8 = 136 -> 68.
  const ParamShare s = param_share(hand_config(), fsdp_sp_layout(2), 0);
  EXPECT_EQ(s.total(), 2 * 520 + 64 + 68);
  const MemoryEstimate m = memory(hand_config(), fp32_work(1, 8), fsdp_sp_layout(2));
  EXPECT_EQ(m[MemCategory::weights], (2 * 520 + 64 + 68) * 4);
  // comm, the layer backward: 2 gathered layers 2 * 1040 * 4 + the full-layer f32 gradient
  // 1040 * 4 + K|V of one head set (4 local + 8 gathered tokens) * 16 * 4 + this rank's f32
  // dK|dV share 4 * 16 * 4 = 8320 + 4160 + 768 + 256 = 13504.
  EXPECT_EQ(m[MemCategory::comm], 2 * 1040 * 4 + 1040 * 4 + 12 * 16 * 4 + 4 * 16 * 4);
}

TEST(MemoryModel, PipelineStagesHoldTheirLayersAndInFlightMicroBatches) {
  Workload w = fp32_work(1, 8);
  w.micro_batches = 4;
  // dp 1 x pp 2: stage 0 has 1 layer, the embedding, and min(2, 4) = 2 micro-batches in flight.
  const ParamShare first = param_share(hand_config(), dp_layout(1, 2), 0);
  EXPECT_EQ(first.total(), 1040 + 128);
  const ParamShare last = param_share(hand_config(), dp_layout(1, 2), 1);
  EXPECT_EQ(last.total(), 1040 + 128 + 8);
  // Stage 0 activations: 2 * ((1 + 1) x + block) with x = 256, block = 8*104*4 + 4*2*8 = 3392.
  EXPECT_EQ(activation_peak_bytes(hand_config(), w, dp_layout(1, 2), 0), 2 * (512 + 3392));
  EXPECT_EQ(activation_peak_bytes(hand_config(), w, dp_layout(1, 2), 1), 512 + 3392 + 32);
}

}  // namespace
}  // namespace tsp::plan
