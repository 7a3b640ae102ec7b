// TSP against the single-rank engine under mpirun (1, 2, 4 ranks): loss and every gradient for
// MHA and GQA, tied and untied embeddings, fp32 and bf16, with and without recomputation, and
// dp 2 x tsp 2; invalid sizes rejected on every rank before anything is allocated.
#include <gtest/gtest.h>

#include <cmath>

#include "layout_test_util.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {
namespace {

using testing::Batch;
using testing::TinyModel;

// Sums the replicated (norm gain) gradients over the group, as the trainer does once per step.
void sum_norm_grads(comm::Communicator& group, const TpWeights& grads) {
  for (const ParamShard& p : grads.params())
    if (p.kind == ShardKind::replicated) {
      Tensor t = p.local;
      comm::all_reduce(group, t);
    }
}

struct TspRun {
  model::LossSum loss;  // summed over the group
  TpWeights grads;
};

TspRun tsp_step(comm::Communicator& group, const model::ModelConfig& config, DType dtype,
                const model::TransformerOptions& options, const Batch& b, int64_t n_valid_global,
                uint64_t seed) {
  const int D = group.size();
  const TpWeights w = TpWeights::initialize(config, dtype, seed, D, group.rank());
  TpWeights grads(config, DType::f32, D, group.rank(), MemCategory::grads);
  const Zigzag z(b.tokens.dim(1), D, group.rank());
  TspTransformer model(group, config, options);
  const model::LossSum mine =
      model.forward_backward(w, z.take_local(b.tokens, MemCategory::workspace),
                             z.take_local(b.targets, MemCategory::workspace), b.tokens.dim(1),
                             grads, 1.f / static_cast<float>(n_valid_global));
  sum_norm_grads(group, grads);
  Tensor sums = Tensor::empty({2}, DType::f32, MemCategory::workspace);
  // Loss sums are compared in double below; the f32 all-reduce of two numbers is exact enough for
  // the count and within 1e-7 relative for the loss.
  sums.data<float>()[0] = static_cast<float>(mine.loss_sum);
  sums.data<float>()[1] = static_cast<float>(mine.n_valid);
  comm::all_reduce(group, sums);
  return {{sums.data<float>()[0], static_cast<int64_t>(std::lround(sums.data<float>()[1]))},
          std::move(grads)};
}

struct Case {
  const char* name;
  TinyModel model;
  DType dtype;
  bool recompute;
};

// fp32: every stage differs from the reference only in the order of fp32 sums (head groups,
// ring shards, dK/dV partials, vocabulary shards, fused GEMMs): the derived bounds of
// testing::f32_layout_tolerance (per element against |e| + rms(e), and norm-wise), under which a
// missing or doubled term (>= 1e-2) fails.
// bf16: activations are rounded to 8 significant bits (2^-9 = 2e-3 relative) at the same points in
// both engines, but a different fp32 summation order can flip a rounding, which then propagates
// through the layers: a few bf16 ulps, so 3e-2 relative.
void run_case(const Case& c) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config(c.model);
  const uint64_t seed = 77;
  const Batch b = testing::random_batch(2, 24, config.vocab_size(), 5);
  const model::TransformerOptions options{.dtype = c.dtype, .recompute = c.recompute, .vocab_chunk = 40};
  const model::ModelWeights full = model::ModelWeights::initialize(config, c.dtype, seed);
  const testing::ReferenceStep ref = testing::reference_step(full, b, options);
  const TspRun run = tsp_step(world, config, c.dtype, options, b, ref.loss.n_valid, seed);
  EXPECT_EQ(run.loss.n_valid, ref.loss.n_valid) << c.name;
  const bool f32 = c.dtype == DType::f32;
  const testing::F32Tolerance tol = testing::f32_layout_tolerance(config, b);
  EXPECT_NEAR(run.loss.loss_sum, ref.loss.loss_sum, (f32 ? tol.loss : 1e-2) * ref.loss.loss_sum) << c.name;
  testing::expect_shards_match(run.grads.params(), ref.grads, f32 ? tol.grad : 3e-2, 1.0,
                               std::string(c.name) + " D=" + std::to_string(world.size()));
}

TEST(TspModel, MhaUntiedF32) { run_case({"mha untied f32", {}, DType::f32, false}); }
TEST(TspModel, GqaTiedF32) { run_case({"gqa tied f32", {.gqa = true, .tied = true}, DType::f32, false}); }
TEST(TspModel, GqaUntiedRecomputeF32) {
  run_case({"gqa recompute f32", {.gqa = true}, DType::f32, true});
}
TEST(TspModel, MhaTiedBf16) { run_case({"mha tied bf16", {.tied = true}, DType::bf16, false}); }
TEST(TspModel, GqaUntiedBf16) { run_case({"gqa untied bf16", {.gqa = true}, DType::bf16, false}); }
// RoPE scaling: every rank's table holds its zigzag positions, so a table built for the wrong
// positions (or without the scaling) fails the comparison with the single-rank model.
TEST(TspModel, GqaLlama3RopeF32) {
  run_case({"gqa llama3 rope f32", {.gqa = true, .rope = testing::test_llama3_scaling()}, DType::f32, false});
}
TEST(TspModel, MhaYarnRopeF32) {
  run_case({"mha yarn rope f32", {.rope = testing::test_yarn_scaling()}, DType::f32, false});
}
// head_dim 16 with h 64 (H d = 128 != h): q/o shards are H/D * d wide, not h/D.
TEST(TspModel, GqaWideHeadsF32) {
  run_case({"gqa head_dim 16 f32", {.gqa = true, .head_dim = 16}, DType::f32, false});
}
TEST(TspModel, MhaWideHeadsTiedBf16) {
  run_case({"mha head_dim 16 tied bf16", {.tied = true, .head_dim = 16}, DType::bf16, false});
}
// Mistral's sliding window on zigzag shards: a rank's queries mask by their global positions.
TEST(TspModel, GqaSlidingWindowF32) {
  run_case({"gqa window 5 f32", {.gqa = true, .window = 5}, DType::f32, false});
}
TEST(TspModel, MhaSlidingWindowRecomputeBf16) {
  run_case({"mha window 3 recompute bf16", {.window = 3}, DType::bf16, true});
}
// Qwen2's q/k/v biases travel in the packed attention shard of their head group; their gradients
// are reduced to the owner with the group's weight gradient.
TEST(TspModel, GqaQkvBiasTiedF32) {
  run_case({"gqa qkv bias tied f32", {.gqa = true, .tied = true, .qkv_bias = true}, DType::f32, false});
}
TEST(TspModel, MhaQkvBiasRecomputeBf16) {
  run_case({"mha qkv bias recompute bf16", {.qkv_bias = true}, DType::bf16, true});
}
TEST(TspModel, GqaYarnRopeBf16) {
  run_case({"gqa yarn rope bf16", {.gqa = true, .rope = testing::test_yarn_scaling()}, DType::bf16, false});
}

