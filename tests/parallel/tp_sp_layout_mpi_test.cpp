// The TP / SP / TP+SP / DP baselines (TpSpLayout, docs/baselines.md) against the single-rank
// engine under mpirun (1, 2, 4 ranks), on every mesh the world allows: tp = world (pure TP),
// sp = world (pure SP), and at 4 ranks tp 2 x sp 2, dp 2 x tp 2 and dp 2 x sp 2. Loss and EVERY
// gradient for MHA and GQA, tied and untied, fp32 and bf16, with recomputation; the initial and
// checkpoint-loaded weights; the replica group; the traffic ledger of each axis against the
// analytic count; the per-rank memory; invalid sizes rejected on every rank before allocating.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "layout_test_util.h"
#include "scratch_dir.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/comm/traffic_ledger.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/parallel/sharded_grad.h"
#include "tsp/parallel/tp_sp_layout.h"

namespace tsp::parallel {
namespace {

using comm::CommOp;
using comm::MeshAxis;
using comm::MeshDegrees;
using comm::TrafficCounters;
using testing::Batch;
using testing::TinyModel;

// Every layout of this file the world allows.
std::vector<MeshDegrees> meshes(int world) {
  std::vector<MeshDegrees> m = {{.tp = world}};  // pure TP (DP's replicated model at 1 rank)
  if (world > 1) m.push_back({.sp = world});    // pure SP
  if (world == 4) {
    m.push_back({.sp = 2, .tp = 2});
    m.push_back({.dp = 2, .tp = 2});
    m.push_back({.dp = 2, .sp = 2});
  }
  return m;
}

// Exact sum over `c` of one double per rank (bits all-gathered, added in rank order).
double sum_over(comm::Communicator& c, double v) {
  Tensor mine = Tensor::empty({1}, DType::i64, MemCategory::workspace);
  mine.data<int64_t>()[0] = std::bit_cast<int64_t>(v);
  Tensor all = Tensor::empty({c.size()}, DType::i64, MemCategory::workspace);
  comm::all_gather(c, mine, all);
  double s = 0;
  for (int r = 0; r < c.size(); ++r) s += std::bit_cast<double>(all.data<int64_t>()[r]);
  return s;
}

// Each dp replica takes `rows` consecutive rows of the global batch.
Batch replica_rows(const comm::Mesh& mesh, const Batch& b) {
  const int64_t rows = b.tokens.dim(0) / mesh.degree(MeshAxis::dp);
  return testing::batch_rows(b, rows * mesh.coord(MeshAxis::dp), rows);
}

std::string label(const std::string& name, const TpSpLayout& layout) {
  return name + " [" + layout.describe() + "]";
}

struct Step {
  model::LossSum loss;  // summed over the whole mesh
};

// One training step's gradients as the trainer makes them: forward_backward on the replica's
// rows with grad_scale = 1 / n_valid of the global batch, then sync_grads (reduce_grads, the sum
// over dp, and across pipeline stages the tied embedding's).
Step step(comm::Mesh& mesh, TpSpLayout& layout, const Batch& global, int64_t n_valid) {
  const Batch mine = replica_rows(mesh, global);
  layout.zero_grads();
  const model::LossSum share =
      layout.forward_backward(mine.tokens, mine.targets, 1.f / static_cast<float>(n_valid));
  layout.sync_grads(mesh.axis(MeshAxis::dp));
  return {{sum_over(mesh.world(), share.loss_sum),
           static_cast<int64_t>(std::llround(sum_over(mesh.world(), static_cast<double>(share.n_valid))))}};
}

struct Case {
  const char* name;
  TinyModel model;
  DType dtype;
  bool recompute;
};

// Tolerances as for TSP (tsp_model_mpi_test.cpp): fp32 the derived testing::f32_layout_tolerance,
// norm-wise and per element against |e| + rms(e) (the layouts differ from the reference only in
// the order of fp32 sums:
// tp partial sums of o/down/dn, sp partial dK/dV and weight gradients, vocabulary slices);
// bf16 3e-2 (a different fp32 order can flip a bf16 rounding of an activation).
void run_case(const Case& c) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config(c.model);
  const uint64_t seed = 77;
  const model::TransformerOptions options{.dtype = c.dtype, .recompute = c.recompute, .vocab_chunk = 40};
  const model::ModelWeights full = model::ModelWeights::initialize(config, c.dtype, seed);
  const bool f32 = c.dtype == DType::f32;
  for (const MeshDegrees& d : meshes(world.size())) {
    comm::Mesh mesh(world, d);
    // S = 24: at sp = 4 a zigzag chunk is 3 tokens (not a multiple of the attention tile); two
    // rows per dp replica, so the K|V reorder of B > 1 runs.
    const Batch b = testing::random_batch(2 * d.dp, 24, config.vocab_size(), 5);
    const testing::ReferenceStep ref = testing::reference_step(full, b, options);
    TpSpLayout layout(mesh, config, options, seed);
    const std::string what = label(c.name, layout);
    testing::expect_shards_match(layout.weights(), full, 0, 0, what + " initial weights");
    const Step s = step(mesh, layout, b, ref.loss.n_valid);
    EXPECT_EQ(s.loss.n_valid, ref.loss.n_valid) << what;
    const testing::F32Tolerance tol = testing::f32_layout_tolerance(config, b);
    EXPECT_NEAR(s.loss.loss_sum, ref.loss.loss_sum, (f32 ? tol.loss : 1e-2) * ref.loss.loss_sum) << what;
    testing::expect_shards_match(layout.grads(), ref.grads, f32 ? tol.grad : 3e-2, 1.0, what);
  }
}

TEST(TpSpLayout, MhaUntiedF32) { run_case({"mha untied f32", {}, DType::f32, false}); }
TEST(TpSpLayout, GqaTiedF32) { run_case({"gqa tied f32", {.gqa = true, .tied = true}, DType::f32, false}); }
TEST(TpSpLayout, MhaTiedF32) { run_case({"mha tied f32", {.tied = true}, DType::f32, false}); }
TEST(TpSpLayout, GqaUntiedRecomputeF32) {
  run_case({"gqa recompute f32", {.gqa = true}, DType::f32, true});
}
TEST(TpSpLayout, MhaTiedBf16) { run_case({"mha tied bf16", {.tied = true}, DType::bf16, false}); }
TEST(TpSpLayout, GqaUntiedBf16) { run_case({"gqa untied bf16", {.gqa = true}, DType::bf16, false}); }
TEST(TpSpLayout, GqaLlama3RopeF32) {
  run_case({"gqa llama3 rope f32", {.gqa = true, .rope = testing::test_llama3_scaling()}, DType::f32, false});
}
TEST(TpSpLayout, MhaYarnRopeF32) {
  run_case({"mha yarn rope f32", {.rope = testing::test_yarn_scaling()}, DType::f32, false});
}
TEST(TpSpLayout, GqaSlidingWindowF32) {
  run_case({"gqa window 5 f32", {.gqa = true, .window = 5}, DType::f32, false});
}
TEST(TpSpLayout, MhaSlidingWindowBf16) {
  run_case({"mha window 3 bf16", {.window = 3}, DType::bf16, false});
}
// Qwen2's q/k/v biases, split over tp with their heads.
TEST(TpSpLayout, GqaQkvBiasF32) {
  run_case({"gqa qkv bias f32", {.gqa = true, .qkv_bias = true}, DType::f32, false});
}
TEST(TpSpLayout, MhaQkvBiasTiedBf16) {
  run_case({"mha qkv bias tied bf16", {.tied = true, .qkv_bias = true}, DType::bf16, false});
}
// head_dim 16 with h 64: the TP head shards are H/tp * d wide (128 / tp), not h / tp.
TEST(TpSpLayout, GqaWideHeadsF32) {
  run_case({"gqa head_dim 16 f32", {.gqa = true, .head_dim = 16}, DType::f32, false});
}
TEST(TpSpLayout, MhaWideHeadsTiedBf16) {
  run_case({"mha head_dim 16 tied bf16", {.tied = true, .head_dim = 16}, DType::bf16, false});
}

TEST(TpSpLayout, ForwardLossEqualsSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config({.gqa = true});
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 3);
  model::Transformer single(config);
  for (const MeshDegrees& d : meshes(world.size())) {
    comm::Mesh mesh(world, d);
    const Batch b = testing::random_batch(3 * d.dp, 16, config.vocab_size(), 9);
    const model::LossSum ref = single.forward(full, b.tokens, b.targets);
    TpSpLayout layout(mesh, config, {}, 3);
    const Batch mine = replica_rows(mesh, b);
    const model::LossSum share = layout.forward(mine.tokens, mine.targets);
    EXPECT_NEAR(sum_over(world, share.loss_sum), ref.loss_sum,
                testing::f32_layout_tolerance(config, b).loss * ref.loss_sum)
        << layout.describe();
    EXPECT_EQ(std::llround(sum_over(world, static_cast<double>(share.n_valid))), ref.n_valid);
  }
}

