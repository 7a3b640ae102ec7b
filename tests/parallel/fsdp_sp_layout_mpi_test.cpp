// The FSDP-over-SP baseline against the single-rank engine under mpirun (1, 2, 4 ranks): loss and
// every gradient for MHA and GQA (H_kv < D included), tied and untied, fp32 and bf16, with and
// without recomputation and prefetching, micro-batch accumulation, dp 2 x fsdp 2; the traffic
// ledger against the analytic count of docs/fsdp_sp.md; per-rank memory (weights, grads and
// optimizer 1/D, activations exactly the single-rank formula at S/D, comm within the stated
// bound); HF checkpoints in and out; invalid sizes rejected on every rank before allocating.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "layout_test_util.h"
#include "scratch_dir.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/comm/traffic_ledger.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/parallel/fsdp_sp_layout.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/single_layout.h"

namespace tsp::parallel {
namespace {

using comm::CommOp;
using comm::MeshAxis;
using testing::Batch;
using testing::TinyModel;

// Loss sum and valid count of a layout summed over a communicator (f32 / i64 all-reduces).
model::LossSum sum_over(comm::Communicator& group, const model::LossSum& mine) {
  Tensor loss = Tensor::empty({1}, DType::f32, MemCategory::workspace);
  Tensor count = Tensor::empty({1}, DType::i64, MemCategory::workspace);
  loss.data<float>()[0] = static_cast<float>(mine.loss_sum);
  count.data<int64_t>()[0] = mine.n_valid;
  comm::all_reduce(group, loss);
  comm::all_reduce(group, count);
  return {loss.data<float>()[0], count.data<int64_t>()[0]};
}

struct Case {
  const char* name;
  model::ModelConfig config;
  DType dtype;
  bool recompute = false;
  bool prefetch = true;
};

model::ModelConfig config_of(const TinyModel& m) { return testing::tiny_config(m); }

// H = 8, H_kv = 2 (d = 8): at D = 4 every rank holds half of one KV head's rows, which TSP
// rejects (H_kv < D) and FSDP does not care about.
model::ModelConfig few_kv_heads() {
  model::ModelConfigFields f = testing::tiny_config({}).fields();
  f.num_key_value_heads = 2;
  return model::ModelConfig(f);
}

// fp32: the engines differ only in the order of fp32 sums (the D row blocks of a weight in the
// data gradients, flash attention over gathered keys, dK|dV partial sums, reduce-scattered
// weight gradients): the derived testing::f32_layout_tolerance (norm-wise, and per element
// against |e| + rms(e)), under which a missing or doubled term (>= 1e-2) fails. bf16: activations are rounded to 8 bits at the
// same points in both engines, but a different fp32 order can flip a rounding, which then
// propagates: a few bf16 ulps, so 3e-2.
void run_case(const Case& c) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  const uint64_t seed = 77;
  const Batch b = testing::random_batch(2, 24, c.config.vocab_size(), 5);
  const model::TransformerOptions options{
      .dtype = c.dtype, .recompute = c.recompute, .vocab_chunk = 40};
  const model::ModelWeights full = model::ModelWeights::initialize(c.config, c.dtype, seed);
  const testing::ReferenceStep ref = testing::reference_step(full, b, options);

