// Pipeline stages under mpirun (1, 2, 4 ranks): the even layer split and its refusal of uneven
// ones, the stage-to-stage transfers against their backward duals (adjoint test), and the 1F1B
// schedule against the whole model's step, micro-batch by micro-batch, on every stage count.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "layout_test_util.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/core/random.h"
#include "tsp/parallel/pipeline_schedule.h"
#include "tsp/parallel/pipeline_stage.h"

namespace tsp::parallel {
namespace {

Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f32, MemCategory::workspace);
  Rng rng(seed, 7);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.normal());
  return Tensor::copy_of(t, dtype, MemCategory::workspace);
}

double dot(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to_f32(), y = b.to_f32();
  double s = 0;
  for (int64_t i = 0; i < x.numel(); ++i) s += static_cast<double>(x.data<float>()[i]) * y.data<float>()[i];
  return s;
}

TEST(PipelineStage, LayersSplitEvenlyAndUnevenSplitsAreRefused) {
  EXPECT_EQ(stage_layers(8, 1, 0), (model::StageRange{0, 8}));
  EXPECT_EQ(stage_layers(8, 4, 0), (model::StageRange{0, 2}));
  EXPECT_EQ(stage_layers(8, 4, 3), (model::StageRange{6, 8}));
  EXPECT_EQ(stage_layers(4, 4, 2), (model::StageRange{2, 3}));
  try {
    (void)stage_layers(6, 4, 0);
    ADD_FAILURE() << "6 layers on 4 stages accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("6 layers do not split evenly into pp=4 stages"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)stage_layers(2, 4, 0), InvalidArgument);  // a stage without layers
  EXPECT_THROW((void)stage_layers(8, 4, 4), InvalidArgument);
}

// For each boundary s -> s+1 and both dtypes: <recv_forward(send_forward(x)), y> on s+1 equals
// <x, recv_backward(send_backward(y))> on s, exactly (the transfers move values unchanged; a
// misrouted, reordered or truncated message breaks the equality). The paired 1F1B exchanges
// (send_forward_recv_backward on s with send_backward_recv_forward on s+1) are checked the same way.
TEST(PipelineStage, TransfersAreAdjointToTheirBackwardDuals) {
  comm::Communicator world = comm::Communicator::world();
  const int P = world.size();
  if (P == 1) GTEST_SKIP() << "one stage: nothing is transferred";
  comm::Mesh mesh(world, {.pp = P});
  const PipelineStage stage = PipelineStage::on(mesh.axis(comm::MeshAxis::pp), 4 * P);
  const int s = stage.index();
  const Shape shape{5, 8};
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (bool paired : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (paired ? " paired" : " plain"));
      // x_s: what stage s sends forward; y_s: the gradient stage s sends back (f32).
      const Tensor x = random_tensor(shape, dtype, 100 + static_cast<uint64_t>(s));
      const Tensor y = random_tensor(shape, DType::f32, 200 + static_cast<uint64_t>(s));
      Tensor x_in, dx_back;  // received from s-1, and from s+1
      if (!paired) {
        if (!stage.first()) x_in = recv_forward(stage, shape, dtype);
        if (!stage.last()) send_forward(stage, x);
        if (!stage.last()) dx_back = recv_backward(stage, shape);
        if (!stage.first()) send_backward(stage, y);
      } else {
        // Even stages exchange with their next neighbour first, odd ones with their previous.
        for (int round = 0; round < 2; ++round) {
          const bool with_next = (s % 2 == 0) == (round == 0);
          if (with_next && !stage.last()) dx_back = send_forward_recv_backward(stage, x, shape);
          if (!with_next && !stage.first()) x_in = send_backward_recv_forward(stage, y, shape, dtype);
        }
      }
      EXPECT_EQ(!stage.first(), x_in.defined());
      if (x_in.defined()) {
        EXPECT_EQ(x_in.dtype(), dtype);
      }
      if (dx_back.defined()) {
        EXPECT_EQ(dx_back.dtype(), DType::f32);
      }
      // forward[s] = <x_s arriving at s+1, y_{s+1}>, measured on s+1; backward[s] = <x_s,
      // y_{s+1} arriving at s>, measured on s.
      Tensor dots = Tensor::zeros({2 * P}, DType::f32, MemCategory::workspace);
      if (x_in.defined()) dots.data<float>()[s - 1] = static_cast<float>(dot(x_in, y));
      if (dx_back.defined()) dots.data<float>()[P + s] = static_cast<float>(dot(x, dx_back));
      comm::all_reduce(world, dots);
      for (int b = 0; b + 1 < P; ++b) {
        EXPECT_EQ(dots.data<float>()[b], dots.data<float>()[P + b]) << "boundary " << b << " -> " << b + 1;
        EXPECT_NE(dots.data<float>()[b], 0.f) << "boundary " << b << " carried nothing";
      }
    }
  }
}