// The replica group holds one copy of every parameter: the global gradient norm over it is the
// single-rank norm; sp ranks (identical copies) and dp replicas are outside it; one primary group.
TEST(TpSpLayout, ReplicaGroupHoldsOneCopyOfTheModel) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config({.gqa = true});
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 11);
  for (const MeshDegrees& d : meshes(world.size())) {
    comm::Mesh mesh(world, d);
    const Batch b = testing::random_batch(2 * d.dp, 16, config.vocab_size(), 13);
    const testing::ReferenceStep ref = testing::reference_step(full, b, {.vocab_chunk = 40});
    TpSpLayout layout(mesh, config, {.vocab_chunk = 40}, 11);
    EXPECT_EQ(layout.replica_group().size(), d.tp);
    EXPECT_EQ(layout.primary(), mesh.coord(MeshAxis::dp) == 0 && mesh.coord(MeshAxis::sp) == 0);
    EXPECT_EQ(std::llround(sum_over(world, layout.primary() ? 1.0 : 0.0)), d.tp);
    step(mesh, layout, b, ref.loss.n_valid);
    double ref_sq = 0;
    for (const auto& [name, t] : ref.grads.named())
      for (int64_t i = 0; i < t.numel(); ++i) ref_sq += static_cast<double>(t.data<float>()[i]) * t.data<float>()[i];
    // Each element within tol (|e| + rms(e_t)) (f32_layout_tolerance), so by the triangle
    // inequality the norm within tol (|e|_2 + sum_t sqrt(n_t) rms_t) <= 2 tol |e|_2
    // (Cauchy-Schwarz); the norm's own double sum is exact to 1e-12.
    EXPECT_NEAR(global_grad_norm(layout.replica_group(), layout.grads()), std::sqrt(ref_sq),
                2 * testing::f32_layout_tolerance(config, b).grad * std::sqrt(ref_sq))
        << layout.describe();
  }
}