  FsdpSpLayout layout(mesh, options, c.config, c.dtype, seed, {.prefetch = c.prefetch});
  const std::string what = std::string(c.name) + " D=" + std::to_string(world.size());
  testing::expect_shards_match(layout.weights(), full, 0, 0, what + " initial weights");
  layout.zero_grads();
  const model::LossSum mine =
      layout.forward_backward(b.tokens, b.targets, 1.f / static_cast<float>(ref.loss.n_valid));
  layout.reduce_grads();
  const model::LossSum loss = sum_over(mesh.axis(MeshAxis::sp), mine);
  EXPECT_EQ(loss.n_valid, ref.loss.n_valid) << what;
  const bool f32 = c.dtype == DType::f32;
  const testing::F32Tolerance tol = testing::f32_layout_tolerance(c.config, b);
  EXPECT_NEAR(loss.loss_sum, ref.loss.loss_sum, (f32 ? tol.loss : 1e-2) * ref.loss.loss_sum) << what;
  testing::expect_shards_match(layout.grads(), ref.grads, f32 ? tol.grad : 3e-2, 1.0, what);
}

TEST(FsdpSpModel, MhaUntiedF32) { run_case({"mha untied f32", config_of({}), DType::f32}); }
TEST(FsdpSpModel, GqaTiedF32) {
  run_case({"gqa tied f32", config_of({.gqa = true, .tied = true}), DType::f32});
}
TEST(FsdpSpModel, GqaUntiedRecomputeF32) {
  run_case({"gqa recompute f32", config_of({.gqa = true}), DType::f32, true});
}
TEST(FsdpSpModel, MhaUntiedF32WithoutPrefetch) {
  run_case({"mha no prefetch f32", config_of({}), DType::f32, false, false});
}
TEST(FsdpSpModel, FewerKvHeadsThanRanksF32) {
  run_case({"H_kv=2 f32", few_kv_heads(), DType::f32});
}
TEST(FsdpSpModel, MhaTiedBf16) {
  run_case({"mha tied bf16", config_of({.tied = true}), DType::bf16});
}
TEST(FsdpSpModel, GqaUntiedBf16) {
  run_case({"gqa untied bf16", config_of({.gqa = true}), DType::bf16});
}
TEST(FsdpSpModel, GqaLlama3RopeF32) {
  run_case({"gqa llama3 rope f32", config_of({.gqa = true, .rope = testing::test_llama3_scaling()}),
            DType::f32});
}
TEST(FsdpSpModel, MhaYarnRopeF32) {
  run_case({"mha yarn rope f32", config_of({.rope = testing::test_yarn_scaling()}), DType::f32});
}
TEST(FsdpSpModel, GqaSlidingWindowF32) {
  run_case({"gqa window 5 f32", config_of({.gqa = true, .window = 5}), DType::f32});
}
TEST(FsdpSpModel, MhaSlidingWindowBf16) {
  run_case({"mha window 3 bf16", config_of({.window = 3}), DType::bf16});
}
// Qwen2's q/k/v biases: row blocks of each bias in the layer piece, added column block by block.
TEST(FsdpSpModel, GqaQkvBiasF32) {
  run_case({"gqa qkv bias f32", config_of({.gqa = true, .qkv_bias = true}), DType::f32});
}
TEST(FsdpSpModel, MhaQkvBiasTiedBf16) {
  run_case({"mha qkv bias tied bf16", config_of({.tied = true, .qkv_bias = true}), DType::bf16});
}
// head_dim 16 with h 64 (H d = 128 != h): FSDP's row pieces of q and o follow H d.
TEST(FsdpSpModel, GqaWideHeadsF32) {
  run_case({"gqa head_dim 16 f32", config_of({.gqa = true, .head_dim = 16}), DType::f32});
}
TEST(FsdpSpModel, MhaWideHeadsTiedBf16) {
  run_case({"mha head_dim 16 tied bf16", config_of({.tied = true, .head_dim = 16}), DType::bf16});
}

TEST(FsdpSpModel, ForwardLossEqualsSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  const model::ModelConfig config = config_of({.gqa = true});
  const Batch b = testing::random_batch(3, 16, config.vocab_size(), 9);
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 3);
  const model::LossSum ref = model::Transformer(config).forward(full, b.tokens, b.targets);
  FsdpSpLayout layout(mesh, {}, config, DType::f32, 3);
  const model::LossSum loss =
      sum_over(mesh.axis(MeshAxis::sp), layout.forward(b.tokens, b.targets));
  EXPECT_EQ(loss.n_valid, ref.n_valid);
  EXPECT_NEAR(loss.loss_sum, ref.loss_sum, testing::f32_layout_tolerance(config, b).loss * ref.loss_sum);
}

// Two micro-batches (rows 0-1, then 2-3) accumulate into the gradient of the whole batch.
TEST(FsdpSpModel, MicroBatchesAccumulate) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  const model::ModelConfig config = config_of({.tied = true});
  const Batch b = testing::random_batch(4, 16, config.vocab_size(), 13);
  const model::TransformerOptions options{.vocab_chunk = 40};
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 4);
  const testing::ReferenceStep ref = testing::reference_step(full, b, options);
  FsdpSpLayout layout(mesh, options, config, DType::f32, 4);
  layout.zero_grads();
  for (int64_t first : {0, 2}) {
    const Batch part = testing::batch_rows(b, first, 2);
    layout.forward_backward(part.tokens, part.targets, 1.f / static_cast<float>(ref.loss.n_valid));
  }
  layout.reduce_grads();
  testing::expect_shards_match(layout.grads(), ref.grads, testing::f32_layout_tolerance(config, b).grad, 1.0,
                               "two micro-batches");
}

