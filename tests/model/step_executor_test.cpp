// The step executor over a range of layers (model/step_executor.h): a model cut into pipeline
// stages, run stage by stage in one process, computes exactly what the whole step computes (the
// same kernels in the same order, so bit for bit), also with micro-batches interleaved in the
// 1F1B order a pipeline runs them in.
#include "tsp/model/step_executor.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tsp/core/error.h"
#include "tsp/core/random.h"
#include "tsp/model/transformer.h"

namespace tsp::model {
namespace {

constexpr int64_t kLayers = 4;

ModelConfig config(bool tied) {
  ModelConfigFields f;
  f.hidden_size = 32;
  f.intermediate_size = 48;
  f.num_hidden_layers = kLayers;
  f.num_attention_heads = 4;
  f.num_key_value_heads = 2;
  f.vocab_size = 41;
  f.rms_norm_eps = 1e-5;
  f.rope_theta = 10000.0;
  f.max_position_embeddings = 64;
  f.tie_word_embeddings = tied;
  return ModelConfig(f);
}

struct Batch {
  Tensor tokens, targets;
};

Batch batch(const ModelConfig& c, uint64_t seed) {
  Batch b{Tensor::empty({2, 12}, DType::i32, MemCategory::workspace),
          Tensor::empty({2, 12}, DType::i32, MemCategory::workspace)};
  Rng rng(seed, 7);
  for (int64_t i = 0; i < b.tokens.numel(); ++i) {
    b.tokens.data<int32_t>()[i] = static_cast<int32_t>(rng.below(c.vocab_size()));
    b.targets.data<int32_t>()[i] =
        i % 7 == 3 ? kIgnoreIndex : static_cast<int32_t>(rng.below(c.vocab_size()));
  }
  return b;
}

// a, b: f32 gradients of one config.
void expect_bitwise_equal(const ModelWeights& a, const ModelWeights& b) {
  const auto na = a.named(), nb = b.named();
  ASSERT_EQ(na.size(), nb.size());
  for (size_t i = 0; i < na.size(); ++i) {
    const Tensor& x = na[i].second;
    const Tensor& y = nb[i].second;
    ASSERT_EQ(x.nbytes(), y.nbytes()) << na[i].first;
    EXPECT_EQ(std::memcmp(x.data<float>(), y.data<float>(), static_cast<size_t>(x.nbytes())), 0)
        << na[i].first << " differs";
  }
}

struct Params {
  DType dtype;
  bool recompute;
  bool tied;
};

class StagedStep : public ::testing::TestWithParam<Params> {};

// Every cut of the 4 layers into two stages and into four: loss and every gradient equal the
// whole step's bit for bit.
TEST_P(StagedStep, StagesRunInTurnEqualTheWholeStep) {
  const Params p = GetParam();
  const ModelConfig c = config(p.tied);
  const ModelWeights w = ModelWeights::initialize(c, p.dtype, 5);
  const Batch b = batch(c, 1);
  Transformer model(c, {.dtype = p.dtype, .recompute = p.recompute});
  const float scale = 1.f / 20;

  ModelWeights whole_grads(c, DType::f32, MemCategory::grads);
  const LossSum whole = model.forward_backward(w, b.tokens, b.targets, whole_grads, scale);

  const std::vector<std::vector<StageRange>> cuts = {
      {{0, 1}, {1, 4}}, {{0, 2}, {2, 4}}, {{0, 3}, {3, 4}}, {{0, 1}, {1, 2}, {2, 3}, {3, 4}}};
  for (const auto& stages : cuts) {
    SCOPED_TRACE(::testing::Message() << stages.size() << " stages, first ends at "
                                      << stages[0].end_layer);
    ModelWeights grads(c, DType::f32, MemCategory::grads);
    const std::unique_ptr<StepStrategy> step = model.step(w, b.tokens, b.targets, &grads);
    std::vector<StagePass> passes;
    passes.reserve(stages.size());
    for (const StageRange& r : stages) passes.emplace_back(*step, r, p.recompute, scale);
    Tensor x;
    for (StagePass& pass : passes) x = pass.forward(x);
    EXPECT_FALSE(x.defined()) << "the head's stage returns no activation";
    EXPECT_EQ(passes.back().loss().loss_sum, whole.loss_sum);
    EXPECT_EQ(passes.back().loss().n_valid, whole.n_valid);
    EXPECT_EQ(passes.front().loss().n_valid, 0) << "only the head's stage has a loss";
    Tensor dx;
    for (auto it = passes.rbegin(); it != passes.rend(); ++it) dx = it->backward(dx);
    EXPECT_FALSE(dx.defined()) << "the embedding stage keeps its gradient";
    expect_bitwise_equal(grads, whole_grads);

    LossSum staged_eval;
    Tensor y;
    for (const StageRange& r : stages) y = run_stage_forward(*model.step(w, b.tokens, b.targets, nullptr), r, y, staged_eval);
    EXPECT_EQ(staged_eval.loss_sum, model.forward(w, b.tokens, b.targets).loss_sum);
  }
}

// Two stages, three micro-batches, each with its own strategy, in the 1F1B order of a two-stage
// pipeline (stage 0: F0 F1 B0 F2 B1 B2; stage 1: F0 B0 F1 B1 F2 B2, interleaved as the
// activations arrive): every gradient accumulates in the same micro-batch order as running the
// micro-batches one after another, so the result is bit-equal to that.
TEST_P(StagedStep, OneForwardOneBackwardOrderEqualsMicroBatchesInSequence) {
  const Params p = GetParam();
  const ModelConfig c = config(p.tied);
  const ModelWeights w = ModelWeights::initialize(c, p.dtype, 6);
  const std::vector<Batch> micro = {batch(c, 11), batch(c, 12), batch(c, 13)};
  Transformer model(c, {.dtype = p.dtype, .recompute = p.recompute});
  const float scale = 1.f / 60;

  ModelWeights sequential(c, DType::f32, MemCategory::grads);
  double sequential_loss = 0;
  for (const Batch& b : micro)
    sequential_loss +=
        model.forward_backward(w, b.tokens, b.targets, sequential, scale).loss_sum;

  ModelWeights grads(c, DType::f32, MemCategory::grads);
  std::vector<std::unique_ptr<StepStrategy>> steps;
  std::vector<StagePass> s0, s1;
  s0.reserve(3);
  s1.reserve(3);
  for (const Batch& b : micro) {
    steps.push_back(model.step(w, b.tokens, b.targets, &grads));
    s0.emplace_back(*steps.back(), StageRange{0, 2}, p.recompute, scale);
    s1.emplace_back(*steps.back(), StageRange{2, 4}, p.recompute, scale);
  }
  std::vector<Tensor> x(3), dx(3);
  x[0] = s0[0].forward(Tensor());
  x[1] = s0[1].forward(Tensor());   // stage 0 warm-up: P - 1 = 1 extra forward in flight
  (void)s1[0].forward(x[0]);        // stage 1: F0 B0
  dx[0] = s1[0].backward(Tensor());
  (void)s0[0].backward(dx[0]);      // stage 0: B0, then F2
  x[2] = s0[2].forward(Tensor());
  (void)s1[1].forward(x[1]);        // stage 1: F1 B1
  dx[1] = s1[1].backward(Tensor());
  (void)s0[1].backward(dx[1]);      // stage 0: B1
  (void)s1[2].forward(x[2]);        // stage 1: F2 B2
  dx[2] = s1[2].backward(Tensor());
  (void)s0[2].backward(dx[2]);      // stage 0: B2 (cool-down)
  double pipelined_loss = 0;
  for (const StagePass& pass : s1) pipelined_loss += pass.loss().loss_sum;
  EXPECT_EQ(pipelined_loss, sequential_loss);
  expect_bitwise_equal(grads, sequential);
}

INSTANTIATE_TEST_SUITE_P(
    Executor, StagedStep,
    ::testing::Values(Params{DType::f32, false, false}, Params{DType::f32, true, true},
                      Params{DType::bf16, false, true}, Params{DType::bf16, true, false}),
    [](const ::testing::TestParamInfo<Params>& info) {
      return std::string(info.param.dtype == DType::f32 ? "f32" : "bf16") +
             (info.param.recompute ? "_recompute" : "") + (info.param.tied ? "_tied" : "_untied");
    });

TEST(StagePass, MisuseIsRefusedWithAMessage) {
  const ModelConfig c = config(false);
  const ModelWeights w = ModelWeights::initialize(c, DType::f32, 1);
  const Batch b = batch(c, 2);
  ModelWeights grads(c, DType::f32, MemCategory::grads);
  Transformer model(c);
  const std::unique_ptr<StepStrategy> step = model.step(w, b.tokens, b.targets, &grads);
  for (const StageRange r : {StageRange{-1, 2}, StageRange{2, 2}, StageRange{3, 5}})
    EXPECT_THROW(StagePass(*step, r, false, 1.f), InvalidArgument);
  StagePass first(*step, {0, 2}, false, 1.f), last(*step, {2, 4}, false, 1.f);
  EXPECT_THROW((void)first.backward(Tensor()), InvalidArgument) << "backward before forward";
  EXPECT_THROW((void)last.forward(Tensor()), InvalidArgument) << "a middle stage needs its input";
  const Tensor x = first.forward(Tensor());
  EXPECT_THROW((void)first.forward(Tensor()), InvalidArgument) << "forward twice";
  EXPECT_THROW((void)first.backward(Tensor()), InvalidArgument) << "needs the next stage's gradient";
  (void)last.forward(x);
  EXPECT_THROW((void)last.backward(x), InvalidArgument) << "the head's stage takes no gradient";
}

}  // namespace
}  // namespace tsp::model