// Weights read from a single-rank HF checkpoint: every rank's pieces equal the saved tensors.
TEST(TpSpLayout, LoadsItsShardsFromAHuggingFaceCheckpoint) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config({.tied = true});
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 21);
  std::optional<testing::ScratchDir> own;
  std::string path;
  if (world.rank() == 0) {
    own.emplace();
    path = (own->path() / "ckpt").string();
    std::vector<model::NamedTensor> named;
    for (const auto& [n, t] : full.named()) named.push_back({n, t});
    model::save_hf_checkpoint(path, config, named);
  }
  Tensor text = Tensor::zeros({64}, DType::i64, MemCategory::workspace);  // 512 bytes of path
  std::memcpy(text.raw(), path.data(), std::min<size_t>(path.size(), 511));
  comm::broadcast(world, text, 0);
  path = std::string(static_cast<const char*>(text.raw()));
  for (const MeshDegrees& d : meshes(world.size())) {
    comm::Mesh mesh(world, d);
    TpSpLayout layout(mesh, config, {}, std::filesystem::path(path));
    testing::expect_shards_match(layout.weights(), full, 0, 0, layout.describe() + " loaded");
  }
  world.barrier();  // rank 0 removes the directory after everyone has read it
}

// ---- traffic ----

struct Expected {
  TrafficCounters by_op[comm::kNumCommOps];
  void add(CommOp op, int64_t calls, int64_t sent, int64_t received) {
    TrafficCounters& c = by_op[static_cast<int>(op)];
    c.calls += calls;
    c.bytes_sent += sent;
    c.bytes_received += received;
  }
};