// dp 2 x fsdp 2: each dp replica takes half of the global batch; shard gradients summed over dp
// (grad_scale is 1 / n_valid of the global batch) equal the single-rank gradients.
TEST(FsdpSpModel, DataParallelTimesFsdp) {
  comm::Communicator world = comm::Communicator::world();
  if (world.size() != 4) GTEST_SKIP() << "needs 4 ranks (dp 2 x fsdp 2)";
  comm::Mesh mesh(world, {.dp = 2, .sp = 2});
  const model::ModelConfig config = config_of({.gqa = true});
  const Batch b = testing::random_batch(4, 16, config.vocab_size(), 21);
  const model::TransformerOptions options{.vocab_chunk = 40};
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 8);
  const testing::ReferenceStep ref = testing::reference_step(full, b, options);
  FsdpSpLayout layout(mesh, options, config, DType::f32, 8);
  EXPECT_EQ(layout.primary(), mesh.coord(MeshAxis::dp) == 0);
  EXPECT_EQ(layout.replica_group().size(), 2);
  const Batch mine = testing::batch_rows(b, 2 * mesh.coord(MeshAxis::dp), 2);
  layout.zero_grads();
  layout.forward_backward(mine.tokens, mine.targets, 1.f / static_cast<float>(ref.loss.n_valid));
  layout.reduce_grads();
  for (const ParamShard& p : layout.grads()) {
    Tensor t = p.local;
    comm::all_reduce(mesh.axis(MeshAxis::dp), t);
  }
  testing::expect_shards_match(layout.grads(), ref.grads, testing::f32_layout_tolerance(config, b).grad, 1.0,
                               "dp2 x fsdp2");
}

// Three AdamW steps (ShardedAdamW on the layout's shards vs on the full model's whole tensors): the
// weights agree. AdamW's update m / (sqrt(v) + eps) amplifies a gradient difference dg of a
// near-zero gradient by up to dg / eps, so as in distributed_trainer_mpi_test the steps use
// eps = 1e-5, and each weight may differ by the derived testing::AdamWDrift bound (from the
// reference's gradients and second moments, element by element, with the gradient bound of
// f32_layout_tolerance); a step's loss sum by the forward bound plus the first-order effect of
// that drift, n_valid sum_i |g_i| bound_i (g the gradient of the mean loss at the reference's
// weights). A missing or doubled gradient term moves updates by O(1) and fails.
TEST(FsdpSpTraining, ThreeAdamWStepsMatchSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  const model::ModelConfig config = config_of({.gqa = true});
  const model::TransformerOptions options{.vocab_chunk = 40};
  const double lr = 1e-3, eps = 1e-5;
  model::ModelWeights ref = model::ModelWeights::initialize(config, DType::f32, 5);
  const std::vector<ParamShard> ref_shards = whole_shards(ref);
  ShardedAdamW ref_opt(ref_shards, {.eps = eps});
  model::Transformer single(config, options);
  FsdpSpLayout layout(mesh, options, config, DType::f32, 5);
  ShardedAdamW opt(layout.weights(), {.eps = eps});
  const ShardedAdamWConfig adam{.eps = eps};
  testing::AdamWDrift drift(config, adam.beta1, adam.beta2, eps);
  for (uint64_t step = 0; step < 3; ++step) {
    const Batch b = testing::random_batch(2, 24, config.vocab_size(), 30 + step);
    const float scale = 1.f / static_cast<float>(model::count_valid_targets(b.targets));
    model::ModelWeights grads(config, DType::f32, MemCategory::grads);
    const model::LossSum want = single.forward_backward(ref, b.tokens, b.targets, grads, scale);
    const testing::F32Tolerance tol = testing::f32_layout_tolerance(config, b);
    const double loss_tol = tol.loss * want.loss_sum + drift.loss_change(grads) / scale;
    ref_opt.step(ref_shards, whole_shards(grads), lr);
    drift.add_step(grads, testing::whole_of(config, ref_opt.exp_avg_sq()), ref, lr, tol.grad);
    layout.zero_grads();
    const model::LossSum got =
        sum_over(mesh.axis(MeshAxis::sp), layout.forward_backward(b.tokens, b.targets, scale));
    layout.reduce_grads();
    opt.step(layout.weights(), layout.grads(), lr);
    EXPECT_NEAR(got.loss_sum, want.loss_sum, loss_tol) << "step " << step;
  }
  testing::expect_shards_match(layout.weights(), ref, 0.0, 1.0, "after 3 AdamW steps", 0.0, &drift.bound());
}