TEST(TspModel, ForwardLossEqualsForwardBackwardLoss) {
  comm::Communicator world = comm::Communicator::world();
  const model::ModelConfig config = testing::tiny_config({.gqa = true});
  const Batch b = testing::random_batch(3, 16, config.vocab_size(), 9);
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 3);
  model::Transformer single(config);
  const model::LossSum ref = single.forward(full, b.tokens, b.targets);
  const TpWeights w = TpWeights::initialize(config, DType::f32, 3, world.size(), world.rank());
  const Zigzag z(16, world.size(), world.rank());
  TspTransformer model(world, config);
  const model::LossSum mine = model.forward(w, z.take_local(b.tokens, MemCategory::workspace),
                                            z.take_local(b.targets, MemCategory::workspace), 16);
  Tensor sum = Tensor::empty({1}, DType::f32, MemCategory::workspace);
  sum.data<float>()[0] = static_cast<float>(mine.loss_sum);
  comm::all_reduce(world, sum);
  EXPECT_NEAR(sum.data<float>()[0], ref.loss_sum, testing::f32_layout_tolerance(config, b).loss * ref.loss_sum);
}

// dp 2 x tsp 2: each dp replica takes half of the global batch; shard gradients summed over dp
// (grad_scale is 1 / n_valid of the global batch) equal the single-rank gradients.
TEST(TspModel, DataParallelTimesTsp) {
  comm::Communicator world = comm::Communicator::world();
  if (world.size() != 4) GTEST_SKIP() << "needs 4 ranks (dp 2 x tsp 2)";
  comm::Mesh mesh(world, {.dp = 2, .tsp = 2});
  const model::ModelConfig config = testing::tiny_config({.gqa = true});
  const Batch b = testing::random_batch(4, 16, config.vocab_size(), 21);
  const model::TransformerOptions options{.vocab_chunk = 40};
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 8);
  const testing::ReferenceStep ref = testing::reference_step(full, b, options);
  const Batch mine = testing::batch_rows(b, 2 * mesh.coord(comm::MeshAxis::dp), 2);
  TspRun run = tsp_step(mesh.axis(comm::MeshAxis::tsp), config, DType::f32, options, mine,
                        ref.loss.n_valid, 8);
  for (const ParamShard& p : run.grads.params()) {
    Tensor t = p.local;
    comm::all_reduce(mesh.axis(comm::MeshAxis::dp), t);
  }
  testing::expect_shards_match(run.grads.params(), ref.grads, testing::f32_layout_tolerance(config, b).grad, 1.0,
                               "dp2 x tsp2");
}

// Invalid sizes for the degree: the same clear InvalidArgument on every rank, before any buffer.
TEST(TspModel, InvalidSizesAreRejectedBeforeAllocating) {
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size();
  if (D == 1) GTEST_SKIP() << "every size is valid at D = 1";
  const model::ModelConfig ok = testing::tiny_config({});
  auto expect_error = [&](const model::ModelConfig& c, int64_t seq, const std::string& needle) {
    const int64_t before = MemoryLedger::process().total().live_bytes;
    try {
      validate_tsp(c, D, seq);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(MemoryLedger::process().total().live_bytes, before);
  };
  expect_error(ok, 2 * D + D, "is not divisible by 2*D=" + std::to_string(2 * D));
  model::ModelConfigFields f = ok.fields();
  f.num_attention_heads = 2 * D + 1;
  f.num_key_value_heads = 2 * D + 1;
  f.hidden_size = 8 * (2 * D + 1);
  expect_error(model::ModelConfig(f), 8 * D, "num_attention_heads H=" + std::to_string(2 * D + 1));
  f = ok.fields();
  f.num_key_value_heads = 1;
  expect_error(model::ModelConfig(f), 8 * D, "num_key_value_heads H_kv=1");
  f = ok.fields();
  f.vocab_size = 4 * D + 1;
  expect_error(model::ModelConfig(f), 8 * D, "vocab_size V=" + std::to_string(4 * D + 1));
  f = ok.fields();
  f.intermediate_size = 4 * D + 1;
  expect_error(model::ModelConfig(f), 8 * D, "intermediate_size F=" + std::to_string(4 * D + 1));
  // The model constructor checks too (before any forward allocates).
  f = ok.fields();
  f.vocab_size = 4 * D + 1;
  EXPECT_THROW(TspTransformer(world, model::ModelConfig(f)), InvalidArgument);
}

}  // namespace
}  // namespace tsp::parallel