// Ledger convention (docs/running.md): an all-reduce of n elements on D ranks sends and receives
// 2 (D-1)/D n elements (n divisible by D here), at 4 bytes (f32, and bf16 reductions travel as f32).
int64_t all_reduce_bytes(int64_t n, int D) {
  EXPECT_EQ(n % D, 0) << "the closed form needs D | n";
  return 2 * (D - 1) * (n / D) * 4;
}

// One step (forward_backward + reduce_grads) on a rank of a tp x sp mesh, per axis
// (docs/baselines.md, "Traffic"). T = B S / sp local tokens, kv = 2 H_kv d / tp.
struct AxisTraffic {
  Expected tp, sp;
};
AxisTraffic analytic(const model::ModelConfig& c, DType dt, int tp, int sp, int64_t B, int64_t S,
                     bool recompute, int64_t grad_elements) {
  const int64_t e = static_cast<int64_t>(dtype_size(dt)), L = c.num_hidden_layers();
  const int64_t h = c.hidden_size(), T = B * S / sp, kv = 2 * c.kv_dim() / tp;
  AxisTraffic x;
  if (tp > 1) {
    // Megatron: per layer the attention and MLP outputs (forward), the input gradients of q|k|v
    // and gate|up (backward), the attention output again when recomputing; the embedding output;
    // the head: max and (sum, target logit) of every local token, and its input gradient.
    const int64_t per_layer = 4 + (recompute ? 1 : 0);
    const int64_t th = all_reduce_bytes(T * h, tp);
    const int64_t bytes = (L * per_layer + 2) * th + all_reduce_bytes(T, tp) + all_reduce_bytes(2 * T, tp);
    x.tp.add(CommOp::all_reduce, L * per_layer + 4, bytes, bytes);
  }
  if (sp > 1) {
    // Context parallel: K|V of this tp rank's heads all-gathered per pass, dK|dV reduce-scattered
    // (f32), every gradient all-reduced once per step (one packed call for this model).
    const int64_t passes = recompute ? 3 : 2;
    const int64_t gathered = L * passes * (sp - 1) * T * kv * e;
    x.sp.add(CommOp::all_gather, L * passes, gathered, gathered);
    const int64_t scattered = L * (sp - 1) * T * kv * 4;
    x.sp.add(CommOp::reduce_scatter, L, scattered, scattered);
    const int64_t grads = all_reduce_bytes(grad_elements, sp);
    x.sp.add(CommOp::all_reduce, 1, grads, grads);
  }
  return x;
}

void expect_ledger(const comm::Communicator& axis, const Expected& want, const std::string& what) {
  for (int op = 0; op < comm::kNumCommOps; ++op) {
    const TrafficCounters got = axis.ledger().get(static_cast<CommOp>(op));
    const TrafficCounters& w = want.by_op[op];
    const std::string name(comm::comm_op_name(static_cast<CommOp>(op)));
    EXPECT_EQ(got.calls, w.calls) << what << " " << name;
    EXPECT_EQ(got.bytes_sent, w.bytes_sent) << what << " " << name;
    EXPECT_EQ(got.bytes_received, w.bytes_received) << what << " " << name;
  }
}