// ---------------------------------------------------------------------------------------------
// Traffic: the ledger of one forward_backward equals the analytic count (docs/fsdp_sp.md), written
// here from the model's sizes. Counting convention (docs/running.md): all-gather receives (and
// sends) (D-1)/D of its result, reduce-scatter (D-1)/D of its input, f32 for gradients.

struct Expected {
  comm::TrafficCounters by_op[comm::kNumCommOps];
  // One call that sends and receives `bytes` (all-gathers and reduce-scatters of equal blocks).
  void add(CommOp op, int64_t calls, int64_t bytes) {
    comm::TrafficCounters& c = by_op[static_cast<int>(op)];
    c.calls += calls;
    c.bytes_sent += calls * bytes;
    c.bytes_received += calls * bytes;
  }
};

Expected analytic(const model::ModelConfig& c, DType dt, int64_t B, int64_t S, int D,
                  bool recompute) {
  const int64_t e = static_cast<int64_t>(dtype_size(dt)), L = c.num_hidden_layers();
  const int64_t W = c.params_per_layer();  // one layer's parameters (norm gains included)
  const int64_t table = c.vocab_size() * c.hidden_size();  // embedding (and head) elements
  const int64_t kv = B * S * 2 * c.kv_dim();  // K|V of every head, whole sequence of the group
  const int64_t h = c.hidden_size();
  auto part = [&](int64_t n) { return (D - 1) * n / D; };  // (D-1)/D of n elements
  Expected x;
  // Forward: embedding table, each layer's weights, each layer's K|V, final norm, head table.
  x.add(CommOp::all_gather, 1, part(table) * e);
  x.add(CommOp::all_gather, L, part(W) * e);
  x.add(CommOp::all_gather, L, part(kv) * e);
  x.add(CommOp::all_gather, 1, part(h) * e);
  x.add(CommOp::all_gather, 1, part(table) * e);
  // Backward: head and final-norm gradients; per layer the weights again, K|V again (twice with
  // recomputation, the weights only once), dK|dV and the layer's gradient; the embedding gradient.
  x.add(CommOp::reduce_scatter, 1, part(table) * 4);
  x.add(CommOp::reduce_scatter, 1, part(h) * 4);
  x.add(CommOp::all_gather, L, part(W) * e);
  x.add(CommOp::all_gather, recompute ? 2 * L : L, part(kv) * e);
  x.add(CommOp::reduce_scatter, L, part(kv) * 4);
  x.add(CommOp::reduce_scatter, L, part(W) * 4);
  x.add(CommOp::reduce_scatter, 1, part(table) * 4);
  return x;
}

void check_traffic(const model::ModelConfig& config, DType dt, bool recompute, bool prefetch) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  const int D = world.size();
  const Batch b = testing::random_batch(2, 24, config.vocab_size(), 17);
  FsdpSpLayout layout(mesh, {.dtype = dt, .recompute = recompute, .vocab_chunk = 40}, config, dt, 4,
                      {.prefetch = prefetch});
  comm::Communicator& sp = mesh.axis(MeshAxis::sp);
  sp.ledger().reset();
  const double wait0 = layout.comm_wait_seconds();
  layout.forward_backward(b.tokens, b.targets, 0.01f);
  EXPECT_GT(layout.comm_wait_seconds(), wait0);  // every gather and reduce-scatter is timed
  const Expected x = analytic(config, dt, 2, 24, D, recompute);
  for (int op = 0; op < comm::kNumCommOps; ++op) {
    const comm::TrafficCounters got = sp.ledger().get(static_cast<CommOp>(op));
    const comm::TrafficCounters& want = x.by_op[op];
    const std::string name(comm::comm_op_name(static_cast<CommOp>(op)));
    EXPECT_EQ(got.bytes_sent, want.bytes_sent) << name;
    EXPECT_EQ(got.bytes_received, want.bytes_received) << name;
    if (D > 1) {  // at D = 1 a collective of one rank may skip the call
      EXPECT_EQ(got.calls, want.calls) << name;
    }
  }
}