// 1F1B against the whole model's forward and backward: the tiny model with 4 layers (4 / P per
// stage), M micro-batches through P stages with and without recomputation;
// the loss on the last stage, every stage's gradients (accumulated over the micro-batches) equal
// the whole model's run on the same micro-batches one after the other, bit for bit: each layer,
// micro-batch and gradient sees the same arithmetic in the same order, only in another place.
TEST(PipelineSchedule, OneForwardOneBackwardEqualsTheWholeStep) {
  comm::Communicator world = comm::Communicator::world();
  const int P = world.size();
  comm::Mesh mesh(world, {.pp = P});
  const model::ModelConfig config = testing::tiny_config({.gqa = true, .layers = 4});
  const model::ModelWeights w = model::ModelWeights::initialize(config, DType::f32, 3);
  const PipelineStage stage = PipelineStage::on(mesh.axis(comm::MeshAxis::pp), config.num_hidden_layers());
  for (const int64_t M : {1, 3, 5}) {
    for (const bool recompute : {false, true}) {
      SCOPED_TRACE("M=" + std::to_string(M) + (recompute ? " recompute" : ""));
      const model::Transformer model(config, {.recompute = recompute});
      std::vector<testing::Batch> batches;
      for (int64_t i = 0; i < M; ++i)
        batches.push_back(testing::random_batch(2, 12, config.vocab_size(), 40 + static_cast<uint64_t>(i)));
      const float scale = 1.f / 100;
      // The whole model, micro-batch after micro-batch.
      model::ModelWeights want(config, DType::f32, MemCategory::grads);
      model::LossSum want_loss;
      for (const testing::Batch& b : batches) {
        const model::LossSum l = model::run_forward_backward(*model.step(w, b.tokens, b.targets, &want), recompute, scale);
        want_loss.loss_sum += l.loss_sum;
        want_loss.n_valid += l.n_valid;
      }
      // The pipeline: this rank runs its stage's layers of the same model.
      model::ModelWeights got(config, DType::f32, MemCategory::grads);
      const model::LossSum loss = run_pipeline_forward_backward(
          stage, M,
          [&](int64_t i) {
            const testing::Batch& b = batches[static_cast<size_t>(i)];
            return model.step(w, b.tokens, b.targets, &got);
          },
          recompute, scale);
      if (stage.last()) {
        EXPECT_EQ(loss.loss_sum, want_loss.loss_sum);
        EXPECT_EQ(loss.n_valid, want_loss.n_valid);
      } else {
        EXPECT_EQ(loss.n_valid, 0);
      }
      for (const auto& [name, g] : got.named()) {
        const model::WeightSpec* spec = nullptr;
        const std::vector<model::WeightSpec> specs = model::weight_specs(config);
        for (const model::WeightSpec& sp : specs)
          if (sp.name == name) spec = &sp;
        ASSERT_NE(spec, nullptr);
        // This stage computes the gradients of its layers, the embedding on the first stage and
        // the final norm and head on the last; the others stay zero here.
        const bool mine = spec->layer >= 0 ? stage.range.holds_layer(spec->layer)
                          : spec->kind == model::WeightKind::embed_tokens ? stage.first()
                                                                          : stage.last();
        const Tensor e = want.get(name);
        for (int64_t i = 0; i < g.numel(); ++i) {
          const float expect = mine ? e.data<float>()[i] : 0.f;
          if (g.data<float>()[i] != expect) {
            ADD_FAILURE() << name << " element " << i << " is " << g.data<float>()[i] << ", expected " << expect;
            break;
          }
        }
      }
      // Forward only: the last stage's loss equals the whole model's on the first batch.
      const testing::Batch& first = batches[0];
      const model::LossSum eval = run_pipeline_forward(stage, *model.step(w, first.tokens, first.targets, nullptr));
      const model::LossSum eval_want = model::run_forward(*model.step(w, first.tokens, first.targets, nullptr));
      if (stage.last()) {
        EXPECT_EQ(eval.loss_sum, eval_want.loss_sum);
      }
    }
  }
}

}  // namespace
}  // namespace tsp::parallel