void check_traffic(const TinyModel& m, DType dt, bool recompute) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config(m);
  for (const MeshDegrees& d : meshes(world.size())) {
    comm::Mesh mesh(world, d);
    const Batch b = testing::random_batch(2 * d.dp, 24, config.vocab_size(), 17);
    const Batch mine = replica_rows(mesh, b);
    TpSpLayout layout(mesh, config, {.dtype = dt, .recompute = recompute, .vocab_chunk = 40}, 4);
    mesh.reset_traffic();
    layout.forward_backward(mine.tokens, mine.targets, 0.01f);
    layout.reduce_grads();
    const AxisTraffic x = analytic(config, dt, d.tp, d.sp, mine.tokens.dim(0), 24, recompute,
                                   local_elements(layout.grads()));
    expect_ledger(mesh.axis(MeshAxis::tp), x.tp, layout.describe() + " tp axis");
    expect_ledger(mesh.axis(MeshAxis::sp), x.sp, layout.describe() + " sp axis");
    expect_ledger(mesh.axis(MeshAxis::dp), {}, layout.describe() + " dp axis");
    expect_ledger(mesh.axis(MeshAxis::tsp), {}, layout.describe() + " tsp axis");
  }
}

TEST(TpSpTraffic, MhaF32EqualsAnalyticCount) { check_traffic({}, DType::f32, false); }
TEST(TpSpTraffic, GqaTiedBf16EqualsAnalyticCount) {
  check_traffic({.gqa = true, .tied = true}, DType::bf16, false);
}
TEST(TpSpTraffic, RecomputeRepeatsTheAttentionTraffic) { check_traffic({.gqa = true}, DType::f32, true); }

// ---- memory ----

// Weights and gradients: every matrix 1/tp, the 2L+1 norm gains whole (replicated over sp: TP+SP
// divides model state by tp only). Activations: exactly predicted_activation_peak_bytes.
TEST(TpSpMemory, ShardsAreOneOverTpAndActivationsFollowTheFormula) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config({.gqa = true, .layers = 3});
  const int64_t norms = (2 * config.num_hidden_layers() + 1) * config.hidden_size();
  const int64_t matrices = config.total_params() - norms;
  MemoryLedger& ledger = MemoryLedger::process();
  for (const MeshDegrees& d : meshes(world.size())) {
    for (const model::TransformerOptions options :
         {model::TransformerOptions{.vocab_chunk = 40},
          model::TransformerOptions{.dtype = DType::bf16, .recompute = true, .vocab_chunk = 40}}) {
      comm::Mesh mesh(world, d);
      const int64_t B = 2, S = 32;
      const Batch b = testing::random_batch(B * d.dp, S, config.vocab_size(), 3);
      const Batch mine = replica_rows(mesh, b);
      const int64_t e = static_cast<int64_t>(dtype_size(options.dtype));
      const int64_t w0 = ledger.stats(MemCategory::weights).live_bytes;
      const int64_t g0 = ledger.stats(MemCategory::grads).live_bytes;
      TpSpLayout layout(mesh, config, options, 1);
      const std::string what = layout.describe() + (options.recompute ? " bf16 recompute" : " f32");
      EXPECT_EQ(ledger.stats(MemCategory::weights).live_bytes - w0, e * (matrices / d.tp + norms)) << what;
      EXPECT_EQ(ledger.stats(MemCategory::grads).live_bytes - g0, 4 * (matrices / d.tp + norms)) << what;
      ledger.reset_peaks();
      const int64_t a0 = ledger.stats(MemCategory::activations).live_bytes;
      layout.forward_backward(mine.tokens, mine.targets, 0.01f);
      const int64_t peak = ledger.stats(MemCategory::activations).peak_bytes - a0;
      EXPECT_EQ(peak, layout.predicted_activation_peak_bytes(B, S)) << what;
      // At tp = sp = 1 (and for pure SP at S/sp tokens, with tp = 1) it is the single-rank formula.
      if (d.tp == 1) {
        EXPECT_EQ(peak, model::predicted_activation_peak_bytes(config, options, B, S / d.sp)) << what;
      }
      if (world.rank() == 0)
        std::cout << what << ": weights " << e * (matrices / d.tp + norms) << " B (single-rank "
                  << e * (matrices + norms) << "), activations peak " << peak << " B (single-rank "
                  << model::predicted_activation_peak_bytes(config, options, B, S) << ")\n";
    }
  }
}