TEST(FsdpSpTraffic, MhaF32EqualsAnalyticCount) {
  check_traffic(config_of({}), DType::f32, false, true);
}
TEST(FsdpSpTraffic, GqaTiedBf16EqualsAnalyticCount) {
  check_traffic(config_of({.gqa = true, .tied = true}), DType::bf16, false, true);
}
TEST(FsdpSpTraffic, RecomputeRepeatsOnlyTheKvGather) {
  check_traffic(config_of({.gqa = true}), DType::f32, true, true);
}
TEST(FsdpSpTraffic, PrefetchMovesTheSameBytes) {
  check_traffic(config_of({}), DType::f32, false, false);
}

// Per layer, the forward moves (D-1)/D (W + 2 B S H_kv d) elements like TSP (TSP.md §9), and the
// backward (D-1)/D (W weights + W f32 gradients + 2 B S H_kv d K|V + 2 B S H_kv d f32 dK|dV).
TEST(FsdpSpTraffic, PerLayerFormulaMatchesTspSection9) {
  const model::ModelConfig c = config_of({});
  const int D = 4;
  const int64_t B = 2, S = 24, h = c.hidden_size(), L = c.num_hidden_layers();
  const Expected x2 = analytic(c, DType::f32, B, S, D, false);
  // Forward all-gathers without the embedding, final norm and head: L (W + 2 B S h) (D-1)/D.
  const int64_t gathered = x2.by_op[static_cast<int>(CommOp::all_gather)].bytes_received / 4;
  const int64_t tables = 2 * (D - 1) * c.vocab_size() * h / D + (D - 1) * h / D;
  EXPECT_EQ(gathered - tables, 2 * L * (D - 1) * (c.params_per_layer() + 2 * B * S * h) / D);
}

// ---------------------------------------------------------------------------------------------
// Memory per rank, from the accounting allocator.

struct Bound {
  int64_t bound = 0, layer_buffers = 0;
};

// The comm-category bound of docs/fsdp_sp.md: the largest phase plus the ring reduce-scatter's
// two scratch blocks (kept by the communicator).
Bound comm_bound(const model::ModelConfig& c, DType dt, int64_t B, int64_t S, int D,
                 bool prefetch) {
  const int64_t e = static_cast<int64_t>(dtype_size(dt)), L = c.num_hidden_layers();
  const int64_t W = c.params_per_layer(), table = c.vocab_size() * c.hidden_size();
  const int64_t T = B * S / D, kv = 2 * c.kv_dim(), h = c.hidden_size();
  const int64_t buffers = prefetch && L > 1 ? 2 : 1;
  const int64_t kv_bufs = T * kv * e + D * T * kv * e;  // send + gathered K|V
  const int64_t layer_fwd = buffers * W * e + kv_bufs;
  const int64_t layer_bwd = buffers * W * e + W * 4 /*full-layer grad*/ + kv_bufs +
                            T * kv * 4 /*dK|dV share*/ + W / D * 4 /*grad share*/;
  const int64_t head = h * e + table * e + table * 4 + table / D * 4;
  const int64_t embedding = table * 4 + table / D * 4;
  const int64_t scratch = 2 * 4 * std::max({W / D, table / D, T * kv, h / D});
  return {std::max({layer_fwd, layer_bwd, head, embedding}) + scratch, buffers * W * e};
}

void check_memory(bool prefetch, bool recompute) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  const int D = world.size();
  const model::ModelConfig config = config_of({.gqa = true, .layers = 3});
  const int64_t B = 2, S = 32, total = config.total_params();
  const Batch b = testing::random_batch(B, S, config.vocab_size(), 3);
  const model::TransformerOptions options{.recompute = recompute, .vocab_chunk = 40};
  MemoryLedger& ledger = MemoryLedger::process();

  // Weights and gradients: every tensor, norm gains included, 1/D.
  const int64_t w0 = ledger.stats(MemCategory::weights).live_bytes;
  const int64_t g0 = ledger.stats(MemCategory::grads).live_bytes;
  FsdpSpLayout layout(mesh, options, config, DType::f32, 1, {.prefetch = prefetch});
  EXPECT_EQ(ledger.stats(MemCategory::weights).live_bytes - w0, 4 * total / D);
  EXPECT_EQ(ledger.stats(MemCategory::grads).live_bytes - g0, 4 * total / D);
  EXPECT_EQ(local_elements(layout.weights()), total / D);
  // Optimizer: two fp32 moments of the same split.
  const int64_t o0 = ledger.stats(MemCategory::optimizer).live_bytes;
  const ShardedAdamW adam(layout.weights(), {});
  EXPECT_EQ(ledger.stats(MemCategory::optimizer).live_bytes - o0, 2 * 4 * total / D);

  ledger.reset_peaks();
  const int64_t a0 = ledger.stats(MemCategory::activations).live_bytes;
  const int64_t c0 = ledger.stats(MemCategory::comm).live_bytes;
  layout.forward_backward(b.tokens, b.targets, 0.01f);
  // Activations: exactly the single-rank model's formula at S/D tokens (1/D of single-rank).
  EXPECT_EQ(ledger.stats(MemCategory::activations).peak_bytes - a0,
            layout.predicted_activation_peak_bytes(B, S));
  EXPECT_EQ(layout.predicted_activation_peak_bytes(B, S),
            model::predicted_activation_peak_bytes(config, options, B, S / D));
  const Bound bound = comm_bound(config, DType::f32, B, S, D, prefetch);
  const int64_t comm_peak = ledger.stats(MemCategory::comm).peak_bytes - c0;
  EXPECT_LE(comm_peak, bound.bound);
  EXPECT_GE(comm_peak, bound.layer_buffers + config.params_per_layer() * 4);  // + the layer's grad
  if (world.rank() == 0)
    std::cout << "D=" << D << (prefetch ? " prefetch" : " no prefetch")
              << (recompute ? " recompute" : "") << ": weights " << 4 * total / D
              << " (single-rank " << 4 * total << "), activations "
              << layout.predicted_activation_peak_bytes(B, S) << " (single-rank "
              << model::predicted_activation_peak_bytes(config, options, B, S) << "), comm peak "
              << comm_peak << " <= " << bound.bound << "\n";
}

TEST(FsdpSpMemory, ShardsAreOneOverDAndActivationsFollowTheFormula) { check_memory(true, false); }
TEST(FsdpSpMemory, WithoutPrefetchOneLayerIsInFlight) { check_memory(false, false); }
TEST(FsdpSpMemory, RecomputeKeepsTheFormula) { check_memory(true, true); }

// ---------------------------------------------------------------------------------------------
// Checkpoints: a single-rank HF checkpoint loads into the layout (each rank its rows), and the
// layout's shards save into the single-rank checkpoint.

class SharedDir {
 public:
  explicit SharedDir(comm::Communicator& world) : world_(world) {
    if (world.rank() == 0) own_.emplace();
    const std::string path = world.rank() == 0 ? own_->path().string() : std::string();
    Tensor len = Tensor::empty({1}, DType::i64, MemCategory::workspace);
    len.data<int64_t>()[0] = static_cast<int64_t>(path.size());
    comm::broadcast(world, len, 0);
    Tensor text =
        Tensor::zeros({(len.data<int64_t>()[0] + 7) / 8}, DType::i64, MemCategory::workspace);
    if (world.rank() == 0) std::memcpy(text.raw(), path.data(), path.size());
    comm::broadcast(world, text, 0);
    path_ = std::string(static_cast<const char*>(text.raw()),
                        static_cast<size_t>(len.data<int64_t>()[0]));
  }
  ~SharedDir() { world_.barrier(); }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  comm::Communicator& world_;
  std::optional<testing::ScratchDir> own_;
  std::filesystem::path path_;
};