// ---- validation ----

// Invalid sizes for the degrees: the same clear InvalidArgument on every rank, before any buffer.
TEST(TpSpLayout, InvalidSizesAreRejectedBeforeAllocating) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  if (D == 1) GTEST_SKIP() << "every size is valid at one rank";
  const model::ModelConfig ok = testing::tiny_config({});
  auto expect_error = [&](auto&& fn, const std::string& needle) {
    const int64_t before = MemoryLedger::process().total().live_bytes;
    try {
      fn();
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(MemoryLedger::process().total().live_bytes, before) << needle;
  };
  {
    comm::Mesh mesh(world, {.tp = D});
    auto build = [&](const model::ModelConfigFields& f) {
      return [&mesh, c = model::ModelConfig(f)] { TpSpLayout(mesh, c, {}, 1); };
    };
    model::ModelConfigFields f = ok.fields();
    f.num_attention_heads = 2 * D + 1;
    f.num_key_value_heads = 2 * D + 1;
    f.hidden_size = 8 * (2 * D + 1);
    expect_error(build(f), "num_attention_heads H=" + std::to_string(2 * D + 1) +
                               " is not divisible by the tp degree T=" + std::to_string(D));
    f = ok.fields();
    f.num_key_value_heads = 1;
    expect_error(build(f), "num_key_value_heads H_kv=1 is not divisible by the tp degree");
    f = ok.fields();
    f.vocab_size = 4 * D + 1;
    expect_error(build(f), "vocab_size V=" + std::to_string(4 * D + 1));
    f = ok.fields();
    f.intermediate_size = 4 * D + 1;
    expect_error(build(f), "intermediate_size F=" + std::to_string(4 * D + 1));
  }
  {
    comm::Mesh mesh(world, {.sp = D});
    TpSpLayout layout(mesh, ok, {}, 1);
    const Batch b = testing::random_batch(1, 3 * D, ok.vocab_size(), 1);  // 3D % 2D != 0
    const std::string needle = "sequence length S=" + std::to_string(3 * D) +
                               " is not divisible by 2*sp=" + std::to_string(2 * D);
    expect_error([&] { layout.forward_backward(b.tokens, b.targets, 1.f); }, needle);
    expect_error([&] { layout.forward(b.tokens, b.targets); }, needle);
    expect_error([&] { (void)layout.predicted_activation_peak_bytes(1, 3 * D); }, needle);
  }
  // A mesh with a tsp axis is not this layout's.
  comm::Mesh tsp_mesh(world, {.tsp = D});
  expect_error([&] { TpSpLayout(tsp_mesh, ok, {}, 1); }, "has tsp > 1");
  // Pipeline stages must split the layers evenly (docs/pipeline.md): 3 layers on 2 stages, 6 on 4.
  comm::Mesh pp_mesh(world, {.pp = D});
  model::ModelConfigFields f = testing::tiny_config({.layers = D + D / 2}).fields();
  expect_error([&] { TpSpLayout(pp_mesh, model::ModelConfig(f), {}, 1); },
               std::to_string(D + D / 2) + " layers do not split evenly into pp=" + std::to_string(D) + " stages");
}

}  // namespace
}  // namespace tsp::parallel