TEST(FsdpSpCheckpoint, LoadsAndSavesSingleRankCheckpoints) {
  comm::Communicator world = comm::Communicator::world();
  comm::Mesh mesh(world, {.sp = world.size()});
  for (const bool tied : {false, true}) {
    const model::ModelConfig config = config_of({.gqa = true, .tied = tied});
    const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 11);
    SharedDir dir(world);
    if (world.rank() == 0) {
      std::vector<model::NamedTensor> named;
      for (const auto& [n, t] : full.named()) named.push_back({n, t});
      model::save_hf_checkpoint(dir / "single", config, named);
    }
    world.barrier();
    const std::unique_ptr<FsdpSpLayout> loaded =
        FsdpSpLayout::from_hf(mesh, {}, config, DType::f32, dir / "single");
    testing::expect_shards_match(loaded->weights(), full, 0, 0, "loaded");
    save_sharded_hf_checkpoint(world, config, loaded->weights(), dir / "sharded");
    if (world.rank() == 0) {
      const model::HfCheckpoint back(dir / "sharded");
      for (const auto& [n, t] : full.named()) {
        const Tensor got = back.read(n, MemCategory::workspace);
        ASSERT_EQ(got.numel(), t.numel()) << n;
        EXPECT_EQ(std::memcmp(got.raw(), t.raw(), t.nbytes()), 0) << n;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Invalid sizes for the degree: the same clear InvalidArgument on every rank, before any buffer.

TEST(FsdpSpValidation, InvalidSizesAreRejectedBeforeAllocating) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  if (D == 1) GTEST_SKIP() << "every size is valid at D = 1";
  comm::Mesh mesh(world, {.sp = D});
  MemoryLedger& ledger = MemoryLedger::process();
  const model::ModelConfig ok = config_of({});
  auto expect_error = [&](const model::ModelConfig& c, int64_t seq, const std::string& needle) {
    ledger.reset_peaks();
    const int64_t before = ledger.total().live_bytes;
    try {
      validate_fsdp_sp(c, D, seq);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    if (seq % (2 * D) == 0) {  // the layout itself (seq is checked per batch)
      try {
        FsdpSpLayout layout(mesh, {}, c, DType::f32, 1);
        ADD_FAILURE() << "the layout accepted " << needle;
      } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      }
    }
    EXPECT_EQ(ledger.total().live_bytes, before);
    EXPECT_EQ(ledger.total().peak_bytes, before) << needle << ": something was allocated";
  };
  expect_error(ok, 2 * D + D, "is not divisible by 2*D=" + std::to_string(2 * D));
  model::ModelConfigFields f = ok.fields();
  f.vocab_size = 4 * D + 1;
  expect_error(model::ModelConfig(f), 8 * D, "vocab_size V=" + std::to_string(4 * D + 1));
  f = ok.fields();
  f.intermediate_size = 4 * D + 1;
  expect_error(model::ModelConfig(f), 8 * D, "intermediate_size F=" + std::to_string(4 * D + 1));
  if (D % 4 == 0) {  // h = H d with d even is always even, so only D = 4 can miss it
    f = ok.fields();
    f.hidden_size = 6;
    f.num_attention_heads = 3;
    f.num_key_value_heads = 3;
    expect_error(model::ModelConfig(f), 8 * D, "hidden_size h=6");
  }
  // Sequences that do not fit, at run time: rejected before the step allocates.
  FsdpSpLayout layout(mesh, {}, ok, DType::f32, 1);
  // Not a multiple of 2D; beyond the 256 positions.
  for (const int64_t seq : {int64_t{3} * D, int64_t{512}}) {
    const Batch bad = testing::random_batch(1, seq, ok.vocab_size(), 1);
    EXPECT_THROW(layout.forward_backward(bad.tokens, bad.targets, 1.f), InvalidArgument) << seq;
    EXPECT_THROW(layout.predicted_activation_peak_bytes(1, seq), InvalidArgument) << seq;
  }
  // H_kv < D is fine for FSDP (whole heads are never needed on one rank).
  f = ok.fields();
  f.num_key_value_heads = 1;
  EXPECT_NO_THROW(validate_fsdp_sp(model::ModelConfig(f), D, 8 * D));
}

TEST(FsdpSpValidation, MeshAndOptionsAreChecked) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = config_of({});
  if (world.size() > 1) {
    comm::Mesh tp(world, {.tp = world.size()});
    EXPECT_THROW(FsdpSpLayout(tp, {}, config, DType::f32, 1), InvalidArgument);
  }
  comm::Mesh mesh(world, {.sp = world.size()});
  EXPECT_THROW(FsdpSpLayout(mesh, {.dtype = DType::bf16}, config, DType::f32, 1), DTypeError);
  FsdpSpLayout layout(mesh, {}, config, DType::f32, 1);
  EXPECT_EQ(layout.describe(), "fsdp-sp D=" + std::to_string(world.size()) + " (rank " +
                                   std::to_string(world.rank()) + ")");
}

}  // namespace
}  // namespace tsp::parallel
